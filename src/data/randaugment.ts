/**
 * timm's RandAugment (`rand-m9-mstd0.5-inc1`, the ConvNeXt V2 fine-tuning policy) on 8-bit RGB
 * images, with Pillow's arithmetic for every op (LUTs, ImageEnhance blends in float32, the
 * SMOOTH filter, affine warps with Pillow's a = -1 bicubic and fill colour).
 *
 * Policy string: `rand` then `-`-separated `m<magnitude>`, `n<layers>` (default 2),
 * `mstd<std>` (gaussian noise on the magnitude), `mmax<max>`, `inc<0|1>` (the "increasing"
 * op set whose strength grows with magnitude), `p<prob>` (per-op probability, default 0.5).
 * Each image: `n` ops drawn uniformly with replacement; each applied with probability p at
 * magnitude m + N(0, mstd) clipped to [0, mmax (10)], signed ops negated with probability 1/2.
 */
import { ConvNextError } from '../errors.js';
import type { Rng } from '../rng.js';
import type { Image } from './image.js';
import type { ResampleFilter } from './resample.js';

const MAX_LEVEL = 10;

export type RandAugmentOp =
  | 'AutoContrast' | 'Equalize' | 'Invert' | 'Rotate' | 'Posterize' | 'Solarize' | 'SolarizeAdd'
  | 'Color' | 'Contrast' | 'Brightness' | 'Sharpness' | 'ShearX' | 'ShearY' | 'TranslateXRel' | 'TranslateYRel'
  | 'PosterizeIncreasing' | 'SolarizeIncreasing' | 'ColorIncreasing' | 'ContrastIncreasing'
  | 'BrightnessIncreasing' | 'SharpnessIncreasing';

/** timm `_RAND_TRANSFORMS`. */
export const RAND_TRANSFORMS: readonly RandAugmentOp[] = [
  'AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize', 'Solarize', 'SolarizeAdd', 'Color', 'Contrast',
  'Brightness', 'Sharpness', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel',
];

/** timm `_RAND_INCREASING_TRANSFORMS` (`inc1`). */
export const RAND_INCREASING_TRANSFORMS: readonly RandAugmentOp[] = [
  'AutoContrast', 'Equalize', 'Invert', 'Rotate', 'PosterizeIncreasing', 'SolarizeIncreasing', 'SolarizeAdd',
  'ColorIncreasing', 'ContrastIncreasing', 'BrightnessIncreasing', 'SharpnessIncreasing', 'ShearX', 'ShearY',
  'TranslateXRel', 'TranslateYRel',
];

export interface RandAugmentConfig {
  ops: readonly RandAugmentOp[];
  numLayers: number;
  magnitude: number;
  magnitudeStd: number;
  magnitudeMax: number;
  prob: number;
  /** Fill for geometric ops: round(255 * mean) per channel (timm `img_mean`). */
  fill: [number, number, number];
  /** Fraction of the side for TranslateRel at full magnitude (timm `translate_pct`, 0.45). */
  translatePct: number;
  interpolation: ResampleFilter;
}

/** Parses a timm RandAugment policy string. */
export function parseRandAugment(policy: string, hp: { size?: number; mean?: readonly number[]; interpolation?: ResampleFilter } = {}): RandAugmentConfig {
  const parts = policy.split('-');
  if (parts[0] !== 'rand') throw new ConvNextError(`auto-augment '${policy}': only RandAugment policies ('rand-m9-mstd0.5-inc1') are supported`, 2);
  const mean = hp.mean ?? [0.485, 0.456, 0.406];
  const cfg: RandAugmentConfig = {
    ops: RAND_TRANSFORMS, numLayers: 2, magnitude: 10, magnitudeStd: 0, magnitudeMax: MAX_LEVEL, prob: 0.5,
    fill: [0, 1, 2].map((c) => Math.min(255, Math.round(255 * mean[c]))) as [number, number, number],
    translatePct: 0.45, interpolation: hp.interpolation ?? 'bicubic',
  };
  for (const p of parts.slice(1)) {
    const m = /^([a-z]+)([0-9.]+)$/.exec(p);
    if (!m) throw new ConvNextError(`auto-augment '${policy}': cannot read '${p}'`, 2);
    const v = Number(m[2]);
    if (!Number.isFinite(v)) throw new ConvNextError(`auto-augment '${policy}': bad number in '${p}'`, 2);
    switch (m[1]) {
      case 'm': cfg.magnitude = v; break;
      case 'n': cfg.numLayers = Math.trunc(v); break;
      case 'mstd': cfg.magnitudeStd = v; break;
      case 'mmax': cfg.magnitudeMax = v; break;
      case 'p': cfg.prob = v; break;
      case 'inc': cfg.ops = v ? RAND_INCREASING_TRANSFORMS : RAND_TRANSFORMS; break;
      default: throw new ConvNextError(`auto-augment '${policy}': unknown option '${m[1]}' (m, n, mstd, mmax, inc, p)`, 2);
    }
  }
  return cfg;
}

/** Applies RandAugment to an image (a new image, or the same one when no op fires). */
export function randAugment(img: Image, rng: Rng, cfg: RandAugmentConfig): Image {
  // np.random.choice(ops, n, replace=True)
  const chosen: RandAugmentOp[] = [];
  for (let i = 0; i < cfg.numLayers; i++) chosen.push(cfg.ops[rng.int(cfg.ops.length)]);
  let x = img;
  for (const op of chosen) {
    if (cfg.prob < 1 && rng.uniform() > cfg.prob) continue;
    let mag = cfg.magnitude;
    if (cfg.magnitudeStd === Infinity) mag = rng.uniform() * mag;
    else if (cfg.magnitudeStd > 0) mag = mag + cfg.magnitudeStd * rng.normal();
    mag = Math.max(0, Math.min(cfg.magnitudeMax, mag));
    x = applyOp(x, op, mag, rng, cfg);
  }
  return x;
}

function randomlyNegate(v: number, rng: Rng): number {
  return rng.uniform() > 0.5 ? -v : v;
}

/** One op at `level` in [0, 10], with timm's level-to-argument mappings. */
export function applyOp(img: Image, op: RandAugmentOp, level: number, rng: Rng, cfg: Pick<RandAugmentConfig, 'fill' | 'translatePct' | 'interpolation'>): Image {
  switch (op) {
    case 'AutoContrast': return autoContrast(img);
    case 'Equalize': return equalize(img);
    case 'Invert': return lut(img, (v) => 255 - v);
    case 'Rotate': return rotate(img, randomlyNegate((level / MAX_LEVEL) * 30, rng), cfg.fill, cfg.interpolation);
    case 'Posterize': return posterize(img, Math.trunc((level / MAX_LEVEL) * 4));
    case 'PosterizeIncreasing': return posterize(img, 4 - Math.trunc((level / MAX_LEVEL) * 4));
    case 'Solarize': return solarize(img, Math.trunc((level / MAX_LEVEL) * 256));
    case 'SolarizeIncreasing': return solarize(img, 256 - Math.trunc((level / MAX_LEVEL) * 256));
    case 'SolarizeAdd': return solarizeAdd(img, Math.trunc((level / MAX_LEVEL) * 110));
    case 'Color': return enhanceColor(img, (level / MAX_LEVEL) * 1.8 + 0.1);
    case 'Contrast': return enhanceContrast(img, (level / MAX_LEVEL) * 1.8 + 0.1);
    case 'Brightness': return enhanceBrightness(img, (level / MAX_LEVEL) * 1.8 + 0.1);
    case 'Sharpness': return enhanceSharpness(img, (level / MAX_LEVEL) * 1.8 + 0.1);
    case 'ColorIncreasing': return enhanceColor(img, 1 + randomlyNegate((level / MAX_LEVEL) * 0.9, rng));
    case 'ContrastIncreasing': return enhanceContrast(img, 1 + randomlyNegate((level / MAX_LEVEL) * 0.9, rng));
    case 'BrightnessIncreasing': return enhanceBrightness(img, 1 + randomlyNegate((level / MAX_LEVEL) * 0.9, rng));
    case 'SharpnessIncreasing': return enhanceSharpness(img, 1 + randomlyNegate((level / MAX_LEVEL) * 0.9, rng));
    case 'ShearX': return affine(img, [1, randomlyNegate((level / MAX_LEVEL) * 0.3, rng), 0, 0, 1, 0], cfg.fill, cfg.interpolation);
    case 'ShearY': return affine(img, [1, 0, 0, randomlyNegate((level / MAX_LEVEL) * 0.3, rng), 1, 0], cfg.fill, cfg.interpolation);
    case 'TranslateXRel': return affine(img, [1, 0, randomlyNegate((level / MAX_LEVEL) * cfg.translatePct, rng) * img.width, 0, 1, 0], cfg.fill, cfg.interpolation);
    case 'TranslateYRel': return affine(img, [1, 0, 0, 0, 1, randomlyNegate((level / MAX_LEVEL) * cfg.translatePct, rng) * img.height], cfg.fill, cfg.interpolation);
  }
}

// ---- Pillow ops --------------------------------------------------------------------------

function lut(img: Image, f: (v: number, channel: number) => number): Image {
  const table = new Uint8Array(768);
  for (let c = 0; c < 3; c++) for (let v = 0; v < 256; v++) table[c * 256 + v] = f(v, c);
  return applyLut(img, table);
}

function applyLut(img: Image, table: Uint8Array): Image {
  const src = img.data;
  const data = new Uint8Array(src.length);
  for (let i = 0; i < src.length; i += 3) {
    data[i] = table[src[i]];
    data[i + 1] = table[256 + src[i + 1]];
    data[i + 2] = table[512 + src[i + 2]];
  }
  return { ...img, data };
}

function histograms(img: Image): Int32Array {
  const h = new Int32Array(768);
  const src = img.data;
  for (let i = 0; i < src.length; i += 3) {
    h[src[i]]++;
    h[256 + src[i + 1]]++;
    h[512 + src[i + 2]]++;
  }
  return h;
}

/** ImageOps.autocontrast (cutoff 0): stretch each channel's [min, max] to [0, 255]. */
export function autoContrast(img: Image): Image {
  const h = histograms(img);
  const table = new Uint8Array(768);
  for (let c = 0; c < 3; c++) {
    let lo = 0;
    while (lo < 256 && h[c * 256 + lo] === 0) lo++;
    let hi = 255;
    while (hi >= 0 && h[c * 256 + hi] === 0) hi--;
    for (let v = 0; v < 256; v++) {
      if (hi <= lo) {
        table[c * 256 + v] = v;
      } else {
        const scale = 255 / (hi - lo);
        const ix = Math.trunc(v * scale + -lo * scale);
        table[c * 256 + v] = ix < 0 ? 0 : ix > 255 ? 255 : ix;
      }
    }
  }
  return applyLut(img, table);
}

/** ImageOps.equalize: per-channel histogram equalisation. */
export function equalize(img: Image): Image {
  const h = histograms(img);
  const table = new Uint8Array(768);
  for (let c = 0; c < 3; c++) {
    const hist = h.subarray(c * 256, c * 256 + 256);
    const nonzero: number[] = [];
    for (let v = 0; v < 256; v++) if (hist[v]) nonzero.push(hist[v]);
    let step = 0;
    if (nonzero.length > 1) step = Math.floor((nonzero.reduce((a, b) => a + b, 0) - nonzero[nonzero.length - 1]) / 256);
    if (!step) {
      for (let v = 0; v < 256; v++) table[c * 256 + v] = v;
    } else {
      let n = Math.floor(step / 2);
      for (let v = 0; v < 256; v++) {
        table[c * 256 + v] = Math.min(255, Math.floor(n / step));
        n += hist[v];
      }
    }
  }
  return applyLut(img, table);
}

function posterize(img: Image, bits: number): Image {
  if (bits >= 8) return img;
  const mask = ~(2 ** (8 - bits) - 1) & 0xff;
  return lut(img, (v) => v & mask);
}

function solarize(img: Image, threshold: number): Image {
  return lut(img, (v) => (v < threshold ? v : 255 - v));
}

function solarizeAdd(img: Image, add: number, threshold = 128): Image {
  return lut(img, (v) => (v < threshold ? Math.min(255, v + add) : v));
}

/** Pillow's RGB -> L: (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16. */
function luma(src: Uint8Array, i: number): number {
  return (src[i] * 19595 + src[i + 1] * 38470 + src[i + 2] * 7471 + 0x8000) >> 16;
}

/** Image.blend(degenerate, img, alpha) with Pillow's float arithmetic, truncation and clipping. */
function blend(img: Image, degenerate: (i: number) => number, factor: number): Image {
  const a = Math.fround(factor);
  const src = img.data;
  const data = new Uint8Array(src.length);
  const inRange = a >= 0 && a <= 1;
  for (let i = 0; i < src.length; i++) {
    const d = degenerate(i);
    const t = Math.fround(d + Math.fround(a * (src[i] - d)));
    data[i] = inRange ? Math.trunc(t) : t <= 0 ? 0 : t >= 255 ? 255 : Math.trunc(t);
  }
  return { ...img, data };
}

function enhanceColor(img: Image, factor: number): Image {
  const src = img.data;
  const grey = new Uint8Array(src.length / 3);
  for (let p = 0; p < grey.length; p++) grey[p] = luma(src, p * 3);
  return blend(img, (i) => grey[(i / 3) | 0], factor);
}

function enhanceContrast(img: Image, factor: number): Image {
  const src = img.data;
  let sum = 0;
  for (let i = 0; i < src.length; i += 3) sum += luma(src, i);
  const mean = Math.trunc(sum / (src.length / 3) + 0.5);
  return blend(img, () => mean, factor);
}

function enhanceBrightness(img: Image, factor: number): Image {
  return blend(img, () => 0, factor);
}

/** ImageFilter.SMOOTH (3x3 [1 1 1; 1 5 1; 1 1 1] / 13), borders copied, as Pillow. */
function smooth(img: Image): Uint8Array {
  const { width: W, height: H, data: src } = img;
  const out = new Uint8Array(src);
  const k = [1, 1, 1, 1, 5, 1, 1, 1, 1].map((v) => Math.fround(v / 13));
  const offset = Math.fround(0.5);
  for (let y = 1; y < H - 1; y++) {
    for (let x = 1; x < W - 1; x++) {
      for (let c = 0; c < 3; c++) {
        let ss = offset;
        // Pillow sums the row below first (kernel[0..2]), then the row itself, then the row above.
        const rows = [y + 1, y, y - 1];
        for (let r = 0; r < 3; r++) {
          const base = rows[r] * W * 3 + c;
          const s = Math.fround(Math.fround(Math.fround(src[base + (x - 1) * 3] * k[r * 3]) + Math.fround(src[base + x * 3] * k[r * 3 + 1])) + Math.fround(src[base + (x + 1) * 3] * k[r * 3 + 2]));
          ss = Math.fround(ss + s);
        }
        out[(y * W + x) * 3 + c] = ss <= 0 ? 0 : ss >= 255 ? 255 : Math.trunc(ss);
      }
    }
  }
  return out;
}

function enhanceSharpness(img: Image, factor: number): Image {
  const deg = smooth(img);
  return blend(img, (i) => deg[i], factor);
}

/**
 * Image.transform(AFFINE, matrix, resample, fillcolor): output pixel (x, y) samples the
 * input at (a x' + b y' + c, d x' + e y' + f) with x' = x + 0.5, y' = y + 0.5; outside the
 * image it keeps the fill colour. Pillow's bicubic here is the a = -1 cubic, not antialiased.
 */
export function affine(img: Image, m: readonly number[], fill: readonly number[], interpolation: ResampleFilter): Image {
  const { width: W, height: H, data: src } = img;
  const data = new Uint8Array(src.length);
  const [a, b, c, d, e, f] = m;
  const xc = (x: number): number => (x < 0 ? 0 : x >= W ? W - 1 : x);
  const v = [0, 0, 0, 0];
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const o = (y * W + x) * 3;
      const xin0 = a * (x + 0.5) + b * (y + 0.5) + c;
      const yin0 = d * (x + 0.5) + e * (y + 0.5) + f;
      if (xin0 < 0 || xin0 >= W || yin0 < 0 || yin0 >= H) {
        data[o] = fill[0];
        data[o + 1] = fill[1];
        data[o + 2] = fill[2];
        continue;
      }
      const xin = xin0 - 0.5;
      const yin = yin0 - 0.5;
      const xi = Math.floor(xin);
      const yi = Math.floor(yin);
      const dx = xin - xi;
      const dy = yin - yi;
      for (let ch = 0; ch < 3; ch++) {
        let val: number;
        if (interpolation === 'bicubic') {
          const x0 = xc(xi - 1) * 3 + ch;
          const x1 = xc(xi) * 3 + ch;
          const x2 = xc(xi + 1) * 3 + ch;
          const x3 = xc(xi + 2) * 3 + ch;
          // Rows y-1..y+2; a row outside the image repeats the previous one (Pillow's BICUBIC_BODY).
          const r0 = (yi - 1 < 0 ? 0 : yi - 1 >= H ? H - 1 : yi - 1) * W * 3;
          v[0] = cubic(src[r0 + x0], src[r0 + x1], src[r0 + x2], src[r0 + x3], dx);
          for (let k = 1; k < 4; k++) {
            const yy = yi - 1 + k;
            if (yy >= 0 && yy < H) {
              const r = yy * W * 3;
              v[k] = cubic(src[r + x0], src[r + x1], src[r + x2], src[r + x3], dx);
            } else {
              v[k] = v[k - 1];
            }
          }
          val = cubic(v[0], v[1], v[2], v[3], dy);
        } else {
          const x0 = xc(xi) * 3 + ch;
          const x1 = xc(xi + 1) * 3 + ch;
          const r0 = (yi < 0 ? 0 : yi >= H ? H - 1 : yi) * W * 3;
          const v1 = src[r0 + x0] + (src[r0 + x1] - src[r0 + x0]) * dx;
          let v2 = v1;
          if (yi + 1 >= 0 && yi + 1 < H) {
            const r1 = (yi + 1) * W * 3;
            v2 = src[r1 + x0] + (src[r1 + x1] - src[r1 + x0]) * dx;
          }
          val = v1 + (v2 - v1) * dy;
        }
        data[o + ch] = val <= 0 ? 0 : val >= 255 ? 255 : Math.trunc(val);
      }
    }
  }
  return { ...img, data };
}

function cubic(v1: number, v2: number, v3: number, v4: number, d: number): number {
  const p1 = v2;
  const p2 = -v1 + v3;
  const p3 = 2 * (v1 - v2) + v3 - v4;
  const p4 = -v1 + v2 - v3 + v4;
  return p1 + d * (p2 + d * (p3 + d * p4));
}

/** Image.rotate(degrees, resample, fillcolor) about the centre, same size (Pillow's matrix). */
export function rotate(img: Image, degrees: number, fill: readonly number[], interpolation: ResampleFilter): Image {
  const angle = ((degrees % 360) + 360) % 360;
  if (angle === 0) return img;
  const W = img.width;
  const H = img.height;
  const rad = -(angle * Math.PI) / 180;
  const round15 = (v: number): number => Math.round(v * 1e15) / 1e15;
  const m = [round15(Math.cos(rad)), round15(Math.sin(rad)), 0, round15(-Math.sin(rad)), round15(Math.cos(rad)), 0];
  const cx = W / 2;
  const cy = H / 2;
  m[2] = m[0] * -cx + m[1] * -cy + m[2] + cx;
  m[5] = m[3] * -cx + m[4] * -cy + m[5] + cy;
  return affine(img, m, fill, interpolation);
}
