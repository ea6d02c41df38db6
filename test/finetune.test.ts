// Fine-tuning pieces against hand-computed values: layer-wise lr decay ids and scales (the
// official assignment on our names), the lr schedule, label smoothing, EMA, AdamW against a
// float64 PyTorch AdamW over many steps (exact resume of the command: test/resume.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { layerId, layerScale } from '../src/train/layer_decay.js';
import { lrAt } from '../src/train/schedule.js';
import { ReferenceKernels } from '../src/kernels/reference.js';
import { NativeKernels } from '../src/kernels/native.js';
import type { Kernels } from '../src/kernels/types.js';
import { Rng } from '../src/rng.js';
import { relErr } from './helpers.js';
import { Param } from '../src/nn/param.js';
import { AdamW } from '../src/train/adamw.js';
import { ModelEma } from '../src/train/ema.js';
import { smoothTargets } from '../src/train/step.js';
import { MODEL_SIZES } from '../src/model/config.js';
import { cpu } from './backend.js';

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

test('lr schedule: the official adjust_learning_rate (both scripts), at fractional epochs', () => {
  const p = { lr: 1, minLr: 0, warmupEpochs: 2, epochs: 10 };
  assert.equal(lrAt(p, 0), 0);
  assert.equal(lrAt(p, 0.5), 0.25);
  assert.equal(lrAt(p, 1), 0.5);
  assert.equal(lrAt(p, 2), 1);
  assert.ok(Math.abs(lrAt(p, 6) - 0.5) < 1e-12);
  assert.ok(Math.abs(lrAt({ ...p, minLr: 1e-6 }, 10) - 1e-6) < 1e-15, 'min lr at the end');
  assert.equal(lrAt({ lr: 2, minLr: 0, warmupEpochs: 0, epochs: 2 }, 0), 2, 'no warm-up: the peak at once');
});

test('label smoothing: targets and the loss of a known case', () => {
  const t = smoothTargets([2], 4, 0.2);
  assert.deepEqual([...t].map((v) => +v.toFixed(6)), [0.05, 0.05, 0.85, 0.05]);
  const k = new ReferenceKernels();
  const logits = Float32Array.of(1, 2, 3, 4);
  const lse = Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3) + Math.exp(4));
  // (1 - s) * nll + s * mean(-log p), as timm's LabelSmoothingCrossEntropy
  const want = 0.8 * (lse - 3) + 0.2 * (4 * lse - 10) / 4;
  const loss = new Float32Array(1);
  k.softmaxCrossEntropy(logits, t, 1, 4, null, loss, 1);
  assert.ok(Math.abs(loss[0] - want) < 1e-6);
});

test('EMA update: ema = d * ema + (1 - d) * w', () => {
  const p = new Param('w', [2], false);
  p.data.set([1, 2]);
  const ema = new ModelEma([p], 0.9, new ReferenceKernels());
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

/**
 * torch.optim.AdamW (PyTorch 2.x, amsgrad off, maximize off) in float64, written from its
 * documented algorithm: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
 */
function adamw64(p: Float64Array, m: Float64Array, v: Float64Array, g: Float32Array, t: number, lr: number, b1: number, b2: number, eps: number, wd: number): void {
  const bc1 = 1 - b1 ** t, bc2 = 1 - b2 ** t;
  for (let i = 0; i < p.length; i++) {
    p[i] *= 1 - lr * wd;
    m[i] = b1 * m[i] + (1 - b1) * g[i];
    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
    p[i] -= (lr / bc1) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + eps);
  }
}

test('AdamW over 12 steps with three groups (decay, no decay, an lr scale) and a schedule equals float64 PyTorch AdamW, on every kernel path', () => {
  const native = cpu;
  const paths: [string, Kernels][] = [['reference', new ReferenceKernels()]];
  if (native instanceof NativeKernels) for (const isa of native.supportedIsas()) paths.push([isa, native]);
  for (const [label, k] of paths) {
    if (k instanceof NativeKernels) k.setIsa(label as 'avx512' | 'avx2' | 'portable');
    const rng = new Rng(42);
    // Sizes not multiples of any vector width; gradients of mixed scale (v-hat matters).
    const params = [new Param('a', [37], false), new Param('b', [5], true), new Param('c', [3, 11], false)];
    for (const p of params) for (let i = 0; i < p.size; i++) p.data[i] = rng.normal();
    const groups = [
      { params: [params[0]], weightDecay: 0.05, lrScale: 1 },
      { params: [params[1]], weightDecay: 0, lrScale: 1 },
      { params: [params[2]], weightDecay: 0.3, lrScale: 0.25 },
    ];
    const [b1, b2, eps] = [0.8, 0.95, 1e-6];
    const opt = new AdamW(groups, { betas: [b1, b2], eps });
    const ref = params.map((p) => ({ p: Float64Array.from(p.data), m: new Float64Array(p.size), v: new Float64Array(p.size) }));
    for (let t = 1; t <= 12; t++) {
      const lr = 1e-2 * (t <= 3 ? t / 3 : 0.5 * (1 + Math.cos((Math.PI * (t - 3)) / 9)));
      for (const p of params) for (let i = 0; i < p.size; i++) p.grad[i] = rng.normal() * (i % 3 === 0 ? 10 : 0.01);
      opt.update(k, lr);
      groups.forEach((g, gi) => adamw64(ref[gi].p, ref[gi].m, ref[gi].v, params[gi].grad, t, lr * g.lrScale, b1, b2, eps, g.weightDecay));
    }
    assert.equal(opt.step, 12);
    params.forEach((p, i) => {
      const f32 = (a: Float64Array) => Float32Array.from(a);
      assert.ok(relErr(p.data, f32(ref[i].p)) <= 1e-5, `${label}: ${p.name} weights ${relErr(p.data, f32(ref[i].p))}`);
      assert.ok(relErr(opt.m.get(p)!, f32(ref[i].m)) <= 1e-5, `${label}: ${p.name} first moment`);
      assert.ok(relErr(opt.v.get(p)!, f32(ref[i].v)) <= 1e-5, `${label}: ${p.name} second moment`);
    });
  }
  if (native instanceof NativeKernels) native.setIsa(native.supportedIsas()[0]);
});

