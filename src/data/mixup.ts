/**
 * timm's Mixup / CutMix with soft targets (`mode: 'batch'`, the ConvNeXt V2 recipe): one
 * lambda per batch, each sample mixed with the batch flipped (sample b with B-1-b). Label
 * smoothing is folded into the targets (timm `mixup_target`): on = 1 - s + s/K, off = s/K.
 */
import { ConvNextError } from '../errors.js';
import type { Rng } from '../rng.js';

export interface MixupOptions {
  /** Beta(alpha, alpha) for mixup; 0 disables mixup (timm `mixup_alpha`). */
  mixupAlpha: number;
  /** Beta(alpha, alpha) for cutmix; 0 disables cutmix (timm `cutmix_alpha`). */
  cutmixAlpha: number;
  /** Min/max box side ratio for cutmix instead of alpha (timm `cutmix_minmax`). */
  cutmixMinmax?: [number, number];
  /** Probability of mixing a batch at all (default 1). */
  prob?: number;
  /** Probability of cutmix instead of mixup when both are on (default 0.5). */
  switchProb?: number;
  mode?: 'batch';
  /** Recompute lambda from the clipped box area (default true). */
  correctLam?: boolean;
  /** Label smoothing folded into the targets (default 0.1, as timm). */
  labelSmoothing?: number;
  numClasses: number;
}

export interface MixResult {
  /** Soft targets [B, numClasses], each row summing to 1. */
  targets: Float32Array;
  /** The weight of each sample's own image and label. */
  lam: number;
  /** 'none' when the batch was left as is (lambda 1). */
  kind: 'mixup' | 'cutmix' | 'none';
  /** The pasted box (rows yl..yh-1, columns xl..xh-1) for cutmix. */
  box?: { yl: number; yh: number; xl: number; xh: number };
}

/** Gamma(shape, 1) by Marsaglia-Tsang (with the shape < 1 boost). */
export function sampleGamma(shape: number, rng: Rng): number {
  if (shape < 1) {
    let u = 0;
    while (u === 0) u = rng.uniform();
    return sampleGamma(shape + 1, rng) * Math.pow(u, 1 / shape);
  }
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = rng.normal();
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = rng.uniform();
    if (u < 1 - 0.0331 * x * x * x * x) return d * v;
    if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

/** Beta(a, b) from two gammas. */
export function sampleBeta(a: number, b: number, rng: Rng): number {
  const x = sampleGamma(a, rng);
  const y = sampleGamma(b, rng);
  return x / (x + y);
}

/** timm `mixup_target`: smoothed one-hots of labels and of the flipped labels, mixed by lam. */
export function mixupTarget(labels: Int32Array, numClasses: number, lam = 1, smoothing = 0): Float32Array {
  const B = labels.length;
  const off = smoothing / numClasses;
  const on = 1 - smoothing + off;
  const t = new Float32Array(B * numClasses);
  for (let b = 0; b < B; b++) {
    const row = b * numClasses;
    for (let k = 0; k < numClasses; k++) t[row + k] = off;
    const y1 = labels[b];
    const y2 = labels[B - 1 - b];
    if (y1 < 0 || y1 >= numClasses || y2 < 0 || y2 >= numClasses) throw new ConvNextError(`label out of range [0, ${numClasses})`);
    t[row + y1] += (on - off) * lam;
    t[row + y2] += (on - off) * (1 - lam);
  }
  return t;
}

/** timm `rand_bbox` (margin 0) and, with `correctLam`, lambda from the clipped box. */
export function cutmixBox(H: number, W: number, lam: number, rng: Rng, minmax?: [number, number], correctLam = true): { yl: number; yh: number; xl: number; xh: number; lam: number } {
  let yl: number;
  let yh: number;
  let xl: number;
  let xh: number;
  if (minmax) {
    // rand_bbox_minmax: np.random.randint(lo, hi) excludes hi
    const lohi = (n: number): [number, number] => [Math.trunc(n * minmax[0]), Math.trunc(n * minmax[1])];
    const [hLo, hHi] = lohi(H);
    const [wLo, wHi] = lohi(W);
    if (hHi <= hLo || wHi <= wLo || hHi >= H || wHi >= W) throw new ConvNextError(`cutmix minmax ${minmax.join(',')} gives an empty box range for ${H}x${W}`, 2);
    const ch = hLo + rng.int(hHi - hLo);
    const cw = wLo + rng.int(wHi - wLo);
    yl = rng.int(H - ch);
    xl = rng.int(W - cw);
    yh = yl + ch;
    xh = xl + cw;
  } else {
    const ratio = Math.sqrt(1 - lam);
    const cutH = Math.trunc(H * ratio);
    const cutW = Math.trunc(W * ratio);
    const cy = rng.int(H);
    const cx = rng.int(W);
    const clip = (v: number, hi: number): number => (v < 0 ? 0 : v > hi ? hi : v);
    yl = clip(cy - Math.floor(cutH / 2), H);
    yh = clip(cy + Math.floor(cutH / 2), H);
    xl = clip(cx - Math.floor(cutW / 2), W);
    xh = clip(cx + Math.floor(cutW / 2), W);
  }
  const outLam = correctLam || minmax ? 1 - ((yh - yl) * (xh - xl)) / (H * W) : lam;
  return { yl, yh, xl, xh, lam: outLam };
}

export class Mixup {
  private readonly o: Required<Omit<MixupOptions, 'cutmixMinmax'>> & { cutmixMinmax?: [number, number] };

  constructor(opts: MixupOptions) {
    this.o = {
      prob: 1, switchProb: 0.5, mode: 'batch', correctLam: true, labelSmoothing: 0.1, ...opts,
    };
    if ((this.o.mode as string) !== 'batch') throw new ConvNextError(`mixup mode '${String(this.o.mode)}': only 'batch' is supported`, 2);
    if (!(this.o.numClasses >= 1)) throw new ConvNextError('mixup needs numClasses >= 1', 2);
    if (this.o.cutmixMinmax) this.o.cutmixAlpha = 1; // timm: minmax forces cutmix on
  }

  /** Whether any mixing can happen (else only smoothing applies). */
  get enabled(): boolean {
    return this.o.prob > 0 && (this.o.mixupAlpha > 0 || this.o.cutmixAlpha > 0);
  }

  /**
   * Mixes `pixels` [B, C, H, W] in place and returns the soft targets. B must be even, as
   * timm asserts. Draws from `rng` only (a generator kept for mixing, saved with the run).
   */
  apply(pixels: Float32Array, labels: Int32Array, C: number, H: number, W: number, rng: Rng): MixResult {
    const B = labels.length;
    if (B % 2 !== 0) throw new ConvNextError(`mixup/cutmix needs an even batch size (got ${B})`, 2);
    if (pixels.length !== B * C * H * W) throw new RangeError(`pixels hold ${pixels.length} values, not ${B}x${C}x${H}x${W}`);
    const o = this.o;
    let lam = 1;
    let useCutmix = false;
    if (this.enabled && rng.uniform() < o.prob) {
      if (o.mixupAlpha > 0 && o.cutmixAlpha > 0) {
        useCutmix = rng.uniform() < o.switchProb;
        lam = useCutmix ? sampleBeta(o.cutmixAlpha, o.cutmixAlpha, rng) : sampleBeta(o.mixupAlpha, o.mixupAlpha, rng);
      } else if (o.mixupAlpha > 0) {
        lam = sampleBeta(o.mixupAlpha, o.mixupAlpha, rng);
      } else {
        useCutmix = true;
        lam = sampleBeta(o.cutmixAlpha, o.cutmixAlpha, rng);
      }
    }
    if (lam === 1) return { targets: mixupTarget(labels, o.numClasses, 1, o.labelSmoothing), lam: 1, kind: 'none' };
    const S = C * H * W;
    if (useCutmix) {
      const box = cutmixBox(H, W, lam, rng, o.cutmixMinmax, o.correctLam);
      lam = box.lam;
      // x[:, :, yl:yh, xl:xh] = x.flip(0)[:, :, yl:yh, xl:xh]; pairs (b, B-1-b) swap boxes.
      for (let b = 0; b < B / 2; b++) {
        const a = b * S;
        const z = (B - 1 - b) * S;
        for (let c = 0; c < C; c++) {
          for (let y = box.yl; y < box.yh; y++) {
            const row = (c * H + y) * W;
            for (let x = box.xl; x < box.xh; x++) {
              const t = pixels[a + row + x];
              pixels[a + row + x] = pixels[z + row + x];
              pixels[z + row + x] = t;
            }
          }
        }
      }
      return { targets: mixupTarget(labels, o.numClasses, lam, o.labelSmoothing), lam, kind: 'cutmix', box: { yl: box.yl, yh: box.yh, xl: box.xl, xh: box.xh } };
    }
    // x = lam * x + (1 - lam) * x.flip(0), in float32 as torch.
    const l = Math.fround(lam);
    const m = Math.fround(1 - lam);
    for (let b = 0; b < B / 2; b++) {
      const a = b * S;
      const z = (B - 1 - b) * S;
      for (let i = 0; i < S; i++) {
        const p = pixels[a + i];
        const q = pixels[z + i];
        pixels[a + i] = Math.fround(p * l) + Math.fround(q * m);
        pixels[z + i] = Math.fround(q * l) + Math.fround(p * m);
      }
    }
    return { targets: mixupTarget(labels, o.numClasses, lam, o.labelSmoothing), lam, kind: 'mixup' };
  }
}
