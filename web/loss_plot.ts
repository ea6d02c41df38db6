/**
 * The live plot of a fine-tuning run on a canvas: every step's loss as a line over the run's
 * steps on a left axis scaled to the data ({@link lossAxis}), each epoch's mean loss as a dot at
 * its last step, and each epoch's top-1 (validation, or training when nothing is held out) as a
 * line on a right axis of 0-100%. Redrawn whole on every step (a few hundred points at most). The
 * canvas' data attributes say what it shows (the browser test reads them): `points`, `steps`,
 * `maxLoss`, `yMax` and `yTicks` (the loss axis), `top1` (the epochs' accuracies, comma-separated).
 */

export interface LossPoint {
  step: number;
  loss: number;
}

export interface EpochMark {
  step: number;
  loss: number;
  top1: number;
}

const INK = '#1f2937';
const GRID = '#e5e7eb';
const LINE = '#2563eb';
const MARK = '#059669';

/** The smallest of 1, 2, 2.5 and 5 times a power of ten that is >= v (v > 0). */
function niceStep(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5]) if (m * p >= v * (1 - 1e-9)) return m * p;
  return 10 * p;
}

/** The loss axis for losses up to `max`: 0 to the first multiple of a round step >= max, in at most five steps. */
export function lossAxis(max: number): { top: number; ticks: number[] } {
  const m = max > 0 && Number.isFinite(max) ? max : 1;
  const step = niceStep(m / 5);
  const n = Math.max(1, Math.ceil(m / step - 1e-9));
  const ticks = Array.from({ length: n + 1 }, (_, i) => Number((i * step).toPrecision(6)));
  return { top: ticks[n], ticks };
}

export function drawLossPlot(canvas: HTMLCanvasElement, points: readonly LossPoint[], totalSteps: number, epochs: readonly EpochMark[], accuracyOn: string): void {
  const dpr = globalThis.devicePixelRatio || 1;
  const w = canvas.clientWidth || 520;
  const hgt = canvas.clientHeight || 180;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
  }
  const maxLoss = Math.max(0, ...points.map((p) => p.loss), ...epochs.map((e) => e.loss));
  const axis = lossAxis(maxLoss);
  Object.assign(canvas.dataset, {
    points: String(points.length), steps: String(totalSteps), maxLoss: String(maxLoss), yMax: String(axis.top), yTicks: axis.ticks.join(','),
    top1: epochs.map((e) => e.top1).join(','),
  });
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hgt);
  const L = 46;
  const R = 40;
  const T = 12;
  const B = 40;
  const pw = w - L - R;
  const ph = hgt - T - B;
  const steps = Math.max(1, totalSteps);
  const x = (s: number) => L + (pw * s) / steps;
  const y = (v: number) => T + ph * (1 - Math.min(v, axis.top) / axis.top);
  const yAcc = (pct: number) => T + ph * (1 - pct / 100);
  ctx.font = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
  ctx.lineWidth = 1;
  // Grid and axes: loss on the left, top-1 on the right.
  ctx.strokeStyle = GRID;
  ctx.fillStyle = INK;
  ctx.textBaseline = 'middle';
  for (const v of axis.ticks) {
    ctx.beginPath();
    ctx.moveTo(L, Math.round(y(v)) + 0.5);
    ctx.lineTo(L + pw, Math.round(y(v)) + 0.5);
    ctx.stroke();
    ctx.textAlign = 'right';
    ctx.fillText(String(v), L - 6, y(v));
  }
  ctx.fillStyle = MARK;
  ctx.textAlign = 'left';
  for (const pct of [0, 50, 100]) ctx.fillText(`${pct}%`, L + pw + 6, yAcc(pct));
  ctx.fillStyle = INK;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  ctx.fillText('0', x(0), T + ph + 6);
  ctx.fillText(`${totalSteps} steps`, x(steps) - 18, T + ph + 6);
  ctx.save();
  ctx.translate(12, T + ph / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = 'middle';
  ctx.fillText('loss', 0, 0);
  ctx.restore();
  // Epoch boundaries.
  ctx.setLineDash([3, 3]);
  for (const [i, e] of epochs.entries()) {
    if (i === epochs.length - 1 && e.step >= steps) continue;
    ctx.beginPath();
    ctx.moveTo(Math.round(x(e.step)) + 0.5, T);
    ctx.lineTo(Math.round(x(e.step)) + 0.5, T + ph);
    ctx.stroke();
  }
  ctx.setLineDash([]);
  // Per-step loss.
  if (points.length > 0) {
    ctx.strokeStyle = LINE;
    ctx.lineWidth = 1.75;
    ctx.beginPath();
    points.forEach((p, i) => (i === 0 ? ctx.moveTo(x(p.step), y(p.loss)) : ctx.lineTo(x(p.step), y(p.loss))));
    ctx.stroke();
    if (points.length === 1) {
      ctx.fillStyle = LINE;
      ctx.beginPath();
      ctx.arc(x(points[0].step), y(points[0].loss), 2.5, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
  // Epoch means (dots on the loss line) and top-1 (a line on the right axis, the last value written).
  ctx.fillStyle = LINE;
  for (const e of epochs) {
    ctx.beginPath();
    ctx.arc(x(e.step), y(e.loss), 3, 0, 2 * Math.PI);
    ctx.fill();
  }
  if (epochs.length > 0) {
    ctx.strokeStyle = MARK;
    ctx.fillStyle = MARK;
    ctx.lineWidth = 1.75;
    ctx.beginPath();
    epochs.forEach((e, i) => (i === 0 ? ctx.moveTo(x(e.step), yAcc(e.top1)) : ctx.lineTo(x(e.step), yAcc(e.top1))));
    ctx.stroke();
    for (const e of epochs) {
      ctx.beginPath();
      ctx.arc(x(e.step), yAcc(e.top1), 3, 0, 2 * Math.PI);
      ctx.fill();
    }
    const last = epochs[epochs.length - 1];
    ctx.textAlign = x(last.step) > L + pw - 40 ? 'right' : 'center';
    ctx.textBaseline = last.top1 > 85 ? 'top' : 'bottom';
    ctx.fillText(`${last.top1.toFixed(0)}%`, x(last.step), yAcc(last.top1) + (last.top1 > 85 ? 5 : -5));
  }
  // Legend, centred under the plot between the axis labels.
  const items: [string, string][] = [[LINE, 'loss per step, dots: epoch mean'], [MARK, `${accuracyOn} top-1 (right)`]];
  const widths = items.map(([, label]) => 21 + ctx.measureText(label).width);
  const ly = T + ph + 29;
  let at = L + (pw - widths.reduce((a, b) => a + b, 0) - 16) / 2;
  ctx.lineWidth = 1.75;
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  for (const [i, [color, label]] of items.entries()) {
    ctx.strokeStyle = color;
    ctx.beginPath();
    ctx.moveTo(at, ly);
    ctx.lineTo(at + 16, ly);
    ctx.stroke();
    ctx.fillStyle = INK;
    ctx.fillText(label, at + 21, ly);
    at += widths[i] + 16;
  }
}
