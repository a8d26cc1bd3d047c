// DOM helpers. Data goes onto the page as text only (W3): el() turns
// string children into text nodes and sets attributes one by one, never
// HTML. Device ids, job names and error messages come from whoever can
// publish or deploy.

export const $ = (id) => document.getElementById(id);

// el('td', {class: 'num'}, 'text', childNode, ...).
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// setText sets an element's text, by id or element.
export function setText(target, text) {
  const e = typeof target === 'string' ? $(target) : target;
  e.textContent = text === undefined || text === null ? '' : String(text);
}

export function fmtInt(n) {
  return n === undefined || n === null ? '' : Number(n).toLocaleString('en-US');
}

export function fmtRate(r) {
  if (!Number.isFinite(r)) return '';
  return r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2);
}

export function fmtBytes(b) {
  if (!b) return '0 B';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : b) + ' ' + u[i];
}

export function fmtSeconds(s) {
  if (s === undefined || s === null || !Number.isFinite(s)) return '';
  if (s < 1) return (s * 1000).toFixed(0) + ' ms';
  if (s < 120) return s.toFixed(1) + ' s';
  return (s / 60).toFixed(1) + ' min';
}

export function fmtAgo(iso, now) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t) || t <= 0) return 'never';
  return fmtSeconds(Math.max(0, (now - t) / 1000)) + ' ago';
}

export function badge(text, kind) {
  return el('span', {class: 'badge ' + kind}, text);
}

// pretty shows JSON data indented, or '(none)'.
export function pretty(v) {
  return v === undefined || v === null ? '(none)' : JSON.stringify(v, null, 2);
}
