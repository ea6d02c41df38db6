/**
 * The flat parameter store: a model's parameters and their gradients in one buffer each on the
 * model's backend, every Param's `data` and `grad` a named view of them. Whatever keeps one
 * float per parameter (AdamW's two moments, the EMA weights) allocates a buffer of the store's
 * size and takes the same views, so the elementwise updates (AdamW, EMA, gradient clipping,
 * zeroing, the data-parallel gradient sum) run over runs of neighbouring parameters, one call
 * per run, instead of one call per tensor.
 *
 * Layout: parameters with weight decay first, then those without, each in the model's order,
 * every view starting at a multiple of ALIGN floats (256 bytes: SIMD loads, WebGPU offsets);
 * the padding between views is zero and stays zero under every update. So the optimizer's usual
 * groups (decay / no decay, per layer for layer-wise lr decay) are a few runs each. The layout is
 * the store's own business: checkpoints go by name, and every kernel computes each element
 * alone, so a run's results are bit for bit those of the per-tensor calls.
 */
import type { Buf, Kernels, TensorMemory } from '../kernels/types.js';
import { numel } from '../tensor.js';
import { Param, type WriteCount } from './param.js';

/** Floats a view's start is aligned to. */
const ALIGN = 64;

export interface StoreSpec {
  name: string;
  shape: number[];
  noDecay: boolean;
}

/** A stretch [offset, offset + n) of the store covering neighbouring parameters (and the padding between them). */
export interface Run {
  offset: number;
  n: number;
  params: Param[];
}

export class ParamStore {
  /** In the order of the specs (the model's order). */
  readonly params: Param[];
  /** Floats per buffer, padding included. */
  readonly size: number;
  readonly data: Buf;
  readonly grad: Buf;
  private readonly offset = new Map<Param, number>();
  /** Position of each parameter in the layout. */
  private readonly slot = new Map<Param, number>();
  private readonly owned: Buf[] = [];
  /** The writes to `data`, every Param's version (a kernel that writes a run of it counts one). */
  readonly writes: WriteCount = { n: 0 };

  constructor(readonly memory: TensorMemory, specs: readonly StoreSpec[]) {
    const layout = [...specs.filter((s) => !s.noDecay), ...specs.filter((s) => s.noDecay)];
    const at = new Map<StoreSpec, number>();
    let n = 0;
    for (const s of layout) {
      at.set(s, n);
      n += Math.ceil(numel(s.shape) / ALIGN) * ALIGN;
    }
    this.size = Math.max(n, ALIGN);
    this.data = this.alloc();
    this.grad = this.alloc();
    const slots = new Map(layout.map((s, i) => [s, i]));
    this.params = specs.map((s) => {
      const o = at.get(s)!;
      const len = numel(s.shape);
      const p = new Param(s.name, s.shape, s.noDecay, memory, { data: this.data.subarray(o, o + len), grad: this.grad.subarray(o, o + len), store: this, writes: this.writes });
      this.offset.set(p, o);
      this.slot.set(p, slots.get(s)!);
      return p;
    });
  }

  /** A zeroed buffer of the store's size (moments, EMA weights), freed with the store. */
  alloc(): Buf {
    const b = this.memory.alloc(this.size);
    this.owned.push(b);
    return b;
  }

  /** `p`'s view of a buffer of the store's size. */
  view(buf: Buf, p: Param): Buf {
    const o = this.offset.get(p);
    if (o === undefined) throw new Error(`internal: ${p.name} is not in this store`);
    return buf.subarray(o, o + p.size);
  }

  /** The maximal runs of neighbouring parameters in the layout that `params` (all in this store) cover, in layout order. */
  runs(params: readonly Param[]): Run[] {
    const sorted = [...params].sort((a, b) => this.slot.get(a)! - this.slot.get(b)!);
    const out: Run[] = [];
    let last = -2;
    for (const p of sorted) {
      const o = this.offset.get(p)!;
      const s = this.slot.get(p)!;
      const cur = out[out.length - 1];
      if (cur && s === last + 1) {
        cur.n = o + p.size - cur.offset;
        cur.params.push(p);
      } else {
        out.push({ offset: o, n: p.size, params: [p] });
      }
      last = s;
    }
    return out;
  }

  /** Returns every buffer to the backend's memory; the store's Params are unusable after. */
  dispose(): void {
    for (const b of this.owned) this.memory.free(b);
    this.owned.length = 0;
    for (const p of this.params) p.detach();
  }
}

/**
 * Host copies of each Param's part of a buffer of its store's size (its values, a moment, its
 * EMA weights): `ofStore` gives the store's buffer, read once per store; `own` a Param's own
 * buffer when it has no store (or the store has none), read alone.
 */
export async function readPerParam(k: Kernels, params: readonly Param[], ofStore: (s: ParamStore) => Buf | undefined,
  own: (p: Param) => Buf): Promise<Map<Param, Float32Array>> {
  const whole = new Map<ParamStore, Float32Array>();
  const out = new Map<Param, Float32Array>();
  for (const p of params) {
    const buf = p.store ? ofStore(p.store) : undefined;
    if (!p.store || !buf) {
      out.set(p, await k.read(own(p)));
      continue;
    }
    let all = whole.get(p.store);
    if (!all) whole.set(p.store, (all = await k.read(buf)));
    out.set(p, p.store.view(all, p) as Float32Array);
  }
  return out;
}

/**
 * The runs of `params` (one or more stores, or Params of their own): one per stretch of
 * neighbours in a store, one per Param that has no store. `view(p, run)` gives the part of a
 * per-store buffer a run covers.
 */
export function paramRuns(params: readonly Param[]): { store: ParamStore | null; run: Run }[] {
  const byStore = new Map<ParamStore, Param[]>();
  const out: { store: ParamStore | null; run: Run }[] = [];
  for (const p of params) {
    if (p.store) {
      const l = byStore.get(p.store) ?? [];
      l.push(p);
      byStore.set(p.store, l);
    } else {
      out.push({ store: null, run: { offset: 0, n: p.size, params: [p] } });
    }
  }
  for (const [store, ps] of byStore) for (const run of store.runs(ps)) out.push({ store, run });
  return out;
}
