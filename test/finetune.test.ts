// Fine-tuning pieces against hand-computed values: layer-wise lr decay ids and scales (the
// official assignment on our names), the lr schedule, label smoothing, EMA, one AdamW step;
// and the finetune command end to end with an exact resume.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { layerId, layerScale } from '../src/train/layer_decay.js';
import { cosineScheduler, lrAt } from '../src/train/schedule.js';
import { ReferenceKernels } from '../src/kernels/reference.js';
import { Param } from '../src/nn/param.js';
import { AdamW } from '../src/train/adamw.js';
import { ModelEma } from '../src/train/ema.js';
import { smoothTargets } from '../src/train/step.js';
import { MODEL_SIZES } from '../src/model/config.js';

const tiny = MODEL_SIZES.tiny.depths; // [3, 3, 9, 3]
const base = MODEL_SIZES.base.depths; // [3, 3, 27, 3]

test("layer ids, 'single' (one per block) on tiny names", () => {
  assert.equal(layerId('stem.0.weight', tiny, 'single'), 1);
  assert.equal(layerId('stages.0.blocks.0.conv_dw.weight', tiny, 'single'), 1);
  assert.equal(layerId('stages.0.blocks.2.mlp.fc1.weight', tiny, 'single'), 3);
  assert.equal(layerId('stages.1.downsample.1.weight', tiny, 'single'), 4);
  assert.equal(layerId('stages.1.blocks.0.norm.weight', tiny, 'single'), 4);
  assert.equal(layerId('stages.2.blocks.8.mlp.grn.weight', tiny, 'single'), 3 + 3 + 8 + 1);
  assert.equal(layerId('stages.3.downsample.0.bias', tiny, 'single'), 16);
  assert.equal(layerId('stages.3.blocks.2.mlp.fc2.bias', tiny, 'single'), 18);
  assert.equal(layerId('head.fc.weight', tiny, 'single'), 19);
  assert.equal(layerId('head.norm.weight', tiny, 'single'), 19);
  // scale = decay^(num_layers + 1 - id), num_layers = 18
  assert.equal(layerScale('head.fc.weight', tiny, 'single', 0.9), 1);
  assert.ok(Math.abs(layerScale('stem.0.weight', tiny, 'single', 0.9) - 0.9 ** 18) < 1e-15);
  assert.ok(Math.abs(layerScale('stages.3.blocks.2.mlp.fc2.bias', tiny, 'single', 0.9) - 0.9) < 1e-15);
});

test("layer ids, 'group' (12 groups of three blocks) on base names", () => {
  assert.equal(layerId('stem.1.weight', base, 'group'), 0);
  assert.equal(layerId('stages.0.blocks.2.conv_dw.weight', base, 'group'), 1);
  assert.equal(layerId('stages.1.downsample.0.weight', base, 'group'), 2);
  assert.equal(layerId('stages.1.blocks.1.mlp.fc1.weight', base, 'group'), 2);
  assert.equal(layerId('stages.2.downsample.1.weight', base, 'group'), 3);
  assert.equal(layerId('stages.2.blocks.0.norm.weight', base, 'group'), 3);
  assert.equal(layerId('stages.2.blocks.5.norm.weight', base, 'group'), 4);
  assert.equal(layerId('stages.2.blocks.26.norm.weight', base, 'group'), 11);
  assert.equal(layerId('stages.3.downsample.1.weight', base, 'group'), 12);
  assert.equal(layerId('stages.3.blocks.0.mlp.fc1.weight', base, 'group'), 12);
  assert.equal(layerId('head.fc.bias', base, 'group'), 13);
  assert.ok(Math.abs(layerScale('stem.0.weight', base, 'group', 0.6) - 0.6 ** 13) < 1e-15);
  assert.ok(Math.abs(layerScale('stages.3.blocks.0.mlp.fc1.weight', base, 'group', 0.6) - 0.6) < 1e-15);
  assert.equal(layerScale('head.fc.bias', base, 'group', 0.6), 1);
});

test('lr schedules: official fine-tuning cosine_scheduler and pre-training adjust_learning_rate', () => {
  // np.linspace(0, 1, 4) warmup, then 1e-6 + 0.5 (1 - 1e-6)(1 + cos(pi i / 6)) for i < 6.
  const s = cosineScheduler(1, 1e-6, 5, 2, 2);
  assert.equal(s.length, 10);
  assert.deepEqual([...s.slice(0, 4)].map((v) => +v.toFixed(12)), [0, 0.333333333333, 0.666666666667, 1]);
  for (let i = 0; i < 6; i++) assert.ok(Math.abs(s[4 + i] - (1e-6 + 0.5 * (1 - 1e-6) * (1 + Math.cos((Math.PI * i) / 6)))) < 1e-12);
  const noWarm = cosineScheduler(2, 0, 2, 3, 0);
  assert.equal(noWarm[0], 2);
  assert.ok(Math.abs(noWarm[3] - 1) < 1e-12);
  const p = { lr: 1, minLr: 0, warmupEpochs: 2, epochs: 10 };
  assert.equal(lrAt(p, 1), 0.5);
  assert.equal(lrAt(p, 2), 1);
  assert.ok(Math.abs(lrAt(p, 6) - 0.5) < 1e-12);
});

test('label smoothing: targets and the loss of a known case', () => {
  const t = smoothTargets([2], 4, 0.2);
  assert.deepEqual([...t].map((v) => +v.toFixed(6)), [0.05, 0.05, 0.85, 0.05]);
  const k = new ReferenceKernels();
  const logits = Float32Array.of(1, 2, 3, 4);
  const lse = Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3) + Math.exp(4));
  // (1 - s) * nll + s * mean(-log p), as timm's LabelSmoothingCrossEntropy
  const want = 0.8 * (lse - 3) + 0.2 * (4 * lse - 10) / 4;
  assert.ok(Math.abs(k.softmaxCrossEntropy(logits, t, 1, 4, null) - want) < 1e-6);
});

test('EMA update: ema = d * ema + (1 - d) * w', () => {
  const p = new Param('w', [2], false);
  p.data.set([1, 2]);
  const ema = new ModelEma([p], 0.9);
  p.data.set([3, 6]);
  ema.update();
  assert.deepEqual([...ema.shadow.get('w')!].map((v) => +v.toFixed(6)), [1.2, 2.4]);
  ema.swap();
  assert.deepEqual([...p.data].map((v) => +v.toFixed(6)), [1.2, 2.4]);
});

test('AdamW: one step equals the hand-computed PyTorch update', () => {
  const p = new Param('w', [2], false);
  p.data.set([1, -2]);
  p.grad.set([0.5, 0.1]);
  const opt = new AdamW([{ params: [p], weightDecay: 0.1, lrScale: 0.5 }], { betas: [0.9, 0.999], eps: 1e-8 });
  opt.update(new ReferenceKernels(), 0.01);
  // lr = 0.01 * 0.5; p *= 1 - lr*wd; m_hat = g; v_hat = g^2; p -= lr * g / (|g| + eps)
  const lr = 0.005;
  const want = [1 * (1 - lr * 0.1) - lr * 0.5 / (0.5 + 1e-8), -2 * (1 - lr * 0.1) - lr * 0.1 / (0.1 + 1e-8)];
  p.data.forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-6, `${v} vs ${want[i]}`));
});

test('finetune: a run interrupted after epoch 1 and resumed gives the same log', () => {
  const ROOT = new URL('..', import.meta.url).pathname;
  const dir = mkdtempSync(join(tmpdir(), 'convnextv2-ft-'));
  const args = ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'finetune', '--data', 'synthetic', '--depths', '1,1,1,1', '--dims', '8,16,24,32',
    '--input-size', '32', '--batch-size', '16', '--epochs', '2', '--limit', '64', '--warmup-epochs', '1', '--blr', '1e-3', '--drop-path', '0.1',
    '--mixup', '0.8', '--cutmix', '1', '--model-ema', '--model-ema-decay', '0.9', '--workers', '0'];
  const run = (out: string, extra: string[]) => spawnSync(process.execPath, [...args, '--out', out, ...extra], { encoding: 'utf8' });
  const a = run(join(dir, 'a'), []);
  assert.equal(a.status, 0, a.stderr);
  assert.equal(run(join(dir, 'b'), ['--stop-after', '1']).status, 0);
  const b = run(join(dir, 'b'), ['--resume', '--threads', '1']);
  assert.equal(b.status, 0, b.stderr);
  const strip = (f: string) => readFileSync(f, 'utf8').trim().split('\n').map((l) => {
    const r = JSON.parse(l);
    delete r.seconds; delete r.images_per_second;
    return r;
  });
  const la = strip(join(dir, 'a', 'log.jsonl'));
  assert.equal(la.length, 2);
  for (const k of ['epoch', 'loss', 'lr', 'val_top1', 'val_loss']) assert.ok(k in la[0], k);
  assert.deepEqual(strip(join(dir, 'b', 'log.jsonl')), la);
});
