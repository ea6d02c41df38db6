// Commands and flags through the shipped CLI (dist/cli/main.js) that other tests do not reach:
// the demo (at a tiny budget), --recipe, --update-freq, --clip-grad, --fcmae-init official,
// mnist:DIR and CONVNEXTV2_KERNELS; and the package entry src/index.ts running the README's
// library example.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import * as lib from '../src/index.js';
import { readSafetensors } from '../src/io/safetensors_file.js';
import { relErr, SMALL_TIMM } from './helpers.js';

const ROOT = new URL('..', import.meta.url).pathname;
const MAIN = join(ROOT, 'dist/cli/main.js');
const dir = mkdtempSync(join(tmpdir(), 'convnextv2-commands-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function cli(args: string[], env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...process.env, CONVNEXTV2_DEBUG: '', ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
function ok(args: string[], env: Record<string, string> = {}): { stdout: string; stderr: string } {
  const r = cli(args, env);
  assert.equal(r.code, 0, `convnextv2 ${args.join(' ')}\n${r.stderr}`);
  return r;
}
const lastJson = (stdout: string) => JSON.parse(stdout.trim().split('\n').pop()!);
const log = (out: string) => readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
const weights = (file: string) => new Map([...readSafetensors(file)].filter(([n]) => !/^(optimizer|ema)\./.test(n)));

const TINY = ['--depths', '1,1,1,1', '--dims', '8,16,24,32'];
const FT = ['finetune', ...TINY, '--data', 'synthetic', '--input-size', '32', '--limit', '64', '--val-limit', '32', '--workers', '0',
  '--aa', 'none', '--reprob', '0', '--mixup', '0', '--cutmix', '0', '--drop-path', '0', '--warmup-epochs', '0'];

test('demo at a tiny budget: runs the three stages, writes the PNGs, and its JSON is the logs\' last top-1', async () => {
  const out = join(dir, 'demo');
  const r = ok(['demo', '--out', out, '--pretrain-epochs', '1', '--pretrain-images', '64', '--finetune-epochs', '2', '--labelled', '40', '--json']);
  assert.match(r.stdout, /demo 1\/3: FCMAE pre-training on 64 unlabelled images/);
  assert.match(r.stdout, /demo 3\/3: the same fine-tuning from scratch/);
  const rec = lastJson(r.stdout) as { out: string; fcmae_top1: number; scratch_top1: number };
  assert.equal(rec.out, out);
  assert.equal(log(join(out, 'pretrain')).length, 1);
  const a = log(join(out, 'finetune-fcmae')), b = log(join(out, 'finetune-scratch'));
  assert.deepEqual([a.length, b.length], [2, 2]);
  assert.equal(rec.fcmae_top1, a[1].val_top1);
  assert.equal(rec.scratch_top1, b[1].val_top1);
  for (const png of ['loss-curves.png', 'pretrain-loss.png', 'val-top1.png', 'pretrain/reconstruction-epoch001.png']) {
    const meta = await sharp(join(out, png)).metadata();
    assert.equal(meta.format, 'png', png);
    assert.ok(meta.width! >= 200 && meta.height! >= 100, `${png} is ${meta.width}x${meta.height}`);
  }
});

test('--recipe atto applies the paper\'s settings under explicit flags', () => {
  const out = join(dir, 'recipe');
  const r = ok([...FT, '--recipe', 'atto', '--epochs', '1', '--batch-size', '16', '--smoothing', '0.05', '--out', out]);
  // From the recipe: layer decay 0.9 'single', EMA, blr 2e-4 (lr = blr * 16 / 256), weight decay 0.3; --smoothing and --epochs given win.
  assert.match(r.stdout, /layer decay 0\.9 \(single\)/);
  assert.match(r.stdout, /smoothing 0\.05/);
  assert.match(r.stdout, /EMA 0\.9999/);
  const [row] = log(out);
  assert.equal(row.epochs, 1);
  assert.ok(Math.abs(row.peak_lr - (2e-4 * 16) / 256) < 1e-12, `peak lr ${row.peak_lr}`);
  assert.equal(typeof row.ema_top1, 'number', '--model-ema-eval from the recipe');
  const bad = cli([...FT, '--recipe', 'gigantic', '--epochs', '1', '--out', join(dir, 'recipe-bad')]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^convnextv2: finetune: unknown --recipe 'gigantic' \(one of atto, /);
});

test('--update-freq 2 at batch 8 takes the steps of batch 16: the same weights (to rounding), unlike batch 8 alone', () => {
  const run = (name: string, extra: string[]) => {
    const out = join(dir, name);
    ok([...FT, '--epochs', '1', '--blr', '1e-3', '--out', out, ...extra]);
    return weights(join(out, 'checkpoint-last.safetensors'));
  };
  const big = run('uf-16', ['--batch-size', '16']);
  const acc = run('uf-8x2', ['--batch-size', '8', '--update-freq', '2']);
  const small = run('uf-8', ['--batch-size', '8', '--lr', String((1e-3 * 16) / 256)]);
  let same = 0, diff = 0;
  for (const [n, t] of big) {
    same = Math.max(same, relErr(acc.get(n)!.data, t.data));
    diff = Math.max(diff, relErr(small.get(n)!.data, t.data));
  }
  assert.ok(same < 1e-4, `accumulated vs batch 16: ${same}`);
  assert.ok(diff > 100 * same, `batch 8 without accumulation should differ: ${diff} vs ${same}`);
});

test('--clip-grad clips the total gradient norm (torch semantics), and the flag reaches the update', async () => {
  // Library: the scale is max_norm / (norm + 1e-6), applied only when below 1; the norm is returned.
  const p = new lib.Param('w', [3], false);
  p.grad.set([3, 4, 12]);
  assert.equal(await lib.clipGradNorm(await lib.createBackend('reference'), [p], 1), 13);
  const f = 1 / (13 + 1e-6);
  assert.deepEqual([...p.grad], [3 * f, 4 * f, 12 * f].map(Math.fround));
  p.grad.set([0.3, 0.4, 0]);
  assert.ok(Math.abs(await lib.clipGradNorm(await lib.createBackend('reference'), [p], 1) - 0.5) < 1e-7);
  assert.deepEqual([...p.grad], [0.3, 0.4, 0].map(Math.fround), 'norm below max: unchanged');
  // CLI: a clip at 1e-13 leaves AdamW steps of ~g / (|g| + eps) ~ 0 (weight decay off): the
  // weights stay at their initial values, while the unclipped run moves them.
  const init = join(dir, 'clip-init.safetensors');
  const cfg = lib.makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 10 });
  lib.saveCheckpoint(init, { config: cfg, state: await new lib.ConvNeXtV2(cfg, { kernels: await lib.createBackend('cpu'), seed: 5 }).stateDict() });
  const start = weights(init);
  const run = (name: string, extra: string[]) => {
    const out = join(dir, name);
    ok([...FT, '--init', init, '--epochs', '1', '--batch-size', '16', '--blr', '1e-2', '--weight-decay', '0', '--out', out, ...extra]);
    return weights(join(out, 'checkpoint-last.safetensors'));
  };
  const moved = (w: Map<string, { data: Float32Array }>) => Math.max(...[...start].map(([n, t]) => relErr(w.get(n)!.data, t.data)));
  const free = moved(run('noclip', []));
  const clipped = moved(run('clip', ['--clip-grad', '1e-13']));
  assert.ok(free > 1e-3, `unclipped run moved the weights by ${free}`);
  assert.ok(clipped < free / 100, `clipped run moved them by ${clipped}`);
});

test('pretrain --fcmae-init official re-initialises the encoder with std 1 (timm: 0.02)', () => {
  const std = (a: Float32Array) => Math.sqrt(a.reduce((s, v) => s + v * v, 0) / a.length);
  const stds: Record<string, number> = {};
  for (const init of ['official', 'timm']) {
    const out = join(dir, `init-${init}`);
    // A learning rate of 1e-30: the saved weights are the initialisation.
    ok(['pretrain', ...TINY, '--decoder-embed-dim', '16', '--data', 'synthetic', '--input-size', '64', '--batch-size', '16', '--limit', '16',
      '--epochs', '1', '--warmup-epochs', '0', '--lr', '1e-30', '--weight-decay', '0', '--workers', '0', '--vis-images', '1', '--fcmae-init', init, '--out', out]);
    const ck = readSafetensors(join(out, 'checkpoint-last.safetensors'));
    stds[init] = std(ck.get('stages.2.blocks.0.mlp.fc1.weight')!.data);
    stds[`${init}-down`] = std(ck.get('stages.2.downsample.1.weight')!.data);
  }
  // trunc_normal_(std=1) truncated at +-2 has std 0.88; downsampling convs get 0.02 in both.
  assert.ok(Math.abs(stds.official - 0.88) < 0.08, `official fc1 std ${stds.official}`);
  assert.ok(Math.abs(stds.timm - 0.02) < 0.004, `timm fc1 std ${stds.timm}`);
  assert.ok(Math.abs(stds['official-down'] - 0.02) < 0.004 && Math.abs(stds['timm-down'] - 0.02) < 0.004);
});

test('mnist:DIR reads IDX files with digit class names and trains', () => {
  const d = join(dir, 'mnist');
  mkdirSync(d);
  const idx = (dims: number[], payload: Uint8Array) => {
    const b = Buffer.alloc(4 + 4 * dims.length + payload.length);
    b[2] = 0x08;
    b[3] = dims.length;
    dims.forEach((v, i) => b.writeUInt32BE(v, 4 + 4 * i));
    b.set(payload, 4 + 4 * dims.length);
    return b;
  };
  const n = 40;
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
  // Each digit class is a brighter band at its own row: learnable.
  const px = Uint8Array.from({ length: n * 28 * 28 }, (_, i) => (Math.floor((i % 784) / 28) === 2 * labels[Math.floor(i / 784)] + 4 ? 250 : 20));
  writeFileSync(join(d, 'train-images-idx3-ubyte.gz'), gzipSync(idx([n, 28, 28], px)));
  writeFileSync(join(d, 'train-labels-idx1-ubyte.gz'), gzipSync(idx([n], labels)));
  writeFileSync(join(d, 't10k-images-idx3-ubyte.gz'), gzipSync(idx([n, 28, 28], px)));
  writeFileSync(join(d, 't10k-labels-idx1-ubyte.gz'), gzipSync(idx([n], labels)));
  const ds = lib.openDataset(`mnist:${d}`, 'train');
  assert.deepEqual(ds.classes, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
  assert.equal(ds.length, n);
  const out = join(dir, 'mnist-run');
  ok(['finetune', ...TINY, '--data', `mnist:${d}`, '--input-size', '32', '--batch-size', '8', '--epochs', '1', '--workers', '0', '--warmup-epochs', '0', '--out', out]);
  const ev = lastJson(ok(['eval', '--checkpoint', out, '--data', `mnist:${d}`, '--split', 'test', '--json']).stdout) as { images: number; per_class: { label: string }[] };
  assert.equal(ev.images, n);
  assert.deepEqual(ev.per_class.map((c) => c.label), ds.classes);
  const bad = cli(['eval', '--checkpoint', out, '--data', 'mnist']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^convnextv2: mnist needs a folder: mnist:DIR$/m);
});

test('CONVNEXTV2_KERNELS=reference runs the TypeScript reference (same logits as timm); an unknown value is refused', () => {
  const ck = join(dir, 'small_timm.safetensors');
  const ref = readSafetensors(SMALL_TIMM);
  lib.writeSafetensors(ck, [...ref].filter(([k]) => k.startsWith('param.')).map(([k, v]) => [k.slice(6), v] as const));
  const input = join(dir, 'in.safetensors');
  lib.writeSafetensors(input, [['pixel_values', ref.get('input.0.pixel_values')!]]);
  const info = lastJson(ok(['info', '--json'], { CONVNEXTV2_KERNELS: 'reference' }).stdout) as { kernels: string; isa: string };
  assert.deepEqual([info.kernels, info.isa], ['reference', 'reference']);
  const o = join(dir, 'out-ref.safetensors');
  ok(['forward', '--checkpoint', ck, '--input', input, '--output', o], { CONVNEXTV2_KERNELS: 'reference' });
  assert.ok(relErr(readSafetensors(o).get('logits')!.data, ref.get('output.0.logits')!.data) <= 1e-4);
  const bad = cli(['info'], { CONVNEXTV2_KERNELS: 'cuda' });
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr.trim(), 'convnextv2: CONVNEXTV2_KERNELS=cuda: unknown kernels (use native, reference, wasm or webgpu, or leave it unset)');
  const missing = cli(['info'], { CONVNEXTV2_KERNELS: 'native', CONVNEXTV2_ADDON: join(dir, 'nope.node') });
  assert.equal(missing.code, 2);
  assert.match(missing.stderr.trim(), /^convnextv2: CONVNEXTV2_KERNELS=native: the native addon did not load \(.*nope\.node/);
});

test('the package entry (src/index.ts) runs the README\'s library example at a small size', async () => {
  const kernels = await lib.createBackend('cpu');
  const model = new lib.ConvNeXtV2(lib.makeConfig('atto', { numClasses: 10, dropPathRate: 0.1 }), { kernels, seed: 0 });
  const B = 2;
  const x = { shape: [1, 3, 64, 64], data: Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => Math.sin(i)) };
  const { logits, preLogits } = await model.forward(x);
  assert.deepEqual([logits!.shape, preLogits.shape], [[1, 10], [1, 320]]);
  const { stages } = await model.forward(x, { stages: 'NCHW' });
  assert.deepEqual(stages!.map((s) => s.shape), [[1, 40, 16, 16], [1, 80, 8, 8], [1, 160, 4, 4], [1, 320, 2, 2]]);
  const opt = new lib.AdamW(model.params, { lr: 1e-3, weightDecay: 0.05 });
  const batch = Float32Array.from({ length: B * 3 * 64 * 64 }, (_, i) => Math.cos(i * 0.1));
  const { loss } = await lib.trainStep(model, opt, { shape: [B, 3, 64, 64], data: batch }, [1, 7], { smoothing: 0.1 });
  assert.ok(Number.isFinite(loss) && loss > 0);
  const fcmae = new lib.FCMAE(lib.makeConfig('atto'), { maskRatio: 0.6, normPixLoss: true }, { kernels });
  const mask = fcmae.randomMask(B, 64, 64);
  assert.deepEqual(mask.shape, [B, 4]);
  const out = await fcmae.forward({ shape: [B, 3, 64, 64], data: batch }, mask);
  assert.deepEqual(out.pred.shape, [B, 4, 3072]);
  fcmae.backward();
  new lib.AdamW(fcmae.params, { lr: 1.5e-4, betas: [0.9, 0.95], weightDecay: 0.05 }).update(fcmae.kernels);
  assert.throws(() => new lib.FCMAE(lib.makeConfig('atto'), { decoderEmbedDim: 32 } as never, { kernels }), /decoderEmbedDim/);
});
