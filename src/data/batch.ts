/**
 * What training loops consume (platform-neutral): batches of normalised pixels and labels, a
 * source of them per epoch, and the per-sample seed that makes a batch a function of (seed,
 * epoch, index) only. The DataLoader (./loader.ts, Node worker threads) is one source; a page
 * can be another.
 */
import type { Tensor } from '../tensor.js';

export interface Batch {
  epoch: number;
  /** Batch number within the epoch. */
  batch: number;
  /** [B, 3, S, S] normalised pixels (NCHW, what `model.forward` takes). */
  pixels: Tensor;
  labels: Int32Array;
  /** Data set indices of the samples. */
  indices: Int32Array;
}

/** Batches per epoch, in a fixed order for (seed, epoch), from any batch on (resume). */
export interface BatchSource {
  /** Batches per epoch. */
  readonly length: number;
  epoch(epoch: number, startBatch?: number): AsyncIterable<Batch>;
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A 32-bit hash of (seed, epoch, index, k): the augmentation seed of one sample. */
export function sampleSeed(seed: number, epoch: number, index: number, k = 0): number {
  let h = fmix32((seed >>> 0) ^ 0x9e3779b9);
  h = fmix32((h ^ Math.imul(epoch >>> 0, 0x27d4eb2f)) + 0x165667b1);
  h = fmix32((h ^ Math.imul(index >>> 0, 0x61c88647)) + 0x7f4a7c15);
  return fmix32(h ^ Math.imul(k >>> 0, 0x2545f491));
}

