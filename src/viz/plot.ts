/**
 * Simple plots as PNG bytes: line plots (loss curves, accuracies) with axes, "nice" ticks,
 * grid, labels and a legend, and image grids ("original | masked | reconstruction" rows).
 */
import { Canvas, type Color } from './canvas.js';

/** Matplotlib's tab10 colours. */
export const PALETTE: readonly Color[] = [
  [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
  [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
];

export interface Series {
  label: string;
  points: readonly (readonly [number, number])[];
  color?: Color;
}

export interface LinePlotOptions {
  series: readonly Series[];
  title?: string;
  xLabel?: string;
  yLabel?: string;
  width?: number;
  height?: number;
  /** Logarithmic y axis (values <= 0 are dropped). */
  logY?: boolean;
  /** Draw point markers (default: when a series has at most 40 points). */
  markers?: boolean;
}

/** Ticks at 1, 2 or 5 times a power of ten covering [lo, hi], about `target` of them. */
export function niceTicks(lo: number, hi: number, target = 6): number[] {
  if (!(Number.isFinite(lo) && Number.isFinite(hi))) return [];
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) {
    const d = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    lo -= d;
    hi += d;
  }
  const raw = (hi - lo) / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const ticks: number[] = [];
  const first = Math.ceil(lo / step - 1e-9);
  for (let k = first; k * step <= hi + step * 1e-9; k++) {
    const v = Number((k * step).toPrecision(12)); // no float noise (0.6, not 0.6000000000000001)
    ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return ticks;
}

/** A short tick label: no float noise, exponent form for very large or small values. */
export function formatTick(v: number, step: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(Math.max(0, Math.min(3, -Math.floor(Math.log10(step / a)))) ).replace('e+', 'e');
  const decimals = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
  return v.toFixed(decimals);
}

/** Draws a line plot; returns PNG bytes. */
export function linePlot(opts: LinePlotOptions): Uint8Array {
  return linePlotCanvas(opts).toPng();
}

/** {@link linePlot} on a canvas (to draw more on it, or save it). */
export function linePlotCanvas(opts: LinePlotOptions): Canvas {
  const W = opts.width ?? 800;
  const H = opts.height ?? 500;
  const cv = new Canvas(W, H, [255, 255, 255]);
  const ink: Color = [40, 40, 40];
  const grid: Color = [228, 228, 228];
  const logY = opts.logY ?? false;
  const fy = (y: number): number => (logY ? Math.log10(y) : y);
  const series = opts.series.map((s, i) => ({
    ...s,
    color: s.color ?? PALETTE[i % PALETTE.length],
    pts: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logY || y > 0)),
  }));
  let xmin = Infinity;
  let xmax = -Infinity;
  let ymin = Infinity;
  let ymax = -Infinity;
  for (const s of series) {
    for (const [x, y] of s.pts) {
      xmin = Math.min(xmin, x);
      xmax = Math.max(xmax, x);
      ymin = Math.min(ymin, fy(y));
      ymax = Math.max(ymax, fy(y));
    }
  }
  if (!Number.isFinite(xmin)) {
    xmin = 0;
    xmax = 1;
    ymin = 0;
    ymax = 1;
  }
  if (xmax === xmin) {
    xmin -= 0.5;
    xmax += 0.5;
  }
  if (ymax === ymin) {
    const d = Math.abs(ymin) > 0 ? Math.abs(ymin) * 0.1 : 1;
    ymin -= d;
    ymax += d;
  }
  const ypad = (ymax - ymin) * 0.05;
  ymin -= ypad;
  ymax += ypad;
  const xt = niceTicks(xmin, xmax, Math.max(3, Math.floor(W / 110)));
  const yt = logY ? logTicks(ymin, ymax) : niceTicks(ymin, ymax, Math.max(3, Math.floor(H / 70)));
  const xstep = xt.length > 1 ? xt[1] - xt[0] : 1;
  const ystep = yt.length > 1 ? yt[1] - yt[0] : 1;
  const yLabels = yt.map((v) => (logY ? formatTick(10 ** v, 10 ** v) : formatTick(v, ystep)));
  const left = 24 + (opts.yLabel ? 16 : 0) + Math.max(...yLabels.map((s) => cv.textWidth(s, 'small')), 12);
  const top = opts.title ? 40 : 16;
  // The legend goes below the plot box, never over the curves: entries in rows that fit the width.
  const named = series.filter((s) => s.label);
  const entryW = named.map((s) => cv.textWidth(s.label, 'small') + 44);
  const legendRows: number[][] = [];
  for (const [i, w] of entryW.entries()) {
    const row = legendRows[legendRows.length - 1];
    const used = row ? row.reduce((a, k) => a + entryW[k], 0) : Infinity;
    if (row && used + w <= W - 32) row.push(i);
    else legendRows.push([i]);
  }
  const legendH = legendRows.length * 16 + (legendRows.length ? 6 : 0);
  const bottom = 34 + (opts.xLabel ? 18 : 0) + legendH;
  const right = 24;
  const pw = W - left - right;
  const ph = H - top - bottom;
  const px = (x: number): number => left + ((x - xmin) / (xmax - xmin)) * pw;
  const py = (y: number): number => top + ph - ((y - ymin) / (ymax - ymin)) * ph;

  // Grid, ticks and tick labels.
  xt.forEach((v) => {
    const x = Math.round(px(v)) + 0.5;
    if (x < left - 0.5 || x > left + pw + 0.5) return;
    cv.line(x, top, x, top + ph, grid, 1);
    cv.line(x, top + ph, x, top + ph + 5, ink, 1);
    cv.text(x, top + ph + 9, formatTick(v, xstep), ink, { font: 'small', align: 'center' });
  });
  yt.forEach((v, i) => {
    const y = Math.round(py(v)) + 0.5;
    if (y < top - 0.5 || y > top + ph + 0.5) return;
    cv.line(left, y, left + pw, y, grid, 1);
    cv.line(left - 5, y, left, y, ink, 1);
    cv.text(left - 8, y, yLabels[i], ink, { font: 'small', align: 'right', baseline: 'middle' });
  });
  cv.strokeRect(left - 1, top - 1, pw + 2, ph + 2, [150, 150, 150]);

  // Data, clipped to the plot box by construction of the ranges.
  for (const s of series) {
    const pts = s.pts.map(([x, y]) => [px(x), py(fy(y))] as [number, number]);
    if (pts.length > 1) cv.polyline(pts, s.color, 2);
    const markers = opts.markers ?? s.pts.length <= 40;
    if (markers || pts.length === 1) for (const [x, y] of pts) cv.circle(x, y, 3, s.color);
  }

  // Title and axis labels.
  if (opts.title) cv.text(W / 2, 14, opts.title, ink, { font: 'bold', align: 'center' });
  if (opts.xLabel) cv.text(left + pw / 2, H - 20 - legendH, opts.xLabel, ink, { font: 'normal', align: 'center' });
  if (opts.yLabel) cv.text(10, top + ph / 2, opts.yLabel, ink, { font: 'normal', align: 'center', vertical: true });

  // Legend: centred rows under the axis label.
  legendRows.forEach((row, r) => {
    const width = row.reduce((a, k) => a + entryW[k], 0);
    let x = Math.round((W - width) / 2);
    const y = H - legendH - 2 + r * 16 + 8;
    for (const k of row) {
      cv.line(x + 4, y, x + 24, y, named[k].color, 2);
      cv.text(x + 30, y, named[k].label, ink, { font: 'small', baseline: 'middle' });
      x += entryW[k];
    }
  });
  return cv;
}

function logTicks(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) ticks.push(e);
  if (ticks.length >= 2) return ticks;
  return niceTicks(lo, hi, 5);
}

/** An image for {@link imageGrid}: RGB (or grey / RGBA) bytes, HWC. */
export interface GridImage {
  width: number;
  height: number;
  data: Uint8Array;
  channels?: 1 | 3 | 4;
}

export interface ImageGridOptions {
  /** Magnification of every cell (nearest neighbour; default: small images grow to ~128 px). */
  scale?: number;
  /** Space between cells in pixels (default 4). */
  pad?: number;
  title?: string;
}

/**
 * Lays `images` out `cols` per row. `labels` of length `cols` head the columns ("original",
 * "masked", "reconstruction"); of length images.length they caption each image. Returns PNG bytes.
 */
export function imageGrid(images: readonly GridImage[], cols: number, labels?: readonly string[], opts: ImageGridOptions = {}): Uint8Array {
  return imageGridCanvas(images, cols, labels, opts).toPng();
}

export function imageGridCanvas(images: readonly GridImage[], cols: number, labels?: readonly string[], opts: ImageGridOptions = {}): Canvas {
  if (images.length === 0) throw new RangeError('imageGrid needs at least one image');
  if (!(Number.isInteger(cols) && cols >= 1)) throw new RangeError(`imageGrid cols ${cols} must be a positive integer`);
  const cw = Math.max(...images.map((i) => i.width));
  const ch = Math.max(...images.map((i) => i.height));
  const scale = opts.scale ?? Math.max(1, Math.floor(128 / Math.max(cw, ch)));
  const pad = opts.pad ?? 4;
  const rows = Math.ceil(images.length / cols);
  const headers = labels && labels.length === cols && labels.length !== images.length ? labels : null;
  const captions = labels && !headers && labels.length === images.length ? labels : null;
  const titleH = opts.title ? 22 : 0;
  const headH = headers ? 18 : 0;
  const capH = captions ? 14 : 0;
  // Cells widen (images centred) so that headers and captions fit.
  const textW = Math.max(0, ...(labels ?? []).map((l) => l.length * 6 + 6));
  const cellW = Math.max(cw * scale, textW);
  const cellH = ch * scale;
  const W = pad + cols * (cellW + pad);
  const H = titleH + headH + pad + rows * (cellH + capH + pad);
  const cv = new Canvas(Math.max(W, opts.title ? cvTextMin(opts.title) : 1), H, [255, 255, 255]);
  const ink: Color = [40, 40, 40];
  if (opts.title) cv.text(cv.width / 2, 6, opts.title, ink, { font: 'bold', align: 'center' });
  if (headers) headers.forEach((h, c) => cv.text(pad + c * (cellW + pad) + cellW / 2, titleH + 4, h, ink, { font: 'small', align: 'center' }));
  images.forEach((img, i) => {
    const r = Math.floor(i / cols);
    const c = i % cols;
    const x = pad + c * (cellW + pad);
    const y = titleH + headH + pad + r * (cellH + capH + pad);
    cv.blit(img, x + Math.floor((cellW - img.width * scale) / 2), y + Math.floor((cellH - img.height * scale) / 2), img.width * scale, img.height * scale, 'nearest');
    if (captions) cv.text(x + cellW / 2, y + cellH + 2, captions[i], ink, { font: 'small', align: 'center' });
  });
  return cv;
}

function cvTextMin(title: string): number {
  return title.length * 7 + 16;
}

export interface ConfusionPlotOptions {
  title?: string;
  /** Class names, by index (shown when there are at most 60 classes). */
  labels?: readonly string[];
}

/**
 * A confusion matrix as a heat map: row = true class, column = predicted class, each cell
 * shaded by its share of the row (white 0 to dark blue 1), its count written in it for at most
 * 20 classes; `counts` is [K * K], row-major.
 */
export function confusionMatrixCanvas(counts: ArrayLike<number>, K: number, opts: ConfusionPlotOptions = {}): Canvas {
  if (counts.length !== K * K) throw new RangeError(`confusion matrix of ${counts.length} counts is not ${K}x${K}`);
  const cell = Math.max(2, Math.min(36, Math.floor(640 / K)));
  const named = opts.labels !== undefined && K <= 60;
  const short = (k: number) => (opts.labels?.[k] ?? String(k)).slice(0, 14);
  const margin = named ? Math.max(...Array.from({ length: K }, (_, k) => short(k).length)) * 6 + 10 : 24;
  const top = 44;
  const title = opts.title ?? 'confusion matrix';
  const sub = 'rows: true class, columns: predicted class';
  const W = Math.max(margin + K * cell + 16, 7 * title.length + 20, 6 * sub.length + 20);
  const H = top + K * cell + margin + 16;
  const c = new Canvas(W, H);
  c.text(W / 2, 6, title, [20, 20, 20], { align: 'center', font: 'bold' });
  c.text(W / 2, 24, sub, [90, 90, 90], { align: 'center', font: 'small' });
  for (let y = 0; y < K; y++) {
    let row = 0;
    for (let x = 0; x < K; x++) row += counts[y * K + x];
    for (let x = 0; x < K; x++) {
      const n = counts[y * K + x];
      const f = row > 0 ? n / row : 0;
      const col: Color = [Math.round(255 - 222 * f), Math.round(255 - 170 * f), Math.round(255 - 75 * f)];
      c.fillRect(margin + x * cell, top + y * cell, cell, cell, col);
      if (K <= 20 && n > 0) c.text(margin + x * cell + cell / 2, top + y * cell + cell / 2, String(n), f > 0.5 ? [255, 255, 255] : [30, 30, 30], { align: 'center', baseline: 'middle', font: 'small' });
    }
  }
  c.strokeRect(margin - 1, top - 1, K * cell + 2, K * cell + 2, [120, 120, 120]);
  if (named) {
    for (let k = 0; k < K; k++) {
      c.text(margin - 4, top + k * cell + cell / 2, short(k), [40, 40, 40], { align: 'right', baseline: 'middle', font: 'small' });
      c.text(margin + k * cell + cell / 2 - 5, top + K * cell + 4, short(k), [40, 40, 40], { align: 'right', font: 'small', vertical: true });
    }
  }
  return c;
}
