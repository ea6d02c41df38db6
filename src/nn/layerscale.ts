/**
 * A Linear layer followed by LayerScale (ConvNeXt V1's per-channel `gamma`):
 *   y = (x W^T + b) * gamma      (gamma broadcast over rows, one value per output channel)
 *
 * LayerScale is folded into the weights for the forward pass (again when they change): W' =
 * diag(gamma) W and b' = gamma * b, so the product is one GEMM and the residual add stays fused into it (as in
 * the V2 block). The backward runs the GEMMs on the folded weights and maps the gradients back:
 *   dW = gamma * dW',   db = gamma * db',   dgamma_c = sum_i W_ci dW'_ci + b_c db'_c
 * (exact: y_mc = gamma_c * (sum_i x_mi W_ci + b_c)); dx = dy W' needs nothing more.
 */
import type { Buf, Kernels } from '../kernels/types.js';
import type { Arena, Buffers } from './arena.js';
import { Linear } from './linear.js';
import { Param } from './param.js';

export class LayerScaledLinear {
  private readonly folded: Linear;
  private readonly w2: Param;
  private readonly b2: Param;

  constructor(readonly weight: Param, readonly bias: Param, readonly gamma: Param, readonly inFeatures: number, readonly outFeatures: number) {
    this.w2 = new Param(`${weight.name}*gamma`, weight.shape, weight.noDecay, weight.memory);
    this.b2 = new Param(`${bias.name}*gamma`, bias.shape, bias.noDecay, bias.memory);
    this.folded = new Linear(this.w2, this.b2, inFeatures, outFeatures);
  }

  /** The versions (and buffers) the folded copies were made from. */
  private foldedFrom: unknown[] = [];

  /** W' = diag(gamma) W, b' = gamma * b, when W, b or gamma changed since the last fold (Param.version). */
  private fold(k: Kernels): void {
    const from = [k, this.weight.data, this.weight.version, this.bias.data, this.bias.version, this.gamma.data, this.gamma.version];
    if (from.every((v, i) => v === this.foldedFrom[i])) return;
    this.foldedFrom = from;
    const O = this.outFeatures;
    k.scaleRows(this.weight.data, O, this.inFeatures, this.gamma.data, this.w2.data, false);
    k.scaleRows(this.bias.data, O, 1, this.gamma.data, this.b2.data, false);
    this.w2.writes.n++;
    this.b2.writes.n++;
  }

  /** As {@link Linear.forward}: x [M, in] -> y [M, out] (+ `residual` when given). */
  forward(k: Kernels, x: Buf, M: number, b: Buffers, out?: Buf, residual?: Buf): Buf {
    this.fold(k);
    return this.folded.forward(k, x, M, b, out, residual);
  }

  /** As {@link Linear.backward}; accumulates dW, db and dgamma. */
  backward(k: Kernels, dy: Buf, shared: Arena, dx?: Buf | null): Buf | null {
    const O = this.outFeatures;
    const I = this.inFeatures;
    k.fill(this.w2.grad, 0);
    k.fill(this.b2.grad, 0);
    const r = this.folded.backward(k, dy, shared, dx);
    // dgamma_c = sum_i W_ci dW'_ci + b_c db'_c; dW = gamma * dW'; db = gamma * db'.
    k.rowDot(this.weight.data, this.w2.grad, O, I, this.gamma.grad, true);
    k.rowDot(this.bias.data, this.b2.grad, O, 1, this.gamma.grad, true);
    k.scaleRows(this.w2.grad, O, I, this.gamma.data, this.weight.grad, true);
    k.scaleRows(this.b2.grad, O, 1, this.gamma.data, this.bias.grad, true);
    return r;
  }

  /** Returns the folded copies to the kernels' memory. */
  dispose(): void {
    this.w2.dispose();
    this.b2.dispose();
  }
}
