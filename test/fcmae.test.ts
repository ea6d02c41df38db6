// FCMAE against the faithful re-expression of the official code (fixtures/reference/
// fcmae_small.safetensors): loss, predictions, target and every gradient, through the sparse
// (compacted) and the dense-masked encoder, from both fixture files; and sparse == dense on
// edge cases the official densify step fails on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { toOfficialNames } from '../src/io/checkpoint.js';
import { loadCheckpoint } from '../src/io/checkpoint_file.js';
import { readSafetensors } from '../src/io/safetensors_file.js';
import { FCMAE } from '../src/fcmae/fcmae.js';
import { attachTables, randomMask, stageMask, gatherRows, scatterRows } from '../src/fcmae/masking.js';
import { ReferenceKernels } from '../src/kernels/reference.js';
import { makeConfig } from '../src/model/config.js';
import { Rng } from '../src/rng.js';
import { relErr } from './helpers.js';
import { cpu } from './backend.js';

const F = new URL('./fixtures/reference/', import.meta.url).pathname;
const ref = readSafetensors(F + 'fcmae_small.safetensors');

for (const src of ['fcmae_small_official.pt', 'fcmae_small.safetensors']) {
  for (const mode of ['sparse', 'dense'] as const) {
    test(`FCMAE loss, pred and gradients match the reference (${src}, ${mode})`, async () => {
      const ck = loadCheckpoint(F + src, src.endsWith('.safetensors') ? { prefix: 'param.', extra: true, allowUnexpected: true } : { extra: true });
      assert.equal(ck.fcmae?.decoderDim, 32);
      const m = new FCMAE(ck.config, { decoderDim: ck.fcmae!.decoderDim, decoderDepth: ck.fcmae!.decoderDepth, normPixLoss: true }, { kernels: cpu });
      m.encoderModel.loadStateDict(ck.state);
      m.loadDecoderState(ck.extra!);
      m.zeroGrad();
      const out = await m.forward(ref.get('input.pixel_values')!, ref.get('input.mask')!, { mode });
      m.backward();
      const wantLoss = ref.get('output.loss')!.data[0];
      assert.ok(Math.abs(out.loss - wantLoss) / Math.abs(wantLoss) <= 1e-4, `loss ${out.loss} vs ${wantLoss}`);
      assert.deepEqual(out.pred.shape, ref.get('output.pred')!.shape, 'pred shape');
      assert.ok(relErr(out.pred.data, ref.get('output.pred')!.data) <= 1e-4, 'pred');
      assert.deepEqual(out.target.shape, ref.get('output.target')!.shape, 'target shape');
      assert.ok(relErr(out.target.data, ref.get('output.target')!.data) <= 1e-4, 'target');
      const enc = toOfficialNames(new Map(m.encoderModel.params.map((p) => [p.name, { shape: p.shape, data: p.grad }])));
      let n = 0;
      for (const [name, t] of enc) {
        if (name.startsWith('norm.')) continue; // the classifier's final norm: not part of FCMAE
        const e = relErr(t.data, ref.get(`grad.${name}`)!.data);
        assert.ok(e <= 1e-4, `grad.${name}: ${e}`);
        n++;
      }
      for (const p of m.decoderParams) {
        const e = relErr(p.grad, ref.get(`grad.${p.name.slice('fcmae.'.length)}`)!.data);
        assert.ok(e <= 1e-4, `grad ${p.name}: ${e}`);
        n++;
      }
      assert.equal(n, [...ref.keys()].filter((k) => k.startsWith('grad.')).length);
    });
  }
}

test('masks keep exactly floor(L * (1 - ratio)) patches per sample, seeded', () => {
  const m = randomMask(5, 49, 0.6, new Rng(3));
  for (let n = 0; n < 5; n++) {
    let kept = 0;
    for (let i = 0; i < 49; i++) kept += m[n * 49 + i] === 0 ? 1 : 0;
    assert.equal(kept, 19);
  }
  assert.deepEqual(randomMask(5, 49, 0.6, new Rng(3)), m);
  assert.notDeepEqual(randomMask(5, 49, 0.6, new Rng(4)), m);
});

test('stage masks: gather and scatter are inverse on visible rows, zero elsewhere', () => {
  const mask = Float32Array.from([0, 1, 1, 0, 1, 1, 0, 0]); // N=2, 2x2 grid
  const sm = stageMask(mask, 2, 2, 2, 4);
  assert.equal(sm.idx.length, 2 * 16 + 2 * 16);
  assert.deepEqual([...sm.sampleOffsets], [0, 32, 64]);
  const C = 3;
  const dense = Float32Array.from({ length: 2 * 8 * 8 * C }, (_, i) => i + 1);
  const k = new ReferenceKernels();
  attachTables(k, sm, false);
  const rows = gatherRows(k, dense, sm, C, new Float32Array(sm.idx.length * C));
  const back = scatterRows(k, rows, sm, C, new Float32Array(dense.length).fill(7)) as Float32Array;
  for (let r = 0; r < 128; r++) for (let c = 0; c < C; c++) assert.equal(back[r * C + c], sm.keep[r] ? dense[r * C + c] : 0);
});

test('sparse and dense-masked paths agree: batch of 1, fully masked last row/column, per-sample GRN', async () => {
  const cfg = makeConfig({ depths: [1, 2, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 0 });
  const N = 3, H = 96, W = 128; // a 3x4 grid
  const rng = new Rng(9);
  const x = Float32Array.from({ length: N * 3 * H * W }, () => rng.normal());
  // Sample 0: last row and last column removed; sample 1: one visible cell; sample 2: random.
  const mask = new Float32Array(N * 12);
  for (let i = 0; i < 12; i++) mask[i] = Math.floor(i / 4) === 2 || i % 4 === 3 ? 1 : 0;
  for (let i = 0; i < 12; i++) mask[12 + i] = i === 5 ? 0 : 1;
  mask.set(randomMask(1, 12, 0.5, rng), 24);
  for (const grnStats of ['batch', 'per-sample'] as const) {
    for (const n of [1, 3]) {
      const results = await Promise.all((['sparse', 'dense'] as const).map(async (mode) => {
        const m = new FCMAE(cfg, { decoderDim: 16, normPixLoss: true, grnStats }, { kernels: cpu, seed: 1 });
        // Non-trivial GRN so its statistics matter.
        for (const p of m.params) if (/grn/.test(p.name)) for (let i = 0; i < p.size; i++) p.data[i] = Math.sin(i + 1) * 0.5;
        m.zeroGrad();
        const out = await m.forward({ shape: [n, 3, H, W], data: x.subarray(0, n * 3 * H * W) }, { shape: [n, 12], data: mask.subarray(0, n * 12) }, { mode });
        m.backward();
        return { loss: out.loss, pred: out.pred.data, grads: m.params.map((p) => Float32Array.from(p.grad)), names: m.params.map((p) => p.name) };
      }));
      const [s, d] = results;
      assert.ok(Number.isFinite(s.loss));
      assert.ok(Math.abs(s.loss - d.loss) <= 1e-5 * Math.max(1, Math.abs(d.loss)), `${grnStats} n=${n}: loss ${s.loss} vs ${d.loss}`);
      assert.ok(relErr(s.pred, d.pred) <= 1e-4, `${grnStats} n=${n}: pred`);
      s.grads.forEach((g, i) => {
        if (s.names[i].startsWith('head.')) return;
        assert.ok(relErr(g, d.grads[i]) <= 1e-4, `${grnStats} n=${n}: grad ${s.names[i]} ${relErr(g, d.grads[i])}`);
      });
    }
  }
});

test('FCMAE takes and returns shaped tensors; a mask of the wrong shape is refused by name', async () => {
  const cfg = makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 0 });
  const m = new FCMAE(cfg, { decoderDim: 16, normPixLoss: true }, { kernels: cpu, seed: 2 });
  const x = { shape: [2, 3, 64, 96], data: Float32Array.from({ length: 2 * 3 * 64 * 96 }, (_, i) => Math.sin(i * 0.01)) };
  const mask = m.randomMask(2, 64, 96, new Rng(1));
  assert.deepEqual(mask.shape, [2, 6]);
  assert.equal(mask.data.reduce((a, v) => a + v, 0), 2 * 4, 'ratio 0.6 keeps floor(6 * 0.4) = 2 of 6 patches per image');
  const out = await m.forward(x, mask);
  assert.deepEqual(out.pred.shape, [2, 6, 32 * 32 * 3]);
  assert.deepEqual(out.target.shape, [2, 6, 32 * 32 * 3]);
  assert.deepEqual(out.patchStats!.shape, [2, 6, 2]);
  assert.equal(out.mask, mask);
  assert.equal(out.pred.data.length, 2 * 6 * 3072);
  await assert.rejects(async () => await m.forward(x, { shape: [2, 5], data: new Float32Array(10) }), /mask must be \[2, 6\] for 2 image\(s\) of 64x96 \(patch 32\), got \[2,5\]/);
  await assert.rejects(async () => await m.forward(x, { shape: [12], data: new Float32Array(12) }), /mask must be \[2, 6\]/);
  await assert.rejects(async () => await m.forward({ shape: x.shape, data: x.data.subarray(1) }, mask), /pixel_values has 36863 values, shape \[2,3,64,96\] needs 36864/);
  assert.equal((await new FCMAE(cfg, { decoderDim: 16 }, { kernels: cpu, seed: 2 }).forward(x, mask)).patchStats, null, 'no stats without normPixLoss');
  assert.throws(() => new FCMAE(cfg, { decoderDim: 0 }, { kernels: cpu }), /FCMAE decoderDim 0: must be a positive integer/);
  assert.throws(() => new FCMAE(cfg, { decoderDepth: -1 }, { kernels: cpu }), /FCMAE decoderDepth -1: must be a non-negative integer/);
  assert.throws(() => new FCMAE(cfg, { maskRatio: 1 }, { kernels: cpu }), /FCMAE maskRatio 1: must be in \[0, 1\)/);
});
