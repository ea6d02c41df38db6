// The model against timm's reference tensors (test/fixtures/reference/small_timm.safetensors):
// stage outputs, pre-logits and logits of both inputs, and every gradient, within 1e-4
// relative error (max |ours - ref| / max |ref|), on the default kernels and the reference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type TensorData } from '../src/io/safetensors.js';
import { readSafetensors } from '../src/io/safetensors_file.js';
import { ReferenceKernels } from '../src/kernels/reference.js';
import type { Kernels } from '../src/kernels/types.js';
import { ConvNeXtV2 } from '../src/model/convnextv2.js';
import { countParams, makeConfig, MODEL_SIZES } from '../src/model/config.js';
import { forwardMacs } from '../src/model/flops.js';
import { ConvNextError } from '../src/errors.js';
import { Arena } from '../src/nn/arena.js';
import { Linear } from '../src/nn/linear.js';
import { Param } from '../src/nn/param.js';
import { relErr } from './helpers.js';
import { cpu } from './backend.js';

const FIX = new URL('./fixtures/reference/', import.meta.url).pathname;
const ref = readSafetensors(FIX + 'small_timm.safetensors');
const get = (k: string): TensorData => {
  const t = ref.get(k);
  if (!t) throw new Error(`fixture lacks ${k}`);
  return t;
};

function smallModel(k: Kernels): ConvNeXtV2 {
  const cfg = makeConfig({ depths: [2, 2, 2, 2], dims: [16, 32, 48, 64] }, { numClasses: 10 });
  const m = new ConvNeXtV2(cfg, { kernels: k });
  const state = new Map([...ref].filter(([n]) => n.startsWith('param.')).map(([n, t]) => [n.slice(6), t]));
  m.loadStateDict(state, 'small_timm');
  return m;
}

const backends: [string, Kernels][] = [['default', cpu], ['reference', new ReferenceKernels()]];

for (const [label, k] of backends) {
  test(`small_timm forward matches timm (${label} kernels: ${k.name}/${k.isa})`, async () => {
    const m = smallModel(k);
    for (const i of [0, 1]) {
      const x = get(`input.${i}.pixel_values`);
      const out = await m.forward(x, { stages: 'NCHW' });
      assert.deepEqual(out.logits!.shape, get(`output.${i}.logits`).shape, 'logits shape');
      assert.ok(relErr(out.logits!.data, get(`output.${i}.logits`).data) <= 1e-4, `input ${i} logits`);
      assert.deepEqual(out.preLogits.shape, get(`output.${i}.pre_logits`).shape, 'pre_logits shape');
      assert.ok(relErr(out.preLogits.data, get(`output.${i}.pre_logits`).data) <= 1e-4, `input ${i} pre_logits`);
      assert.equal(out.stages!.length, 4);
      // Channels-last stages are the same values, transposed, without the copy.
      const nhwc = (await m.forward(x, { stages: 'NHWC' })).stages!;
      out.stages!.forEach((s, si) => {
        const want = get(`output.${i}.stage${si}`);
        assert.deepEqual(s.shape, want.shape, `stage${si} shape`);
        assert.ok(relErr(s.data, want.data) <= 1e-4, `input ${i} stage${si}`);
        const [N, C, H, W] = s.shape;
        assert.deepEqual(nhwc[si].shape, [N, H, W, C], `stage${si} NHWC shape`);
        const back = new Float32Array(s.data.length);
        k.nhwcToNchw(nhwc[si].data, N, H, W, C, back);
        assert.deepEqual(back, s.data, `stage${si} NHWC = NCHW transposed`);
      });
      assert.equal((await m.forward(x)).stages, undefined, 'stages only when asked');
    }
  });

  test(`small_timm gradients match timm for every parameter and the input (${label} kernels)`, async () => {
    const m = smallModel(k);
    m.zeroGrad();
    await m.forward(get('input.0.pixel_values'), { cache: true });
    const dx = m.backward(get('grad.R').data, true)!;
    const dxNchw = new Float32Array(dx.length);
    k.nhwcToNchw(dx, 2, 64, 64, 3, dxNchw);
    assert.ok(relErr(dxNchw, get('grad.input').data) <= 1e-4, 'grad.input');
    let checked = 0;
    for (const p of m.params) {
      const e = relErr(p.grad, get(`grad.${p.name}`).data);
      assert.ok(e <= 1e-4, `grad.${p.name}: rel err ${e}`);
      checked++;
    }
    assert.equal(checked, m.params.length);
    assert.equal(checked, [...ref.keys()].filter((n) => n.startsWith('grad.') && n !== 'grad.R' && n !== 'grad.input').length);
  });
}

test('parameter counts with 1000 classes equal timm', () => {
  const want: Record<string, number> = {
    atto: 3_708_400, femto: 5_233_240, pico: 9_066_280, nano: 15_623_800,
    tiny: 28_635_496, base: 88_717_800, large: 197_956_840, huge: 660_289_640,
  };
  for (const name of Object.keys(MODEL_SIZES)) assert.equal(countParams(makeConfig(name)), want[name], name);
  assert.equal(new ConvNeXtV2(makeConfig('atto'), { kernels: cpu }).numParams(), want.atto);
});

test('forward MACs of atto at 224 px are timm\'s 0.55 G', () => {
  const g = forwardMacs(makeConfig('atto'), 224, 224) / 1e9;
  assert.ok(g > 0.54 && g < 0.56, String(g));
});

test('initialisation follows the official classifier', () => {
  const m = new ConvNeXtV2(makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 5, headInitScale: 0.001 }), { kernels: cpu, seed: 5 });
  const w = m.param('stages.2.blocks.0.mlp.fc1.weight').data;
  let s = 0, s2 = 0;
  for (const v of w) { s += v; s2 += v * v; }
  const std = Math.sqrt(s2 / w.length - (s / w.length) ** 2);
  assert.ok(std > 0.016 && std < 0.024, `fc1 std ${std}`);
  assert.ok(m.param('stages.0.blocks.0.mlp.grn.weight').data.every((v) => v === 0));
  assert.ok(m.param('stages.0.blocks.0.norm.weight').data.every((v) => v === 1));
  assert.ok(m.param('stem.0.bias').data.every((v) => v === 0));
  const head = m.param('head.fc.weight').data;
  const headStd = Math.sqrt(head.reduce((a, v) => a + v * v, 0) / head.length);
  assert.ok(headStd > 0.02 * 0.001 * 0.6 && headStd < 0.02 * 0.001 * 1.4, `head std ${headStd} (scaled by headInitScale)`);
  const again = new ConvNeXtV2(m.config, { kernels: cpu, seed: 5 });
  assert.deepEqual(again.param('stem.0.weight').data, m.param('stem.0.weight').data, 'seeded');
});

test('odd input sizes floor like PyTorch; bad shapes give clear errors', async () => {
  const m = new ConvNeXtV2(makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 3 }), { kernels: cpu });
  const out = await m.forward({ shape: [1, 3, 45, 70], data: new Float32Array(3 * 45 * 70) }, { stages: 'NCHW' });
  assert.deepEqual(out.stages!.map((s) => s.shape), [[1, 8, 11, 17], [1, 16, 5, 8], [1, 24, 2, 4], [1, 32, 1, 2]]);
  assert.deepEqual(out.logits!.shape, [1, 3]);
  await assert.rejects(async () => await m.forward({ shape: [1, 3, 45, 70], data: new Float32Array(3 * 45 * 70) }, { stages: 'nchw' as 'NCHW' }), /stages must be 'NCHW' or 'NHWC', got "nchw"/);
  await assert.rejects(async () => await m.forward({ shape: [3, 32, 32], data: new Float32Array(3 * 32 * 32) }), ConvNextError);
  await assert.rejects(async () => await m.forward({ shape: [1, 1, 32, 32], data: new Float32Array(32 * 32) }), /channels/);
  await assert.rejects(async () => await m.forward({ shape: [1, 3, 16, 64], data: new Float32Array(3 * 16 * 64) }), /at least 32/);
  const bad = new Map(await m.stateDict());
  bad.set('stages.1.blocks.0.mlp.fc1.weight', { shape: [64, 8], data: new Float32Array(512) });
  assert.throws(() => m.loadStateDict(bad), /stages\.1\.blocks\.0\.mlp\.fc1\.weight has shape \[64,8\], expected \[64,16\]/);
});

test('training gradients are bit-identical for any thread count (native kernels)', async (t) => {
  const native = cpu as Kernels & { setThreads?: (n: number) => void; threads: number };
  if (native.name !== 'native' || !native.setThreads) {
    t.skip('native kernels unavailable');
    return;
  }
  const before = native.threads;
  const cfg = makeConfig({ depths: [1, 2, 1, 1], dims: [24, 40, 56, 72] }, { numClasses: 7, dropPathRate: 0.2 });
  const x = new Float32Array(3 * 3 * 96 * 80).map((_, i) => Math.sin(i * 0.37) + Math.cos(i * 0.011));
  const run = async (threads: number) => {
    native.setThreads!(threads);
    const m = new ConvNeXtV2(cfg, { kernels: cpu, seed: 11 });
    for (const p of m.params) if (p.name.includes('grn')) p.data.fill(0.3);
    m.zeroGrad();
    const out = await m.forward({ shape: [3, 3, 96, 80], data: x }, { train: true });
    const d = new Float32Array(out.logits!.data.length).map((_, i) => (i % 5) - 2);
    m.backward(d, true);
    return m.params.map((p) => Float32Array.from(p.grad));
  };
  try {
    const one = await run(1);
    for (const n of [2, 3]) {
      const other = await run(n);
      one.forEach((g, i) => assert.deepEqual(other[i], g, `param ${i} with ${n} threads`));
    }
  } finally {
    native.setThreads(before);
  }
});

test('inference with packed weights: the bits of packing per call, and never stale (native kernels)', async (t) => {
  const native = cpu;
  if (!native.packWeights) {
    t.skip('these kernels do not pack weights');
    return;
  }
  // The same kernels without packWeights: every GEMM packs its B per call.
  const perCall = new Proxy(native, {
    get: (target, prop) => {
      if (prop === 'packWeights') return undefined;
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const cfg = makeConfig({ depths: [1, 1, 2, 1], dims: [16, 24, 40, 64] }, { numClasses: 9 });
  const packedModel = new ConvNeXtV2(cfg, { kernels: native, seed: 5 });
  const plainModel = new ConvNeXtV2(cfg, { kernels: perCall, seed: 5 });
  for (const m of [packedModel, plainModel]) for (const p of m.params) if (p.name.includes('grn')) p.fill(m.kernels, 0.2);
  const x = new Float32Array(2 * 3 * 64 * 64).map((_, i) => Math.sin(i * 0.13));
  const logits = async (m: ConvNeXtV2, n = 2) => Float32Array.from((await m.forward({ shape: [n, 3, 64, 64], data: x.subarray(0, n * 3 * 64 * 64) })).logits!.data);
  const same = (a: Float32Array, b: Float32Array, what: string) => assert.deepEqual(new Uint32Array(a.buffer), new Uint32Array(b.buffer), what);
  same(await logits(packedModel), await logits(plainModel), 'first forward (packs made)');
  same(await logits(packedModel, 1), await logits(plainModel, 1), 'batch 1, packs reused');
  // New weights through the library (loadStateDict), then one tensor written with Param.write.
  const sd = new Map([...await packedModel.stateDict()].map(([k, v]) => [k, { shape: v.shape, data: v.data.map((y, i) => y * (1 + 0.01 * Math.sin(i))) }]));
  for (const m of [packedModel, plainModel]) m.loadStateDict(sd);
  same(await logits(packedModel), await logits(plainModel), 'after loadStateDict');
  for (const m of [packedModel, plainModel]) {
    const w = m.params.find((p) => p.name === 'stages.2.blocks.1.mlp.fc2.weight')!;
    const v = await m.kernels.read(w.data);
    v[3] += 0.5;
    w.write(m.kernels, v);
  }
  same(await logits(packedModel), await logits(plainModel), 'after Param.write');
  const before = await logits(packedModel);
  const fresh = await logits(new ConvNeXtV2(cfg, { kernels: native, seed: 5 }));
  assert.ok(before.some((v, i) => v !== fresh[i]), 'the writes changed the logits (the test can fail)');
});

test('Linear.backwardRows equals backward when the other rows of dy are zero', () => {
  const k = cpu;
  const [M, I, O] = [23, 19, 37];
  const live = Int32Array.of(0, 3, 4, 10, 22);
  const x = Float32Array.from({ length: M * I }, (_, i) => Math.sin(i));
  const dy = new Float32Array(M * O);
  for (const r of live) for (let o = 0; o < O; o++) dy[r * O + o] = Math.cos(r * O + o);
  const grads = (rows: boolean) => {
    const w = new Param('w', [O, I], false), b = new Param('b', [O], true);
    w.data = Float32Array.from({ length: O * I }, (_, i) => Math.cos(3 * i));
    const lin = new Linear(w, b, I, O);
    const shared = new Arena();
    lin.forward(k, x, M, { shared, cache: true });
    const dx = new Float32Array(M * I).fill(7);
    if (rows) lin.backwardRows(k, dy, live, shared, dx);
    else lin.backward(k, dy, shared, dx);
    return [dx, w.grad, b.grad];
  };
  const [a, b] = [grads(true), grads(false)];
  a.forEach((g, i) => assert.ok(relErr(g, b[i]) <= 1e-6, `output ${i}: ${relErr(g, b[i])}`));
});

test('unknown option keys are refused, not ignored (makeConfig, FCMAE)', async () => {
  const { FCMAE } = await import('../src/fcmae/fcmae.js');
  assert.throws(() => makeConfig('atto', { numClass: 10 } as never), /makeConfig: unknown option 'numClass' \(known: depths, dims, numClasses/);
  assert.throws(() => makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32], width: 2 } as never), /makeConfig: unknown option 'width'/);
  const cfg = makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 0 });
  assert.throws(() => new FCMAE(cfg, { decoderEmbedDim: 32 } as never, { kernels: new ReferenceKernels() }), /FCMAE: unknown option 'decoderEmbedDim' \(known: decoderDim, decoderDepth/);
  assert.equal(new FCMAE(cfg, { decoderDim: 16 }, { kernels: new ReferenceKernels() }).opts.decoderDim, 16);
});

test('a model built from a checkpoint is not initialised at random first, and gives the loaded model\'s logits', async () => {
  const cfg = makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 3 });
  const src = new ConvNeXtV2(cfg, { kernels: cpu, seed: 9 });
  const state = new Map([...await src.stateDict()].map(([k, t]) => [k, { shape: t.shape, data: Float32Array.from(t.data) }]));
  const init = ConvNeXtV2.prototype.init;
  let calls = 0;
  ConvNeXtV2.prototype.init = function (this: ConvNeXtV2, seed: number) {
    calls++;
    return init.call(this, seed);
  };
  try {
    const m = ConvNeXtV2.fromCheckpoint({ config: cfg, state, file: 'x.safetensors' }, { kernels: cpu });
    assert.equal(calls, 0, 'init was not called');
    const x = { shape: [1, 3, 32, 32], data: Float32Array.from({ length: 3 * 32 * 32 }, (_, i) => Math.sin(i)) };
    assert.deepEqual((await m.forward(x)).logits!.data, (await src.forward(x)).logits!.data);
    state.delete('head.fc.bias');
    assert.throws(() => ConvNeXtV2.fromCheckpoint({ config: cfg, state, file: 'x.safetensors' }, { kernels: cpu }), /checkpoint x\.safetensors: missing tensor head\.fc\.bias/);
    new ConvNeXtV2(cfg, { kernels: cpu });
    assert.equal(calls, 1, 'a model without weights is initialised');
  } finally {
    ConvNeXtV2.prototype.init = init;
  }
});
