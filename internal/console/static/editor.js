// Editor: a query with line numbers, the job's inputs and outputs as
// JSON, Deploy (PUT /v1/jobs). A refused query's error is marked where
// the gateway placed it: its line in the gutter, a bar under its column,
// the line quoted with a caret, and the cursor put there.
import {$, el, setText} from './dom.js';
import {call, errorOf} from './api.js';

const REDACTED = '<redacted>'; // actors.Redacted: a secret the API does not give back
const LINE = 20, PAD_TOP = 6, PAD_LEFT = 8; // style.css: #sql line height and padding

const DEFAULT_SQL = `SELECT deviceId, temperature, System.Timestamp() AS at
INTO alerts
FROM telemetry
WHERE temperature > 90
`;
const DEFAULT_SETTINGS = {
  inputs: [{name: 'telemetry', topic: 'devices/+/messages/events/#', deviceId: 'topic:1'}],
  outputs: [{name: 'alerts', log: {prefix: 'ALERT'}}],
};

let report = () => {};
let marked = null; // {line, column}

export function initEditor(onError) {
  report = onError;
  const sql = $('sql');
  sql.value = DEFAULT_SQL;
  $('settings').value = JSON.stringify(DEFAULT_SETTINGS, null, 2);
  sql.addEventListener('input', () => { clearMarker(); renderGutter(); });
  sql.addEventListener('scroll', () => { $('gutter').scrollTop = sql.scrollTop; placeCaret(); });
  $('deploy').addEventListener('click', deploy);
  renderGutter();
}

// loadJob puts a deployed job in the editor.
export async function loadJob(name) {
  try {
    const r = await call('GET', '/v1/jobs/' + encodeURIComponent(name));
    if (!r.ok) { setText('deploy-error', errorOf(r)); return; }
    const job = Object.assign({}, r.data.job);
    $('job-name').value = job.name || name;
    $('sql').value = job.query || '';
    for (const k of ['name', 'query', 'queryFile', 'plan']) delete job[k];
    $('settings').value = JSON.stringify(job, null, 2);
    clearMarker();
    setText('deploy-result', '');
    setText('deploy-error', JSON.stringify(job).includes(REDACTED)
      ? 'This job has HTTP header values the API does not show (' + REDACTED + '): put them back in before you deploy.' : '');
    renderGutter();
  } catch (e) { report(e); }
}

async function deploy() {
  clearMarker();
  setText('deploy-result', '');
  setText('deploy-error', '');
  let settings;
  try {
    settings = JSON.parse($('settings').value || '{}');
    if (typeof settings !== 'object' || Array.isArray(settings) || settings === null) throw new Error('it must be a JSON object');
  } catch (e) {
    setText('deploy-error', 'Inputs, outputs and policy: not valid JSON: ' + e.message);
    return;
  }
  if (JSON.stringify(settings).includes(REDACTED)) {
    setText('deploy-error', 'Replace ' + REDACTED + ' with the real header values (or a secret reference) first.');
    return;
  }
  const job = Object.assign({}, settings, {name: $('job-name').value.trim(), query: $('sql').value});
  setText('deploy-result', 'deploying...');
  try {
    const r = await call('PUT', '/v1/jobs', JSON.stringify(job), 'application/json');
    if (r.ok) {
      setText('deploy-result', 'Deployed ' + r.data.deployed);
      return;
    }
    setText('deploy-result', '');
    setText('deploy-error', errorOf(r));
    if (r.data && Number.isInteger(r.data.line) && Number.isInteger(r.data.column)) mark(r.data.line, r.data.column, r.data.error);
  } catch (e) {
    setText('deploy-result', '');
    report(e);
  }
}

function renderGutter() {
  const n = $('sql').value.split('\n').length;
  const rows = [];
  for (let i = 1; i <= n; i++) rows.push(el('div', {class: marked && marked.line === i ? 'err' : null}, i));
  $('gutter').replaceChildren(...rows);
  $('gutter').scrollTop = $('sql').scrollTop;
}

// mark shows an error at a 1-based line and column of the query.
function mark(line, column, message) {
  const sql = $('sql');
  const lines = sql.value.split('\n');
  marked = {line, column};
  const m = $('error-marker');
  m.dataset.line = line;
  m.dataset.column = column;
  m.hidden = false;
  setText('error-where', 'Line ' + line + ', column ' + column);
  const text = lines[line - 1] === undefined ? '' : lines[line - 1];
  setText('error-excerpt', line + ' | ' + text + '\n' + ' '.repeat(String(line).length + 3 + visualColumn(text, column) - 1) + '^ ' + shortMessage(message));
  renderGutter();
  let offset = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
  offset = Math.min(offset + Array.from(text).slice(0, column - 1).join('').length, sql.value.length);
  sql.focus();
  sql.setSelectionRange(offset, Math.min(offset + 1, sql.value.length));
  sql.scrollTop = Math.max(0, (line - 3) * LINE);
  placeCaret();
}

function clearMarker() {
  if (!marked) return;
  marked = null;
  $('error-marker').hidden = true;
  $('caret').hidden = true;
  renderGutter();
}

// placeCaret puts the red bar under the marked column.
function placeCaret() {
  const c = $('caret'), sql = $('sql');
  if (!marked) { c.hidden = true; return; }
  const text = sql.value.split('\n')[marked.line - 1] || '';
  const ch = charWidth(sql);
  c.style.top = (PAD_TOP + marked.line * LINE - 3 - sql.scrollTop) + 'px';
  c.style.left = (PAD_LEFT + (visualColumn(text, marked.column) - 1) * ch - sql.scrollLeft) + 'px';
  c.style.width = ch + 'px';
  c.hidden = false;
}

let measured = 0;
function charWidth(sql) {
  if (!measured) {
    const g = document.createElement('canvas').getContext('2d');
    g.font = getComputedStyle(sql).font;
    measured = g.measureText('0123456789').width / 10 || 8;
  }
  return measured;
}

// visualColumn is the screen column of a 1-based column (the gateway
// counts columns in code points), tabs expanded to stops of 4 (style.css
// tab-size).
function visualColumn(text, column) {
  let v = 1;
  for (const c of Array.from(text).slice(0, column - 1)) v = c === '\t' ? v + 4 - ((v - 1) % 4) : v + 1;
  return v;
}

// shortMessage is the error without the file and job prefixes the API
// puts before it.
function shortMessage(msg) {
  const m = /line \d+, column \d+: (.*)$/s.exec(msg || '');
  return m ? m[1] : (msg || '');
}
