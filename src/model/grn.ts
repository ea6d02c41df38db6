/**
 * Global Response Normalization (ConvNeXt V2, Eq. 1-3), channels-last:
 *   G(X)_c = ||X_c||_2 over the spatial positions of one sample   (aggregation)
 *   N(X)_c = G(X)_c / (mean_c G(X) + 1e-6)                      (divisive normalisation)
 *   X'_c   = gamma_c * (X_c * N(X)_c) + beta_c + X_c             (calibration + residual)
 * timm names gamma/beta `mlp.grn.weight` / `mlp.grn.bias`; both start at zero, so a fresh
 * GRN is the identity. Statistics run over row segments: one per image for dense maps, or
 * any grouping (the sparse FCMAE encoder aggregates over all visible rows of the batch).
 */
import { Act, type Kernels } from '../kernels/types.js';
import { Arena, type Buffers } from '../nn/arena.js';
import type { Linear } from '../nn/linear.js';
import type { Param } from '../nn/param.js';

export class GRN {
  static readonly EPS = 1e-6;
  private readonly own = new Arena();
  private x: Float32Array | null = null;
  private offsets: Int32Array | null = null;
  private gx: Float32Array | null = null;
  private nx: Float32Array | null = null;

  constructor(readonly gamma: Param, readonly beta: Param, readonly C: number) {}

  /** Offsets for N images of HW rows each. */
  static perImage(N: number, HW: number): Int32Array {
    const o = new Int32Array(N + 1);
    for (let i = 0; i <= N; i++) o[i] = i * HW;
    return o;
  }

  /** x [rows, C] -> GRN(x); `sqSums` ([S, C]): the segments' sums of squares of x when known. */
  forward(k: Kernels, x: Float32Array, offsets: Int32Array, b: Buffers, sqSums?: Float32Array): Float32Array {
    const S = offsets.length - 1;
    const rows = offsets[S];
    const a = b.cache ? this.own : b.shared;
    const y = a.get(k, b.cache ? 'y' : 'grn.y', rows * this.C);
    const gx = a.get(k, b.cache ? 'gx' : 'grn.gx', S * this.C);
    const nx = a.get(k, b.cache ? 'nx' : 'grn.nx', S * this.C);
    k.grnForward(x, offsets, this.C, this.gamma.data, this.beta.data, GRN.EPS, y, gx, nx, sqSums ?? null);
    this.x = b.cache ? x : null;
    this.offsets = b.cache ? offsets : null;
    this.gx = b.cache ? gx : null;
    this.nx = b.cache ? nx : null;
    return y;
  }

  /**
   * Inference: out = residual + fc(GRN(x)) for N images of HW rows, without writing GRN(x):
   * GRN(x_n) = x_n * s_n + beta with s_n = 1 + gamma * N(x_n) per image, which the GEMM
   * applies to x's rows as it packs them. Only the statistics pass reads x before the GEMM.
   */
  forwardIntoLinear(k: Kernels, x: Float32Array, N: number, HW: number, fc: Linear, residual: Float32Array, out: Float32Array,
    shared: Arena, sqSums?: Float32Array): Float32Array {
    const C = this.C;
    const O = fc.outFeatures;
    if (fc.inFeatures !== C) throw new Error(`GRN.forwardIntoLinear: fc takes ${fc.inFeatures} channels, GRN has ${C}`);
    const s = shared.get(k, 'grn.nx', N * C);
    if (sqSums) {
      // Statistics from the previous GEMM's epilogue (per-image sums of squares).
      for (let n = 0; n < N; n++) {
        let mean = 0;
        for (let c = 0; c < C; c++) {
          const v = Math.fround(Math.sqrt(sqSums[n * C + c]));
          s[n * C + c] = v;
          mean += v;
        }
        const den = Math.fround(mean / C + GRN.EPS);
        for (let c = 0; c < C; c++) s[n * C + c] = Math.fround(s[n * C + c] / den);
      }
    } else {
      k.grnForward(x, GRN.perImage(N, HW), C, this.gamma.data, this.beta.data, GRN.EPS, null, shared.get(k, 'grn.gx', N * C), s);
    }
    const g = this.gamma.data;
    for (let i = 0; i < N * C; i++) s[i] = 1 + g[i % C] * s[i];
    k.gemm(false, true, N * HW, O, C, x, C, fc.weight.data, C, out, O, false, fc.bias ? fc.bias.data : null, Act.None, null,
      { aScale: s, aScaleRows: HW, aShift: this.beta.data, residual });
    this.x = this.offsets = this.gx = this.nx = null;
    return out;
  }

  /**
   * dy -> dx in the shared arena under `key`; accumulates d gamma, d beta. With `fc` (the
   * Linear + GELU before GRN, see Linear.backwardPreact), dx comes out as the gradient of that
   * GELU's input and fc's bias gradient is accumulated in the same pass.
   */
  backward(k: Kernels, dy: Float32Array, shared: Arena, key = 'grn.dx', fc?: Linear): Float32Array {
    if (!this.x || !this.offsets || !this.gx || !this.nx) throw new Error('GRN.backward without a cached forward');
    const dx = shared.get(k, key, this.x.length);
    const pre = fc ? fc.preactivation : null;
    if (fc && (!pre || fc.outFeatures !== this.C)) throw new Error('GRN.backward: fc has no GELU pre-activation of GRN\'s width');
    k.grnBackward(dy, this.x, this.offsets, this.C, this.gamma.data, GRN.EPS, this.gx, this.nx, dx,
      this.gamma.grad, this.beta.grad, pre, fc?.bias ? fc.bias.grad : null);
    this.x = this.offsets = this.gx = this.nx = null;
    return dx;
  }
}
