// Devices: online state, last message, twin reported and desired
// properties; desired properties are set with PUT /v1/devices/{id}/desired.
import {$, el, setText, fmtInt, fmtAgo, badge, pretty} from './dom.js';
import {call, errorOf} from './api.js';

let report = () => {};
let current = ''; // the device shown in detail

export function initDevices(onError) {
  report = onError;
  $('device-find').addEventListener('submit', (e) => { e.preventDefault(); show($('device-id').value.trim()); });
  $('desired-set').addEventListener('click', setDesired);
}

export function renderDevices(s) {
  const devs = s.devices || [];
  $('devices').tBodies[0].replaceChildren(...devs.map((d) => {
    const tr = el('tr', {class: 'clickable', 'data-device': d.deviceId},
      el('td', {}, d.deviceId), el('td', {}, d.online ? badge('online', 'ok') : badge('offline', 'warn')),
      el('td', {}, fmtAgo(d.lastSeen, s.time)), el('td', {class: 'num'}, fmtInt(d.messages)),
      el('td', {class: 'num'}, d.desiredVersion || ''));
    tr.addEventListener('click', () => show(d.deviceId));
    return tr;
  }));
  $('devices-more').hidden = !s.moreDevices;
}

async function show(id) {
  if (!id) return;
  try {
    const r = await call('GET', '/v1/devices/' + encodeURIComponent(id));
    $('device-detail').hidden = false;
    current = id;
    setText('dev-name', id);
    setText('desired-result', '');
    if (!r.ok) {
      setText('dev-reported', errorOf(r));
      setText('dev-twin', ''); setText('dev-desired', '');
      return;
    }
    const d = r.data;
    setText('dev-reported', d.reported !== undefined ? pretty(d.reported)
      : d.reportedBytes ? '(' + fmtInt(d.reportedBytes) + ' bytes: too large to keep)' : '(none)');
    setText('dev-twin', pretty(d.twinReported) + (d.reportedVersion ? '\nversion ' + d.reportedVersion : ''));
    setText('dev-desired', pretty(d.desired) + (d.desiredVersion ? '\nversion ' + d.desiredVersion : ''));
    $('desired-edit').value = d.desired ? JSON.stringify(d.desired, null, 2) : '{\n  \n}';
  } catch (e) { report(e); }
}

async function setDesired() {
  if (!current) return;
  try {
    const r = await call('PUT', '/v1/devices/' + encodeURIComponent(current) + '/desired', $('desired-edit').value, 'application/json');
    setText('desired-result', r.ok ? 'Set.' : 'Not set: ' + errorOf(r));
    if (r.ok) show(current);
  } catch (e) { report(e); }
}
