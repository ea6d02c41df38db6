// The data-parallel pieces that need no MPI (the MPI suite, test/mpi, runs the real thing):
// the launcher's environment, batch sharding, the fixed-order gradient sum in one process, and
// the merge of sharded evaluation counts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { epochBatches } from '../src/data/batch.js';
import { allgatherJson, singleProcess } from '../src/parallel/comm.js';
import { GradientSum } from '../src/parallel/grad_sum.js';
import { launchInfo, libraryCandidates } from '../src/parallel/mpi.js';
import { ReferenceKernels } from '../src/kernels/reference.js';
import { Param } from '../src/nn/param.js';
import { EvalCounter } from '../src/train/metrics.js';

test('the launcher from its environment: Open MPI, Hydra, Slurm, PMIx; none without one', () => {
  assert.deepEqual(launchInfo({ OMPI_COMM_WORLD_RANK: '1', OMPI_COMM_WORLD_SIZE: '4' }), { launcher: 'Open MPI', rank: 1, size: 4 });
  assert.deepEqual(launchInfo({ PMI_RANK: '0', PMI_SIZE: '2' }), { launcher: 'MPICH / Hydra', rank: 0, size: 2 });
  assert.deepEqual(launchInfo({ SLURM_PROCID: '3', SLURM_NTASKS: '8', SLURM_STEP_ID: '0', PMIX_RANK: '3' }), { launcher: 'Slurm', rank: 3, size: 8 });
  assert.deepEqual(launchInfo({ PMIX_RANK: '2', PMIX_SIZE: '3' }), { launcher: 'PMIx', rank: 2, size: 3 });
  assert.equal(launchInfo({}), null);
  // A Slurm allocation alone (sbatch's shell, no srun step) is not a launch.
  assert.equal(launchInfo({ SLURM_PROCID: '0', SLURM_NTASKS: '8' }), null);
  assert.deepEqual(libraryCandidates({ launcher: 'Open MPI', rank: 0, size: 2 }, {}), ['libmpi.so.40', 'libmpi.so']);
  assert.deepEqual(libraryCandidates({ launcher: 'MPICH / Hydra', rank: 0, size: 2 }, { CONVNEXTV2_MPI_LIB: '/opt/x/libmpi.so' })[0], '/opt/x/libmpi.so');
});

test('sharded epochs: rank r takes batches r, r + R, ...; whole rounds for training, every batch for evaluation', () => {
  assert.deepEqual(epochBatches(7, 0), [0, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual(epochBatches(7, 2), [2, 3, 4, 5, 6]);
  assert.deepEqual(epochBatches(7, 0, { rank: 0, size: 2 }), [0, 2, 4]);
  assert.deepEqual(epochBatches(7, 0, { rank: 1, size: 2 }), [1, 3, 5]);
  assert.deepEqual(epochBatches(7, 0, { rank: 0, size: 2, uneven: true }), [0, 2, 4, 6]);
  assert.deepEqual(epochBatches(7, 0, { rank: 2, size: 3 }), [2, 5]);
  assert.throws(() => epochBatches(7, 0, { rank: 2, size: 2 }), /shard: rank 2 of 2/);
  assert.throws(() => epochBatches(7, 8), /start batch 8 outside \[0, 7\]/);
});

test('GradientSum in one process: ((g0 + g1) + g2) in float32, into every gradient; reset drops a partial sum', async () => {
  const k = new ReferenceKernels();
  const a = new Param('a', [3], false), b = new Param('b', [2], false);
  const sum = new GradientSum(k, [a, b], singleProcess);
  const gs = [[0.1, -2, 3e-8, 1e7, -0.5], [0.2, 2, 1, 1, 0.25], [1e-8, 0.3, -1, 3, 0.125]];
  const want = new Float32Array(5);
  for (const g of gs) {
    a.grad.set(g.slice(0, 3));
    b.grad.set(g.slice(3));
    await sum.add();
    assert.ok(a.grad.every((v) => v === 0), 'the microbatch gradient is zeroed for the next');
    for (let i = 0; i < 5; i++) want[i] = Math.fround(want[i] + Math.fround(g[i]));
  }
  await sum.finish();
  assert.deepEqual([...a.grad, ...b.grad], [...want]);
  a.grad.set([1, 1, 1]);
  await sum.add();
  sum.reset();
  a.grad.set([5, 5, 5]);
  await sum.add();
  await sum.finish();
  assert.deepEqual([...a.grad], [5, 5, 5]);
});

test('sharded evaluation counts merge to the single counter\'s, the loss summed in batch order', () => {
  const k = new ReferenceKernels();
  const K = 4;
  const batches = Array.from({ length: 5 }, (_, j) => ({
    logits: Float32Array.from({ length: 3 * K }, (_, i) => Math.sin(i * 1.3 + j)),
    labels: Int32Array.from({ length: 3 }, (_, i) => (i + j) % K),
  }));
  const whole = new EvalCounter(K);
  batches.forEach((b, j) => whole.add(k, b.logits, b.labels, j));
  const shards = [new EvalCounter(K), new EvalCounter(K)];
  batches.forEach((b, j) => shards[j % 2].add(k, b.logits, b.labels, j));
  const merged = EvalCounter.merge(K, shards.map((s) => allgatherJson(singleProcess, s.state())[0]));
  assert.deepEqual(merged.summary(), whole.summary());
  assert.deepEqual(merged.classCorrect, whole.classCorrect);
});
