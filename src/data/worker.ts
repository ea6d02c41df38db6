/**
 * A data loader worker thread: rebuilds the data set from its shared description, then
 * answers `{ id, index, seed }` with the transformed sample (its buffer transferred), or
 * with the path of an unreadable image. See loader.ts.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Rng } from '../rng.js';
import { datasetFromShared } from './dataset.js';
import { CorruptImageError } from './image.js';
import type { WorkerInit } from './loader.js';
import { compileTransform } from './transforms.js';

const init = workerData as WorkerInit;
// Warnings are the main thread's job (it reports each unreadable path once).
const dataset = datasetFromShared(init.dataset, () => undefined);
const apply = compileTransform(init.transform);
const len = 3 * init.transform.size * init.transform.size;
const port = parentPort;
if (!port) throw new Error('worker.ts runs as a worker thread');

port.on('message', (m: { id: number; index: number; seed: number }) => {
  dataset.load(m.index).then(
    (img) => {
      try {
        const data = new Float32Array(len);
        apply(img, new Rng(m.seed), data, 0);
        port.postMessage({ id: m.id, ok: true, label: img.label, data }, [data.buffer]);
      } catch (err) {
        port.postMessage({ id: m.id, ok: false, corrupt: false, error: err instanceof Error ? err.message : String(err) });
      }
    },
    (err: unknown) => {
      if (err instanceof CorruptImageError) port.postMessage({ id: m.id, ok: false, corrupt: true, path: err.path, reason: err.reason });
      else port.postMessage({ id: m.id, ok: false, corrupt: false, error: err instanceof Error ? err.message : String(err) });
    },
  );
});
