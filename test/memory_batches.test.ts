// ImageBatches (the in-memory BatchSource a page feeds the engines) gives the DataLoader's
// batches for the same images: order, augmentation seeds, labels, pixels bit for bit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DataLoader } from '../src/data/loader.js';
import type { Dataset } from '../src/data/dataset.js';
import type { Image } from '../src/data/image.js';
import { ImageBatches } from '../src/data/memory_batches.js';
import { decodeImageBlob } from '../src/data/decode_browser.js';
import type { TransformSpec } from '../src/data/transforms.js';
import { ConvNextError } from '../src/errors.js';
import { bits } from './helpers.js';

function images(n: number): Image[] {
  return Array.from({ length: n }, (_, i) => {
    const w = 40 + (i % 3) * 7;
    const h = 36 + (i % 2) * 9;
    return { width: w, height: h, label: i % 3, data: Uint8Array.from({ length: w * h * 3 }, (_, k) => (k * 31 + i * 17) & 255) };
  });
}

test('ImageBatches: the DataLoader\'s batches (order, seeds, labels, pixels) for the same images', async () => {
  const imgs = images(11);
  const ds: Dataset = {
    length: imgs.length, classes: ['a', 'b', 'c'], source: 'memory', skipped: [],
    load: async (i) => imgs[i], label: (i) => imgs[i].label, reportSkipped: () => undefined,
    share: () => { throw new Error('not shared'); },
  };
  const transform: TransformSpec = { kind: 'train', size: 32, scale: [0.2, 1], hflip: 0.5, autoAugment: 'rand-m9-mstd0.5-inc1', reprob: 0.25, remode: 'pixel' };
  const loader = new DataLoader(ds, { batchSize: 4, shuffle: true, seed: 7, transform, workers: 0 });
  const mine = new ImageBatches(imgs, { batchSize: 4, shuffle: true, seed: 7, transform });
  assert.equal(mine.length, loader.length);
  for (const epoch of [0, 3]) {
    const want = [];
    for await (const b of loader.epoch(epoch)) want.push(b);
    const got = [];
    for await (const b of mine.epoch(epoch)) got.push(b);
    assert.equal(got.length, want.length);
    for (const [i, b] of got.entries()) {
      assert.deepEqual([...b.indices], [...want[i].indices], `epoch ${epoch} batch ${i} order`);
      assert.deepEqual([...b.labels], [...want[i].labels]);
      assert.deepEqual(b.pixels.shape, want[i].pixels.shape);
      assert.deepEqual(bits(b.pixels.data), bits(want[i].pixels.data), `epoch ${epoch} batch ${i} pixels`);
    }
  }
  await loader.close();
  assert.throws(() => new ImageBatches([], { batchSize: 2, transform }), ConvNextError);
  assert.throws(() => new ImageBatches([{ width: 2, height: 2, label: 0, data: new Uint8Array(5) }], { batchSize: 2, transform }), /5 bytes for 2x2 RGB/);
});

test('decodeImageBlob outside a browser: one clear error', async () => {
  await assert.rejects(decodeImageBlob(new Blob([new Uint8Array(4)]), -1, 'x.png'), /cannot decode image x\.png: this runtime has no createImageBitmap/);
});
