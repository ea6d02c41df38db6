/**
 * Pictures of the analyses: the cosine-distance curves against relative depth (the paper's
 * Fig. 4 layout, one line per model), class-selectivity distributions per layer (boxes:
 * quartiles, whiskers: 10th-90th percentiles, a dot: the mean) and activation-map grids
 * (the paper's Fig. 3 layout: one small square per channel).
 */
import { Canvas, type Color } from '../viz/canvas.js';
import { PALETTE, formatTick, linePlot, niceTicks } from '../viz/plot.js';
import type { ImageMaps, ModelAnalysis } from './collect.js';

export interface LabelledAnalysis {
  label: string;
  analysis: ModelAnalysis;
}

/** Feature cosine distance per block against relative depth, one series per model. PNG bytes. */
export function cosineDistancePlot(models: readonly LabelledAnalysis[], title = 'Feature cosine distance per block (higher: more diverse channels)'): Uint8Array {
  return linePlot({
    title, xLabel: 'relative depth (block / blocks)', yLabel: 'feature cosine distance', width: 720, height: 440, markers: true,
    series: models.map((m) => ({ label: m.label, points: m.analysis.layers.map((l) => [l.relativeDepth, l.cosine] as [number, number]) })),
  });
}

/** Class selectivity index distributions per block, a box per model. PNG bytes. */
export function selectivityPlot(models: readonly LabelledAnalysis[], title = 'Class selectivity index per block'): Uint8Array {
  const layers = models[0]?.analysis.layers ?? [];
  const groups = Math.max(1, ...models.map((m) => m.analysis.layers.length));
  const W = Math.max(640, 90 + groups * (16 + 14 * models.length));
  const H = 420;
  const cv = new Canvas(W, H, [255, 255, 255]);
  const ink: Color = [40, 40, 40];
  const grid: Color = [228, 228, 228];
  const left = 62;
  const right = 20;
  const top = 40;
  const bottom = 64;
  const pw = W - left - right;
  const ph = H - top - bottom;
  const py = (v: number) => top + ph - v * ph;
  const ticks = niceTicks(0, 1, 5);
  for (const t of ticks) {
    const y = Math.round(py(t)) + 0.5;
    cv.line(left, y, left + pw, y, grid, 1);
    cv.line(left - 5, y, left, y, ink, 1);
    cv.text(left - 8, y, formatTick(t, ticks[1] - ticks[0]), ink, { font: 'small', align: 'right', baseline: 'middle' });
  }
  cv.strokeRect(left - 1, top - 1, pw + 2, ph + 2, [150, 150, 150]);
  const gw = pw / groups;
  const bw = Math.max(4, Math.min(18, (gw - 8) / Math.max(1, models.length)));
  for (let g = 0; g < groups; g++) {
    const cx = left + gw * (g + 0.5);
    const l = layers[g];
    if (l) cv.text(cx, top + ph + 8, `${l.stage}.${l.block}`, ink, { font: 'small', align: 'center' });
    models.forEach((m, mi) => {
      const st = m.analysis.layers[g]?.selectivityStats;
      if (!st || st.count === 0) return;
      const color = PALETTE[mi % PALETTE.length];
      const x0 = cx - (models.length * bw) / 2 + mi * bw + 1;
      const xm = x0 + (bw - 2) / 2;
      cv.line(xm, py(st.p10), xm, py(st.p25), color, 1);
      cv.line(xm, py(st.p75), xm, py(st.p90), color, 1);
      cv.fillRect(Math.round(x0), Math.round(py(st.p75)), Math.max(1, Math.round(bw - 2)), Math.max(1, Math.round(py(st.p25) - py(st.p75))), color, 0.35);
      cv.strokeRect(Math.round(x0), Math.round(py(st.p75)), Math.max(1, Math.round(bw - 2)), Math.max(1, Math.round(py(st.p25) - py(st.p75))), color, 1);
      cv.line(x0, py(st.median), x0 + bw - 2, py(st.median), color, 2);
      cv.circle(xm, py(st.mean), 2, ink);
    });
  }
  cv.text(W / 2, 14, title, ink, { font: 'bold', align: 'center' });
  cv.text(left + pw / 2, H - 40, 'block (stage.block); box: quartiles, whiskers: 10th-90th percentile, dot: mean', ink, { font: 'small', align: 'center' });
  cv.text(12, top + ph / 2, 'selectivity index', ink, { font: 'normal', align: 'center', vertical: true });
  // Legend below the axis label.
  let lx = left;
  models.forEach((m, mi) => {
    const color = PALETTE[mi % PALETTE.length];
    cv.fillRect(lx, H - 22, 14, 10, color, 0.6);
    cv.text(lx + 18, H - 17, m.label, ink, { font: 'small', baseline: 'middle' });
    lx += 32 + cv.textWidth(m.label, 'small');
  });
  return cv.toPng();
}

/** Viridis, sampled at nine points and interpolated linearly. */
const VIRIDIS: readonly Color[] = [
  [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141], [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
];

/** The colour of t in [0, 1] on the viridis scale. */
export function viridis(t: number): Color {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const a = VIRIDIS[i];
  const b = VIRIDIS[i + 1];
  return [Math.round(a[0] + (b[0] - a[0]) * f), Math.round(a[1] + (b[1] - a[1]) * f), Math.round(a[2] + (b[2] - a[2]) * f)];
}

/**
 * Activation maps of one layer: a row per image, the input then one small square per channel
 * (`perRow` per line), coloured on one scale per image (from the layer's minimum to its 99.5th
 * percentile), so dead channels look uniformly dark and saturated ones uniformly bright.
 * PNG bytes.
 */
export function activationMapsPng(images: readonly ImageMaps[], channels: readonly number[], title: string, classNames?: readonly string[], perRow = 8): Uint8Array {
  if (images.length === 0) throw new RangeError('no activation maps to draw');
  const { H, W } = images[0];
  const nc = channels.length;
  const cols = Math.min(perRow, nc);
  const rowsOfTiles = Math.ceil(nc / cols);
  const tile = Math.max(1, Math.min(12, Math.floor(48 / Math.max(H, W))));
  const tw = W * tile;
  const th = H * tile;
  const gap = 2;
  const gridW = cols * (tw + gap) - gap;
  const gridH = rowsOfTiles * (th + gap) - gap;
  const inSize = Math.min(128, Math.max(64, gridH));
  const pad = 10;
  const titleH = 24;
  const capH = 14;
  const rowH = Math.max(inSize, gridH) + capH + pad;
  const width = Math.max(pad + inSize + pad + gridW + pad, title.length * 7 + 20);
  const height = titleH + images.length * rowH + pad;
  const cv = new Canvas(width, height, [255, 255, 255]);
  const ink: Color = [40, 40, 40];
  cv.text(width / 2, 6, title, ink, { font: 'bold', align: 'center' });
  images.forEach((im, r) => {
    const y0 = titleH + r * rowH;
    cv.blit(im.input, pad, y0, inSize, inSize, 'bilinear');
    const name = classNames?.[im.label] ?? (im.label >= 0 ? `class ${im.label}` : '');
    cv.text(pad, y0 + inSize + 2, `#${im.image}${name ? ` ${name}` : ''}`.slice(0, Math.floor(inSize / 6) + 6), ink, { font: 'small' });
    const span = im.hi - im.lo;
    const x0 = pad + inSize + pad;
    const rgb = new Uint8Array(H * W * 3);
    for (let j = 0; j < nc; j++) {
      for (let p = 0; p < H * W; p++) {
        const v = im.maps[p * nc + j];
        const c = viridis(span > 0 ? (v - im.lo) / span : 0);
        rgb[p * 3] = c[0];
        rgb[p * 3 + 1] = c[1];
        rgb[p * 3 + 2] = c[2];
      }
      const tx = x0 + (j % cols) * (tw + gap);
      const ty = y0 + Math.floor(j / cols) * (th + gap);
      cv.blit({ width: W, height: H, data: rgb }, tx, ty, tw, th, 'nearest');
    }
    cv.text(x0, y0 + gridH + 2, `scale ${im.lo.toPrecision(3)} .. ${im.hi.toPrecision(3)}`, ink, { font: 'small' });
  });
  return cv.toPng();
}
