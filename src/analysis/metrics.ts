/**
 * The paper's feature analyses as plain functions on channels-last activations.
 *
 * Feature cosine distance (ConvNeXt V2, Sec. 3.2 "feature collapse"): for an activation map X
 * of H x W positions and C channels, X_i the i-th channel flattened to HW values,
 *   d(X) = (1/C^2) sum_i sum_j (1 - cos(X_i, X_j)) / 2,
 * the diagonal included as in the paper's formula (so C mutually orthogonal channels give
 * 0.5 (1 - 1/C), identical channels 0). Higher means more diverse channels; collapsed
 * (dead, saturated or redundant) channels pull it down. A channel whose values are all zero
 * has cosine 0 with every channel, itself included (PyTorch's `cosine_similarity` convention:
 * norms clamped at 1e-8). `cosineMatrix` gives the full C x C matrix (a Gram matrix by GEMM).
 *
 * Class selectivity index (Morcos et al. 2018, per channel): with mu_k the mean over the
 * images of class k of the channel's spatial mean per image, clipped at 0,
 *   SI = (mu_max - mu_rest) / (mu_max + mu_rest),  mu_rest = mean of the other classes' mu_k,
 * in [0, 1]: 0 for a channel that responds equally to every class, 1 for one that responds
 * to a single class only. A channel with mu_k = 0 for every class (silent) has no index (NaN).
 */
import { Act, type Kernels } from '../kernels/types.js';

/** Norms below this count as zero (PyTorch's cosine_similarity eps). */
export const COSINE_EPS = 1e-8;

/** (1 - cos(a, b)) / 2 of two vectors: 0 for parallel, 0.5 for orthogonal, 1 for opposite. */
export function channelCosineDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`vectors of ${a.length} and ${b.length} values`);
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  const cos = ab / (Math.max(Math.sqrt(aa), COSINE_EPS) * Math.max(Math.sqrt(bb), COSINE_EPS));
  return (1 - Math.min(1, Math.max(-1, cos))) / 2;
}

/**
 * The paper's feature cosine distance of one image's activation x [HW, C] (channels-last rows,
 * read from `offset`). The double sum of cosines needs no C x C matrix:
 *   sum_i sum_j cos(X_i, X_j) = || sum_i X_i / ||X_i|| ||^2
 * (a vector of HW values), so the cost is one pass over the activation, in float64.
 */
export function featureCosineDistance(x: Float32Array, HW: number, C: number, offset = 0): number {
  checkActivation(x, HW, C, offset);
  const inv = new Float64Array(C);
  for (let p = 0; p < HW; p++) {
    const o = offset + p * C;
    for (let i = 0; i < C; i++) inv[i] += x[o + i] * x[o + i];
  }
  for (let i = 0; i < C; i++) inv[i] = 1 / Math.max(Math.sqrt(inv[i]), COSINE_EPS);
  let sum = 0;
  for (let p = 0; p < HW; p++) {
    const o = offset + p * C;
    let s = 0;
    for (let i = 0; i < C; i++) s += x[o + i] * inv[i];
    sum += s * s;
  }
  const d = (C * C - sum) / (2 * C * C);
  return d < 0 ? 0 : d > 1 ? 1 : d;
}

/**
 * The channel cosine matrix [C, C] of an activation x [HW, C] (from `offset`): the Gram matrix
 * X^T X by one GEMM on the kernels (`transA`), divided by the norms (clamped at 1e-8).
 */
export function cosineMatrix(k: Kernels, x: Float32Array, HW: number, C: number, offset = 0, out?: Float32Array): Float32Array {
  checkActivation(x, HW, C, offset);
  const G = out && out.length >= C * C ? out : new Float32Array(C * C);
  k.gemm(true, false, C, C, HW, x.subarray(offset, offset + HW * C), C, x.subarray(offset, offset + HW * C), C, G, C, false, null, Act.None, null);
  const inv = new Float64Array(C);
  for (let i = 0; i < C; i++) inv[i] = 1 / Math.max(Math.sqrt(Math.max(G[i * C + i], 0)), COSINE_EPS);
  for (let i = 0; i < C; i++) for (let j = 0; j < C; j++) G[i * C + j] = Math.min(1, Math.max(-1, G[i * C + j] * inv[i] * inv[j]));
  return G;
}

function checkActivation(x: Float32Array, HW: number, C: number, offset: number): void {
  if (!(Number.isInteger(HW) && Number.isInteger(C) && HW >= 1 && C >= 1)) throw new RangeError(`activation of ${HW} positions and ${C} channels`);
  if (x.length < offset + HW * C) throw new RangeError(`activation has ${x.length - offset} values from offset ${offset}, needs ${HW * C}`);
}

/** Summary of a distribution (NaN entries left out). */
export interface Distribution {
  count: number;
  mean: number;
  min: number;
  p10: number;
  p25: number;
  median: number;
  p75: number;
  p90: number;
  max: number;
}

/** Mean and quantiles (linear interpolation, as numpy's default) of the finite values. */
export function distribution(values: ArrayLike<number>): Distribution {
  const v = Array.from(values).filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const n = v.length;
  const q = (p: number): number => {
    if (n === 0) return NaN;
    const pos = p * (n - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(n - 1, lo + 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - lo);
  };
  return {
    count: n, mean: n ? v.reduce((a, b) => a + b, 0) / n : NaN, min: n ? v[0] : NaN,
    p10: q(0.1), p25: q(0.25), median: q(0.5), p75: q(0.75), p90: q(0.9), max: n ? v[n - 1] : NaN,
  };
}

/**
 * Accumulates per-class mean responses of C channels over labelled images, then gives each
 * channel's class selectivity index.
 */
export class ClassSelectivity {
  private readonly sums: Float64Array;
  private readonly counts: Float64Array;

  constructor(readonly numClasses: number, readonly channels: number) {
    if (!(Number.isInteger(numClasses) && numClasses >= 2)) throw new RangeError(`class selectivity needs at least 2 classes, got ${numClasses}`);
    this.sums = new Float64Array(numClasses * channels);
    this.counts = new Float64Array(numClasses);
  }

  /**
   * Adds images: `means` [N, C] holds each image's spatial mean per channel (clipped at 0
   * here), `labels` [N] their classes.
   */
  add(means: ArrayLike<number>, labels: ArrayLike<number>, N = labels.length): void {
    const C = this.channels;
    for (let n = 0; n < N; n++) {
      const y = labels[n];
      if (!(Number.isInteger(y) && y >= 0 && y < this.numClasses)) throw new RangeError(`label ${y} not in [0, ${this.numClasses})`);
      this.counts[y]++;
      const o = y * C;
      for (let c = 0; c < C; c++) {
        const v = means[n * C + c];
        if (v > 0) this.sums[o + c] += v;
      }
    }
  }

  /** Number of classes with at least one image. */
  classesSeen(): number {
    let n = 0;
    for (const c of this.counts) if (c > 0) n++;
    return n;
  }

  /** Per class k and channel c, the mean clipped response (NaN for classes without images). */
  classMeans(): Float64Array {
    const C = this.channels;
    const mu = new Float64Array(this.numClasses * C);
    for (let k = 0; k < this.numClasses; k++) {
      for (let c = 0; c < C; c++) mu[k * C + c] = this.counts[k] > 0 ? this.sums[k * C + c] / this.counts[k] : NaN;
    }
    return mu;
  }

  /** The index of every channel [C] (NaN for silent channels); needs images of 2 classes or more. */
  indices(): Float64Array {
    const present: number[] = [];
    for (let k = 0; k < this.numClasses; k++) if (this.counts[k] > 0) present.push(k);
    if (present.length < 2) throw new RangeError(`class selectivity needs images of at least 2 classes, got ${present.length}`);
    return selectivityIndices(this.classMeans(), this.numClasses, this.channels, present);
  }
}

/**
 * Selectivity indices from class means mu [K, C] (each >= 0) over the classes `present`
 * (default all): (mu_max - mu_rest) / (mu_max + mu_rest) per channel, NaN where all are 0.
 */
export function selectivityIndices(mu: ArrayLike<number>, K: number, C: number, present?: readonly number[]): Float64Array {
  const ks = present ?? Array.from({ length: K }, (_, i) => i);
  if (ks.length < 2) throw new RangeError('class selectivity needs at least 2 classes');
  const out = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    let max = -Infinity;
    let sum = 0;
    for (const k of ks) {
      const v = Math.max(0, mu[k * C + c]);
      sum += v;
      if (v > max) max = v;
    }
    const rest = (sum - max) / (ks.length - 1);
    out[c] = max + rest > 0 ? (max - rest) / (max + rest) : NaN;
  }
  return out;
}
