/**
 * Linear layer over channels-last rows: y = x W^T + b, W [out, in] (PyTorch layout), with an
 * optional exact-GELU epilogue fused into the GEMM (the pre-activation is kept for backward).
 */
import { Act, type Buf, type Idx, type Kernels, type PackedWeights } from '../kernels/types.js';
import { Arena, type Buffers } from './arena.js';
import { InferencePack } from './inference_pack.js';
import type { Param } from './param.js';

export class Linear {
  private readonly own = new Arena();
  private x: Buf | null = null;
  private preact: Buf | null = null;
  private M = 0;
  private readonly pack = new InferencePack();

  constructor(
    readonly weight: Param,
    readonly bias: Param | null,
    readonly inFeatures: number,
    readonly outFeatures: number,
    readonly gelu = false,
  ) {}

  /**
   * x: [M, in] -> y: [M, out] (written to `out` when given). With `residual` ([M, out]),
   * y = residual + xW^T + b, the residual read by the GEMM's epilogue (it may be `out` itself).
   * With `sq`, the column sums of squares of y per group of rows are written to sq.sums.
   */
  forward(k: Kernels, x: Buf, M: number, b: Buffers, out?: Buf, residual?: Buf,
    sq?: { sums: Buf; groupRows: number }): Buf {
    const n = M * this.outFeatures;
    const y = out ?? (b.cache ? this.own.get(k, 'y', n) : b.shared.get(k, `linear.y`, n));
    const pre = this.gelu && b.cache ? this.own.get(k, 'preact', n) : null;
    const bias = this.bias ? this.bias.data : null;
    const act = this.gelu ? Act.Gelu : Act.None;
    const inPlace = residual === y;
    const packedB = b.cache ? null : this.inferenceWeights(k, M);
    const extras = (residual && !inPlace) || sq || packedB
      ? { residual: inPlace ? null : residual, sqSums: sq?.sums, sqGroupRows: sq?.groupRows, packedB }
      : undefined;
    k.gemm(false, true, M, this.outFeatures, this.inFeatures, x, this.inFeatures, this.weight.data, this.inFeatures, y, this.outFeatures,
      inPlace, bias, act, pre, extras);
    this.M = M;
    this.x = b.cache ? x : null;
    this.preact = pre;
    return y;
  }

  /** The weight packed for an M-row inference GEMM (see InferencePack), or null. */
  inferenceWeights(k: Kernels, M: number): PackedWeights | null {
    return this.pack.get(k, this.weight, this.outFeatures, this.inFeatures, M);
  }

  /**
   * dy: [M, out] (gradient after the activation) -> dx: [M, in] written to `dx` (or a shared
   * temporary, or nothing when `dx` is null). Accumulates dW, db.
   */
  backward(k: Kernels, dy: Buf, shared: Arena, dx?: Buf | null): Buf | null {
    const { M, outFeatures: O } = this;
    if (!this.x) throw new Error('Linear.backward without a cached forward');
    let g = dy;
    if (this.gelu) {
      if (!this.preact) throw new Error('Linear.backward: missing pre-activation');
      g = shared.get(k, 'linear.dgelu', M * O);
      k.geluBackward(dy, this.preact, g, M * O);
    }
    if (this.bias) k.colSum(g, M, O, this.bias.grad, true);
    return this.backwardPreact(k, g, shared, dx);
  }

  /** The GELU's input of the last cached forward (null without GELU or cache). */
  get preactivation(): Buf | null {
    return this.preact;
  }

  /**
   * backward() from g, the gradient of the pre-activation (x W^T + b), when the caller has
   * applied gelu' and accumulated the bias gradient itself (GRN's backward fuses both).
   */
  backwardPreact(k: Kernels, g: Buf, shared: Arena, dx?: Buf | null): Buf | null {
    const { M, inFeatures: I, outFeatures: O } = this;
    if (!this.x) throw new Error('Linear.backward without a cached forward');
    // dW[O, I] += g^T [O, M] · x [M, I]
    k.gemm(true, false, O, I, M, g, O, this.x, I, this.weight.grad, I, true, null, Act.None, null);
    this.x = null;
    this.preact = null;
    if (dx === null) return null;
    const out = dx ?? shared.get(k, 'linear.dx', M * I);
    k.gemm(false, false, M, I, O, g, O, this.weight.data, I, out, I, false, null, Act.None, null);
    return out;
  }

  /**
   * backward() when only the rows listed in `live` (ascending) of dy may be nonzero: the GEMMs
   * run on those rows only (gathered), the other rows of dx are zero. Without the GELU epilogue.
   */
  backwardRows(k: Kernels, dy: Buf, live: Idx, shared: Arena, dx: Buf): Buf {
    const { inFeatures: I, outFeatures: O } = this;
    const x = this.x;
    if (!x) throw new Error('Linear.backwardRows without a cached forward');
    if (this.gelu) throw new Error('Linear.backwardRows: not with the GELU epilogue');
    const m = live.length;
    const xs = shared.get(k, 'linear.rows.x', m * I);
    const gs = shared.get(k, 'linear.rows.dy', m * O);
    k.gatherRows(x, live, I, xs);
    k.gatherRows(dy, live, O, gs);
    k.gemm(true, false, O, I, m, gs, O, xs, I, this.weight.grad, I, true, null, Act.None, null);
    if (this.bias) k.colSum(gs, m, O, this.bias.grad, true);
    this.x = null;
    this.preact = null;
    const dxs = shared.get(k, 'linear.rows.dx', m * I);
    k.gemm(false, false, m, I, O, gs, O, this.weight.data, I, dxs, I, false, null, Act.None, null);
    const dxAll = dx.subarray(0, this.M * I);
    k.fill(dxAll, 0);
    k.scatterRows(dxs, live, I, dxAll);
    return dx;
  }
}
