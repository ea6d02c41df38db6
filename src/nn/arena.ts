/**
 * Reusable float32 buffers by name, so steady-state training and inference allocate nothing
 * (a fresh Float32Array is zero-filled and page-faulted on every use; at 224 px a block's
 * hidden map is tens of megabytes). A buffer's contents are not cleared between uses: every
 * kernel that writes one overwrites it whole.
 *
 * Layers take buffers from their own arena for what the backward pass needs (cached
 * activations live until the next forward) and from a model-wide shared arena for
 * temporaries that die within a layer or a block. Buffers come from the memory of the kernels
 * they are asked for (wasm linear memory for the WebAssembly backend, see TensorMemory).
 */
import { type Buf, type Idx, type Kernels, memoryOf, type TensorMemory } from '../kernels/types.js';

interface Entry {
  buf: Buf;
  memory: TensorMemory;
}

export class Arena {
  private readonly bufs = new Map<string, Entry>();
  private readonly tables = new Map<string, { t: Idx; k: Kernels }>();
  /** Buffers outgrown (or of other kernels): views of them may still be read in this pass, so they are returned at clear(). */
  private readonly retired: Entry[] = [];

  /** A buffer of exactly n floats under `key` in the memory of `k`, reused when one of at least n exists there. */
  get(k: Kernels, key: string, n: number): Buf {
    const memory = memoryOf(k);
    let e = this.bufs.get(key);
    if (!e || e.buf.length < n || e.memory !== memory) {
      if (e) this.retired.push(e);
      e = { buf: memory.alloc(n), memory };
      this.bufs.set(key, e);
    }
    return e.buf.length === n ? e.buf : e.buf.subarray(0, n);
  }

  /**
   * The index table under `key` on `k` (Kernels.indexTable of `make()`), made once: the key
   * must name its contents (GRN's per-image offsets of N images of HW rows: `grn.${N}x${HW}`).
   * Host backends get the array itself.
   */
  indices(k: Kernels, key: string, make: () => Int32Array): Idx {
    const e = this.tables.get(key);
    if (e && e.k === k) return e.t;
    if (e) e.k.freeIndexTable(e.t);
    const t = k.indexTable(make());
    this.tables.set(key, { t, k });
    return t;
  }

  /** Drops every buffer and table: host memory is returned once the garbage collector runs, a backend's at once. */
  clear(): void {
    for (const e of [...this.bufs.values(), ...this.retired]) e.memory.free(e.buf);
    for (const e of this.tables.values()) e.k.freeIndexTable(e.t);
    this.bufs.clear();
    this.tables.clear();
    this.retired.length = 0;
  }

  /** Bytes held. */
  bytes(): number {
    let n = 0;
    for (const e of this.bufs.values()) n += 4 * e.buf.length;
    for (const e of this.retired) n += 4 * e.buf.length;
    return n;
  }
}

/**
 * Clears every Arena reachable through the fields of `root` (a model: its layers hold theirs
 * privately), so a backend's memory is returned at once rather than never (wasm memory is not
 * garbage-collected).
 */
export function clearArenas(root: object): void {
  const seen = new Set<object>();
  const visit = (v: unknown): void => {
    if (typeof v !== 'object' || v === null || seen.has(v) || ArrayBuffer.isView(v)) return;
    seen.add(v);
    if (v instanceof Arena) return v.clear();
    if (v instanceof Map) return v.forEach((x) => visit(x));
    for (const x of Object.values(v)) visit(x);
  };
  visit(root);
}

/** Where a layer's buffers come from in one pass. */
export interface Buffers {
  /** Model-wide temporaries. */
  shared: Arena;
  /** Keep activations for backward (then they come from the layer's own arena). */
  cache: boolean;
}
