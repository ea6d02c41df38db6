/**
 * What evaluation and prediction report (platform-neutral): the top-k classes of one row of
 * logits with softmax probabilities, as `convnextv2 predict` prints them, and top-1 / top-5
 * hits with the mean cross-entropy, counted as the official evaluation does (a tie ranks the
 * lower class index first).
 */
import { hostKernels } from '../kernels/reference.js';
import type { Kernels } from '../kernels/types.js';
import { smoothTargets } from './step.js';

export interface RankedClass {
  index: number;
  label: string;
  probability: number;
}

/** The `k` most probable classes of one row of logits (softmax in float64), most probable first. */
export function topClasses(row: Float32Array, names: readonly string[], k: number): RankedClass[] {
  const mx = Math.max(...row);
  const e = Array.from(row, (v) => Math.exp(v - mx));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v, i) => ({ index: i, label: names[i], probability: v / s })).sort((a, b) => b.probability - a.probability).slice(0, Math.min(k, row.length));
}

/** EvalCounter's counts, as merge() takes them (JSON-serialisable: sent between ranks). */
export interface EvalCounterState {
  c1: number;
  c5: number;
  n: number;
  batchLoss: [number, number][];
  classImages: number[];
  classCorrect: number[];
}

/** Accumulates top-1 / top-5 hits, per-class counts and the cross-entropy over batches of logits. */
export class EvalCounter {
  private c1 = 0;
  private c5 = 0;
  private lossSum = 0;
  private n = 0;
  /** Each batch's loss sum, by batch index (for merging the shards of a data-parallel evaluation in batch order). */
  private readonly batchLoss: [number, number][] = [];
  readonly classImages: number[];
  readonly classCorrect: number[];

  /** With `{ confusion: true }`: counts [true class * K + predicted class] (a single process's evaluation; merge() leaves it out). */
  readonly confusion: Int32Array | null;

  constructor(readonly numClasses: number, opts: { confusion?: boolean } = {}) {
    this.classImages = new Array<number>(numClasses).fill(0);
    this.classCorrect = new Array<number>(numClasses).fill(0);
    this.confusion = opts.confusion ? new Int32Array(numClasses * numClasses) : null;
  }

  /**
   * One batch: `logits` [B, K] (host values), `labels` [B]; the loss through a softmax
   * cross-entropy kernel (`k`'s when it is a host backend, else the reference's).
   */
  add(k: Kernels, logits: Float32Array, labels: Int32Array, batch = this.batchLoss.length): void {
    const B = labels.length;
    const K = this.numClasses;
    if (B === 0) return;
    const host = k.capabilities().device ? hostKernels : k;
    const loss = new Float32Array(1);
    host.softmaxCrossEntropy(logits, smoothTargets(labels, K, 0), B, K, null, loss, 1 / B);
    this.lossSum += loss[0] * B;
    this.batchLoss.push([batch, loss[0] * B]);
    for (let i = 0; i < B; i++) {
      const y = labels[i];
      const v = logits[i * K + y];
      let higher = 0;
      let pred = 0;
      for (let c = 0; c < K; c++) {
        const l = logits[i * K + c];
        if (l > v || (l === v && c < y)) higher++;
        if (l > logits[i * K + pred]) pred = c;
      }
      if (this.confusion) this.confusion[y * K + (higher === 0 ? y : pred)]++;
      if (higher === 0) this.c1++;
      if (higher < 5) this.c5++;
      this.classImages[y]++;
      if (higher === 0) this.classCorrect[y]++;
    }
    this.n += B;
  }

  /** What merge() takes: the counts and the per-batch loss sums. */
  state(): EvalCounterState {
    return { c1: this.c1, c5: this.c5, n: this.n, batchLoss: this.batchLoss.slice(), classImages: this.classImages.slice(), classCorrect: this.classCorrect.slice() };
  }

  /**
   * The counter of all the batches the states counted (the shards of one evaluation): counts
   * added, and the loss summed over the batches in batch order, as one counter that saw them
   * all in order sums it (so the mean is the same to the last bit).
   */
  static merge(numClasses: number, states: readonly EvalCounterState[]): EvalCounter {
    const m = new EvalCounter(numClasses);
    for (const s of states) {
      m.c1 += s.c1;
      m.c5 += s.c5;
      m.n += s.n;
      for (let c = 0; c < numClasses; c++) {
        m.classImages[c] += s.classImages[c];
        m.classCorrect[c] += s.classCorrect[c];
      }
      m.batchLoss.push(...s.batchLoss);
    }
    m.batchLoss.sort((a, b) => a[0] - b[0]);
    for (const [, v] of m.batchLoss) m.lossSum += v;
    return m;
  }

  /** Top-1 and top-5 in percent, the mean cross-entropy, the images counted (zeros before any). */
  summary(): { top1: number; top5: number; loss: number; images: number } {
    const n = this.n;
    return { top1: n ? (100 * this.c1) / n : 0, top5: n ? (100 * this.c5) / n : 0, loss: n ? this.lossSum / n : 0, images: n };
  }
}
