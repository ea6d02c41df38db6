/**
 * Global Response Normalization (ConvNeXt V2, Eq. 1-3), channels-last:
 *   G(X)_c = ||X_c||_2 over the spatial positions of one sample   (aggregation)
 *   N(X)_c = G(X)_c / (mean_c G(X) + 1e-6)                      (divisive normalisation)
 *   X'_c   = gamma_c * (X_c * N(X)_c) + beta_c + X_c             (calibration + residual)
 * timm names gamma/beta `mlp.grn.weight` / `mlp.grn.bias`; both start at zero, so a fresh
 * GRN is the identity. Statistics run over row segments: one per image for dense maps, or
 * any grouping (the sparse FCMAE encoder aggregates over all visible rows of the batch).
 */
import { Act, type Buf, type Idx, idxValues, type Kernels } from '../kernels/types.js';
import { Arena, type Buffers } from '../nn/arena.js';
import type { Linear } from '../nn/linear.js';
import type { Param } from '../nn/param.js';

export class GRN {
  static readonly EPS = 1e-6;
  private readonly own = new Arena();
  private x: Buf | null = null;
  private offsets: Idx | null = null;
  private gx: Buf | null = null;
  private nx: Buf | null = null;

  constructor(readonly gamma: Param, readonly beta: Param, readonly C: number) {}

  /** Offsets for N images of HW rows each. */
  static perImage(N: number, HW: number): Int32Array {
    const o = new Int32Array(N + 1);
    for (let i = 0; i <= N; i++) o[i] = i * HW;
    return o;
  }

  /** The per-image offsets as an index table of `k`, made once per shape in `arena`. */
  static perImageTable(k: Kernels, arena: Arena, N: number, HW: number): Idx {
    return arena.indices(k, `grn.${N}x${HW}`, () => GRN.perImage(N, HW));
  }

  /** x [rows, C] -> GRN(x); `sqSums` ([S, C]): the segments' sums of squares of x when known. */
  forward(k: Kernels, x: Buf, offsets: Idx, b: Buffers, sqSums?: Buf): Buf {
    const o = idxValues(offsets);
    const S = o.length - 1;
    const rows = o[S];
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
  forwardIntoLinear(k: Kernels, x: Buf, N: number, HW: number, fc: Linear, residual: Buf, out: Buf,
    shared: Arena, sqSums?: Buf): Buf {
    const C = this.C;
    const O = fc.outFeatures;
    if (fc.inFeatures !== C) throw new Error(`GRN.forwardIntoLinear: fc takes ${fc.inFeatures} channels, GRN has ${C}`);
    // N(x_n) per image (statistics only; with sqSums from the previous GEMM's epilogue, no pass over x), then s_n.
    const nx = shared.get(k, 'grn.nx', N * C);
    k.grnForward(x, GRN.perImageTable(k, shared, N, HW), C, this.gamma.data, this.beta.data, GRN.EPS, null, shared.get(k, 'grn.gx', N * C), nx, sqSums ?? null);
    const s = shared.get(k, 'grn.scale', N * C);
    k.grnScale(nx, N, C, this.gamma.data, s);
    k.gemm(false, true, N * HW, O, C, x, C, fc.weight.data, C, out, O, false, fc.bias ? fc.bias.data : null, Act.None, null,
      { aScale: s, aScaleRows: HW, aShift: this.beta.data, residual, packedB: fc.inferenceWeights(k, N * HW) });
    this.x = this.offsets = this.gx = this.nx = null;
    return out;
  }

  /**
   * dy -> dx in the shared arena under `key`; accumulates d gamma, d beta. With `fc` (the
   * Linear + GELU before GRN, see Linear.backwardPreact), dx comes out as the gradient of that
   * GELU's input and fc's bias gradient is accumulated in the same pass.
   */
  backward(k: Kernels, dy: Buf, shared: Arena, key = 'grn.dx', fc?: Linear): Buf {
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
