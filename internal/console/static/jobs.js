// Jobs: each job's rates in and out (sparklines of the last minute),
// totals, watermark lag, memory, last error; its plan on demand.
import {$, el, setText, fmtInt, fmtRate, fmtBytes, fmtSeconds, badge} from './dom.js';
import {Series, sparkline, canvas} from './spark.js';
import {call, errorOf} from './api.js';

const series = new Map(); // job name -> {in: Series, out: Series}
let actions = {edit: () => {}, report: () => {}};

export function initJobs(a) { actions = a; }

export function renderJobs(s) {
  const seen = new Set();
  const rows = s.jobs.map((j) => {
    seen.add(j.name);
    let h = series.get(j.name);
    if (!h) { h = {in: new Series(), out: new Series()}; series.set(j.name, h); }
    h.in.add(j.eventsIn, s.time);
    h.out.add(j.eventsOut, s.time);
    const cin = canvas(80, 24), cout = canvas(80, 24);
    sparkline(cin, h.in.points, '#1f6feb');
    sparkline(cout, h.out.points, '#1a7f37');
    const status = j.stopped ? badge('stopped', 'bad') : badge('running', 'ok');
    const mem = fmtBytes(j.stateBytes) + (j.budgetBytes ? ' of ' + fmtBytes(j.budgetBytes) : '');
    return el('tr', {'data-job': j.name},
      el('td', {class: 'name'}, el('strong', {}, j.name), el('div', {class: 'muted'}, j.inputs.join(', ') + ' \u2192 ' + j.outputs.join(', '))),
      el('td', {}, status),
      el('td', {class: 'rate'}, el('span', {class: 'in-rate'}, fmtRate(h.in.rate())), cin),
      el('td', {class: 'rate'}, el('span', {class: 'out-rate'}, fmtRate(h.out.rate())), cout),
      el('td', {class: 'num in-total'}, fmtInt(j.eventsIn)), el('td', {class: 'num out-total'}, fmtInt(j.eventsOut)),
      el('td', {class: 'num'}, fmtInt(j.deadLettered + j.dropped)),
      el('td', {class: 'num lag'}, j.lagSeconds === undefined ? '' : fmtSeconds(j.lagSeconds)),
      el('td', {class: 'num'}, mem),
      el('td', {class: 'err'}, j.lastError || ''),
      el('td', {}, button('Plan', () => showPlan(j.name)), ' ', button('Edit', () => actions.edit(j.name)), ' ',
        button('Remove', () => remove(j.name))));
  });
  for (const name of series.keys()) if (!seen.has(name)) series.delete(name);
  $('jobs').tBodies[0].replaceChildren(...rows);
  $('jobs-empty').hidden = rows.length > 0;
}

function button(label, onClick) {
  const b = el('button', {type: 'button'}, label);
  b.addEventListener('click', onClick);
  return b;
}

async function showPlan(name) {
  $('job-detail').hidden = false;
  setText('plan-name', name);
  setText('plan', 'loading...');
  try {
    const r = await call('GET', '/v1/jobs/' + encodeURIComponent(name) + '/plan');
    setText('plan', r.ok ? r.data : errorOf(r));
  } catch (e) { actions.report(e); }
}

async function remove(name) {
  if (!window.confirm('Remove job ' + name + ' from the gateway (and its cluster)?')) return;
  try {
    const r = await call('DELETE', '/v1/jobs/' + encodeURIComponent(name));
    if (!r.ok) window.alert('Not removed: ' + errorOf(r));
  } catch (e) { actions.report(e); }
}
