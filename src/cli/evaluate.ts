/**
 * Evaluation as the official code: preprocessing per `evalTransform` (short side to
 * size / crop_pct then centre crop below 384 px, a warp at 384 and above), top-1 / top-5 in
 * percent and the mean cross-entropy (no smoothing).
 */
import type { Dataset } from '../data/dataset.js';
import { ConvNextError } from '../errors.js';
import { DEFAULT_PREPROCESSING, type LoadedCheckpoint } from '../io/checkpoint.js';
import type { ParsedArgs } from './args.js';
import { DataLoader } from '../data/loader.js';
import type { ConvNeXtV2 } from '../model/convnextv2.js';
import { EvalCounter } from '../train/metrics.js';
import { Progress } from './progress.js';
import { allgatherJson, type Comm, singleProcess } from '../parallel/comm.js';

export interface EvalResult {
  top1: number;
  top5: number;
  loss: number;
  images: number;
  /** Per class (by label index): images seen and top-1 hits. */
  classImages: number[];
  classCorrect: number[];
  /** [true * K + predicted] counts, when asked for. */
  confusion: Int32Array | null;
}

export async function evaluate(model: ConvNeXtV2, ds: Dataset, opts: { size: number; cropPct: number; batchSize?: number; workers?: number | 'auto'; comm?: Comm; strict?: boolean;
  /** A progress bar on stderr with this label. */
  progress?: string;
  /** Count the confusion matrix (one process). */
  confusion?: boolean; }): Promise<EvalResult> {
  const K = model.config.numClasses;
  const loader = new DataLoader(ds, {
    batchSize: opts.batchSize ?? 64, transform: { kind: 'eval', size: opts.size, cropPct: opts.cropPct },
    fill: false, workers: opts.workers ?? 'auto', strict: opts.strict,
  });
  let count = new EvalCounter(K, { confusion: opts.confusion });
  const bar = opts.progress ? new Progress(opts.progress, ds.length, 'img') : null;
  let seen = 0;
  // Data-parallel: each rank counts every size-th batch; the shards merge in batch order.
  const comm = opts.comm ?? singleProcess;
  const shard = comm.size > 1 ? { rank: comm.rank, size: comm.size, uneven: true } : undefined;
  try {
    for await (const b of loader.epoch(0, 0, shard)) {
      if (b.labels.length === 0) continue;
      count.add(model.kernels, (await model.forward(b.pixels)).logits!.data, b.labels, b.batch);
      seen += b.labels.length;
      bar?.update(seen);
    }
  } finally {
    await loader.close();
  }
  if (comm.size > 1) count = EvalCounter.merge(K, allgatherJson(comm, count.state()));
  // Unreadable images are not counted: the bar ends at what was read.
  if (bar && seen < ds.length) bar.finish(seen);
  return { ...count.summary(), classImages: count.classImages, classCorrect: count.classCorrect, confusion: count.confusion };
}

/**
 * The evaluation size and crop: --input-size / --crop-pct, else what the checkpoint records,
 * else 224 px and 0.875; out-of-range values are usage errors (exit 2) before any image is read.
 */
export function evalPreprocessing(args: ParsedArgs, ck: Pick<LoadedCheckpoint, 'preprocessing'>): { size: number; cropPct: number } {
  const pre = ck.preprocessing ?? DEFAULT_PREPROCESSING;
  const size = args.number('input-size') ?? pre.inputSize;
  const cropPct = args.number('crop-pct') ?? pre.cropPct;
  if (!(Number.isInteger(size) && size >= 32)) throw new ConvNextError(`--input-size ${size}: must be an integer of at least 32 (the model downsamples by 32)`, 2);
  if (!(cropPct > 0 && cropPct <= 1)) throw new ConvNextError(`--crop-pct ${cropPct}: must be in (0, 1]`, 2);
  return { size, cropPct };
}
