// The admin API as the console calls it. Credentials: with client
// certificates the browser presents its own; with bearer tokens the
// operator types one in, it is kept in this tab's sessionStorage and sent
// in an Authorization header on every call, the live stream included (it
// is read with fetch, not EventSource, which cannot send headers), so a
// token never appears in a URL or a server log.

const TOKEN_KEY = 'millstream.token';
const MAX_FRAME = 8 << 20; // a snapshot bigger than this is skipped

export class Unauthorized extends Error {}

export function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }
export function setToken(t) { t ? sessionStorage.setItem(TOKEN_KEY, t) : sessionStorage.removeItem(TOKEN_KEY); }

function headers(extra) {
  const h = Object.assign({}, extra);
  if (token()) h.Authorization = 'Bearer ' + token();
  return h;
}

// call makes one API request; it answers {status, ok, data}, data being
// the parsed JSON or the text, and throws Unauthorized on 401.
export async function call(method, path, body, contentType) {
  const init = {method, headers: headers(body === undefined ? {} : {'Content-Type': contentType || 'application/json'}),
    cache: 'no-store', credentials: 'same-origin'};
  if (body !== undefined) init.body = body;
  const resp = await fetch(path, init);
  if (resp.status === 401) throw new Unauthorized(await errorText(resp));
  const text = await resp.text();
  let data = text;
  if ((resp.headers.get('Content-Type') || '').includes('json')) {
    try { data = JSON.parse(text); } catch (e) { data = text; }
  }
  return {status: resp.status, ok: resp.ok, data};
}

async function errorText(resp) {
  try { return (await resp.json()).error || resp.statusText; } catch (e) { return resp.statusText; }
}

// errorOf is the message of a failed call's answer.
export function errorOf(r) {
  return (r.data && r.data.error) || (typeof r.data === 'string' && r.data) || ('HTTP ' + r.status);
}

// stream reads GET /v1/console/stream until it ends or signal aborts,
// calling onSnapshot with each snapshot. It returns the reason an "end"
// event gave, or '' when the connection closed; it throws Unauthorized
// on 401 and Error on any other refusal.
export async function stream(signal, onOpen, onSnapshot) {
  const resp = await fetch('/v1/console/stream', {headers: headers({Accept: 'text/event-stream'}), cache: 'no-store', signal});
  if (resp.status === 401) throw new Unauthorized(await errorText(resp));
  if (!resp.ok) throw new Error(await errorText(resp));
  onOpen();
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let skipping = false; // inside a frame too large to keep
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return '';
    buf += value;
    if (skipping) {
      const j = buf.indexOf('\n\n');
      if (j < 0) { buf = buf.slice(-1); continue; }
      buf = buf.slice(j + 2);
      skipping = false;
    }
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const frame = parseFrame(buf.slice(0, i));
      buf = buf.slice(i + 2);
      if (frame.event === 'end') return JSON.parse(frame.data);
      if (frame.event === 'snapshot') onSnapshot(JSON.parse(frame.data));
    }
    if (buf.length > MAX_FRAME) {
      // Skipped, not the end of the stream: the next frame may fit
      // (the page keeps the last one; its "updated" time shows the age).
      skipping = true;
      buf = buf.slice(-1);
    }
  }
}

function parseFrame(text) {
  const f = {event: 'message', data: ''};
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const k = line.slice(0, i), v = line.slice(i + 1).replace(/^ /, '');
    if (k === 'event') f.event = v;
    else if (k === 'data') f.data += v;
  }
  return f;
}
