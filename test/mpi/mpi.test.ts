// Data-parallel training over a real MPI (npm run test:mpi; needs Debian's openmpi-bin and
// mpich: apt-get install openmpi-bin mpich; a test whose implementation is missing is skipped,
// naming the package). Ranks on this machine: the gradient sum itself adds in the documented
// order under MPI (values whose float32 sum depends on it); through the CLI as a user runs it,
// N ranks with batch b are bit-identical to one process with batch b and update-freq N, and
// ranks compose with update-freq (fine-tuning and FCMAE, Open MPI and MPICH; fine-tuning on
// WebGPU too); a killed rank
// ends the job with a non-zero exit and leaves a checkpoint that resumes exactly; a hung rank
// is caught by the watchdog; a libmpi of the other implementation than the launcher's is one
// clear line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensors, readSafetensorsWithMetadata } from '../../src/io/safetensors_file.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const CLI = join(ROOT, 'dist/cli/main.js');
const OMPI = '/usr/bin/mpirun.openmpi';
const HYDRA = '/usr/bin/mpiexec.hydra';
/** Each MPI implementation: its launcher, the Debian package that has it, the launcher's arguments for n ranks. */
const MPI = {
  'Open MPI': { bin: OMPI, pkg: 'openmpi-bin', launch: (n: number) => [OMPI, '--allow-run-as-root', '--oversubscribe', '-np', String(n)] },
  MPICH: { bin: HYDRA, pkg: 'mpich', launch: (n: number) => [HYDRA, '-n', String(n)] },
};
/**
 * node:test's options for a test that runs these implementations: skipped, with the package to
 * install, where one is missing (so either half runs without the other; CI installs both).
 */
function needs(...impls: (keyof typeof MPI)[]): { skip?: string } {
  const missing = impls.filter((i) => !existsSync(MPI[i].bin));
  if (!missing.length) return {};
  return { skip: `${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not installed (apt-get install ${missing.map((i) => MPI[i].pkg).join(' ')})` };
}
const ompi = (n: number, ...args: string[]) => [...MPI['Open MPI'].launch(n), 'node', CLI, ...args];
const hydra = (n: number, ...args: string[]) => [...MPI.MPICH.launch(n), 'node', CLI, ...args];
const single = (...args: string[]) => ['node', CLI, ...args];

const work = mkdtempSync(join(tmpdir(), 'cnx-mpi-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const dir = (name: string) => join(work, name);

function run(cmd: string[], timeoutMs = 120_000): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd[0], cmd.slice(1), { cwd: ROOT, encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, CONVNEXTV2_THREADS: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The --json result (the last line of stdout). */
function result(r: { code: number | null; stdout: string; stderr: string }, what: string): { epochs: Record<string, number>[] } {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr.slice(-2000)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { epochs: Record<string, number>[] };
}

/** Every tensor (weights, optimizer moments, EMA, decoder) of two checkpoints, bit for bit. */
function sameTensors(a: string, b: string, what: string): void {
  const x = readSafetensors(a), y = readSafetensors(b);
  assert.deepEqual([...x.keys()].sort(), [...y.keys()].sort(), `${what}: the same tensors`);
  for (const [k, t] of x) {
    const u = y.get(k)!;
    assert.deepEqual(new Uint32Array(u.data.buffer, u.data.byteOffset, u.data.length), new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length), `${what}: ${k}`);
  }
}

// The gradient sum itself (GradientSum, src/parallel/grad_sum.ts), driven under real MPI with
// gradients whose float32 sum depends on the order. The CLI runs below at update-freq 1 add two
// terms per step from zero (g0 + g1 == g1 + g0), so a wrong rank order goes unnoticed there;
// here 2 ranks x 3 microbatches make 6 terms a step, added to a running sum that is not zero.
// Global microbatch j = m * R + r; each column mixes 1e8 (a float32 ulp of 8) with small
// integers that a large partial sum absorbs, so each way of adding gives other bits.
const GS_CHILD = join(ROOT, 'test/mpi/grad_sum_child.ts');
const COLUMNS = [
  [1e8, 1, -1e8, 3, 5, 7],
  [1, 1e8, 3, -1e8, 5, 7],
  [1e8, 3, 5, -1e8, 1, 7],
  [3, 1e8, -1e8, 5, 1, 7],
  [1e8, 5, 3, -1e8, 0.5, 7],
];
/** TERMS[step][j][i], two steps: the second is the first with its columns rotated and scaled by -2 (finish() restarts the sum from zero). */
const TERMS = [1, -2].map((c, s) => COLUMNS[0].map((_, j) => COLUMNS.map((_, i) => c * COLUMNS[(i + s) % COLUMNS.length][j])));
/** An order of a step's terms: j, or a group added from zero, left to right. */
type Order = number | Order[];
/** Bits of a step's gradient summed in `order`, rounded to float32 after each addition. */
function sumBits(step: number[][], order: Order): number[] {
  const sum = (o: Order, i: number): number => (typeof o === 'number' ? Math.fround(step[o][i]) : o.reduce<number>((a, q) => Math.fround(a + sum(q, i)), 0));
  return [...new Uint32Array(Float32Array.from(step[0], (_, i) => sum(order, i)).buffer)];
}

/** The documented order's bits, each step; first that every other plausible order gives other bits (so the test can fail). */
function documentedSum(): number[][] {
  const want = TERMS.map((s) => sumBits(s, [0, 1, 2, 3, 4, 5]));
  const others: [string, Order][] = [
    ['the ranks reversed (r = R-1 .. 0)', [1, 0, 3, 2, 5, 4]],
    ['rank-major (j = r * M + m)', [0, 2, 4, 1, 3, 5]],
    ['the ranks added first, then to the running sum (an allreduce per microbatch)', [[0, 1], [2, 3], [4, 5]]],
    ['each rank\'s microbatches first, then the ranks (local accumulation, one allreduce)', [[0, 2, 4], [1, 3, 5]]],
  ];
  for (const [what, o] of others) assert.notDeepEqual(TERMS.map((s) => sumBits(s, o)), want, `${what} gives the same bits`);
  return want;
}

/** Runs the child under `cmd` (a launcher, or none): one line from each rank, each with every step's sum in the documented order, bit for bit. */
function gradSum(cmd: string[], what: string, size: number, want: number[][]): void {
  const r = run([...cmd, 'node', '--import', 'tsx', GS_CHILD, JSON.stringify(TERMS)], 60_000);
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr.slice(-2000)}`);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { rank: number; size: number; steps: number[][] }).sort((a, b) => a.rank - b.rank);
  assert.deepEqual(lines.map((l) => [l.rank, l.size]), Array.from({ length: size }, (_, q) => [q, size]), `${what}: one line per rank`);
  const floats = (steps: number[][]) => steps.map((b) => [...new Float32Array(Uint32Array.from(b).buffer)].join(', ')).join(' | ');
  for (const l of lines) assert.deepEqual(l.steps, want, `${what}: rank ${l.rank} summed ${floats(l.steps)}, the documented order ${floats(want)}`);
}

test('the gradient sum under Open MPI is ((g0 + g1) + g2) + ... in global microbatch order, every bit on every rank; one process alike', needs('Open MPI'), () => {
  const want = documentedSum();
  gradSum(MPI['Open MPI'].launch(2), 'Open MPI, 2 ranks', 2, want);
  // One process (no launcher: the single process's copies) adds the same 6 microbatches in j order.
  gradSum([], 'one process', 1, want);
});

test('the gradient sum under MPICH: the same bits', needs('MPICH'), () => {
  gradSum(MPI.MPICH.launch(2), 'MPICH, 2 ranks', 2, documentedSum());
});

// Tiny models on synthetic images: 48 images = 6 batches of 8 = 3 optimizer steps of 16.
const FT = ['finetune', '--data', 'synthetic', '--depths', '1,1,1,1', '--dims', '8,16,24,32', '--input-size', '32', '--epochs', '1',
  '--batch-size', '8', '--limit', '48', '--val-limit', '24', '--workers', '0', '--warmup-epochs', '0', '--drop-path', '0.1', '--quiet', '--json'];
const PT = ['pretrain', '--data', 'synthetic', '--depths', '1,1,1,1', '--dims', '8,16,24,32', '--decoder-embed-dim', '16', '--input-size', '64',
  '--epochs', '1', '--batch-size', '8', '--limit', '48', '--workers', '0', '--warmup-epochs', '0', '--vis-images', '2', '--quiet', '--json'];

/** One process x batch 8 x update-freq 2: the reference of both implementations' 2-rank runs (run once). */
let ftOne: { epochs: Record<string, number>[] } | undefined;
function ftSameAsOne(two: { epochs: Record<string, number>[] }, out: string, what: string): void {
  ftOne ??= result(run(single(...FT, '--update-freq', '2', '--out', dir('ft1'))), 'one process');
  for (const k of ['loss', 'val_top1', 'val_top5', 'val_loss', 'lr']) assert.equal(two.epochs[0][k], ftOne.epochs[0][k], `${what} ${k}`);
  sameTensors(join(dir('ft1'), 'checkpoint-last.safetensors'), join(out, 'checkpoint-last.safetensors'), what);
}

test('fine-tuning: 2 ranks x batch 8 == 1 process x batch 8 x update-freq 2 (losses, weights, moments: every bit), Open MPI', needs('Open MPI'), () => {
  ftSameAsOne(result(run(ompi(2, ...FT, '--out', dir('ft2'))), 'Open MPI, 2 ranks'), dir('ft2'), 'Open MPI');
  // Rank 0 alone wrote the run folder; the log has one line per epoch.
  assert.equal(readFileSync(join(dir('ft2'), 'log.jsonl'), 'utf8').trim().split('\n').length, 1);
  // The sum is exact, not approximately equal: a run with other weights differs.
  const other = result(run(single(...FT, '--update-freq', '2', '--seed', '1', '--out', dir('ft4'))), 'seed 1');
  assert.notEqual(other.epochs[0].loss, ftOne!.epochs[0].loss);
});

test('fine-tuning: the same under MPICH', needs('MPICH'), () => {
  ftSameAsOne(result(run(hydra(2, ...FT, '--out', dir('ft3'))), 'MPICH, 2 ranks'), dir('ft3'), 'MPICH');
});

test('ranks and update-freq compose: 2 ranks x batch 4 x update-freq 2 == 1 process x batch 4 x update-freq 4', needs('Open MPI'), () => {
  const args = FT.map((a, i) => (FT[i - 1] === '--batch-size' ? '4' : a));
  const one = result(run(single(...args, '--update-freq', '4', '--out', dir('uf1'))), 'one process');
  const two = result(run(ompi(2, ...args, '--update-freq', '2', '--out', dir('uf2'))), '2 ranks');
  assert.equal(two.epochs[0].loss, one.epochs[0].loss);
  assert.equal(two.epochs[0].val_loss, one.epochs[0].val_loss);
  sameTensors(join(dir('uf1'), 'checkpoint-last.safetensors'), join(dir('uf2'), 'checkpoint-last.safetensors'), 'update-freq');
});

test('FCMAE pre-training: 2 ranks x batch 8 == 1 process x batch 8 x update-freq 2, every bit', needs('Open MPI'), () => {
  const one = result(run(single(...PT, '--update-freq', '2', '--out', dir('pt1'))), 'one process');
  const two = result(run(ompi(2, ...PT, '--out', dir('pt2'))), '2 ranks');
  assert.equal(two.epochs[0].loss, one.epochs[0].loss);
  assert.equal(two.epochs[0].steps, one.epochs[0].steps);
  sameTensors(join(dir('pt1'), 'checkpoint-last.safetensors'), join(dir('pt2'), 'checkpoint-last.safetensors'), 'FCMAE');
  assert.ok(readdirSync(dir('pt2')).some((f) => f.endsWith('.png')), 'rank 0 wrote the reconstruction PNG');
});

// The 2x2 composition for FCMAE (its own engine, masks drawn per global batch): 48 images = 12
// batches of 4 = 3 optimizer steps of 16, on one process and on the 2 ranks alike.
test('FCMAE pre-training: 2 ranks x batch 4 x update-freq 2 == 1 process x batch 4 x update-freq 4, every bit', needs('Open MPI'), () => {
  const args = PT.map((a, i) => (PT[i - 1] === '--batch-size' ? '4' : a));
  const one = result(run(single(...args, '--update-freq', '4', '--out', dir('ptuf1'))), 'one process');
  const two = result(run(ompi(2, ...args, '--update-freq', '2', '--out', dir('ptuf2'))), '2 ranks');
  assert.equal(two.epochs[0].loss, one.epochs[0].loss, 'loss');
  assert.equal(two.epochs[0].lr, one.epochs[0].lr, 'lr');
  // The record's "steps" counts the epoch's batches (every rank's); the checkpoint's step, optimizer steps.
  assert.deepEqual([one.epochs[0].steps, two.epochs[0].steps], [12, 12], 'batches of the epoch');
  const ck = (d: string) => readSafetensorsWithMetadata(join(dir(d), 'checkpoint-last.safetensors')).metadata;
  assert.deepEqual([ck('ptuf1').step, ck('ptuf2').step, ck('ptuf2').optimizer_step], ['3', '3', '3'], 'optimizer steps');
  sameTensors(join(dir('ptuf1'), 'checkpoint-last.safetensors'), join(dir('ptuf2'), 'checkpoint-last.safetensors'), 'FCMAE update-freq');
});

// A run trained on 2 ranks and resumed in one process would change its global batch (8 x 2 to
// 8 x 1): refused, with the --update-freq that keeps it; with that flag the resume continues
// the run exactly (the same bits as one process at update-freq 2 throughout).
test('a 2-rank run resumed in one process: refused without --update-freq 2 (said in the error), exact with it', needs('Open MPI'), () => {
  const args = FT.map((a, i) => (FT[i - 1] === '--epochs' ? '2' : a));
  const one = result(run(single(...args, '--update-freq', '2', '--out', dir('rk1'))), 'one process, 2 epochs');
  result(run(ompi(2, ...args, '--stop-after', '1', '--out', dir('rk2'))), '2 ranks, epoch 1');
  const meta = readSafetensorsWithMetadata(join(dir('rk2'), 'checkpoint-last.safetensors')).metadata;
  assert.equal(meta.ranks, '2', 'the checkpoint records its ranks');
  const refused = run(single('finetune', '--resume', '--out', dir('rk2'), '--quiet'));
  assert.equal(refused.code, 2, refused.stderr);
  assert.match(refused.stderr.trim(), /^convnextv2: finetune: \S+checkpoint-last\.safetensors was trained on 2 ranks x batch 8 x update-freq 1 \(global batch 16\); one process x batch 8 x update-freq 1 would make it 8: resume with --update-freq 2 to keep it \(the same run, bit for bit\)$/);
  const resumed = result(run(single('finetune', '--resume', '--out', dir('rk2'), '--update-freq', '2', '--quiet', '--json')), 'resumed in one process');
  assert.equal(resumed.epochs.at(-1)!.loss, one.epochs[1].loss, 'epoch 2 loss');
  sameTensors(join(dir('rk1'), 'checkpoint-last.safetensors'), join(dir('rk2'), 'checkpoint-last.safetensors'), 'resumed on one process');
  // Another update-freq on the same number of ranks is still a contradiction of the run.
  const same = run(single('finetune', '--resume', '--out', dir('rk1'), '--update-freq', '4', '--epochs', '3', '--quiet'));
  assert.equal(same.code, 2);
  assert.match(same.stderr, /--update-freq 4 contradicts the run being resumed/);
});

/** The pids of the ranks of a job whose command line holds `marker`, by rank. */
function rankPids(marker: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (!readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(marker)) continue;
      const rank = /(?:^|\0)OMPI_COMM_WORLD_RANK=(\d+)/.exec(readFileSync(`/proc/${p}/environ`, 'utf8'))?.[1];
      if (rank !== undefined && readFileSync(`/proc/${p}/cmdline`, 'utf8').startsWith('node')) out.set(Number(rank), Number(p));
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

/** Starts a 3-epoch job, and once epoch 1's checkpoint exists sends `signal` to rank 1; resolves with the job's exit and how long it took after the signal. */
async function disturb(out: string, signal: NodeJS.Signals, extra: string[] = []): Promise<{ code: number | null; seconds: number; stderr: string }> {
  const args = [...FT.filter((a) => a !== '--json'), '--epochs', '3', '--limit', '960', '--out', out, ...extra];
  const [cmd, ...rest] = ompi(2, ...args);
  const child = spawn(cmd, rest, { env: { ...process.env, CONVNEXTV2_THREADS: '1' } });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.on('data', () => undefined);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 60_000;
  while (!existsSync(join(out, 'checkpoint-last.safetensors'))) {
    if (Date.now() > deadline) throw new Error(`no checkpoint after 60 s\n${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const pid = rankPids(out).get(1);
  assert.ok(pid, 'rank 1 found');
  process.kill(pid, signal);
  const t0 = Date.now();
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const code = await exited;
  clearTimeout(timer);
  return { code, seconds: (Date.now() - t0) / 1000, stderr };
}

test('a SIGKILLed rank ends the job (non-zero exit, bounded time); the checkpoint resumes to the bits of an uninterrupted run', needs('Open MPI'), async () => {
  const r = await disturb(dir('kill'), 'SIGKILL');
  assert.notEqual(r.code, 0, 'the job failed');
  assert.ok(r.seconds < 30, `ended ${r.seconds.toFixed(1)} s after the kill`);
  const resumed = run(ompi(2, 'finetune', '--resume', '--out', dir('kill'), '--quiet', '--json'));
  assert.equal(resumed.code, 0, resumed.stderr.slice(-2000));
  const whole = run(ompi(2, ...FT, '--epochs', '3', '--limit', '960', '--out', dir('whole')));
  assert.equal(whole.code, 0, whole.stderr.slice(-2000));
  sameTensors(join(dir('whole'), 'checkpoint-last.safetensors'), join(dir('kill'), 'checkpoint-last.safetensors'), 'resumed');
});

test('a hung rank (SIGSTOP) is caught by the watchdog: one line, the job aborted within --mpi-timeout', needs('Open MPI'), async () => {
  const r = await disturb(dir('hang'), 'SIGSTOP', ['--mpi-timeout', '3']);
  assert.notEqual(r.code, 0);
  assert.ok(r.seconds < 30, `ended ${r.seconds.toFixed(1)} s after the stop`);
  assert.match(r.stderr, /convnextv2: mpi: rank 0 of 2: MPI_\w+ has not completed in \d+ s \(a rank died or hangs\); aborting the job/);
});

test('one implementation\'s libmpi under the other\'s launcher is one line, exit 1', needs('Open MPI', 'MPICH'), () => {
  const r = spawnSync(OMPI, ['--allow-run-as-root', '--oversubscribe', '-np', '2', 'node', CLI, ...FT, '--out', dir('wrong')], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env, CONVNEXTV2_MPI_LIB: 'libmpich.so.12' },
  });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /convnextv2: mpi: Open MPI started rank [01] of 2, but MPICH .* sees rank 0 of 1: the libmpi of one MPI implementation under another's launcher/);
});

test('other commands refuse to run as ranks', needs('Open MPI'), () => {
  const e = run(ompi(2, 'info'));
  assert.notEqual(e.code, 0);
  assert.match(e.stderr, /convnextv2: info: started as rank [01] of 2 by Open MPI: only finetune and pretrain run data-parallel/);
});

// On a device backend the gradient sum reads each microbatch's gradients back, adds them on the
// host in the same global order and uploads the step's sum once: 2 ranks on WebGPU (Mesa's
// lavapipe here, one device per rank) are one WebGPU process with update-freq 2, bit for bit.
test('fine-tuning on WebGPU: 2 ranks x batch 8 == 1 process x batch 8 x update-freq 2, every bit, Open MPI', needs('Open MPI'), () => {
  const gpu = run(single('info', '--device', 'webgpu'));
  assert.equal(gpu.code, 0, `no WebGPU adapter for the ranks (Mesa's lavapipe: apt-get install -t bookworm-backports mesa-vulkan-drivers): ${gpu.stderr}`);
  const args = [...FT, '--device', 'webgpu'];
  const one = result(run(single(...args, '--update-freq', '2', '--out', dir('gpu1')), 300_000), 'one WebGPU process');
  const two = result(run(ompi(2, ...args, '--out', dir('gpu2')), 300_000), 'two WebGPU ranks');
  for (const k of ['loss', 'val_top1', 'val_loss', 'lr']) assert.equal(two.epochs[0][k], one.epochs[0][k], `WebGPU ${k}`);
  sameTensors(join(dir('gpu1'), 'checkpoint-last.safetensors'), join(dir('gpu2'), 'checkpoint-last.safetensors'), 'WebGPU');
  // Not the CPU's numbers: the run computed on the device.
  assert.notEqual(one.epochs[0].loss, ftOne?.epochs[0].loss ?? result(run(single(...FT, '--update-freq', '2', '--out', dir('ft1'))), 'one process').epochs[0].loss);
});
