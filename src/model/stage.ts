/**
 * One stage of the backbone (timm's ConvNeXtStage): for stages 1-3 the downsampling layer,
 * LayerNorm then a 2x2 stride-2 convolution (`stages.S.downsample.0` / `.1`), then the stage's
 * blocks (`stages.S.blocks.B`), channels-last.
 */
import type { Buf, Kernels } from '../kernels/types.js';
import type { Arena, Buffers } from '../nn/arena.js';
import { LayerNorm } from '../nn/layernorm.js';
import type { Param } from '../nn/param.js';
import { PatchConv } from '../nn/patchconv.js';
import type { Rng } from '../rng.js';
import { Block, type BlockForwardOptions, type HiddenCapture } from './block.js';
import type { ConvNeXtV2Config } from './config.js';
import { block, downsample } from './names.js';

export interface StageForwardOptions extends Buffers {
  train: boolean;
  rng?: Rng;
  /** The capture for block b, if any (analysis). */
  capture?: (b: number) => HiddenCapture | undefined;
}

export class Stage {
  /** LayerNorm + 2x2 stride-2 conv (null in stage 0, whose input is the stem's). */
  readonly downsample: { norm: LayerNorm; conv: PatchConv } | null;
  readonly blocks: Block[] = [];
  /** Channels of the stage's map. */
  readonly C: number;

  /** `p`: the model's parameters by name; `dropPaths`: each block's drop-path rate. */
  constructor(p: (name: string) => Param, readonly s: number, cfg: ConvNeXtV2Config, dropPaths: readonly number[]) {
    const { dims, layerNormEps: eps } = cfg;
    this.C = dims[s];
    if (s === 0) {
      this.downsample = null;
    } else {
      const d = downsample(s);
      this.downsample = {
        norm: new LayerNorm(p(`${d.norm}.weight`), p(`${d.norm}.bias`), dims[s - 1], eps),
        conv: new PatchConv(p(`${d.conv}.weight`), p(`${d.conv}.bias`), dims[s - 1], dims[s], 2),
      };
    }
    for (let b = 0; b < cfg.depths[s]; b++) {
      this.blocks.push(new Block((n) => p(`${block(s, b)}.${n}`), dims[s], cfg.kernelSize, eps, dropPaths[b], cfg.block));
    }
  }

  /** The stage's map size for an input map of h x w (the downsampling halves it). */
  outSize(h: number, w: number): [number, number] {
    return this.downsample ? this.downsample.conv.outSize(h, w) : [h, w];
  }

  /** y: [N, h, w, C_in] -> [N, h', w', C]; inference ping-pongs the blocks between two shared buffers. */
  forward(k: Kernels, y: Buf, N: number, h: number, w: number, opts: StageForwardOptions): Buf {
    if (this.downsample) {
      y = this.downsample.norm.forward(k, y, N * h * w, opts, 'downsample.ln');
      y = this.downsample.conv.forward(k, y, N, h, w, opts);
      [h, w] = this.downsample.conv.outSize(h, w);
    }
    const n = N * h * w * this.C;
    for (let b = 0; b < this.blocks.length; b++) {
      const out = opts.cache ? undefined : opts.shared.get(k, `block.out${b % 2}`, n);
      const blockOpts: BlockForwardOptions = { shared: opts.shared, cache: opts.cache, train: opts.train, rng: opts.rng, out, capture: opts.capture?.(b) };
      y = this.blocks[b].forward(k, y, N, h, w, blockOpts);
    }
    return y;
  }

  /** d/d(output) -> d/d(input); accumulates the parameters' gradients. `dxKey`: the arena key of the input gradient. */
  backward(k: Kernels, d: Buf, shared: Arena, dxKey: string): Buf {
    for (let b = this.blocks.length - 1; b >= 0; b--) d = this.blocks[b].backward(k, d, shared);
    if (this.downsample) {
      d = this.downsample.conv.backward(k, d, shared)!;
      d = this.downsample.norm.backward(k, d, shared, dxKey);
    }
    return d;
  }

  /** Returns the blocks' own copies (the folded LayerScale weights) to the backend's memory. */
  dispose(): void {
    for (const b of this.blocks) b.mlp.dispose();
  }
}
