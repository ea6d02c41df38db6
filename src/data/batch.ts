/**
 * What training loops consume (platform-neutral): batches of normalised pixels and labels, a
 * source of them per epoch, and the per-sample seed that makes a batch a function of (seed,
 * epoch, index) only. The DataLoader (./loader.ts, Node worker threads) is one source; a page
 * can be another.
 */
import { ConvNextError } from '../errors.js';
import { Rng } from '../rng.js';
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

/**
 * The batches one rank of a data-parallel job takes (see GradientSum): those whose index is
 * `rank` modulo `size`, up to the last whole round of `size` batches (every rank the same
 * count: training), or all of them with `uneven` (evaluation).
 */
export interface Shard {
  rank: number;
  size: number;
  uneven?: boolean;
}

/** The global batch indices an epoch of `nb` batches hands out from `startBatch` on (to one rank with `shard`). */
export function epochBatches(nb: number, startBatch: number, shard?: Shard): number[] {
  if (!Number.isInteger(startBatch) || startBatch < 0 || startBatch > nb) throw new ConvNextError(`start batch ${startBatch} outside [0, ${nb}]`);
  const size = shard?.size ?? 1, rank = shard?.rank ?? 0;
  if (!(Number.isInteger(size) && size >= 1 && Number.isInteger(rank) && rank >= 0 && rank < size)) throw new ConvNextError(`shard: rank ${rank} of ${size}`);
  const end = shard && !shard.uneven ? Math.floor(nb / size) * size : nb;
  const out: number[] = [];
  for (let j = startBatch; j < end; j++) if (j % size === rank) out.push(j);
  return out;
}

/** Batches per epoch, in a fixed order for (seed, epoch), from any batch on (resume). */
export interface BatchSource {
  /** Batches per epoch. */
  readonly length: number;
  /** The batches from `startBatch` on; with `shard`, only one rank's (Batch.batch stays the global index). */
  epoch(epoch: number, startBatch?: number, shard?: Shard): AsyncIterable<Batch>;
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


/** A batch size as every source takes it: a positive integer (a usage error otherwise). */
export function checkBatchSize(B: number): number {
  if (!Number.isInteger(B) || B < 1) throw new ConvNextError(`batch size ${B} must be a positive integer`, 2);
  return B;
}

/** Batches per epoch of `n` samples. */
export function batchCount(n: number, batchSize: number, dropLast: boolean): number {
  return dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
}

/**
 * The sample order of epoch `epoch` over `n` samples: 0..n-1, or a shuffle seeded by (seed,
 * epoch) alone. Every BatchSource uses it, so the same samples give the same batches anywhere.
 */
export function epochOrder(n: number, shuffle: boolean, seed: number, epoch: number): Int32Array {
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  if (shuffle) new Rng(sampleSeed(seed, epoch, 0xffffffff, 0x5f)).shuffle(order);
  return order;
}
