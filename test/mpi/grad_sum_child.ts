// One rank of grad_sum's test in mpi.test.ts: GradientSum over the job's real MPI Comm (connect():
// MPI under mpirun / mpiexec, the single process without a launcher), fed given gradients.
//   node --import tsx test/mpi/grad_sum_child.ts '<JSON: terms[step][j][i]>'
// terms[s][j] is global microbatch j of step s (j = m * R + r: this rank takes j = m * R + rank),
// spread over two parameters whose flat gradient does not divide into R blocks (padding).
// Prints one line, {"rank", "size", "steps": each step's summed gradient as uint32 bits}.
import { ReferenceKernels } from '../../src/kernels/reference.js';
import { Param } from '../../src/nn/param.js';
import { GradientSum } from '../../src/parallel/grad_sum.js';
import { connect } from '../../src/parallel/mpi.js';

const terms = JSON.parse(process.argv[2]) as number[][][];
const comm = connect({ timeoutSeconds: 30 });
const R = comm.size;
const n = terms[0][0].length;
const params = [new Param('a', [n - 2], false), new Param('b', [2], false)];
const sum = new GradientSum(new ReferenceKernels(), params, comm);
const grads = params.map((p) => p.grad as Float32Array);
const steps: number[][] = [];
for (const step of terms) {
  if (step.length % R !== 0) throw new Error(`${step.length} microbatches for ${R} ranks`);
  for (let m = 0; m < step.length / R; m++) {
    const g = step[m * R + comm.rank];
    grads[0].set(g.slice(0, n - 2));
    grads[1].set(g.slice(n - 2));
    await sum.add();
    if (grads.some((a) => a.some((v) => v !== 0))) throw new Error('add() left a gradient non-zero');
  }
  await sum.finish();
  steps.push(grads.flatMap((a) => [...new Uint32Array(a.buffer, a.byteOffset, a.length)]));
}
process.stdout.write(`${JSON.stringify({ rank: comm.rank, size: R, steps })}\n`);
