// Overview: the gateway's counters and rates, its health, and the
// cluster (gateways, partitions with owner and replicas, fenced state).
import {$, el, fmtInt, fmtRate, badge} from './dom.js';
import {Series, sparkline, canvas} from './spark.js';

const gwIn = new Series(), gwOut = new Series();
let cards = null;

function stat(label, withPlot) {
  const value = el('div', {class: 'value'});
  const c = withPlot ? canvas(150, 30) : null;
  const card = el('div', {class: 'card stat'}, el('div', {class: 'label'}, label), value, c);
  $('gw-cards').append(card);
  return {value, canvas: c};
}

export function renderOverview(s) {
  const g = s.gateway;
  gwIn.add(g.eventsIn, s.time);
  gwOut.add(g.rowsOut, s.time);
  if (!cards) {
    cards = {inRate: stat('events in / s', true), outRate: stat('rows out / s', true), eventsIn: stat('events in'),
      rowsOut: stat('rows out'), dead: stat('dead-lettered'), backlog: stat('router backlog'), restarts: stat('partition restarts')};
  }
  cards.inRate.value.textContent = fmtRate(gwIn.rate()) || '-';
  cards.outRate.value.textContent = fmtRate(gwOut.rate()) || '-';
  sparkline(cards.inRate.canvas, gwIn.points, '#1f6feb');
  sparkline(cards.outRate.canvas, gwOut.points, '#1a7f37');
  cards.eventsIn.value.textContent = fmtInt(g.eventsIn);
  cards.rowsOut.value.textContent = fmtInt(g.rowsOut);
  cards.dead.value.textContent = fmtInt(g.deadLettered);
  cards.backlog.value.textContent = fmtInt(g.backlog);
  cards.restarts.value.textContent = fmtInt(g.restarts);

  const health = [];
  const notReady = g.notReady || [];
  health.push(el('li', {}, notReady.length ? badge('not ready', 'bad') : badge('ready', 'ok'),
    ' ', g.durable ? 'durable state on' : 'durable state off (in memory)'));
  for (const why of notReady) health.push(el('li', {class: 'error'}, why));
  $('health').replaceChildren(...health);
  renderCluster(s.cluster);
}

function renderCluster(c) {
  if (!c) {
    $('cluster-summary').replaceChildren('Standalone gateway: its configuration has no cluster section.');
    $('members').hidden = $('partitions').hidden = true;
    return;
  }
  $('members').hidden = $('partitions').hidden = false;
  $('cluster-summary').replaceChildren('This gateway: ', el('strong', {}, c.self), ' - quorum ', c.quorum || '', ', ',
    String(c.replicas), ' replica(s) per partition, known gateways: ', (c.known || []).join(', '), ' ',
    c.fenced ? badge('FENCED: serves nothing until it hears from a majority', 'bad') : badge('in the majority', 'ok'),
    c.awaitingSeed ? badge('awaiting a seed', 'warn') : '');
  $('members').tBodies[0].replaceChildren(...(c.members || []).map((m) => el('tr', {},
    el('td', {}, m.name), el('td', {}, badge(m.state, m.state === 'alive' ? 'ok' : 'warn')),
    el('td', {class: 'num'}, m.serving), el('td', {}, m.lastHeardMs < 0 ? 'never' : m.lastHeardMs + ' ms ago'),
    el('td', {}, m.http), el('td', {}, m.version))));
  $('partitions').tBodies[0].replaceChildren(...(c.partitions || []).map((p) => el('tr', {},
    el('td', {class: 'num'}, p.partition), el('td', {}, p.owner), el('td', {}, (p.replicas || []).join(', ')),
    el('td', {}, p.server || badge('none (moving)', 'warn')), el('td', {class: 'num'}, p.epoch || ''),
    el('td', {}, Object.entries(p.replicaLag || {}).map(([k, v]) => k + ': ' + v).join(', ')))));
}
