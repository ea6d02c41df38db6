// FCMAE pre-training end to end: the loss falls over 2 epochs on `synthetic`, PNGs and the
// log are written, a run killed with SIGKILL and resumed (with another thread count) gives
// the same per-epoch losses and checkpoint as an uninterrupted run (test/resume.test.ts: --stop-after), a diverging run stops with one line,
// and `fcmae-loss` reproduces the reference loss.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors_file.js';
import { loadCheckpoint } from '../src/io/checkpoint_file.js';
import { maskedMse, normalizePatches, patchifyTarget, targetAndLoss } from '../src/kernels/fcmae_loss.js';
import sharp from 'sharp';
import { assertSameCheckpoint } from './helpers.js';

const ROOT = new URL('..', import.meta.url).pathname;
const MAIN = join(ROOT, 'src/cli/main.ts');
const dir = mkdtempSync(join(tmpdir(), 'convnextv2-pretrain-'));
const BASE = ['pretrain', '--model', 'atto', '--data', 'synthetic', '--input-size', '64', '--batch-size', '16',
  '--limit', '64', '--warmup-epochs', '0.5', '--blr', '1.5e-3', '--workers', '1', '--vis-images', '2'];

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function losses(out: string): number[] {
  return readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { loss: number }).loss);
}

test('2 epochs on synthetic: the loss falls, log, PNGs and an FCMAE checkpoint are written', async () => {
  const out = join(dir, 'run');
  const r = cli([...BASE, '--epochs', '2', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  const l = losses(out);
  assert.equal(l.length, 2);
  assert.ok(l[1] < l[0], `loss ${l[0]} -> ${l[1]}`);
  const rec = JSON.parse(readFileSync(join(out, 'log.jsonl'), 'utf8').split('\n')[0]);
  for (const k of ['epoch', 'loss', 'lr', 'images_per_second']) assert.ok(k in rec, k);
  assert.equal(rec.epoch, 1);
  // The reconstruction picture: a row per --vis-images image, original | masked | reconstruction.
  const pngs = await Promise.all(['001', '002'].map((e) => sharp(join(out, `reconstruction-epoch${e}.png`)).raw().toBuffer({ resolveWithObject: true })));
  for (const { info } of pngs) {
    assert.ok(info.width >= 3 * 64 && info.height >= 2 * 64, `${info.width}x${info.height}`);
  }
  assert.ok(!pngs[0].data.equals(pngs[1].data), 'the reconstructions change as the model learns');
  const ck = loadCheckpoint(join(out, 'checkpoint-last.safetensors'), { extra: true });
  assert.equal(ck.fcmae?.decoderDim, 512);
  assert.equal(ck.metadata.epoch, '2');
  assert.ok(ck.extraNames.some((n) => n.startsWith('optimizer.m.')));
});

test('SIGKILL after the first checkpoint, then --resume with another thread count: the same losses and checkpoint', async () => {
  const straight = join(dir, 'straight');
  assert.equal(cli([...BASE, '--epochs', '3', '--out', straight]).code, 0);
  const killed = join(dir, 'killed');
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...BASE, '--epochs', '3', '--out', killed], { stdio: 'ignore' });
  // Kill as soon as epoch 1's checkpoint exists (it is renamed into place whole), in the
  // middle of epoch 2: what epoch 2 had done is lost and must be redone exactly.
  const signal = await new Promise<NodeJS.Signals | null>((resolve, reject) => {
    const t = setInterval(() => {
      if (existsSync(join(killed, 'checkpoint-last.safetensors'))) {
        clearInterval(t);
        child.kill('SIGKILL');
      }
    }, 5);
    child.on('exit', (_code, sig) => { clearInterval(t); resolve(sig); });
    child.on('error', reject);
  });
  assert.equal(signal, 'SIGKILL', 'the run was killed before it finished');
  const r = cli([...BASE, '--epochs', '3', '--out', killed, '--resume', '--threads', '1']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /resumed after epoch [12] of 3 \(its checkpoint\)/);
  assert.deepEqual(losses(killed), losses(straight));
  assertSameCheckpoint(join(straight, 'checkpoint-last.safetensors'), join(killed, 'checkpoint-last.safetensors'));
});

test('a diverging run stops with a one-line error that says what checkpoint is left', () => {
  const r = cli([...BASE, '--epochs', '2', '--warmup-epochs', '0', '--blr', '1e4', '--out', join(dir, 'nan')]);
  assert.equal(r.code, 1);
  // stderr is not a terminal here: no progress lines, so the error is all of it.
  assert.match(r.stderr, /^convnextv2: pretrain: loss is (NaN|Infinity) at epoch 1, step \d+; stopping \(no checkpoint was written yet in \S+\/nan; try a lower --blr or more --warmup-epochs\)\n$/);
});

test('fcmae-loss reproduces the reference loss and pred from the official .pt (sparse and dense)', () => {
  const F = join(ROOT, 'test/fixtures/reference');
  const ref = readSafetensors(join(F, 'fcmae_small.safetensors'));
  const input = join(dir, 'fcmae_in.safetensors');
  writeSafetensors(input, [['pixel_values', ref.get('input.pixel_values')!], ['mask', ref.get('input.mask')!]]);
  for (const extra of [[], ['--dense-masking']]) {
    const out = join(dir, 'fcmae_out.safetensors');
    const r = cli(['fcmae-loss', '--checkpoint', join(F, 'fcmae_small_official.pt'), '--input', input, '--output', out, '--norm-pix-loss', ...extra]);
    assert.equal(r.code, 0, r.stderr);
    const got = readSafetensors(out);
    const want = ref.get('output.loss')!.data[0];
    assert.ok(Math.abs(got.get('loss')!.data[0] - want) / want < 1e-4);
    const p = got.get('pred')!.data;
    const q = ref.get('output.pred')!.data;
    let m = 0, s = 0;
    for (let i = 0; i < q.length; i++) { m = Math.max(m, Math.abs(p[i] - q[i])); s = Math.max(s, Math.abs(q[i])); }
    assert.ok(m / s < 1e-4);
  }
  const bad = cli(['fcmae-loss', '--checkpoint', join(F, 'small_official.pt'), '--input', input, '--output', join(dir, 'x.safetensors')]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /not an FCMAE checkpoint/);
});

test('targetAndLoss = patchifyTarget + normalizePatches + maskedMse, bit for bit', () => {
  const [N, H, W, C, p] = [3, 64, 96, 3, 32];
  const rows = N * 6, P = p * p * C;
  const x = Float32Array.from({ length: N * H * W * C }, (_, i) => Math.sin(i * 0.37) * 2 + 0.3);
  const pred = Float32Array.from({ length: rows * P }, (_, i) => Math.cos(i * 0.11));
  const mask = Float32Array.from({ length: rows }, (_, i) => (i % 3 === 1 ? 0 : 1));
  for (const norm of [true, false]) {
    const t1 = patchifyTarget(x, N, H, W, C, p, new Float32Array(rows * P));
    const s1 = norm ? normalizePatches(t1, rows, P) : null;
    const d1 = new Float32Array(rows * P);
    const l1 = maskedMse(pred, t1, mask, rows, P, d1);
    const t2 = new Float32Array(rows * P), d2 = new Float32Array(rows * P).fill(5);
    const r = targetAndLoss(x, N, H, W, C, p, norm, pred, mask, t2, d2);
    assert.equal(r.loss, l1);
    assert.deepEqual(t2, t1);
    assert.deepEqual(d2, d1);
    assert.deepEqual(r.patchStats, s1);
  }
});
