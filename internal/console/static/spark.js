// Sparklines drawn on <canvas> (no chart library: nothing is fetched from
// elsewhere). History keeps a bounded series of rates per key.

export const HISTORY = 60; // samples kept per series (one a second)

// Series computes rates from successive counter readings.
export class Series {
  constructor() { this.points = []; this.last = null; }

  // add takes a counter and its time (ms) and records the rate since
  // the last one (none for the first; a counter that went down, after a
  // restart or redeploy, restarts the series' base).
  add(value, t) {
    if (this.last && t > this.last.t && value >= this.last.v) {
      this.points.push((value - this.last.v) * 1000 / (t - this.last.t));
      if (this.points.length > HISTORY) this.points.shift();
    }
    this.last = {v: value, t};
  }

  rate() { return this.points.length ? this.points[this.points.length - 1] : NaN; }
}

// sparkline draws points into a canvas (css pixels w x h), scaled to
// their maximum.
export function sparkline(canvas, points, color) {
  const w = Number(canvas.dataset.w || 120), h = Number(canvas.dataset.h || 26);
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== w * dpr) {
    canvas.width = w * dpr; canvas.height = h * dpr;
    canvas.style.width = w + 'px'; canvas.style.height = h + 'px';
  }
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  g.strokeStyle = '#dde3ea';
  g.beginPath(); g.moveTo(0, h - 0.5); g.lineTo(w, h - 0.5); g.stroke();
  if (points.length < 2) return;
  const max = Math.max(...points) || 1;
  const x = (i) => (i + HISTORY - points.length) * (w - 1) / (HISTORY - 1);
  const y = (v) => h - 2 - (v / max) * (h - 4);
  g.beginPath();
  points.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
  g.strokeStyle = color; g.lineWidth = 1.5; g.stroke();
  g.lineTo(x(points.length - 1), h); g.lineTo(x(0), h); g.closePath();
  g.globalAlpha = 0.15; g.fillStyle = color; g.fill(); g.globalAlpha = 1;
}

export function canvas(w, h) {
  const c = document.createElement('canvas');
  c.dataset.w = w; c.dataset.h = h;
  return c;
}
