// The commands with --device webgpu: forward reproduces timm, a fine-tuning run started on the
// GPU resumes on the CPU with the same losses as a CPU-only run (1e-4), pre-training and bench run.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors_file.js';
import { relErr } from './helpers.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const FIX = join(ROOT, 'test/fixtures/reference');
const dir = mkdtempSync(join(tmpdir(), 'convnextv2-webgpu-cli-'));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], {
    encoding: 'utf8', cwd: ROOT, env: { ...process.env, CONVNEXTV2_DEBUG: '' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
// Whether the commands get an adapter, asked of the CLI itself: a WebGPU device opened in this
// process only to check would sit idle while the commands run, and dawn.node has been seen to
// deadlock tearing such a device down at exit (InstanceBase::ProcessEvents).
const probe = cli('info', '--device', 'webgpu');
const noGpu = probe.code === 0 && /^device: webgpu/m.test(probe.stdout) ? '' : (probe.stderr.trim().split('\n').pop() ?? `exit ${probe.code}`);
function gpu(t: TestContext): boolean {
  if (noGpu) t.skip(`no WebGPU adapter: ${noGpu}`);
  return !noGpu;
}
const lastJson = (stdout: string) => JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
const losses = (out: string) => readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { loss: number }).loss);

test('forward --device webgpu reproduces timm logits and features', (t) => {
  if (!gpu(t)) return;
  const ref = readSafetensors(join(FIX, 'small_timm.safetensors'));
  const input = join(dir, 'in.safetensors');
  writeSafetensors(input, [['pixel_values', ref.get('input.1.pixel_values')!]]);
  const ckpt = join(dir, 'small.safetensors');
  writeSafetensors(ckpt, [...ref].filter(([k]) => k.startsWith('param.')).map(([k, v]) => [k.slice(6), v] as const));
  const out = join(dir, 'out.safetensors');
  const r = cli('forward', '--device', 'webgpu', '--checkpoint', ckpt, '--input', input, '--output', out, '--features');
  assert.equal(r.code, 0, r.stderr);
  const got = readSafetensors(out);
  assert.ok(relErr(got.get('logits')!.data, ref.get('output.1.logits')!.data) <= 1e-4, 'logits');
  for (let s = 0; s < 4; s++) assert.ok(relErr(got.get(`stage${s}`)!.data, ref.get(`output.1.stage${s}`)!.data) <= 1e-4, `stage${s}`);
});

const FT = ['finetune', '--depths', '1,1,1,1', '--dims', '8,16,24,32', '--data', 'synthetic', '--input-size', '32', '--batch-size', '8',
  '--limit', '32', '--val-limit', '16', '--warmup-epochs', '1', '--blr', '1e-3', '--workers', '0', '--aa', 'none', '--model-ema', '--model-ema-decay', '0.9',
  '--epochs', '2', '--quiet'];

test('finetune --device webgpu: one epoch on the GPU, resumed on the CPU, gives the CPU-only run (1e-4), EMA included', (t) => {
  if (!gpu(t)) return;
  const cpuRun = join(dir, 'ft-cpu');
  assert.equal(cli(...FT, '--out', cpuRun).code, 0);
  const moved = join(dir, 'ft-moved');
  const a = cli(...FT, '--out', moved, '--device', 'webgpu', '--stop-after', '1');
  assert.equal(a.code, 0, a.stderr);
  const b = cli('finetune', '--out', moved, '--resume', '--device', 'cpu', '--quiet');
  assert.equal(b.code, 0, b.stderr);
  const want = losses(cpuRun);
  const got = losses(moved);
  assert.equal(got.length, 2);
  got.forEach((l, i) => assert.ok(Math.abs(l - want[i]) <= 1e-4 * Math.abs(want[i]), `epoch ${i + 1}: ${l} vs ${want[i]}`));
  const w = readSafetensors(join(moved, 'checkpoint-last.safetensors'));
  const c = readSafetensors(join(cpuRun, 'checkpoint-last.safetensors'));
  for (const name of ['stem.0.weight', 'head.fc.weight', 'ema.head.fc.weight', 'optimizer.v.stem.0.weight']) {
    assert.ok(relErr(w.get(name)!.data, c.get(name)!.data) <= 1e-3, name);
  }
});

test('pretrain --device webgpu: an epoch whose loss is the CPU one (1e-4); bench --device webgpu says what it ran on', (t) => {
  if (!gpu(t)) return;
  const PRE = ['pretrain', '--depths', '1,1,1,1', '--dims', '8,16,24,32', '--decoder-embed-dim', '16', '--data', 'synthetic', '--input-size', '64',
    '--batch-size', '8', '--limit', '16', '--warmup-epochs', '0.5', '--blr', '1.5e-3', '--workers', '0', '--vis-images', '1', '--seed', '3', '--epochs', '1', '--quiet'];
  const g = join(dir, 'pre-gpu'), c = join(dir, 'pre-cpu');
  const rg = cli(...PRE, '--out', g, '--device', 'webgpu');
  assert.equal(rg.code, 0, rg.stderr);
  assert.equal(cli(...PRE, '--out', c).code, 0);
  const [lg] = losses(g), [lc] = losses(c);
  assert.ok(Math.abs(lg - lc) <= 1e-4 * Math.abs(lc), `${lg} vs ${lc}`);
  for (const mode of ['infer', 'train', 'pretrain']) {
    const r = cli('bench', '--device', 'webgpu', '--mode', mode, '--batch-size', '2', '--input-size', '64', '--iters', '2', '--warmup', '1', '--json');
    assert.equal(r.code, 0, r.stderr);
    const rec = lastJson(r.stdout);
    assert.equal(rec.kernels, 'webgpu');
    assert.match(String(rec.device), /\S/);
    assert.ok(Number(rec.images_per_second) > 0);
  }
});

test('a software adapter is said once (a CPU emulation, slower than --device cpu); info --device auto says what it chose and why', (t) => {
  const auto = cli('info', '--device', 'auto', '--json');
  assert.equal(auto.code, 0, auto.stderr);
  const line = auto.stdout.split('\n').find((l) => l.startsWith('device auto chose ')) ?? assert.fail(`no choice said:\n${auto.stdout}`);
  assert.match(line, /^device auto chose (the GPU .*: a hardware WebGPU adapter|the CPU kernels: (no WebGPU device \(.+\)|the only WebGPU adapter, .+, is a software one \(a CPU emulation: correct but slower than the CPU kernels\)))$/);
  assert.equal((lastJson(auto.stdout).device_auto as string), line.slice('device auto chose '.length));
  if (!gpu(t)) return;
  const software = /software|llvmpipe|lavapipe|swiftshader/i.test(probe.stdout);
  const notes = probe.stderr.split('\n').filter((l) => l.includes('is a software WebGPU adapter'));
  if (software) {
    assert.equal(notes.length, 1, probe.stderr);
    assert.match(notes[0], /^convnextv2: note: .+ is a software WebGPU adapter, a CPU emulation: correct, but slower than --device cpu$/);
    assert.match(line, /chose the CPU kernels: the only WebGPU adapter, .+, is a software one/);
  } else assert.equal(notes.length, 0, 'no note on a hardware adapter');
});
