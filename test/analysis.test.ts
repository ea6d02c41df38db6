// The paper's analyses and ConvNeXt V1 blocks: feature cosine distance and class selectivity
// on constructed activations, the V1 block's gradients (finite differences), V1 against V2
// with an identity GRN, V1 checkpoints in our, timm and official naming, and `analyze` end to
// end on tiny checkpoints and synthetic data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReferenceKernels } from '../src/kernels/reference.js';
import type { Kernels } from '../src/kernels/types.js';
import { ClassSelectivity, channelCosineDistance, cosineMatrix, distribution, featureCosineDistance, selectivityIndices } from '../src/analysis/metrics.js';
import { modelLayers, resolveLayer } from '../src/analysis/collect.js';
import { Block } from '../src/model/block.js';
import { ConvNeXtV2 } from '../src/model/convnextv2.js';
import { makeConfig, paramSpecs } from '../src/model/config.js';
import { Param } from '../src/nn/param.js';
import { Arena } from '../src/nn/arena.js';
import { Rng } from '../src/rng.js';
import { exportCheckpoint, loadCheckpoint, saveCheckpoint } from '../src/io/checkpoint_file.js';
import { readSafetensors } from '../src/io/safetensors_file.js';
import { FCMAE } from '../src/fcmae/fcmae.js';
import { exportOnnx } from '../src/io/onnx.js';
import { assertFiniteDifferences, dot64, relErr } from './helpers.js';
import { cpu } from './backend.js';

const ROOT = new URL('..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'convnextv2-analysis-'));
const ref = new ReferenceKernels();
const backends: [string, Kernels][] = [['default', cpu], ['reference', ref]];
const rng = new Rng(99);
const randn = (n: number, s = 1) => Float32Array.from({ length: n }, () => rng.normal() * s);

/** An activation [HW, C] (channels-last) from C channel vectors of HW values. */
function fromChannels(chans: number[][]): { x: Float32Array; HW: number; C: number } {
  const C = chans.length;
  const HW = chans[0].length;
  const x = new Float32Array(HW * C);
  for (let c = 0; c < C; c++) for (let p = 0; p < HW; p++) x[p * C + c] = chans[c][p];
  return { x, HW, C };
}

for (const [label, k] of backends) {
  test(`feature cosine distance on constructed channels (${label} kernels)`, () => {
    const v = [0.3, -1.2, 2.0, 0.7, 0.0, 1.1];
    // Identical channels: distance 0.
    const same = fromChannels([v, v, v, v]);
    assert.ok(Math.abs(featureCosineDistance(same.x, same.HW, same.C)) < 1e-6);
    // A positive multiple is the same direction.
    const scaled = fromChannels([v, v.map((a) => 3 * a)]);
    assert.ok(featureCosineDistance(scaled.x, scaled.HW, scaled.C) < 1e-6);
    // Mutually orthogonal channels: every pair at 0.5; with the paper's diagonal (i = j, distance
    // 0) the layer value is 0.5 (1 - 1/C).
    const basis = [0, 1, 2, 3, 4].map((i) => [0, 1, 2, 3, 4].map((j) => (i === j ? 2 : 0)));
    const orth = fromChannels(basis);
    assert.equal(channelCosineDistance(basis[0], basis[3]), 0.5);
    assert.ok(Math.abs(featureCosineDistance(orth.x, orth.HW, orth.C) - 0.5 * (1 - 1 / 5)) < 1e-6);
    // Opposite channels: the pair at 1; two of them give (0 + 1 + 1 + 0) / 4.
    const neg = v.map((a) => -a);
    assert.ok(Math.abs(channelCosineDistance(v, neg) - 1) < 1e-7);
    const opp = fromChannels([v, neg]);
    assert.ok(Math.abs(featureCosineDistance(opp.x, opp.HW, opp.C) - 0.5) < 1e-6);
    // Random channels, read at an offset: the double sum of pairwise distances.
    const C = 37, HW = 23;
    const chans = Array.from({ length: C }, () => Array.from(randn(HW)));
    chans[5] = chans[5].map(() => 0); // a dead channel: cosine 0 with everything, itself included
    const r = fromChannels(chans);
    const padded = new Float32Array(r.x.length + 10);
    padded.set(r.x, 10);
    let want = 0;
    for (let i = 0; i < C; i++) for (let j = 0; j < C; j++) want += channelCosineDistance(chans[i], chans[j]);
    want /= C * C;
    const got = featureCosineDistance(padded, HW, C, 10);
    assert.ok(Math.abs(got - want) < 1e-6, `${got} vs ${want}`);
    // The same from the channel cosine matrix (Gram matrix by GEMM on the kernels).
    const cm = cosineMatrix(k, padded, HW, C, 10);
    let fromMatrix = 0;
    for (let i = 0; i < C * C; i++) fromMatrix += (1 - cm[i]) / 2;
    assert.ok(Math.abs(fromMatrix / (C * C) - want) < 1e-5, `matrix ${fromMatrix / (C * C)} vs ${want}`);
    assert.ok(Math.abs(cm[1 * C + 2] - (1 - 2 * channelCosineDistance(chans[1], chans[2]))) < 1e-5);
  });
}

test('class selectivity: one class only -> 1, every class alike -> 0, silent -> NaN, means clipped at 0', () => {
  const K = 4, C = 4;
  const sel = new ClassSelectivity(K, C);
  // Channel 0 responds to class 2 only; channel 1 equally to all; channel 2 never (negative
  // means clip to 0); channel 3 twice as much to class 0 as to the others.
  for (let img = 0; img < 12; img++) {
    const y = img % K;
    const m = [y === 2 ? 1.5 + (img % 3) * 0.1 : 0, 0.8, -0.1, y === 0 ? 2 : 1];
    sel.add(m, [y]);
  }
  const si = sel.indices();
  assert.ok(Math.abs(si[0] - 1) < 1e-12, `one-class channel ${si[0]}`);
  assert.ok(Math.abs(si[1]) < 1e-12, `uniform channel ${si[1]}`);
  assert.ok(Number.isNaN(si[2]), 'silent channel');
  assert.ok(Math.abs(si[3] - (2 - 1) / (2 + 1)) < 1e-12, `channel 3 ${si[3]}`);
  // Direct form with classes missing from the data: only those present count.
  const mu = [3, 0, /* class 1 */ 0, 0, /* class 2 (absent) */ 9, 9];
  const s2 = selectivityIndices(mu, 3, 2, [0, 1]);
  assert.equal(s2[0], 1);
  assert.ok(Number.isNaN(s2[1]));
  const d = distribution([0.1, 0.2, NaN, 0.3, 0.4, 0.5]);
  assert.equal(d.count, 5);
  assert.ok(Math.abs(d.median - 0.3) < 1e-12 && Math.abs(d.p25 - 0.2) < 1e-12 && Math.abs(d.mean - 0.3) < 1e-12);
});

// --- ConvNeXt V1 blocks -------------------------------------------------------------------

test('a V1 block (LayerScale, no GRN), with and without drop path, matches finite differences', () => {
  const N = 2, H = 4, W = 5, C = 4;
  const sh = new Arena();
  const shapes: Record<string, number[]> = {
    gamma: [C], 'conv_dw.weight': [C, 1, 7, 7], 'conv_dw.bias': [C], 'norm.weight': [C], 'norm.bias': [C],
    'mlp.fc1.weight': [4 * C, C], 'mlp.fc1.bias': [4 * C], 'mlp.fc2.weight': [C, 4 * C], 'mlp.fc2.bias': [C],
  };
  const ps = new Map(Object.entries(shapes).map(([n, s]) => {
    const p = new Param(n, s, false);
    p.data.set(randn(p.size, 0.4).map((v) => v + (n === 'norm.weight' || n === 'gamma' ? 1 : 0)));
    return [n, p] as const;
  }));
  for (const dropPath of [0, 0.5]) {
    const blk = new Block((n) => {
      const p = ps.get(n);
      if (!p) throw new Error(`V1 block asked for ${n}`);
      return p;
    }, C, 7, 1e-6, dropPath, 'v1');
    assert.equal(blk.mlp.grn, null);
    const x = randn(N * H * W * C);
    const run = (cache: boolean) => Float32Array.from(blk.forward(ref, x, N, H, W, { shared: sh, cache, train: dropPath > 0, rng: new Rng(7) }));
    const y0 = run(true);
    const R = randn(y0.length);
    for (const p of ps.values()) p.grad.fill(0);
    const dx = blk.backward(ref, Float32Array.from(R), sh);
    // Finite differences write the parameters' memory directly, so they count the writes (Param.version).
    const L = () => { for (const p of ps.values()) p.writes.n++; return dot64(run(false), R); };
    const targets: [string, Float32Array, Float32Array][] = [['input', x, Float32Array.from(dx)], ...[...ps.values()].map((p) => [p.name, p.data, p.grad] as [string, Float32Array, Float32Array])];
    assertFiniteDifferences(`V1 dropPath=${dropPath}`, targets, L, (n) => rng.int(n), { count: 6 });
  }
});

/** A V1 model and a V2 model with the same weights; V2's GRN zero (the identity), V1's gamma = s. */
function pair(s: number, k: Kernels) {
  const depths = [1, 1, 1, 1];
  const dims = [8, 16, 16, 24];
  const v2 = new ConvNeXtV2(makeConfig({ depths, dims }, { numClasses: 5 }), { kernels: k, seed: 4 });
  const v1 = new ConvNeXtV2(makeConfig({ depths, dims }, { numClasses: 5, block: 'v1' }), { kernels: k, seed: 9 });
  for (const p of v2.params) p.data.set(randn(p.size, 0.3).map((v) => v + (p.name.endsWith('norm.weight') ? 1 : 0)));
  for (const p of v2.params) if (p.name.includes('.mlp.grn.')) p.data.fill(0);
  for (const p of v1.params) {
    if (p.name.endsWith('.gamma')) p.data.fill(s);
    else p.data.set(v2.param(p.name).data);
  }
  return { v1, v2 };
}

for (const [label, k] of backends) {
  test(`V1 model: gamma 1 equals V2 with an identity GRN; init, names and gradients (${label} kernels)`, async () => {
    const { v1, v2 } = pair(1, k);
    assert.ok(v1.params.some((p) => p.name === 'stages.0.blocks.0.gamma'));
    assert.ok(!v1.params.some((p) => p.name.includes('grn')));
    const x = randn(2 * 3 * 64 * 64);
    const a = await v1.forward({ shape: [2, 3, 64, 64], data: x });
    const b = await v2.forward({ shape: [2, 3, 64, 64], data: x });
    assert.ok(relErr(a.logits!.data, b.logits!.data) < 1e-5, `logits ${relErr(a.logits!.data, b.logits!.data)}`);
    // Training forward + backward: the shared parameters get the same gradients.
    const R = randn(2 * 5);
    v1.zeroGrad();
    v2.zeroGrad();
    await v1.forward({ shape: [2, 3, 64, 64], data: x }, { cache: true });
    await v2.forward({ shape: [2, 3, 64, 64], data: x }, { cache: true });
    const d1 = v1.backward(R, true)!;
    const d2 = v2.backward(R, true)!;
    assert.ok(relErr(d1, d2) < 1e-4, 'input gradient');
    for (const p of v1.params) {
      if (p.name.endsWith('.gamma')) continue;
      assert.ok(relErr(p.grad, v2.param(p.name).grad) < 1e-4, p.name);
    }
    // d/dgamma = sum over positions of dy * (MLP output without LayerScale): nonzero.
    assert.ok(v1.param('stages.3.blocks.0.gamma').grad.some((g) => g !== 0));
    // A fresh V1 model starts with LayerScale 1e-6 (timm's ls_init_value), no decay on it.
    const fresh = new ConvNeXtV2(makeConfig('atto', { block: 'v1' }), { kernels: k });
    assert.ok(fresh.param('stages.2.blocks.5.gamma').data.every((v) => Math.abs(v - 1e-6) < 1e-12));
    assert.ok(fresh.param('stages.2.blocks.5.gamma').noDecay);
    assert.equal(paramSpecs(fresh.config).findIndex((s) => s.name === 'stages.0.blocks.0.gamma') + 1,
      paramSpecs(fresh.config).findIndex((s) => s.name === 'stages.0.blocks.0.conv_dw.weight'), 'gamma first in the block, as timm');
  });
}

test('V1 checkpoints round trip: ours, timm and official naming; block recorded and inferred', async () => {
  const { v1 } = pair(0.37, cpu);
  const x = randn(3 * 64 * 64);
  const want = (await v1.forward({ shape: [1, 3, 64, 64], data: x })).logits!.data;
  const ours = join(dir, 'v1.safetensors');
  const v1State = await v1.stateDict();
  saveCheckpoint(ours, { config: v1.config, state: v1State });
  assert.equal((JSON.parse(loadCheckpoint(ours).metadata.config) as { block: string }).block, 'v1', 'metadata records the block');
  for (const [naming, file] of [['ours', ours], ['timm', join(dir, 'v1_timm.safetensors')], ['official', join(dir, 'v1_official.safetensors')]] as const) {
    if (naming !== 'ours') exportCheckpoint(file, { config: v1.config, state: v1State }, { naming, container: 'safetensors' });
    const ck = loadCheckpoint(file);
    assert.equal(ck.config.block, 'v1', naming);
    const m = new ConvNeXtV2(ck.config, { kernels: cpu });
    m.loadStateDict(ck.state);
    assert.deepEqual((await m.forward({ shape: [1, 3, 64, 64], data: x })).logits!.data, want, naming);
  }
  // The official names carry the LayerScale as stages.S.B.gamma.
  const off = readSafetensors(join(dir, 'v1_official.safetensors'));
  assert.ok(off.has('stages.1.0.gamma') && !off.has('stages.1.0.grn.gamma'));
  // Hugging Face's ConvNextV2 has no LayerScale: a clear error.
  assert.throws(() => exportCheckpoint(join(dir, 'v1_hf'), { config: v1.config, state: v1State }, { naming: 'hf' }), /no ConvNeXt V1 blocks/);
  // A V2 checkpoint still reads as v2.
  const v2file = join(dir, 'v2.safetensors');
  const v2 = new ConvNeXtV2(makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 16, 24] }, { numClasses: 0 }), { kernels: cpu });
  saveCheckpoint(v2file, { config: v2.config, state: await v2.stateDict() });
  assert.equal(loadCheckpoint(v2file).config.block, 'v2');
});

test('ONNX export of a V1 model run by onnxruntime-node matches our logits', async (t) => {
  let ort: typeof import('onnxruntime-node');
  try {
    ort = await import('onnxruntime-node');
  } catch {
    t.skip('onnxruntime-node is not installed');
    return;
  }
  const { v1 } = pair(0.37, cpu);
  const x = randn(2 * 3 * 64 * 64);
  const want = (await v1.forward({ shape: [2, 3, 64, 64], data: x })).logits!.data;
  const file = join(dir, 'v1.onnx');
  exportOnnx(file, { config: v1.config, state: await v1.stateDict() });
  const sess = await ort.InferenceSession.create(file);
  try {
    const r = await sess.run({ pixel_values: new ort.Tensor('float32', x, [2, 3, 64, 64]) });
    assert.ok(relErr(r.logits.data as Float32Array, want) < 1e-4, `onnx ${relErr(r.logits.data as Float32Array, want)}`);
  } finally {
    await sess.release();
  }
});

test('FCMAE with V1 blocks: LayerScale starts at 1e-6; sparse and dense-masked encoders agree, gamma gets gradients', async () => {
  const cfg = makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 16, 24] }, { block: 'v1' });
  for (const initStyle of ['official', 'timm'] as const) {
    const f = new FCMAE(cfg, { decoderDim: 16, initStyle }, { kernels: cpu, seed: 1 });
    assert.ok(f.param('stages.3.blocks.0.gamma').data.every((v) => Math.abs(v - 1e-6) < 1e-12), initStyle);
  }
  const f = new FCMAE(cfg, { decoderDim: 16, initStyle: 'timm', normPixLoss: true }, { kernels: cpu, seed: 1 });
  for (const p of f.encoderModel.params) if (p.name.endsWith('.gamma')) p.data.set(randn(p.size, 0.5));
  const x = { shape: [2, 3, 64, 64], data: randn(2 * 3 * 64 * 64) };
  const mask = { shape: [2, 4], data: Float32Array.of(1, 0, 0, 1, 0, 1, 1, 0) };
  const run = async (mode: 'sparse' | 'dense') => {
    f.zeroGrad();
    const loss = (await f.forward(x, mask, { mode })).loss;
    f.backward();
    return { loss, grads: new Map(f.params.map((p) => [p.name, Float32Array.from(p.grad)])) };
  };
  const sp = await run('sparse');
  const de = await run('dense');
  assert.ok(Math.abs(sp.loss - de.loss) < 1e-5 * Math.abs(de.loss), `loss ${sp.loss} vs ${de.loss}`);
  for (const [name, g] of de.grads) assert.ok(relErr(sp.grads.get(name)!, g) < 1e-4, name);
  assert.ok(sp.grads.get('stages.1.blocks.0.gamma')!.some((v) => v !== 0));
});

test('layers are named and picked by S.B, stages.S.blocks.B or index', () => {
  const m = new ConvNeXtV2(makeConfig({ depths: [2, 2, 2, 2], dims: [8, 8, 8, 8] }, { numClasses: 0 }), { kernels: cpu });
  const layers = modelLayers(m);
  assert.equal(layers.length, 8);
  assert.equal(layers[7].relativeDepth, 1);
  assert.equal(resolveLayer(layers).name, 'stages.2.blocks.1');
  assert.equal(resolveLayer(layers, '1.0').index, 2);
  assert.equal(resolveLayer(layers, 'stages.3.blocks.1').index, 7);
  assert.equal(resolveLayer(layers, '5').name, 'stages.2.blocks.1');
  assert.throws(() => resolveLayer(layers, '4.0'), /no such block/);
});

test('analyze end to end: two tiny checkpoints on synthetic data write report.md, PNGs and numbers', async () => {
  const cfg = { depths: [1, 1, 2, 1], dims: [8, 16, 16, 24] };
  const a = join(dir, 'tiny-v2.safetensors');
  const b = join(dir, 'tiny-v1.safetensors');
  const m2 = new ConvNeXtV2(makeConfig(cfg, { numClasses: 0 }), { kernels: cpu, seed: 1 });
  const m1 = new ConvNeXtV2(makeConfig(cfg, { numClasses: 0, block: 'v1' }), { kernels: cpu, seed: 2 });
  for (const p of m1.params) if (p.name.endsWith('.gamma')) p.data.fill(0.5);
  saveCheckpoint(a, { config: m2.config, state: await m2.stateDict() });
  saveCheckpoint(b, { config: m1.config, state: await m1.stateDict() });
  const out = join(dir, 'analysis');
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'analyze', '--checkpoint', a, '--checkpoint', b,
    '--label', 'V2 tiny', '--label', 'V1 tiny', '--data', 'synthetic:32', '--images', '40', '--input-size', '64', '--batch-size', '16',
    '--layer', '2.1', '--map-images', '2', '--map-channels', '16', '--workers', '0', '--out', out, '--json'], { encoding: 'utf8', cwd: ROOT });
  assert.equal(r.status, 0, r.stderr);
  const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as { images: number; models: { label: string; cosine_distance: number[] }[] };
  assert.equal(res.images, 40);
  assert.deepEqual(res.models.map((m) => m.label), ['V2 tiny', 'V1 tiny']);
  for (const m of res.models) {
    assert.equal(m.cosine_distance.length, 5);
    for (const d of m.cosine_distance) assert.ok(d > 0 && d < 1, `${m.label}: ${d}`);
  }
  for (const f of ['report.md', 'cosine-distance.png', 'selectivity.png', 'maps-V2_tiny.png', 'maps-V1_tiny.png', 'analysis.json']) {
    assert.ok(existsSync(join(out, f)), f);
  }
  const png = readFileSync(join(out, 'cosine-distance.png'));
  assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]);
  const report = readFileSync(join(out, 'report.md'), 'utf8');
  for (const s of ['![feature cosine distance](cosine-distance.png)', '![class selectivity](selectivity.png)', '(maps-V1_tiny.png)', '| stages.2.blocks.1 |', 'V1 blocks (LayerScale, no GRN)']) {
    assert.ok(report.includes(s), s);
  }
  const json = JSON.parse(readFileSync(join(out, 'analysis.json'), 'utf8')) as { models: { layers: { selectivity: { mean: number; max: number } | null }[] }[] };
  for (const m of json.models) for (const l of m.layers) assert.ok(l.selectivity && l.selectivity.mean >= 0 && l.selectivity.max <= 1);
});
