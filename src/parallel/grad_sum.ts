/**
 * The gradient of one optimizer step summed over microbatches and ranks in one fixed order,
 * so that N ranks with batch b are bit-for-bit one process with batch b and update-freq N.
 *
 * Global microbatch j of a step is microbatch m of rank r with j = m * R + r (ranks R; the
 * data is sliced that way: see BatchSource.epoch's shard). Each microbatch's gradient is
 * computed on its own (from zero), and the step's gradient is ((g_0 + g_1) + g_2) + ..., in j
 * order: after microbatch m every rank sends block q of its gradient to rank q (alltoall),
 * and rank q adds the R blocks it receives, in rank order, to its running block; at the end
 * of the step the blocks are gathered (allgather) into every rank's gradients. One process
 * (R = 1) does the same additions with copies for the collectives. The traffic per rank and
 * microbatch is that of a ring allreduce (the gradient out and in once); the memory, four
 * flat copies of 1/R of the gradient and two of all of it. The gradient is taken as the runs of
 * neighbouring parameters in their flat stores (nn/store.ts): one copy per store for a model, not
 * one per tensor. On a device backend (webgpu) that is one read-back per store and microbatch, and
 * one upload per store of the step's sum; the additions are the host's, in the same order.
 */
import { hostArray } from '../kernels/host.js';
import type { Buf, Kernels } from '../kernels/types.js';
import type { Param } from '../nn/param.js';
import { paramRuns } from '../nn/store.js';
import type { Comm } from './comm.js';

export class GradientSum {
  readonly total: number;
  /** Floats per rank's block (the flat gradient padded to R blocks). */
  readonly block: number;
  private readonly send: Float32Array;
  private readonly recv: Float32Array;
  private readonly mine: Float32Array;
  private readonly full: Float32Array;
  /** The gradient as runs of neighbouring parameters in their stores (one per store for a whole model), and where each goes in the flat sum. */
  private readonly runs: { grad: Buf; n: number; at: number; what: string }[];
  /** A device backend: the gradients are read back and the sum uploaded (else host arrays are copied). */
  private readonly device: boolean;
  /** Microbatches added since the last finish(). */
  count = 0;
  /** Seconds spent in add() and finish() (copies, additions, the collectives), since construction. */
  seconds = 0;

  constructor(readonly k: Kernels, readonly params: readonly Param[], readonly comm: Comm) {
    let n = 0;
    this.runs = paramRuns(params).map(({ store, run }) => {
      const grad = store ? store.grad.subarray(run.offset, run.offset + run.n) : run.params[0].grad;
      const r = { grad, n: run.n, at: n, what: `gradient of ${run.params[0].name}${run.params.length > 1 ? ` and ${run.params.length - 1} more` : ''}` };
      n += run.n;
      return r;
    });
    this.total = n;
    this.device = k.capabilities().device;
    const R = comm.size;
    this.block = Math.ceil(n / R);
    this.send = new Float32Array(this.block * R);
    this.recv = new Float32Array(this.block * R);
    this.mine = new Float32Array(this.block);
    this.full = new Float32Array(this.block * R);
  }

  /** After a microbatch's backward (p.grad: its gradient alone): adds every rank's, in rank order; zeroes p.grad. */
  async add(): Promise<void> {
    const t0 = performance.now();
    const { runs, send, recv, mine, block, comm, k } = this;
    if (this.device) {
      const grads = await Promise.all(runs.map((r) => k.read(r.grad)));
      grads.forEach((g, i) => send.set(g, runs[i].at));
    } else {
      for (const r of runs) send.set(hostArray(r.grad, r.what), r.at);
    }
    comm.alltoall(send, recv, block);
    for (let r = 0; r < comm.size; r++) {
      const o = r * block;
      for (let i = 0; i < block; i++) mine[i] += recv[o + i];
    }
    for (const r of runs) k.fill(r.grad, 0);
    this.count++;
    this.seconds += (performance.now() - t0) / 1000;
  }

  /** The step's gradient into every p.grad (all ranks alike); starts the next sum. */
  async finish(): Promise<void> {
    const t0 = performance.now();
    const { runs, mine, full, block, comm, k } = this;
    comm.allgather(mine, full, block);
    for (const r of runs) {
      const g = full.subarray(r.at, r.at + r.n);
      if (this.device) k.write(r.grad, g);
      else hostArray(r.grad, r.what).set(g);
    }
    mine.fill(0);
    this.count = 0;
    this.seconds += (performance.now() - t0) / 1000;
  }

  /** Drops a partial sum (an epoch's incomplete accumulation). */
  reset(): void {
    this.mine.fill(0);
    this.count = 0;
  }
}
