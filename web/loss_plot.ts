/**
 * The live loss plot of a fine-tuning run on a canvas: every step's loss as a line over the
 * run's steps, each epoch's mean as a dot at its last step with the epoch's train top-1. Redrawn
 * whole on every step (a few hundred points at most). The canvas' `data-points` and
 * `data-steps` attributes say how far it got (the browser test reads them).
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

/** A round number >= v for the axis' top: 1, 2 or 5 times a power of ten. */
function niceCeil(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

export function drawLossPlot(canvas: HTMLCanvasElement, points: readonly LossPoint[], totalSteps: number, epochs: readonly EpochMark[]): void {
  const dpr = globalThis.devicePixelRatio || 1;
  const w = canvas.clientWidth || 520;
  const hgt = canvas.clientHeight || 180;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
  }
  canvas.dataset.points = String(points.length);
  canvas.dataset.steps = String(totalSteps);
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hgt);
  const L = 46;
  const R = 14;
  const T = 12;
  const B = 28;
  const pw = w - L - R;
  const ph = hgt - T - B;
  const maxLoss = niceCeil(Math.max(0, ...points.map((p) => p.loss), ...epochs.map((e) => e.loss)) * 1.05);
  const steps = Math.max(1, totalSteps);
  const x = (s: number) => L + (pw * s) / steps;
  const y = (v: number) => T + ph * (1 - Math.min(v, maxLoss) / maxLoss);
  ctx.font = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
  ctx.lineWidth = 1;
  // Grid and axes.
  ctx.strokeStyle = GRID;
  ctx.fillStyle = INK;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let i = 0; i <= 4; i++) {
    const v = (maxLoss * i) / 4;
    ctx.beginPath();
    ctx.moveTo(L, Math.round(y(v)) + 0.5);
    ctx.lineTo(L + pw, Math.round(y(v)) + 0.5);
    ctx.stroke();
    ctx.fillText(Number(v.toPrecision(3)).toString(), L - 6, y(v));
  }
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
  // Epoch means and train top-1.
  ctx.fillStyle = MARK;
  ctx.textBaseline = 'bottom';
  for (const e of epochs) {
    ctx.beginPath();
    ctx.arc(x(e.step), y(e.loss), 3.5, 0, 2 * Math.PI);
    ctx.fill();
    ctx.textAlign = x(e.step) > L + pw - 40 ? 'right' : 'center';
    ctx.fillText(`${e.top1.toFixed(0)}%`, x(e.step), y(e.loss) - 5);
  }
  // Legend, under the plot between the axis labels.
  const ly = T + ph + 13;
  const lx = L + pw / 2 - 120;
  ctx.strokeStyle = LINE;
  ctx.lineWidth = 1.75;
  ctx.beginPath();
  ctx.moveTo(lx, ly);
  ctx.lineTo(lx + 16, ly);
  ctx.stroke();
  ctx.fillStyle = INK;
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  ctx.fillText('loss per step', lx + 21, ly);
  ctx.fillStyle = MARK;
  ctx.beginPath();
  ctx.arc(lx + 112, ly, 3.5, 0, 2 * Math.PI);
  ctx.fill();
  ctx.fillStyle = INK;
  ctx.fillText('epoch mean, train top-1', lx + 120, ly);
}
