/**
 * The FCMAE decoder (official `forward_decoder`): a 1x1 projection of the encoder's final map
 * to `decoderDim`, the mask token at removed sites, `decoderDepth` dense ConvNeXt V2 blocks
 * (per-image GRN) and a 1x1 prediction of p*p*3 values per site. Parameters use the
 * official names under `fcmae.` (`fcmae.proj`, `fcmae.mask_token`, `fcmae.decoder.I.*`,
 * `fcmae.pred`).
 */
import { Act, type Buf, type Kernels } from '../kernels/types.js';
import { Block } from '../model/block.js';
import { Arena } from '../nn/arena.js';
import { Linear } from '../nn/linear.js';
import type { Param } from '../nn/param.js';

/** Our block names -> the official decoder block names. */
const OFFICIAL_BLOCK_NAMES: Record<string, string> = {
  'conv_dw.weight': 'dwconv.weight', 'conv_dw.bias': 'dwconv.bias',
  'norm.weight': 'norm.weight', 'norm.bias': 'norm.bias',
  'mlp.fc1.weight': 'pwconv1.weight', 'mlp.fc1.bias': 'pwconv1.bias',
  'mlp.grn.weight': 'grn.gamma', 'mlp.grn.bias': 'grn.beta',
  'mlp.fc2.weight': 'pwconv2.weight', 'mlp.fc2.bias': 'pwconv2.bias',
};

export class FcmaeDecoder {
  private readonly proj: Linear;
  private readonly maskToken: Param;
  readonly blocks: Block[] = [];
  private readonly pred: Linear;
  private readonly own = new Arena();
  /** 1 at visible sites [N*h*w], on the backend (written once per forward; forward and backward use it). */
  private keep: Buf | null = null;
  /** 1 - keep: 1 at removed sites. */
  private removed: Buf | null = null;
  private shape: [number, number, number] = [0, 0, 0];

  constructor(p: (name: string) => Param, readonly encDim: number, readonly dim: number, depth: number, kernelSize: number,
    readonly outDim: number, readonly shared: Arena) {
    this.proj = new Linear(p('fcmae.proj.weight'), p('fcmae.proj.bias'), encDim, dim);
    this.maskToken = p('fcmae.mask_token');
    for (let b = 0; b < depth; b++) {
      this.blocks.push(new Block((n) => p(`fcmae.decoder.${b}.${OFFICIAL_BLOCK_NAMES[n]}`), dim, kernelSize, 1e-6, 0));
    }
    this.pred = new Linear(p('fcmae.pred.weight'), p('fcmae.pred.bias'), dim, outDim);
  }

  /** e: dense encoder map [N, h, w, encDim]; keep: 1 at visible sites [N*h*w]. Returns pred [N*h*w, outDim]. */
  forward(k: Kernels, e: Buf, keep: Float32Array, N: number, h: number, w: number): Buf {
    const b = { shared: this.shared, cache: true };
    const rows = N * h * w;
    const D = this.dim;
    // The keep and removed columns go to the backend once per batch (two calls each use them).
    const keepB = (this.keep = this.own.get(k, 'keep', rows));
    k.write(keepB, keep);
    const removed = (this.removed = this.own.get(k, 'removed', rows));
    k.write(removed, keep.map((v) => 1 - v));
    this.shape = [N, h, w];
    // x = proj(e) * keep + (1 - keep) * mask_token (official: x * (1 - mask) + mask_token * mask),
    // the token added as an outer product (a GEMM with K = 1).
    const x = this.proj.forward(k, e, rows, b, this.own.get(k, 'mixed', rows * D));
    k.scaleRows(x, rows, D, keepB, x, false);
    k.gemm(false, false, rows, D, 1, removed, 1, this.maskToken.data, D, x, D, true, null, Act.None, null);
    let y = x;
    for (const blk of this.blocks) y = blk.forward(k, y, N, h, w, { ...b, train: false });
    return this.pred.forward(k, y, rows, b);
  }

  /**
   * dpred -> d(encoder map) (dense); accumulates parameter gradients. `live`: the rows of
   * dpred that may be nonzero, ascending (the others must be zero).
   */
  backward(k: Kernels, dpred: Buf, live: Int32Array): Buf {
    const keep = this.keep;
    const removed = this.removed;
    if (!keep || !removed) throw new Error('FcmaeDecoder.backward without a forward');
    const [N, h, w] = this.shape;
    const rows = N * h * w;
    const D = this.dim;
    // The loss leaves zero gradients at visible patches: the prediction layer's backward runs
    // on the rows with a nonzero gradient only.
    const nz = live;
    const dy = this.shared.get(k, 'dec.dy', rows * D);
    let d: Buf;
    if (nz.length === rows) {
      d = this.pred.backward(k, dpred, this.shared, dy)!;
    } else {
      const table = k.indexTable(nz); // three calls take it (two gathers, a scatter)
      d = this.pred.backwardRows(k, dpred, table, this.shared, dy);
      k.freeIndexTable(table);
    }
    for (let i = this.blocks.length - 1; i >= 0; i--) d = this.blocks[i].backward(k, d, this.shared);
    // d mask_token += (1 - keep)^T d; the removed rows do not reach proj.
    k.gemm(true, false, 1, D, rows, removed, 1, d, D, this.maskToken.grad, D, true, null, Act.None, null);
    k.scaleRows(d, rows, D, keep, d, false);
    return this.proj.backward(k, d, this.shared, this.shared.get(k, 'dec.de', rows * this.encDim))!;
  }
}
