// Outputs: each output's outbox (backlog, age, retries, dead letters,
// last error) and the dead letters of the jobs.
import {$, el, setText, fmtInt, fmtBytes, fmtSeconds, badge} from './dom.js';
import {call, errorOf} from './api.js';

let report = () => {};

export function initOutputs(onError) {
  report = onError;
  $('dead-recent').addEventListener('click', () => showDead('Newest dead letters of the jobs', '/v1/deadletters?limit=50', 'deadLetters'));
}

export function renderOutputs(s) {
  $('outputs').tBodies[0].replaceChildren(...(s.outputs || []).map((o) => {
    const b = el('button', {type: 'button'}, 'Dead letters');
    const [job, output] = splitKey(o.output);
    b.addEventListener('click', () => showDead('Dead letters of ' + o.output,
      '/v1/outputs/' + encodeURIComponent(job) + '/' + encodeURIComponent(output) + '/deadletters', 'rows'));
    return el('tr', {'data-output': o.output},
      el('td', {}, o.output, o.full ? ' ' : null, o.full ? badge('full', 'bad') : null),
      el('td', {class: 'num'}, fmtInt(o.backlogRows)), el('td', {class: 'num'}, fmtBytes(o.backlogBytes)),
      el('td', {class: 'num'}, o.backlogRows ? fmtSeconds(o.oldestAgeSeconds) : ''),
      el('td', {class: 'num'}, fmtInt(o.delivered)), el('td', {class: 'num'}, fmtInt(o.retries)),
      el('td', {class: 'num'}, fmtInt(o.deadLettered)), el('td', {class: 'num'}, fmtInt(o.droppedOverQuota)),
      el('td', {class: 'num'}, fmtInt(o.expired)), el('td', {}, o.whenFull || ''),
      el('td', {class: 'err'}, o.lastError || ''), el('td', {}, b));
  }));
  const counts = Object.entries(s.deadLetters || {});
  $('dead-counts').replaceChildren(...(counts.length ? counts.map(([k, v]) => el('li', {}, k + ': ' + fmtInt(v)))
    : [el('li', {class: 'muted'}, 'none since the gateway started')]));
}

function splitKey(key) {
  const i = key.indexOf('/');
  return i < 0 ? [key, ''] : [key.slice(0, i), key.slice(i + 1)];
}

async function showDead(title, path, field) {
  $('dead-detail').hidden = false;
  setText('dead-title', title);
  setText('dead-rows', 'loading...');
  try {
    const r = await call('GET', path);
    if (!r.ok) { setText('dead-rows', errorOf(r)); return; }
    const rows = r.data[field] || [];
    setText('dead-rows', rows.length ? rows.slice(0, 200).map((x) => JSON.stringify(x)).join('\n') : '(none)');
  } catch (e) { report(e); }
}
