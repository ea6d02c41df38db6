/**
 * A Linear layer followed by LayerScale (ConvNeXt V1's per-channel `gamma`):
 *   y = (x W^T + b) * gamma      (gamma broadcast over rows, one value per output channel)
 *
 * LayerScale is folded into the weights for the forward pass: W' = diag(gamma) W and
 * b' = gamma * b, so the product is one GEMM and the residual add stays fused into it (as in
 * the V2 block). The backward runs the GEMMs on the folded weights and maps the gradients back:
 *   dW = gamma * dW',   db = gamma * db',   dgamma_c = sum_i W_ci dW'_ci + b_c db'_c
 * (exact: y_mc = gamma_c * (sum_i x_mi W_ci + b_c)); dx = dy W' needs nothing more.
 */
import type { Kernels } from '../kernels/types.js';
import type { Arena, Buffers } from './arena.js';
import { Linear } from './linear.js';
import { Param } from './param.js';

export class LayerScaledLinear {
  private readonly folded: Linear;
  private readonly w2: Param;
  private readonly b2: Param;

  constructor(readonly weight: Param, readonly bias: Param, readonly gamma: Param, readonly inFeatures: number, readonly outFeatures: number) {
    this.w2 = new Param(`${weight.name}*gamma`, weight.shape, weight.noDecay);
    this.b2 = new Param(`${bias.name}*gamma`, bias.shape, bias.noDecay);
    this.folded = new Linear(this.w2, this.b2, inFeatures, outFeatures);
  }

  private fold(): void {
    const I = this.inFeatures;
    const w = this.weight.data;
    const b = this.bias.data;
    const g = this.gamma.data;
    const w2 = this.w2.data;
    const b2 = this.b2.data;
    for (let c = 0; c < this.outFeatures; c++) {
      const gc = g[c];
      const o = c * I;
      for (let i = 0; i < I; i++) w2[o + i] = w[o + i] * gc;
      b2[c] = b[c] * gc;
    }
  }

  /** As {@link Linear.forward}: x [M, in] -> y [M, out] (+ `residual` when given). */
  forward(k: Kernels, x: Float32Array, M: number, b: Buffers, out?: Float32Array, residual?: Float32Array): Float32Array {
    this.fold();
    return this.folded.forward(k, x, M, b, out, residual);
  }

  /** As {@link Linear.backward}; accumulates dW, db and dgamma. */
  backward(k: Kernels, dy: Float32Array, shared: Arena, dx?: Float32Array | null): Float32Array | null {
    this.w2.grad.fill(0);
    this.b2.grad.fill(0);
    const r = this.folded.backward(k, dy, shared, dx);
    const I = this.inFeatures;
    const w = this.weight.data;
    const b = this.bias.data;
    const g = this.gamma.data;
    const dw2 = this.w2.grad;
    const db2 = this.b2.grad;
    const dw = this.weight.grad;
    const db = this.bias.grad;
    const dg = this.gamma.grad;
    for (let c = 0; c < this.outFeatures; c++) {
      const gc = g[c];
      const o = c * I;
      let s = b[c] * db2[c];
      for (let i = 0; i < I; i++) {
        s += w[o + i] * dw2[o + i];
        dw[o + i] += gc * dw2[o + i];
      }
      db[c] += gc * db2[c];
      dg[c] += s;
    }
    return r;
  }
}
