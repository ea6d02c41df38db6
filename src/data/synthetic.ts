/**
 * `synthetic`: an embedded, procedurally generated labelled image set, so the demo and tests
 * need no download. Ten classes of shapes and textures (disc, square, triangle, cross, ring,
 * horizontal stripes, vertical stripes, diagonal stripes, checkerboard, dot grid), each
 * drawn with random colours, position, size and pixel noise. Image i of a split is a pure
 * function of (seed, split, i), so any subset can be regenerated exactly.
 */
import { Rng } from '../rng.js';

export const SYNTHETIC_CLASSES = [
  'disc', 'square', 'triangle', 'cross', 'ring',
  'h-stripes', 'v-stripes', 'diagonal', 'checker', 'dots',
] as const;

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

export interface SyntheticOptions {
  size?: number;
  seed?: number;
}

/** Renders image `index` of `split` as RGB in [0, 1], CHW [3, size, size]; returns its label. */
export function renderSynthetic(index: number, split: 'train' | 'val', opts: SyntheticOptions = {}): { image: Float32Array; label: number } {
  const S = opts.size ?? 64;
  const rng = new Rng(((opts.seed ?? 0) * 7919 + (split === 'train' ? 0 : 1_000_003) + index * 2654435761) >>> 0);
  const label = index % SYNTHETIC_CLASSES.length;
  const bg = [rng.uniform(), rng.uniform(), rng.uniform()];
  let fg = [rng.uniform(), rng.uniform(), rng.uniform()];
  // Keep foreground and background distinguishable.
  if (Math.abs(fg[0] - bg[0]) + Math.abs(fg[1] - bg[1]) + Math.abs(fg[2] - bg[2]) < 0.6) fg = bg.map((v) => 1 - v);
  const cx = S * (0.35 + 0.3 * rng.uniform());
  const cy = S * (0.35 + 0.3 * rng.uniform());
  const r = S * (0.18 + 0.14 * rng.uniform());
  const period = S * (0.1 + 0.08 * rng.uniform());
  const phase = rng.uniform() * period;
  const noise = 0.04 + 0.06 * rng.uniform();
  const img = new Float32Array(3 * S * S);
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      const dx = x + 0.5 - cx;
      const dy = y + 0.5 - cy;
      const d = Math.hypot(dx, dy);
      let on = false;
      switch (label) {
        case 0: on = d < r; break;
        case 1: on = Math.abs(dx) < r * 0.85 && Math.abs(dy) < r * 0.85; break;
        case 2: on = dy < r * 0.8 && dy > -r && Math.abs(dx) < (dy + r) * 0.6; break;
        case 3: on = (Math.abs(dx) < r * 0.3 && Math.abs(dy) < r) || (Math.abs(dy) < r * 0.3 && Math.abs(dx) < r); break;
        case 4: on = d < r && d > r * 0.6; break;
        case 5: on = Math.floor((y + phase) / period) % 2 === 0; break;
        case 6: on = Math.floor((x + phase) / period) % 2 === 0; break;
        case 7: on = Math.floor((x + y + phase) / (period * 1.4)) % 2 === 0; break;
        case 8: on = (Math.floor((x + phase) / period) + Math.floor((y + phase) / period)) % 2 === 0; break;
        default: {
          const px = ((x + phase) % period) - period / 2;
          const py = ((y + phase) % period) - period / 2;
          on = Math.hypot(px, py) < period * 0.3;
        }
      }
      const c = on ? fg : bg;
      for (let ch = 0; ch < 3; ch++) {
        const v = c[ch] + noise * rng.normal();
        img[(ch * S + y) * S + x] = v < 0 ? 0 : v > 1 ? 1 : v;
      }
    }
  }
  return { image: img, label };
}

/** Normalises CHW RGB in [0, 1] with the ImageNet mean and std, in place. */
export function normalizeImagenet(img: Float32Array, H: number, W: number): Float32Array {
  for (let c = 0; c < 3; c++) {
    const m = IMAGENET_MEAN[c];
    const s = IMAGENET_STD[c];
    for (let i = c * H * W; i < (c + 1) * H * W; i++) img[i] = (img[i] - m) / s;
  }
  return img;
}

/** A batch [B, 3, S, S] (normalised) and its labels for indices `idx` of `split`. */
export function syntheticBatch(idx: ArrayLike<number>, split: 'train' | 'val', opts: SyntheticOptions = {}): { pixels: Float32Array; labels: Int32Array } {
  const S = opts.size ?? 64;
  const pixels = new Float32Array(idx.length * 3 * S * S);
  const labels = new Int32Array(idx.length);
  for (let b = 0; b < idx.length; b++) {
    const { image, label } = renderSynthetic(idx[b], split, opts);
    pixels.set(normalizeImagenet(image, S, S), b * 3 * S * S);
    labels[b] = label;
  }
  return { pixels, labels };
}
