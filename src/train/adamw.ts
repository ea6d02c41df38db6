/**
 * AdamW (Loshchilov & Hutter) with PyTorch's semantics: decoupled weight decay applied as
 * p *= 1 - lr * wd before the Adam update, bias-corrected moments. Parameters are split into
 * groups (weight decay on or off, an lr scale for layer-wise decay); the update itself runs in
 * the `adamw` kernel.
 */
import type { Buf, Kernels } from '../kernels/types.js';
import type { Param } from '../nn/param.js';

export interface AdamWOptions {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

export interface ParamGroup {
  params: Param[];
  weightDecay: number;
  /** Multiplies the scheduled lr (layer-wise lr decay); 1 by default. */
  lrScale: number;
}

export const ADAMW_DEFAULTS: AdamWOptions = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.05 };

/** Two groups as the official optimizer factory: decay, and no decay for `param.noDecay`. */
export function defaultGroups(params: Param[], weightDecay: number): ParamGroup[] {
  return [
    { params: params.filter((p) => !p.noDecay), weightDecay, lrScale: 1 },
    { params: params.filter((p) => p.noDecay), weightDecay: 0, lrScale: 1 },
  ].filter((g) => g.params.length > 0);
}

export class AdamW {
  readonly opts: AdamWOptions;
  readonly groups: ParamGroup[];
  /** Number of updates taken. */
  step = 0;
  readonly m = new Map<Param, Buf>();
  readonly v = new Map<Param, Buf>();

  constructor(groups: ParamGroup[] | Param[], opts: Partial<AdamWOptions> = {}) {
    this.opts = { ...ADAMW_DEFAULTS, ...opts };
    this.groups = groups.length > 0 && !('params' in groups[0])
      ? defaultGroups(groups as Param[], this.opts.weightDecay)
      : (groups as ParamGroup[]);
    for (const g of this.groups) {
      for (const p of g.params) {
        this.m.set(p, p.memory.alloc(p.size));
        this.v.set(p, p.memory.alloc(p.size));
      }
    }
  }

  /** Returns the moments to the parameters' memory (a no-op for host arrays). */
  dispose(): void {
    for (const g of this.groups) {
      for (const p of g.params) {
        p.memory.free(this.m.get(p)!);
        p.memory.free(this.v.get(p)!);
      }
    }
    this.m.clear();
    this.v.clear();
  }

  /** One update with learning rate `lr` (default: opts.lr) from the gradients in Param.grad. */
  update(k: Kernels, lr = this.opts.lr): void {
    this.step++;
    const [b1, b2] = this.opts.betas;
    const bc1 = 1 - b1 ** this.step;
    const bc2 = 1 - b2 ** this.step;
    for (const g of this.groups) {
      const glr = lr * g.lrScale;
      for (const p of g.params) {
        k.adamw(p.data, p.grad, this.m.get(p)!, this.v.get(p)!, p.size, glr, b1, b2, this.opts.eps, g.weightDecay, bc1, bc2);
        p.touch();
      }
    }
  }
}
