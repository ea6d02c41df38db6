/**
 * AdamW (Loshchilov & Hutter) with PyTorch's semantics: decoupled weight decay applied as
 * p *= 1 - lr * wd before the Adam update, bias-corrected moments. Parameters are split into
 * groups (weight decay on or off, an lr scale for layer-wise decay); the update itself runs in
 * the `adamw` kernel, once per run of a group's neighbouring parameters in their flat store
 * (nn/store.ts: the moments are one buffer per store too), each element as alone.
 */
import type { Buf, Kernels } from '../kernels/types.js';
import type { Param, WriteCount } from '../nn/param.js';
import { paramRuns, type ParamStore } from '../nn/store.js';

/** One adamw call: a run of neighbouring parameters of a store (or one Param of its own) and its moments. */
interface Span {
  p: Buf;
  g: Buf;
  m: Buf;
  v: Buf;
  n: number;
  /** The run's write count (its store's, or its Param's own): one per update. */
  writes: WriteCount;
}

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
  /** Each parameter's moments (views of the per-store buffers). */
  readonly m = new Map<Param, Buf>();
  readonly v = new Map<Param, Buf>();
  /** The per-store moment buffers (the Params' moments are views of them). */
  readonly storeMoments = new Map<ParamStore, { m: Buf; v: Buf }>();
  /** Per group, the calls an update makes. */
  private readonly spans: Span[][];

  constructor(groups: ParamGroup[] | Param[], opts: Partial<AdamWOptions> = {}) {
    this.opts = { ...ADAMW_DEFAULTS, ...opts };
    this.groups = groups.length > 0 && !('params' in groups[0])
      ? defaultGroups(groups as Param[], this.opts.weightDecay)
      : (groups as ParamGroup[]);
    this.spans = this.groups.map((g) => paramRuns(g.params).map(({ store, run }) => {
      if (!store) {
        const p = run.params[0];
        const m = p.memory.alloc(p.size), v = p.memory.alloc(p.size);
        this.m.set(p, m);
        this.v.set(p, v);
        return { p: p.data, g: p.grad, m, v, n: p.size, writes: p.writes };
      }
      let mv = this.storeMoments.get(store);
      if (!mv) this.storeMoments.set(store, (mv = { m: store.alloc(), v: store.alloc() }));
      for (const p of run.params) {
        this.m.set(p, store.view(mv.m, p));
        this.v.set(p, store.view(mv.v, p));
      }
      const { offset: o, n } = run;
      return { p: store.data.subarray(o, o + n), g: store.grad.subarray(o, o + n), m: mv.m.subarray(o, o + n), v: mv.v.subarray(o, o + n), n, writes: store.writes };
    }));
  }

  /** adamw calls per update (one per run of neighbouring parameters of a group). */
  get calls(): number {
    return this.spans.reduce((a, s) => a + s.length, 0);
  }

  /** Returns the moments of Params without a store to their memory (a store's are freed with it). */
  dispose(): void {
    for (const [p, m] of this.m) if (!p.store) p.memory.free(m);
    for (const [p, v] of this.v) if (!p.store) p.memory.free(v);
    this.m.clear();
    this.v.clear();
  }

  /** One update with learning rate `lr` (default: opts.lr) from the gradients in Param.grad. */
  update(k: Kernels, lr = this.opts.lr): void {
    this.step++;
    const [b1, b2] = this.opts.betas;
    const bc1 = 1 - b1 ** this.step;
    const bc2 = 1 - b2 ** this.step;
    this.groups.forEach((g, i) => {
      const glr = lr * g.lrScale;
      for (const s of this.spans[i]) {
        k.adamw(s.p, s.g, s.m, s.v, s.n, glr, b1, b2, this.opts.eps, g.weightDecay, bc1, bc2);
        s.writes.n++;
      }
    });
  }
}
