/**
 * A layer's weight packed for its backend's GEMM at inference (Kernels.packWeights), made on
 * the first forward that wants it and remade when the weight changes (Param.version, or a new
 * buffer) or the backend or its instruction set does. Training forwards never use it: their
 * weights change every step, and their batches are large enough that packing per call is cheap.
 *
 * Only GEMMs of few rows pack (batch-1 serving: atto re-packed ~15 MB of weights per image,
 * about a tenth of its forward): the pack is a copy beside the weight, so large batches, where
 * it would buy little, do not pay its memory.
 */
import type { Kernels, PackedWeights } from '../kernels/types.js';
import type { Param } from './param.js';

export class InferencePack {
  /** Rows (M) up to which a forward GEMM uses a pack. */
  static readonly MAX_ROWS = 1024;
  private key: { k: Kernels; isa: string; data: unknown; version: number } | null = null;
  private packed: PackedWeights | null = null;

  /** The pack of `weight` ([N, K], the GEMM's transposed B) for an M-row GEMM, or null (none wanted or none on this backend). */
  get(k: Kernels, weight: Param, N: number, K: number, M: number): PackedWeights | null {
    if (!k.packWeights || M > InferencePack.MAX_ROWS) return null;
    const key = this.key;
    if (key && this.packed && key.k === k && key.isa === k.isa && key.data === weight.data && key.version === weight.version) return this.packed;
    this.packed = k.packWeights(weight.data, K, true, N, K);
    this.key = { k, isa: k.isa, data: weight.data, version: weight.version };
    return this.packed;
  }

  /** Drops the pack (its memory goes with the next garbage collection). */
  clear(): void {
    this.key = null;
    this.packed = null;
  }
}
