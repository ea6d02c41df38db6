/**
 * Data pipeline throughput: decode (sharp) + RandomResizedCrop 224 + flip + normalise of
 * ~500x375 JPEGs, alone and overlapped with a simulated blocking compute step per batch.
 *   node --import tsx scripts/bench-data.ts [images=96] [computeMs=150]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import sharp from 'sharp';
import { openDataset } from '../src/data/dataset.js';
import { DataLoader } from '../src/data/loader.js';
import { Rng } from '../src/rng.js';

const N = Number(process.argv[2] ?? 96);
const computeMs = Number(process.argv[3] ?? 150);
const B = 16;
const root = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'bench-data-'));
try {
  const rng = new Rng(0);
  for (let i = 0; i < N; i++) {
    const dir = nodePath.join(root, `c${i % 4}`);
    fs.mkdirSync(dir, { recursive: true });
    const w = 480 + rng.int(40);
    const h = 360 + rng.int(30);
    const raw = Buffer.alloc(w * h * 3);
    for (let p = 0; p < raw.length; p += 3) {
      const x = (p / 3) % w;
      const y = Math.floor(p / 3 / w);
      raw[p] = (x + i * 7) & 255;
      raw[p + 1] = (y * 2) & 255;
      raw[p + 2] = ((x ^ y) + rng.int(16)) & 255;
    }
    await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toFile(nodePath.join(dir, `${i}.jpg`));
  }
  const ds = openDataset(root, 'train');
  const spec = { kind: 'train' as const, size: 224, scale: [0.2, 1] as [number, number] };
  const busy = (ms: number): void => {
    const end = performance.now() + ms;
    while (performance.now() < end) { /* a blocking compute step */ }
  };
  console.log(`${N} JPEGs ~500x375 -> 224 crops, batch ${B}, ${os.availableParallelism()} cores`);
  for (const compute of [0, computeMs]) {
    for (const [workers, prefetch] of [[0, 0], [0, 2], [1, 2], [2, 2]]) {
      const dl = new DataLoader(ds, { batchSize: B, transform: spec, shuffle: true, seed: 1, workers, prefetch });
      for await (const _ of dl.epoch(0)) { /* warm up the workers */ }
      const t0 = performance.now();
      let waited = 0;
      let t = performance.now();
      for await (const _ of dl.epoch(1)) {
        waited += performance.now() - t;
        busy(compute);
        t = performance.now();
      }
      const total = performance.now() - t0;
      await dl.close();
      console.log(`compute ${String(compute).padStart(3)} ms/batch  workers ${workers} prefetch ${prefetch}: ${(total / 1000).toFixed(2)} s, ${(N / (total / 1000)).toFixed(0)} img/s, waiting for data ${(waited / 1000).toFixed(2)} s`);
    }
  }
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
