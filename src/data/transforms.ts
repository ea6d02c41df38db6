/**
 * Per-sample transforms, as the official ConvNeXt V2 pipelines (torchvision / timm on PIL
 * images), from an 8-bit {@link Image} to normalised float CHW:
 *   pre-training  RandomResizedCrop(scale 0.2-1, bicubic) -> horizontal flip -> normalise
 *   fine-tuning   RandomResizedCrop(scale 0.08-1, bicubic) -> flip -> RandAugment ->
 *                 normalise -> RandomErasing (timm's create_transform order)
 *   evaluation    resize short side to floor(size / crop_pct) + centre crop (below 384 px),
 *                 a warp to size x size at 384 px and above -> normalise
 * All randomness comes from the `Rng` passed in, so a sample's result is a function of it.
 * Resampling reproduces Pillow exactly (see resample.ts).
 */
import { ConvNextError } from '../errors.js';
import type { Rng } from '../rng.js';
import type { Image } from './image.js';
import { resizeRgb, type ResampleFilter } from './resample.js';
import { IMAGENET_MEAN, IMAGENET_STD } from './synthetic.js';
import { randAugment, parseRandAugment, type RandAugmentConfig } from './randaugment.js';

export { IMAGENET_MEAN, IMAGENET_STD };

/** Python's round(): half to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export interface CropParams {
  top: number;
  left: number;
  height: number;
  width: number;
}

export interface RandomResizedCropOptions {
  /** Fraction of the area: [0.2, 1] for FCMAE pre-training, [0.08, 1] (default) for fine-tuning. */
  scale?: readonly [number, number];
  /** Aspect ratio range (default [3/4, 4/3]). */
  ratio?: readonly [number, number];
  interpolation?: ResampleFilter;
}

/**
 * torchvision's `RandomResizedCrop.get_params`: 10 tries of a random area fraction and a
 * log-uniform aspect ratio, the first that fits placed uniformly; else a centre crop
 * clamped to the ratio range.
 */
export function randomResizedCropParams(width: number, height: number, rng: Rng, scale: readonly [number, number] = [0.08, 1], ratio: readonly [number, number] = [3 / 4, 4 / 3]): CropParams {
  const area = height * width;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * (scale[0] + (scale[1] - scale[0]) * rng.uniform());
    const aspect = Math.exp(logLo + (logHi - logLo) * rng.uniform());
    const w = roundHalfEven(Math.sqrt(targetArea * aspect));
    const h = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = rng.int(height - h + 1);
      const left = rng.int(width - w + 1);
      return { top, left, height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w: number;
  let h: number;
  if (inRatio < Math.min(ratio[0], ratio[1])) {
    w = width;
    h = roundHalfEven(w / Math.min(ratio[0], ratio[1]));
  } else if (inRatio > Math.max(ratio[0], ratio[1])) {
    h = height;
    w = roundHalfEven(h * Math.max(ratio[0], ratio[1]));
  } else {
    w = width;
    h = height;
  }
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

/** RandomResizedCrop to `size` x `size` (8-bit out, as PIL). */
export function randomResizedCrop(img: Image, size: number, rng: Rng, opts: RandomResizedCropOptions = {}): Image {
  const p = randomResizedCropParams(img.width, img.height, rng, opts.scale ?? [0.08, 1], opts.ratio ?? [3 / 4, 4 / 3]);
  const data = resizeRgb(img.data, img.width, img.height, size, size, opts.interpolation ?? 'bicubic', { x: p.left, y: p.top, w: p.width, h: p.height });
  return { ...img, width: size, height: size, data };
}

/** Mirrors left-right (a new image). */
export function flipHorizontal(img: Image): Image {
  const { width: W, height: H, data: src } = img;
  const data = new Uint8Array(src.length);
  for (let y = 0; y < H; y++) {
    const row = y * W * 3;
    for (let x = 0; x < W; x++) {
      const s = row + x * 3;
      const d = row + (W - 1 - x) * 3;
      data[d] = src[s];
      data[d + 1] = src[s + 1];
      data[d + 2] = src[s + 2];
    }
  }
  return { ...img, data };
}

/** RandomHorizontalFlip(p): flips when `rng.uniform() < p` (one draw either way). */
export function hflip(img: Image, rng: Rng, p = 0.5): Image {
  return rng.uniform() < p ? flipHorizontal(img) : img;
}

/** Resizes to exactly `width` x `height` (bicubic by default). */
export function resize(img: Image, width: number, height: number, interpolation: ResampleFilter = 'bicubic'): Image {
  if (width === img.width && height === img.height) return img;
  return { ...img, width, height, data: resizeRgb(img.data, img.width, img.height, width, height, interpolation) };
}

/** torchvision `Resize(int)`: the short side to `size`, the long side to int(size * long / short). */
export function resizeShortSide(img: Image, size: number, interpolation: ResampleFilter = 'bicubic'): Image {
  const { width: w, height: h } = img;
  const [nw, nh] = w <= h ? [size, Math.floor((size * h) / w)] : [Math.floor((size * w) / h), size];
  return resize(img, nw, nh, interpolation);
}

/** torchvision `CenterCrop`: offsets int(round((H - h) / 2)) (half to even); the image must be large enough. */
export function centerCrop(img: Image, width: number, height = width): Image {
  if (width > img.width || height > img.height) throw new ConvNextError(`centre crop ${width}x${height} larger than the ${img.width}x${img.height} image`);
  const top = roundHalfEven((img.height - height) / 2);
  const left = roundHalfEven((img.width - width) / 2);
  return { ...img, width, height, data: resizeRgb(img.data, img.width, img.height, width, height, 'bicubic', { x: left, y: top, w: width, h: height }) };
}

/**
 * The official evaluation geometry (8-bit out): below 384 px, resize the short side to
 * floor(size / cropPct) then centre-crop size x size; at 384 px and above, warp to size x size.
 */
export function evalResize(img: Image, size: number, cropPct = 0.875, interpolation: ResampleFilter = 'bicubic'): Image {
  if (!(cropPct > 0 && cropPct <= 1)) throw new ConvNextError(`crop pct ${cropPct} must be in (0, 1]`, 2);
  if (size >= 384) return resize(img, size, size, interpolation);
  return centerCrop(resizeShortSide(img, Math.floor(size / cropPct), interpolation), size, size);
}

const lutCache = new Map<string, Float32Array>();

/** ToTensor + Normalize as torch computes them in float32: ((v / 255) - mean) / std. */
function normLut(mean: readonly number[], std: readonly number[]): Float32Array {
  const key = `${mean.join(',')}/${std.join(',')}`;
  let lut = lutCache.get(key);
  if (!lut) {
    lut = new Float32Array(3 * 256);
    for (let c = 0; c < 3; c++) {
      const m = Math.fround(mean[c]);
      const s = Math.fround(std[c]);
      for (let v = 0; v < 256; v++) lut[c * 256 + v] = Math.fround(Math.fround(Math.fround(v / 255) - m) / s);
    }
    lutCache.set(key, lut);
  }
  return lut;
}

/**
 * RGB HWC bytes -> normalised CHW floats (ImageNet mean/std unless given), written into
 * `out` at `offset` when given.
 */
export function toNormalizedCHW(
  img: Image, mean: readonly number[] = IMAGENET_MEAN, std: readonly number[] = IMAGENET_STD,
  out?: Float32Array, offset = 0,
): Float32Array {
  const n = img.width * img.height;
  const dst = out ?? new Float32Array(3 * n);
  if (dst.length < offset + 3 * n) throw new RangeError(`output too small for a ${img.width}x${img.height} image`);
  const lut = normLut(mean, std);
  const src = img.data;
  for (let c = 0; c < 3; c++) {
    const base = offset + c * n;
    const l = c * 256;
    for (let p = 0; p < n; p++) dst[base + p] = lut[l + src[p * 3 + c]];
  }
  return dst;
}

/** The official evaluation transform: {@link evalResize} then {@link toNormalizedCHW}. */
export function evalTransform(img: Image, size: number, cropPct = 0.875, out?: Float32Array, offset = 0): Float32Array {
  return toNormalizedCHW(evalResize(img, size, cropPct), IMAGENET_MEAN, IMAGENET_STD, out, offset);
}

export interface RandomErasingOptions {
  /** Probability of erasing at all (timm `reprob`, 0.25 in the fine-tuning recipe). */
  probability: number;
  /** 'pixel': per-pixel normal values (the recipe); 'rand': one normal colour; 'const': zeros. */
  mode?: 'pixel' | 'rand' | 'const';
  minArea?: number;
  maxArea?: number;
  minAspect?: number;
  maxAspect?: number;
  minCount?: number;
  /** timm `recount` (default 1). */
  maxCount?: number;
}

/**
 * timm's RandomErasing on a normalised CHW image (in place): with probability p, `count`
 * rectangles, each from up to 10 tries of area in [minArea, maxArea] / count and log-uniform
 * aspect, filled with N(0, 1) values per pixel ('pixel'), per channel ('rand') or zeros.
 */
export function randomErasing(chw: Float32Array, C: number, H: number, W: number, rng: Rng, opts: RandomErasingOptions, offset = 0): void {
  if (rng.uniform() > opts.probability) return;
  const minArea = opts.minArea ?? 0.02;
  const maxArea = opts.maxArea ?? 1 / 3;
  const minAspect = opts.minAspect ?? 0.3;
  const maxAspect = opts.maxAspect ?? 1 / minAspect;
  const minCount = opts.minCount ?? 1;
  const maxCount = opts.maxCount ?? minCount;
  const mode = opts.mode ?? 'const';
  const logLo = Math.log(minAspect);
  const logHi = Math.log(maxAspect);
  const area = H * W;
  const count = minCount === maxCount ? minCount : minCount + rng.int(maxCount - minCount + 1);
  for (let k = 0; k < count; k++) {
    for (let attempt = 0; attempt < 10; attempt++) {
      const targetArea = ((minArea + (maxArea - minArea) * rng.uniform()) * area) / count;
      const aspect = Math.exp(logLo + (logHi - logLo) * rng.uniform());
      const h = roundHalfEven(Math.sqrt(targetArea * aspect));
      const w = roundHalfEven(Math.sqrt(targetArea / aspect));
      if (w < W && h < H) {
        const top = rng.int(H - h + 1);
        const left = rng.int(W - w + 1);
        const colour = mode === 'rand' ? Array.from({ length: C }, () => rng.normal()) : null;
        for (let c = 0; c < C; c++) {
          for (let y = top; y < top + h; y++) {
            const row = offset + (c * H + y) * W;
            for (let x = left; x < left + w; x++) chw[row + x] = mode === 'pixel' ? rng.normal() : colour ? colour[c] : 0;
          }
        }
        break;
      }
    }
  }
}

// ---- transform specs (serialisable: they travel to worker threads) ------------------------

export interface TrainTransformSpec {
  kind: 'train';
  size: number;
  /** RandomResizedCrop area range: [0.2, 1] for pre-training, [0.08, 1] (default) for fine-tuning. */
  scale?: [number, number];
  ratio?: [number, number];
  interpolation?: ResampleFilter;
  /** Horizontal flip probability (default 0.5). */
  hflip?: number;
  /** timm RandAugment policy, e.g. 'rand-m9-mstd0.5-inc1'; none when absent or ''. */
  autoAugment?: string;
  /** Random erasing probability (default 0). */
  reprob?: number;
  remode?: 'pixel' | 'rand' | 'const';
  recount?: number;
  mean?: number[];
  std?: number[];
}

export interface EvalTransformSpec {
  kind: 'eval';
  size: number;
  cropPct?: number;
  interpolation?: ResampleFilter;
  mean?: number[];
  std?: number[];
}

/** Warp to size x size (nothing when the image already has that size), then normalise. */
export interface ResizeTransformSpec {
  kind: 'resize';
  size: number;
  interpolation?: ResampleFilter;
  mean?: number[];
  std?: number[];
}

export type TransformSpec = TrainTransformSpec | EvalTransformSpec | ResizeTransformSpec;

/** A compiled transform: writes 3 * size * size floats for `img` into `out` at `offset`. */
export type SampleTransform = (img: Image, rng: Rng, out: Float32Array, offset: number) => void;

/** Validates a spec and returns the function that applies it. */
export function compileTransform(spec: TransformSpec): SampleTransform {
  const S = spec.size;
  if (!Number.isInteger(S) || S < 1 || S > 8192) throw new ConvNextError(`transform size ${S} must be a positive integer`, 2);
  const mean = spec.mean ?? [...IMAGENET_MEAN];
  const std = spec.std ?? [...IMAGENET_STD];
  const interp = spec.interpolation ?? 'bicubic';
  if (spec.kind === 'eval') {
    const cropPct = spec.cropPct ?? 0.875;
    return (img, _rng, out, offset) => {
      toNormalizedCHW(evalResize(img, S, cropPct, interp), mean, std, out, offset);
    };
  }
  if (spec.kind === 'resize') {
    return (img, _rng, out, offset) => {
      toNormalizedCHW(resize(img, S, S, interp), mean, std, out, offset);
    };
  }
  const scale = spec.scale ?? [0.08, 1];
  const ratio = spec.ratio ?? [3 / 4, 4 / 3];
  const flipP = spec.hflip ?? 0.5;
  const ra: RandAugmentConfig | null = spec.autoAugment ? parseRandAugment(spec.autoAugment, { size: S, mean, interpolation: interp }) : null;
  const reprob = spec.reprob ?? 0;
  const erasing: RandomErasingOptions = { probability: reprob, mode: spec.remode ?? 'pixel', maxCount: spec.recount ?? 1 };
  return (img, rng, out, offset) => {
    let x = randomResizedCrop(img, S, rng, { scale, ratio, interpolation: interp });
    if (flipP > 0) x = hflip(x, rng, flipP);
    if (ra) x = randAugment(x, rng, ra);
    toNormalizedCHW(x, mean, std, out, offset);
    if (reprob > 0) randomErasing(out, 3, S, S, rng, erasing, offset);
  };
}

/** Applies `spec` to one image: a new [3, size, size] array. */
export function applyTransform(spec: TransformSpec, img: Image, rng: Rng): Float32Array {
  const out = new Float32Array(3 * spec.size * spec.size);
  compileTransform(spec)(img, rng, out, 0);
  return out;
}

/**
 * The inverse of {@link toNormalizedCHW} for display: normalised CHW floats (at `offset`)
 * -> RGB HWC bytes, rounded and clipped.
 */
export function fromNormalizedCHW(
  chw: Float32Array, height: number, width: number,
  mean: readonly number[] = IMAGENET_MEAN, std: readonly number[] = IMAGENET_STD, offset = 0,
): Image {
  const n = width * height;
  const data = new Uint8Array(n * 3);
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < n; p++) {
      const v = Math.round((chw[offset + c * n + p] * std[c] + mean[c]) * 255);
      data[p * 3 + c] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return { width, height, data, label: -1 };
}
