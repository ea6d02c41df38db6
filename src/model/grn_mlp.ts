/**
 * The block's MLP on channels-last rows, timm's GlobalResponseNormMlp (paper Fig. 5):
 *   u -> Linear(C, 4C) -> GELU -> GRN -> Linear(4C, C)
 * With kind `v1`, ConvNeXt V1's Mlp with LayerScale (the paper's GRN ablation): no GRN, and
 * `gamma` [C] multiplying fc2's output (folded into fc2's weights).
 * Names follow timm: mlp.fc1, mlp.grn, mlp.fc2 (and the block's gamma).
 *
 * The fusions live in the layers below; this module only picks them:
 * - GELU in fc1's GEMM epilogue, and on dense maps GRN's per-image sums of squares too;
 * - at inference, GRN's calibration folded into fc2's packing (GRN's output is never written);
 * - the block's residual added in fc2's GEMM epilogue;
 * - backward: GRN's backward applies GELU's derivative and sums fc1's bias gradient in one pass.
 */
import { ConvNextError } from '../errors.js';
import type { Buf, Idx, Kernels } from '../kernels/types.js';
import type { Arena, Buffers } from '../nn/arena.js';
import { Linear } from '../nn/linear.js';
import { LayerScaledLinear } from '../nn/layerscale.js';
import type { Param } from '../nn/param.js';
import type { BlockType } from './config.js';
import { GRN } from './grn.js';

/**
 * Receives a block's MLP hidden activation: GELU(fc1(...)), the input of GRN (V2) or of fc2
 * (V1), [N, H, W, 4C] channels-last. The array is a reused buffer: read it before returning.
 */
export type HiddenCapture = (hidden: Float32Array, N: number, H: number, W: number, channels: number) => void;

/** The rows GRN takes its statistics over: whole images of a dense map, or segments of sites. */
export type GrnSegments =
  | { images: { N: number; H: number; W: number } }
  | { offsets: Idx };

export interface MlpForwardOptions extends Buffers {
  /** Training mode (no inference folding). */
  train: boolean;
  /** Called with the hidden activation (dense maps only). */
  capture?: HiddenCapture;
  /** Dense-masked sites: zeroes the masked rows of a [rows, ch] buffer after every layer. */
  mask?: (v: Buf, ch: number) => Buf;
}

export class GrnMlp {
  readonly fc1: Linear;
  /** GRN (V2; null in V1). */
  readonly grn: GRN | null;
  /** LayerScale (V1; null in V2). */
  readonly gamma: Param | null;
  /** The second Linear; in V1 with LayerScale folded in. */
  readonly fc2: Linear | LayerScaledLinear;

  /** `p`: the block's parameters by their names inside the block (`mlp.fc1.weight`, `gamma`). */
  constructor(p: (name: string) => Param, readonly C: number, kind: BlockType = 'v2') {
    this.fc1 = new Linear(p('mlp.fc1.weight'), p('mlp.fc1.bias'), C, 4 * C, true);
    if (kind === 'v1') {
      this.grn = null;
      this.gamma = p('gamma');
      this.fc2 = new LayerScaledLinear(p('mlp.fc2.weight'), p('mlp.fc2.bias'), this.gamma, 4 * C, C);
    } else {
      this.grn = new GRN(p('mlp.grn.weight'), p('mlp.grn.bias'), 4 * C);
      this.gamma = null;
      this.fc2 = new Linear(p('mlp.fc2.weight'), p('mlp.fc2.bias'), 4 * C, C);
    }
  }

  /**
   * u [rows, C] -> fc2(GRN(GELU(fc1(u)))) into `out`, plus `residual` when given (fused into
   * fc2's epilogue). GRN's sums of squares come from fc1's epilogue on whole images only: on
   * segments of sparse sites that changes the FCMAE bits.
   */
  forward(k: Kernels, u: Buf, rows: number, seg: GrnSegments, b: MlpForwardOptions, out: Buf, residual?: Buf): Buf {
    const mask = b.mask ?? ((v: Buf) => v);
    const C4 = 4 * this.C;
    if ('offsets' in seg) {
      const g = mask(this.fc1.forward(k, u, rows, b), C4);
      const r = this.grn ? mask(this.grn.forward(k, g, seg.offsets, b), C4) : g;
      return this.fc2.forward(k, r, rows, b, out, residual);
    }
    const { N, H, W } = seg.images;
    const sq = this.grn ? { sums: b.shared.get(k, 'grn.sqsums', N * C4), groupRows: H * W } : undefined;
    const g = this.fc1.forward(k, u, rows, b, undefined, undefined, sq);
    if (b.capture) {
      if (!(g instanceof Float32Array)) {
        throw new ConvNextError(`forward: capture reads the activations on the host; the ${g.device} backend keeps them on the device (run the analyses on cpu, wasm or reference)`);
      }
      b.capture(g, N, H, W, C4);
    }
    // Inference: GRN's calibration is folded into fc2 (no GRN output written); fc2 reads the residual.
    if (this.grn && residual && !b.cache && !b.train && this.fc2 instanceof Linear) {
      return this.grn.forwardIntoLinear(k, g, N, H * W, this.fc2, residual, out, b.shared, sq?.sums);
    }
    const r = this.grn ? this.grn.forward(k, g, GRN.perImageTable(k, b.shared, N, H * W), b, sq?.sums) : g;
    return this.fc2.forward(k, r, rows, b, out, residual);
  }

  /** dy [rows, C] -> du [rows, C]; accumulates the parameters' gradients. */
  backward(k: Kernels, dy: Buf, rows: number, shared: Arena, mask: (v: Buf, ch: number) => Buf = (v) => v): Buf {
    const C4 = 4 * this.C;
    const dr = mask(this.fc2.backward(k, dy, shared, shared.get(k, 'block.dr', rows * C4))!, C4);
    const duBuf = shared.get(k, 'block.du', rows * this.C);
    // V2: GRN's backward also applies fc1's GELU derivative and accumulates fc1's bias gradient.
    // On dense-masked sites GRN's input and dr are zero at masked rows, and so is its gradient:
    // no mask between GRN and fc1.
    return this.grn
      ? this.fc1.backwardPreact(k, this.grn.backward(k, dr, shared, 'block.dg', this.fc1), shared, duBuf)!
      : this.fc1.backward(k, dr, shared, duBuf)!;
  }

  /** Returns the folded LayerScale copies (V1) to the backend's memory. */
  dispose(): void {
    if (this.fc2 instanceof LayerScaledLinear) this.fc2.dispose();
  }
}
