// Data-parallel training over a real MPI (npm run test:mpi; needs Debian's openmpi-bin and
// mpich: apt-get install openmpi-bin mpich). Ranks on this machine, through the CLI as a user
// runs it: N ranks with batch b are bit-identical to one process with batch b and update-freq
// N (fine-tuning and FCMAE, Open MPI and MPICH); a killed rank ends the job with a non-zero
// exit and leaves a checkpoint that resumes exactly; a hung rank is caught by the watchdog; a
// libmpi of the other implementation than the launcher's is one clear line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensors } from '../../src/io/safetensors_file.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const CLI = join(ROOT, 'dist/cli/main.js');
const OMPI = '/usr/bin/mpirun.openmpi';
const HYDRA = '/usr/bin/mpiexec.hydra';
for (const [what, bin] of [['Open MPI (openmpi-bin)', OMPI], ['MPICH (mpich)', HYDRA]]) {
  if (!existsSync(bin)) throw new Error(`${bin} is missing: the MPI suite needs ${what} (apt-get install openmpi-bin mpich)`);
}
const ompi = (n: number, ...args: string[]) => [OMPI, '--allow-run-as-root', '--oversubscribe', '-np', String(n), 'node', CLI, ...args];
const hydra = (n: number, ...args: string[]) => [HYDRA, '-n', String(n), 'node', CLI, ...args];
const single = (...args: string[]) => ['node', CLI, ...args];

const work = mkdtempSync(join(tmpdir(), 'cnx-mpi-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const dir = (name: string) => join(work, name);

function run(cmd: string[], timeoutMs = 120_000): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, CONVNEXTV2_THREADS: '1' } });
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

// Tiny models on synthetic images: 48 images = 6 batches of 8 = 3 optimizer steps of 16.
const FT = ['finetune', '--data', 'synthetic', '--depths', '1,1,1,1', '--dims', '8,16,24,32', '--input-size', '32', '--epochs', '1',
  '--batch-size', '8', '--limit', '48', '--val-limit', '24', '--workers', '0', '--warmup-epochs', '0', '--drop-path', '0.1', '--quiet', '--json'];
const PT = ['pretrain', '--data', 'synthetic', '--depths', '1,1,1,1', '--dims', '8,16,24,32', '--decoder-embed-dim', '16', '--input-size', '64',
  '--epochs', '1', '--batch-size', '8', '--limit', '48', '--workers', '0', '--warmup-epochs', '0', '--vis-images', '2', '--quiet', '--json'];

test('fine-tuning: 2 ranks x batch 8 == 1 process x batch 8 x update-freq 2 (losses, weights, moments: every bit), Open MPI and MPICH', () => {
  const one = result(run(single(...FT, '--update-freq', '2', '--out', dir('ft1'))), 'one process');
  const two = result(run(ompi(2, ...FT, '--out', dir('ft2'))), 'Open MPI, 2 ranks');
  const mpich = result(run(hydra(2, ...FT, '--out', dir('ft3'))), 'MPICH, 2 ranks');
  for (const k of ['loss', 'val_top1', 'val_top5', 'val_loss', 'lr']) {
    assert.equal(two.epochs[0][k], one.epochs[0][k], `Open MPI ${k}`);
    assert.equal(mpich.epochs[0][k], one.epochs[0][k], `MPICH ${k}`);
  }
  sameTensors(join(dir('ft1'), 'checkpoint-last.safetensors'), join(dir('ft2'), 'checkpoint-last.safetensors'), 'Open MPI');
  sameTensors(join(dir('ft1'), 'checkpoint-last.safetensors'), join(dir('ft3'), 'checkpoint-last.safetensors'), 'MPICH');
  // Rank 0 alone wrote the run folder; the log has one line per epoch.
  assert.equal(readFileSync(join(dir('ft2'), 'log.jsonl'), 'utf8').trim().split('\n').length, 1);
  // The sum is exact, not approximately equal: a run with other weights differs.
  const other = result(run(single(...FT, '--update-freq', '2', '--seed', '1', '--out', dir('ft4'))), 'seed 1');
  assert.notEqual(other.epochs[0].loss, one.epochs[0].loss);
});

test('ranks and update-freq compose: 2 ranks x batch 4 x update-freq 2 == 1 process x batch 4 x update-freq 4', () => {
  const args = FT.map((a, i) => (FT[i - 1] === '--batch-size' ? '4' : a));
  const one = result(run(single(...args, '--update-freq', '4', '--out', dir('uf1'))), 'one process');
  const two = result(run(ompi(2, ...args, '--update-freq', '2', '--out', dir('uf2'))), '2 ranks');
  assert.equal(two.epochs[0].loss, one.epochs[0].loss);
  assert.equal(two.epochs[0].val_loss, one.epochs[0].val_loss);
  sameTensors(join(dir('uf1'), 'checkpoint-last.safetensors'), join(dir('uf2'), 'checkpoint-last.safetensors'), 'update-freq');
});

test('FCMAE pre-training: 2 ranks x batch 8 == 1 process x batch 8 x update-freq 2, every bit', () => {
  const one = result(run(single(...PT, '--update-freq', '2', '--out', dir('pt1'))), 'one process');
  const two = result(run(ompi(2, ...PT, '--out', dir('pt2'))), '2 ranks');
  assert.equal(two.epochs[0].loss, one.epochs[0].loss);
  assert.equal(two.epochs[0].steps, one.epochs[0].steps);
  sameTensors(join(dir('pt1'), 'checkpoint-last.safetensors'), join(dir('pt2'), 'checkpoint-last.safetensors'), 'FCMAE');
  assert.ok(readdirSync(dir('pt2')).some((f) => f.endsWith('.png')), 'rank 0 wrote the reconstruction PNG');
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

test('a SIGKILLed rank ends the job (non-zero exit, bounded time); the checkpoint resumes to the bits of an uninterrupted run', async () => {
  const r = await disturb(dir('kill'), 'SIGKILL');
  assert.notEqual(r.code, 0, 'the job failed');
  assert.ok(r.seconds < 30, `ended ${r.seconds.toFixed(1)} s after the kill`);
  const resumed = run(ompi(2, 'finetune', '--resume', '--out', dir('kill'), '--quiet', '--json'));
  assert.equal(resumed.code, 0, resumed.stderr.slice(-2000));
  const whole = run(ompi(2, ...FT, '--epochs', '3', '--limit', '960', '--out', dir('whole')));
  assert.equal(whole.code, 0, whole.stderr.slice(-2000));
  sameTensors(join(dir('whole'), 'checkpoint-last.safetensors'), join(dir('kill'), 'checkpoint-last.safetensors'), 'resumed');
});

test('a hung rank (SIGSTOP) is caught by the watchdog: one line, the job aborted within --mpi-timeout', async () => {
  const r = await disturb(dir('hang'), 'SIGSTOP', ['--mpi-timeout', '3']);
  assert.notEqual(r.code, 0);
  assert.ok(r.seconds < 30, `ended ${r.seconds.toFixed(1)} s after the stop`);
  assert.match(r.stderr, /convnextv2: mpi: rank 0 of 2: MPI_\w+ has not completed in \d+ s \(a rank died or hangs\); aborting the job/);
});

test('one implementation\'s libmpi under the other\'s launcher is one line, exit 1; other commands, and device backends, refuse to run as ranks', () => {
  const r = spawnSync(OMPI, ['--allow-run-as-root', '--oversubscribe', '-np', '2', 'node', CLI, ...FT, '--out', dir('wrong')], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env, CONVNEXTV2_MPI_LIB: 'libmpich.so.12' },
  });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /convnextv2: mpi: Open MPI started rank [01] of 2, but MPICH .* sees rank 0 of 1: the libmpi of one MPI implementation under another's launcher/);
  const e = run(ompi(2, 'info'));
  assert.notEqual(e.code, 0);
  assert.match(e.stderr, /convnextv2: info: started as rank [01] of 2 by Open MPI: only finetune and pretrain run data-parallel/);
  // A device backend under mpirun: refused with one line (the gradient sum reads host arrays).
  const g = run(ompi(2, ...FT, '--device', 'webgpu', '--out', dir('gpu')));
  assert.notEqual(g.code, 0);
  assert.match(g.stderr, /convnextv2: rank [01]: data-parallel training sums gradients on the host: 2 ranks on a device backend \(webgpu\) are not supported/);
});
