/**
 * Exponential moving average of the weights (timm's ModelEma, as the official fine-tuning
 * uses it): after every optimizer step, ema = decay * ema + (1 - decay) * weights, for every
 * tensor of the state dict. The averaged weights are one buffer per parameter store (nn/store.ts),
 * so an update is one `ema` call per run of neighbouring parameters (one for a whole model).
 */
import { type Buf, type Kernels, requireBackend, type TensorMemory } from '../kernels/types.js';
import type { Param, WriteCount } from '../nn/param.js';
import { paramRuns, type ParamStore } from '../nn/store.js';

/** A run of parameters: their values and their averages. */
interface Span {
  w: Buf;
  e: Buf;
  n: number;
  memory: TensorMemory;
  /** The run's write count (a swap writes the weights). */
  writes: WriteCount;
}

export class ModelEma {
  /** The averaged weights by name, in the parameters' memory (views of the per-store buffers). */
  readonly shadow = new Map<string, Buf>();
  private readonly k: Kernels;
  private readonly spans: Span[];
  private readonly own: { p: Param; b: Buf }[] = [];
  /** The per-store averaged weights (`shadow`'s entries for a store's Params are views of them). */
  readonly stores = new Map<ParamStore, Buf>();

  /** `kernels`: the parameters' backend (the model's). */
  constructor(readonly params: readonly Param[], readonly decay: number, kernels: Kernels) {
    this.k = requireBackend('ModelEma', kernels);
    this.spans = paramRuns(params).map(({ store, run }) => {
      if (!store) {
        const p = run.params[0];
        const e = p.memory.alloc(p.size);
        this.own.push({ p, b: e });
        this.shadow.set(p.name, e);
        return { w: p.data, e, n: p.size, memory: p.memory, writes: p.writes };
      }
      let all = this.stores.get(store);
      if (!all) this.stores.set(store, (all = store.alloc()));
      for (const p of run.params) this.shadow.set(p.name, store.view(all, p));
      const { offset: o, n } = run;
      return { w: store.data.subarray(o, o + n), e: all.subarray(o, o + n), n, memory: store.memory, writes: store.writes };
    });
    for (const s of this.spans) this.k.copy(s.w, s.e);
  }

  update(): void {
    for (const s of this.spans) this.k.ema(s.e, s.w, s.n, this.decay);
  }

  /** Swaps the EMA weights into the parameters (call again to swap back). */
  swap(): void {
    for (const s of this.spans) {
      const tmp = s.memory.alloc(s.n);
      this.k.copy(s.w, tmp);
      this.k.copy(s.e, s.w);
      this.k.copy(tmp, s.e);
      s.memory.free(tmp);
      s.writes.n++;
    }
  }

  /** Returns the averages of Params without a store to their memory (a store's are freed with it). */
  dispose(): void {
    for (const { p, b } of this.own) p.memory.free(b);
    this.own.length = 0;
    this.shadow.clear();
  }
}
