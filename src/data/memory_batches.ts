/**
 * A {@link BatchSource} over decoded images held in memory (platform-neutral): what a page or a
 * Worker feeds the training engines. The sample order of an epoch and every sample's
 * augmentation seed are those of the DataLoader (./loader.ts) with `workers: 0`, so the same
 * images in the same order give the same batches in Node and in a browser.
 */
import { ConvNextError } from '../errors.js';
import { Rng } from '../rng.js';
import { type Batch, type BatchSource, batchCount, checkBatchSize, epochBatches, epochOrder, sampleSeed, type Shard } from './batch.js';
import type { Image } from './image.js';
import { compileTransform, type SampleTransform, type TransformSpec } from './transforms.js';

export interface ImageBatchesOptions {
  batchSize: number;
  /** Per-sample transform (e.g. `{ kind: 'train', size: 224, autoAugment: 'rand-m9-mstd0.5-inc1' }`). */
  transform: TransformSpec;
  /** A new seeded order every epoch (default false: the images' order). */
  shuffle?: boolean;
  seed?: number;
  /** Drop the last incomplete batch (default false). */
  dropLast?: boolean;
}

export class ImageBatches implements BatchSource {
  readonly batchSize: number;
  readonly size: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  private readonly apply: SampleTransform;

  /** `images[i].label` is sample i's class index. */
  constructor(readonly images: readonly Image[], opts: ImageBatchesOptions) {
    const B = checkBatchSize(opts.batchSize);
    if (images.length === 0) throw new ConvNextError('no images to make batches of');
    for (const [i, img] of images.entries()) {
      if (!(img.width >= 1 && img.height >= 1 && img.data.length === img.width * img.height * 3)) {
        throw new ConvNextError(`image ${img.path ?? i}: ${img.data.length} bytes for ${img.width}x${img.height} RGB`);
      }
    }
    this.batchSize = B;
    this.shuffle = opts.shuffle ?? false;
    this.seed = (opts.seed ?? 0) >>> 0;
    this.dropLast = opts.dropLast ?? false;
    this.apply = compileTransform(opts.transform);
    this.size = opts.transform.size;
  }

  get length(): number {
    return batchCount(this.images.length, this.batchSize, this.dropLast);
  }

  /** The sample order of epoch `epoch` (the DataLoader's). */
  order(epoch: number): Int32Array {
    return epochOrder(this.images.length, this.shuffle, this.seed, epoch);
  }

  async *epoch(epoch: number, startBatch = 0, shard?: Shard): AsyncGenerator<Batch, void, undefined> {
    const list = epochBatches(this.length, startBatch, shard);
    const order = this.order(epoch);
    const S = this.size;
    const L = 3 * S * S;
    for (const b of list) {
      const start = b * this.batchSize;
      const n = Math.min(start + this.batchSize, order.length) - start;
      const pixels = new Float32Array(n * L);
      const labels = new Int32Array(n);
      const indices = new Int32Array(n);
      for (let s = 0; s < n; s++) {
        const idx = order[start + s];
        const img = this.images[idx];
        this.apply(img, new Rng(sampleSeed(this.seed, epoch, idx, 0)), pixels, s * L);
        labels[s] = img.label;
        indices[s] = idx;
      }
      yield { epoch, batch: b, pixels: { shape: [n, 3, S, S], data: pixels }, labels, indices };
    }
  }
}
