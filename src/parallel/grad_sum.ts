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
 * flat copies of 1/R of the gradient and two of all of it. On a device backend (webgpu) the
 * gradients are read back once per microbatch (all reads in flight together) and the step's sum
 * uploaded once at its end; the additions are the host's, so the bits are the host backends'
 * order too.
 */
import { hostArray } from '../kernels/host.js';
import type { Kernels } from '../kernels/types.js';
import type { Param } from '../nn/param.js';
import type { Comm } from './comm.js';

export class GradientSum {
  readonly total: number;
  /** Floats per rank's block (the flat gradient padded to R blocks). */
  readonly block: number;
  private readonly send: Float32Array;
  private readonly recv: Float32Array;
  private readonly mine: Float32Array;
  private readonly full: Float32Array;
  private readonly offsets: number[];
  /** Microbatches added since the last finish(). */
  count = 0;
  /** Seconds spent in add() and finish() (copies, additions, the collectives), since construction. */
  seconds = 0;

  constructor(readonly k: Kernels, readonly params: readonly Param[], readonly comm: Comm) {
    this.offsets = [];
    let n = 0;
    for (const p of params) {
      this.offsets.push(n);
      n += p.size;
    }
    this.total = n;
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
    const { params, offsets, send, recv, mine, block, comm, k } = this;
    if (k.capabilities().device) {
      const grads = await Promise.all(params.map((p) => k.read(p.grad)));
      grads.forEach((g, i) => send.set(g, offsets[i]));
    } else {
      params.forEach((p, i) => send.set(hostArray(p.grad, `gradient of ${p.name}`), offsets[i]));
    }
    comm.alltoall(send, recv, block);
    for (let r = 0; r < comm.size; r++) {
      const o = r * block;
      for (let i = 0; i < block; i++) mine[i] += recv[o + i];
    }
    for (const p of params) k.fill(p.grad, 0);
    this.count++;
    this.seconds += (performance.now() - t0) / 1000;
  }

  /** The step's gradient into every p.grad (all ranks alike); starts the next sum. */
  async finish(): Promise<void> {
    const t0 = performance.now();
    const { params, offsets, mine, full, block, comm, k } = this;
    comm.allgather(mine, full, block);
    const device = k.capabilities().device;
    params.forEach((p, i) => {
      const g = full.subarray(offsets[i], offsets[i] + p.size);
      if (device) k.write(p.grad, g);
      else hostArray(p.grad, `gradient of ${p.name}`).set(g);
    });
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
