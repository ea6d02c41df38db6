/**
 * Non-overlapping PxP stride-P convolution (the stem's 4x4/4 and the downsampling 2x2/2):
 * gather patches, then one GEMM with the PyTorch weight [out, in, P, P] seen as [out, in*P*P].
 * Output size floors like PyTorch's strided convolution.
 */
import { Act, type Buf, type Kernels } from '../kernels/types.js';
import { Arena, type Buffers } from './arena.js';
import { InferencePack } from './inference_pack.js';
import type { Param } from './param.js';

export class PatchConv {
  private readonly own = new Arena();
  private cols: Buf | null = null;
  private N = 0; private H = 0; private W = 0;
  private readonly pack = new InferencePack();

  constructor(readonly weight: Param, readonly bias: Param, readonly inC: number, readonly outC: number, readonly P: number) {}

  outSize(H: number, W: number): [number, number] {
    return [Math.floor(H / this.P), Math.floor(W / this.P)];
  }

  /** x [N, H, W, in] -> y [N, Ho, Wo, out], written to `out` when given. */
  forward(k: Kernels, x: Buf, N: number, H: number, W: number, b: Buffers, out?: Buf): Buf {
    const { P, inC, outC } = this;
    const [Ho, Wo] = this.outSize(H, W);
    const M = N * Ho * Wo;
    const L = inC * P * P;
    const cols = b.cache ? this.own.get(k, 'cols', M * L) : b.shared.get(k, 'patchconv.cols', M * L);
    k.patchify(x, N, H, W, inC, P, cols);
    const y = out ?? (b.cache ? this.own.get(k, 'y', M * outC) : b.shared.get(k, 'patchconv.y', M * outC));
    const packedB = b.cache ? null : this.pack.get(k, this.weight, outC, L, M);
    k.gemm(false, true, M, outC, L, cols, L, this.weight.data, L, y, outC, false, this.bias.data, Act.None, null, packedB ? { packedB } : undefined);
    this.N = N; this.H = H; this.W = W;
    this.cols = b.cache ? cols : null;
    return y;
  }

  /** dy: [N*Ho*Wo, out] -> dx: [N, H, W, in] (shared arena); needInput=false skips dx (the stem). */
  backward(k: Kernels, dy: Buf, shared: Arena, needInput = true): Buf | null {
    if (!this.cols) throw new Error('PatchConv.backward without a cached forward');
    const { N, H, W, P, inC, outC } = this;
    const [Ho, Wo] = this.outSize(H, W);
    const M = N * Ho * Wo;
    const L = inC * P * P;
    k.gemm(true, false, outC, L, M, dy, outC, this.cols, L, this.weight.grad, L, true, null, Act.None, null);
    k.colSum(dy, M, outC, this.bias.grad, true);
    this.cols = null;
    if (!needInput) return null;
    const dcols = shared.get(k, 'patchconv.dcols', M * L);
    k.gemm(false, false, M, L, outC, dy, outC, this.weight.data, L, dcols, L, false, null, Act.None, null);
    const dx = shared.get(k, 'patchconv.dx', N * H * W * inC);
    k.unpatchify(dcols, N, H, W, inC, P, dx);
    return dx;
  }
}
