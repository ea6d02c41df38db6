/**
 * What every host backend (native, wasm, reference) shares: memory access (write / read / fill
 * / copy on Float32Arrays) and the small elementwise kernels that the layers used to compute on
 * the host between kernels (LayerScale's fold, the depthwise weight's layout, GRN's folded
 * scale, EMA, gradient clipping, row gathers). They are a few floats per parameter or per row
 * and bound by memory, so one TypeScript loop serves all three backends (wasm's tensors are
 * views of its linear memory and are worked on in place). A device backend implements them
 * as kernels of its own.
 */
import { ConvNextError } from '../errors.js';
import { targetAndLoss } from './fcmae_loss.js';
import type { Buf, Capabilities, Isa, TensorMemory } from './types.js';

/** The Float32Array a host backend was given; a DeviceTensor here is a caller's mistake. */
export function hostArray(b: Buf, what: string): Float32Array {
  if (b instanceof Float32Array) return b;
  throw new ConvNextError(`${what}: a ${b.device} tensor was given to a host backend`);
}

function checkLength(what: string, name: string, b: Float32Array, need: number): void {
  if (b.length < need) throw new ConvNextError(`${what}: ${name} has ${b.length} values, needs ${need}`);
}

/** N class indices, each an integer in [0, K). */
export function checkLabels(what: string, labels: Int32Array, N: number, K: number): void {
  if (labels.length < N) throw new ConvNextError(`${what}: ${labels.length} labels for ${N} rows`);
  for (let n = 0; n < N; n++) {
    const y = labels[n];
    if (!(y >= 0 && y < K)) throw new ConvNextError(`label ${y} out of range for ${K} classes`);
  }
}

/**
 * Calls run(i, j) for each maximal run idx[i..j) of consecutive rows (idx[k+1] = idx[k] + 1)
 * or of "none" entries (all < 0): one copy per run, as visible patches are runs of a map's rows.
 */
function forEachRun(idx: Int32Array, run: (i: number, j: number) => void): void {
  for (let i = 0; i < idx.length;) {
    let j = i + 1;
    if (idx[i] < 0) while (j < idx.length && idx[j] < 0) j++;
    else while (j < idx.length && idx[j] === idx[j - 1] + 1) j++;
    run(i, j);
    i = j;
  }
}

/** Row indices below `rows` (negative ones mean "none"). */
function checkRows(what: string, idx: Int32Array, rows: number): void {
  for (let i = 0; i < idx.length; i++) {
    if (idx[i] >= rows) throw new ConvNextError(`${what}: row index ${idx[i]} at ${i} is outside [0, ${rows})`);
  }
}

/**
 * The base of the host backends: they declare `implements Kernels` and the big kernels
 * themselves (on Float32Array, which is what a host backend takes).
 */
export abstract class HostKernels {
  abstract readonly name: string;
  abstract readonly isa: Isa;
  abstract readonly threads: number;
  readonly memory?: TensorMemory;

  /** The backend's own cross-entropy: returns the mean loss, writes (softmax - target) / N into dlogits. */
  protected abstract crossEntropy(logits: Float32Array, targets: Float32Array, N: number, K: number, dlogits: Float32Array | null): number;

  softmaxCrossEntropy(logits: Float32Array, targets: Float32Array, N: number, K: number, dlogits: Float32Array | null, loss: Float32Array,
    gradScale: number): void {
    checkLength('softmaxCrossEntropy', 'loss', loss, 1);
    loss[0] = this.crossEntropy(logits, targets, N, K, dlogits);
    const f = gradScale * N;
    if (dlogits && f !== 1) for (let i = 0; i < N * K; i++) dlogits[i] *= f;
  }

  /** Host backends take the Int32Array itself wherever indices go. */
  indexTable(values: Int32Array): Int32Array {
    return values;
  }
  freeIndexTable(): void {}

  write(dst: Float32Array, src: Float32Array, offset = 0): void {
    if (offset < 0 || offset + src.length > dst.length) {
      throw new ConvNextError(`write: ${src.length} values at ${offset} do not fit a tensor of ${dst.length}`);
    }
    dst.set(src, offset);
  }

  read(t: Float32Array): Promise<Float32Array> {
    return Promise.resolve(Float32Array.from(t));
  }

  fill(t: Float32Array, value: number): void {
    t.fill(value);
  }

  copy(src: Float32Array, dst: Float32Array): void {
    checkLength('copy', 'dst', dst, src.length);
    dst.set(src);
  }

  transpose(src: Float32Array, B: number, R: number, C: number, dst: Float32Array, accumulate: boolean): void {
    checkLength('transpose', 'src', src, B * R * C);
    checkLength('transpose', 'dst', dst, B * R * C);
    for (let b = 0; b < B; b++) {
      const o = b * R * C;
      if (accumulate) {
        for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) dst[o + c * R + r] += src[o + r * C + c];
      } else {
        for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) dst[o + c * R + r] = src[o + r * C + c];
      }
    }
  }

  scaleRows(x: Float32Array, R: number, C: number, s: Float32Array, out: Float32Array, accumulate: boolean): void {
    checkLength('scaleRows', 'x', x, R * C);
    checkLength('scaleRows', 's', s, R);
    checkLength('scaleRows', 'out', out, R * C);
    for (let r = 0; r < R; r++) {
      const sr = s[r];
      const o = r * C;
      if (accumulate) for (let c = 0; c < C; c++) out[o + c] += sr * x[o + c];
      else for (let c = 0; c < C; c++) out[o + c] = x[o + c] * sr;
    }
  }

  rowDot(a: Float32Array, b: Float32Array, R: number, C: number, out: Float32Array, accumulate: boolean): void {
    checkLength('rowDot', 'a', a, R * C);
    checkLength('rowDot', 'b', b, R * C);
    checkLength('rowDot', 'out', out, R);
    for (let r = 0; r < R; r++) {
      const o = r * C;
      let s = 0;
      for (let c = 0; c < C; c++) s += a[o + c] * b[o + c];
      out[r] = accumulate ? out[r] + s : s;
    }
  }

  scale(x: Float32Array, n: number, s: number): void {
    checkLength('scale', 'x', x, n);
    for (let i = 0; i < n; i++) x[i] *= s;
  }

  sumSquares(x: Float32Array, n: number, out: Float32Array, accumulate: boolean): void {
    checkLength('sumSquares', 'x', x, n);
    checkLength('sumSquares', 'out', out, 1);
    let s = 0;
    for (let i = 0; i < n; i++) s += x[i] * x[i];
    out[0] = accumulate ? out[0] + s : s;
  }

  clipByNorm(x: Float32Array, n: number, sumSq: Float32Array, maxNorm: number): void {
    checkLength('clipByNorm', 'x', x, n);
    checkLength('clipByNorm', 'sumSq', sumSq, 1);
    const f = maxNorm / (Math.sqrt(sumSq[0]) + 1e-6);
    if (f < 1) for (let i = 0; i < n; i++) x[i] *= f;
  }

  grnScale(nx: Float32Array, S: number, C: number, gamma: Float32Array, out: Float32Array): void {
    checkLength('grnScale', 'nx', nx, S * C);
    checkLength('grnScale', 'gamma', gamma, C);
    checkLength('grnScale', 'out', out, S * C);
    for (let s = 0; s < S; s++) for (let c = 0; c < C; c++) out[s * C + c] = 1 + gamma[c] * nx[s * C + c];
  }

  gatherRows(src: Float32Array, idx: Int32Array, C: number, dst: Float32Array): void {
    checkRows('gatherRows', idx, Math.floor(src.length / C));
    checkLength('gatherRows', 'dst', dst, idx.length * C);
    forEachRun(idx, (i, j) => {
      if (idx[i] < 0) dst.fill(0, i * C, j * C);
      else dst.set(src.subarray(idx[i] * C, (idx[i] + j - i) * C), i * C);
    });
  }

  scatterRows(src: Float32Array, idx: Int32Array, C: number, dst: Float32Array): void {
    checkRows('scatterRows', idx, Math.floor(dst.length / C));
    checkLength('scatterRows', 'src', src, idx.length * C);
    forEachRun(idx, (i, j) => {
      if (idx[i] >= 0) dst.set(src.subarray(i * C, j * C), idx[i] * C);
    });
  }

  fcmaeLoss(x: Float32Array, N: number, H: number, W: number, C: number, p: number, norm: boolean, pred: Float32Array, mask: Float32Array,
    target: Float32Array, dpred: Float32Array, loss: Float32Array, patchStats: Float32Array | null): void {
    const rows = N * (H / p) * (W / p);
    const P = p * p * C;
    checkLength('fcmaeLoss', 'x', x, N * H * W * C);
    for (const [name, b] of [['pred', pred], ['target', target], ['dpred', dpred]] as const) checkLength('fcmaeLoss', name, b, rows * P);
    checkLength('fcmaeLoss', 'mask', mask, rows);
    checkLength('fcmaeLoss', 'loss', loss, 1);
    const r = targetAndLoss(x, N, H, W, C, p, norm, pred, mask, target, dpred);
    loss[0] = r.loss;
    if (patchStats && r.patchStats) {
      checkLength('fcmaeLoss', 'patchStats', patchStats, rows * 2);
      patchStats.set(r.patchStats);
    }
  }

  smoothTargets(labels: Int32Array, N: number, K: number, smoothing: number, out: Float32Array): void {
    checkLabels('smoothTargets', labels, N, K);
    checkLength('smoothTargets', 'out', out, N * K);
    const off = smoothing / K;
    out.fill(off, 0, N * K);
    for (let n = 0; n < N; n++) out[n * K + labels[n]] += 1 - smoothing;
  }

  ema(shadow: Float32Array, w: Float32Array, n: number, decay: number): void {
    checkLength('ema', 'shadow', shadow, n);
    checkLength('ema', 'w', w, n);
    for (let i = 0; i < n; i++) shadow[i] = decay * shadow[i] + (1 - decay) * w[i];
  }

  capabilities(): Capabilities {
    return { device: false, sparseRows: true, f16: false, software: false, description: `${this.name} (${this.isa}, ${this.threads} thread${this.threads === 1 ? '' : 's'})` };
  }
}
