/**
 * DataLoader: batches of transformed samples, decoded and transformed ahead of the caller.
 *
 * Determinism: the order of epoch e is a seeded permutation f(seed, e) (or the identity),
 * batch b holds positions [b * B, (b + 1) * B) of it, and sample i of epoch e is augmented
 * with `new Rng(sampleSeed(seed, e, i))`. A batch is therefore a function of (seed, e, b)
 * alone: the same whatever the prefetch depth or worker count, and a run resumed at
 * (epoch, batch) sees exactly the data an uninterrupted run would have.
 *
 * Unreadable images: reported once per path (stderr, and `skipped`), never counted as a
 * sample. With `fill` (the default, for training) a corrupt sample's slot is taken by the next
 * readable sample after the batch's range in the epoch order (wrapping around), in slot order,
 * so batch shapes stay fixed and batch contents stay a function of (seed, e, b); the filler
 * also appears in its own batch (one duplicate per corrupt file, augmented differently). With
 * `fill: false` (evaluation) the batch just comes out smaller.
 *
 * Overlap: with `workers` > 0 a pool of worker threads loads, decodes and transforms samples
 * (each rebuilt from `Dataset.share()`: pixel arrays are shared memory, folders are file
 * lists), so up to `prefetch` batches are prepared while the caller computes, even when its
 * compute blocks the main thread. With `workers: 0` everything runs on the calling thread
 * (sharp still decodes on libuv's threads) and a batch is prepared when it is requested.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { ConvNextError } from '../errors.js';
import { Rng } from '../rng.js';
export { type Batch, type BatchSource, sampleSeed } from './batch.js';
import type { Batch, BatchSource, Shard } from './batch.js';
import { batchCount, checkBatchSize, epochBatches, epochOrder, sampleSeed } from './batch.js';
import type { Dataset, SharedDataset } from './dataset.js';
import { CorruptImageError, loadSharp, type Image } from './image.js';
import { compileTransform, type SampleTransform, type TransformSpec } from './transforms.js';

/** A transform given as a function (runs on the calling thread only: `workers: 0`). */
export interface CustomTransform {
  kind: 'custom';
  /** Output side: the function writes 3 * size * size floats. */
  size: number;
  apply: SampleTransform;
}

export interface DataLoaderOptions {
  batchSize: number;
  transform: TransformSpec | CustomTransform;
  /** A new seeded permutation every epoch (default false: data set order). */
  shuffle?: boolean;
  /** Seed of the order and of every sample's augmentation (default 0; 32 bits used). */
  seed?: number;
  /** Drop the last incomplete batch (default false). */
  dropLast?: boolean;
  /** Batches prepared ahead of the one being consumed (default 2). */
  prefetch?: number;
  /** Worker threads ('auto': cores - 1, at most 4; 0: the calling thread). Default 'auto'. */
  workers?: number | 'auto';
  /** Replace corrupt samples to keep batch shapes fixed (default true). */
  fill?: boolean;
  /** An unreadable image is an error that ends the epoch, not a skipped sample (default false; the CLI's --strict-data). */
  strict?: boolean;
}


type SampleResult = { ok: true; label: number } | { ok: false; path: string; reason: string };

interface Job {
  resolve: (r: { ok: true; label: number; data: Float32Array } | { ok: false; path: string; reason: string }) => void;
  reject: (e: Error) => void;
  worker: number;
}

type WorkerReply =
  | { id: number; ok: true; label: number; data: Float32Array }
  | { id: number; ok: false; corrupt: true; path: string; reason: string }
  | { id: number; ok: false; corrupt: false; error: string };

export interface WorkerInit {
  dataset: SharedDataset;
  transform: TransformSpec;
}

function usesFiles(s: SharedDataset): boolean {
  return s.kind === 'folder' || (s.kind === 'subset' && usesFiles(s.base));
}

/** Worker threads that load + transform single samples. */
class WorkerPool {
  private readonly workers: Worker[] = [];
  private readonly inflight: number[] = [];
  private readonly jobs = new Map<number, Job>();
  private nextId = 1;
  private failure: Error | null = null;

  constructor(count: number, init: WorkerInit) {
    const here = import.meta.url;
    const fromSource = here.endsWith('.ts');
    const url = new URL(fromSource ? './worker.ts' : './worker.js', here);
    // Run from TypeScript sources (tests, via tsx), a worker must register tsx itself: Node 20
    // does not apply the parent's `--import tsx` hooks to worker threads.
    const tsxApi = fromSource ? import.meta.resolve('tsx/esm/api') : '';
    const boot = `import(${JSON.stringify(tsxApi)}).then((api) => { api.register(); return import(${JSON.stringify(url.href)}); })`;
    for (let w = 0; w < count; w++) {
      const worker = fromSource ? new Worker(boot, { eval: true, workerData: init }) : new Worker(url, { workerData: init });
      worker.unref();
      worker.on('message', (m: WorkerReply) => this.onMessage(w, m));
      worker.on('error', (err) => this.fail(new ConvNextError(`data worker failed: ${err.message}`)));
      worker.on('exit', (code) => {
        if (code !== 0 && !this.failure) this.fail(new ConvNextError(`data worker exited with code ${code}`));
      });
      this.workers.push(worker);
      this.inflight.push(0);
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const [id, job] of this.jobs) {
      this.jobs.delete(id);
      job.reject(err);
    }
  }

  private onMessage(w: number, m: WorkerReply): void {
    const job = this.jobs.get(m.id);
    if (!job) return;
    this.jobs.delete(m.id);
    if (--this.inflight[w] === 0) this.workers[w].unref();
    if (m.ok) job.resolve({ ok: true, label: m.label, data: m.data });
    else if (m.corrupt) job.resolve({ ok: false, path: m.path, reason: m.reason });
    else job.reject(new ConvNextError(m.error));
  }

  run(index: number, seed: number): Promise<{ ok: true; label: number; data: Float32Array } | { ok: false; path: string; reason: string }> {
    if (this.failure) return Promise.reject(this.failure);
    let w = 0;
    for (let i = 1; i < this.workers.length; i++) if (this.inflight[i] < this.inflight[w]) w = i;
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.jobs.set(id, { resolve, reject, worker: w });
      if (this.inflight[w]++ === 0) this.workers[w].ref();
      this.workers[w].postMessage({ id, index, seed });
    });
  }

  async close(): Promise<void> {
    // Pending jobs are rejected; the workers are ref'd while terminating, or an unref'd
    // worker's exit would not keep the event loop alive and `close` would never settle.
    this.fail(new ConvNextError('data loader closed'));
    for (const w of this.workers) w.ref();
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

export class DataLoader implements BatchSource {
  readonly batchSize: number;
  readonly size: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly prefetch: number;
  readonly workers: number;
  readonly fill: boolean;
  readonly strict: boolean;
  private readonly apply: SampleTransform;
  private readonly sampleLen: number;
  private pool: WorkerPool | null = null;
  private poolReady: Promise<void> | null = null;
  private readonly spec: TransformSpec | null;
  /** Data set indices known to be unreadable (not decoded again). */
  private readonly corrupt = new Set<number>();

  constructor(readonly dataset: Dataset, opts: DataLoaderOptions) {
    const B = checkBatchSize(opts.batchSize);
    this.batchSize = B;
    this.shuffle = opts.shuffle ?? false;
    this.seed = (opts.seed ?? 0) >>> 0;
    this.dropLast = opts.dropLast ?? false;
    this.prefetch = Math.max(0, Math.floor(opts.prefetch ?? 2));
    this.fill = opts.fill ?? true;
    this.strict = opts.strict ?? false;
    const t = opts.transform;
    if (t.kind === 'custom') {
      this.spec = null;
      this.apply = t.apply;
      this.size = t.size;
    } else {
      this.spec = t;
      this.apply = compileTransform(t);
      this.size = t.size;
    }
    this.sampleLen = 3 * this.size * this.size;
    const auto = Math.max(1, Math.min(4, availableParallelism() - 1));
    let workers = opts.workers === undefined || opts.workers === 'auto' ? auto : Math.floor(opts.workers);
    if (!(workers >= 0)) throw new ConvNextError(`workers ${String(opts.workers)} must be >= 0 or 'auto'`, 2);
    if (this.spec === null) {
      if (opts.workers !== undefined && opts.workers !== 'auto' && workers > 0) throw new ConvNextError('a custom (function) transform runs on the calling thread only: use workers: 0', 2);
      workers = 0;
    }
    this.workers = workers;
    if (dataset.length === 0) throw new ConvNextError(`${dataset.source}: no samples`);
  }

  /** Number of batches in an epoch. */
  get length(): number {
    return batchCount(this.dataset.length, this.batchSize, this.dropLast);
  }

  /** Paths of unreadable images met so far. */
  get skipped(): string[] {
    return this.dataset.skipped;
  }

  /** The sample order of epoch `epoch`. */
  order(epoch: number): Int32Array {
    return epochOrder(this.dataset.length, this.shuffle, this.seed, epoch);
  }

  private ensurePool(): Promise<void> {
    if (this.workers === 0 || this.spec === null) return Promise.resolve();
    this.poolReady ??= (async () => {
      const shared = this.dataset.share();
      // sharp must be loaded by the main thread before workers load it (glibc unloading).
      if (usesFiles(shared)) await loadSharp();
      this.pool = new WorkerPool(this.workers, { dataset: shared, transform: this.spec as TransformSpec });
    })();
    return this.poolReady;
  }

  /** With `strict`, an unreadable image ends the epoch with one line naming it. */
  private unreadable(path: string, reason: string): void {
    if (this.strict) throw new ConvNextError(`cannot decode image ${path}: ${reason} (--strict-data stops at an unreadable image; without it, it is skipped and counted)`);
  }

  /** Loads and transforms one sample into `out` at `offset`. */
  private async runSample(index: number, seed: number, out: Float32Array, offset: number): Promise<SampleResult> {
    if (this.corrupt.has(index)) return { ok: false, path: '', reason: '' };
    if (this.pool) {
      const r = await this.pool.run(index, seed);
      if (!r.ok) {
        this.unreadable(r.path, r.reason);
        this.corrupt.add(index);
        this.dataset.reportSkipped(r.path, r.reason);
        return r;
      }
      out.set(r.data, offset);
      return { ok: true, label: r.label };
    }
    let img: Image;
    try {
      img = await this.dataset.load(index);
    } catch (err) {
      if (err instanceof CorruptImageError) {
        this.unreadable(err.path, err.reason);
        this.corrupt.add(index);
        this.dataset.reportSkipped(err.path, err.reason);
        return { ok: false, path: err.path, reason: err.reason };
      }
      throw err;
    }
    this.apply(img, new Rng(seed), out, offset);
    return { ok: true, label: img.label };
  }

  private async makeBatch(epoch: number, b: number, order: Int32Array): Promise<Batch> {
    await this.ensurePool();
    const N = order.length;
    const start = b * this.batchSize;
    const end = Math.min(start + this.batchSize, N);
    const n = end - start;
    const L = this.sampleLen;
    const pixels = new Float32Array(n * L);
    const labels = new Int32Array(n);
    const indices = new Int32Array(n);
    const results = await Promise.all(Array.from({ length: n }, (_, s) => {
      const idx = order[start + s];
      indices[s] = idx;
      return this.runSample(idx, sampleSeed(this.seed, epoch, idx, 0), pixels, s * L);
    }));
    const bad: number[] = [];
    results.forEach((r, s) => {
      if (r.ok) labels[s] = r.label;
      else bad.push(s);
    });
    const S = this.size;
    if (bad.length === 0) return { epoch, batch: b, pixels: { shape: [n, 3, S, S], data: pixels }, labels, indices };
    if (!this.fill) {
      const keep = results.map((r, s) => (r.ok ? s : -1)).filter((s) => s >= 0);
      const p2 = new Float32Array(keep.length * L);
      keep.forEach((s, j) => p2.set(pixels.subarray(s * L, (s + 1) * L), j * L));
      return { epoch, batch: b, pixels: { shape: [keep.length, 3, S, S], data: p2 }, labels: Int32Array.from(keep, (s) => labels[s]), indices: Int32Array.from(keep, (s) => indices[s]) };
    }
    // Fill corrupt slots, in slot order, from the positions after the batch (wrapping).
    let cursor = end;
    let tries = 0;
    for (const s of bad) {
      for (;;) {
        if (tries++ > N) throw new ConvNextError(`${this.dataset.source}: no readable images`);
        const idx = order[cursor % N];
        cursor++;
        const r = await this.runSample(idx, sampleSeed(this.seed, epoch, idx, 1), pixels, s * L);
        if (r.ok) {
          labels[s] = r.label;
          indices[s] = idx;
          break;
        }
      }
    }
    return { epoch, batch: b, pixels: { shape: [n, 3, S, S], data: pixels }, labels, indices };
  }

  /**
   * The batches of epoch `epoch` from batch `startBatch` on, `prefetch` batches prepared
   * ahead of the one handed out.
   */
  async *epoch(epoch: number, startBatch = 0, shard?: Shard): AsyncGenerator<Batch, void, undefined> {
    const list = epochBatches(this.length, startBatch, shard);
    const nb = list.length;
    const order = this.order(epoch);
    const queue: Promise<Batch>[] = [];
    let next = 0;
    const launch = (): void => {
      const p = this.makeBatch(epoch, list[next++], order);
      p.catch(() => undefined); // surfaced when awaited
      queue.push(p);
    };
    while (queue.length > 0 || next < nb) {
      while (queue.length < this.prefetch + 1 && next < nb) launch();
      const batch = await (queue.shift() as Promise<Batch>);
      while (queue.length < this.prefetch && next < nb) launch();
      yield batch;
    }
  }

  /** Stops the worker threads (the loader can still be used: they restart on demand). */
  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    this.poolReady = null;
    if (pool) await pool.close();
  }
}
