// The console's entry point: tabs, sign-in, and the live stream whose
// snapshots every page renders.
import {$, setText} from './dom.js';
import {stream, token, setToken, Unauthorized} from './api.js';
import {renderOverview} from './overview.js';
import {initJobs, renderJobs} from './jobs.js';
import {initEditor, loadJob} from './editor.js';
import {initDevices, renderDevices} from './devices.js';
import {initOutputs, renderOutputs} from './outputs.js';

const TABS = ['overview', 'jobs', 'editor', 'devices', 'outputs'];
const RETRY_MS = 2000;
let abort = null;

function showTab(name) {
  if (!TABS.includes(name)) name = 'overview';
  for (const t of TABS) $('page-' + t).hidden = t !== name;
  for (const b of document.querySelectorAll('#tabs button')) b.classList.toggle('active', b.dataset.tab === name);
  if (location.hash !== '#' + name) history.replaceState(null, '', '#' + name);
}

function setLive(on, text) {
  const p = $('live');
  p.classList.toggle('on', on);
  p.classList.toggle('off', !on);
  setText(p, text);
}

// needLogin shows the sign-in form and stops the stream.
function needLogin(why) {
  if (abort) abort.abort();
  $('login').hidden = false;
  $('pages').hidden = true;
  $('signout').hidden = true;
  setText('login-error', token() ? why : '');
  setLive(false, 'signed out');
}

// report handles an error of an API call made from a page.
function report(e) {
  if (e instanceof Unauthorized) needLogin(e.message);
  else setText('snapshot-errors', String(e.message || e));
}

function onSnapshot(s) {
  renderOverview(s);
  renderJobs(s);
  renderDevices(s);
  renderOutputs(s);
  setText('updated', 'updated ' + new Date(s.time).toLocaleTimeString());
  setText('snapshot-errors', (s.errors || []).join('; '));
}

async function run() {
  $('login').hidden = true;
  $('pages').hidden = false;
  $('signout').hidden = !token();
  const ctl = new AbortController();
  abort = ctl;
  while (!ctl.signal.aborted) {
    try {
      const ended = await stream(ctl.signal, () => setLive(true, 'live'), onSnapshot);
      if (ended) { needLogin(ended); return; }
    } catch (e) {
      if (e instanceof Unauthorized) { needLogin(e.message); return; }
      if (ctl.signal.aborted) return;
      setText('snapshot-errors', 'live stream: ' + (e.message || e));
    }
    setLive(false, 'reconnecting');
    await new Promise((r) => setTimeout(r, RETRY_MS));
  }
}

function init() {
  for (const b of document.querySelectorAll('#tabs button')) b.addEventListener('click', () => showTab(b.dataset.tab));
  showTab(location.hash.slice(1));
  initJobs({edit: (name) => { showTab('editor'); loadJob(name); }, report});
  initEditor(report);
  initDevices(report);
  initOutputs(report);
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    setToken($('token').value.trim());
    $('token').value = '';
    run();
  });
  $('signout').addEventListener('click', () => { setToken(''); needLogin(''); });
  run();
}

init();
