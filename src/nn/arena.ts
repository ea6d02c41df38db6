/**
 * Reusable float32 buffers by name, so steady-state training and inference allocate nothing
 * (a fresh Float32Array is zero-filled and page-faulted on every use; at 224 px a block's
 * hidden map is tens of megabytes). A buffer's contents are not cleared between uses: every
 * kernel that writes one overwrites it whole.
 *
 * Layers take buffers from their own arena for what the backward pass needs (cached
 * activations live until the next forward) and from a model-wide shared arena for
 * temporaries that die within a layer or a block.
 */
export class Arena {
  private readonly bufs = new Map<string, Float32Array>();

  /** A buffer of exactly n floats under `key`, reused when one of at least n exists. */
  get(key: string, n: number): Float32Array {
    let b = this.bufs.get(key);
    if (!b || b.length < n) {
      b = new Float32Array(n);
      this.bufs.set(key, b);
    }
    return b.length === n ? b : b.subarray(0, n);
  }

  /** Drops every buffer (memory is returned once the garbage collector runs). */
  clear(): void {
    this.bufs.clear();
  }

  /** Bytes held. */
  bytes(): number {
    let n = 0;
    for (const b of this.bufs.values()) n += b.byteLength;
    return n;
  }
}

/** Where a layer's buffers come from in one pass. */
export interface Buffers {
  /** Model-wide temporaries. */
  shared: Arena;
  /** Keep activations for backward (then they come from the layer's own arena). */
  cache: boolean;
}
