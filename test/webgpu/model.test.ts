// The model, the training step and FCMAE on the WebGPU backend against the reference tensors and
// the CPU path: small_timm's logits and every gradient, an AdamW step, fcmae_small's loss,
// prediction and gradients, five fine-tuning and five FCMAE steps through the engines, and a
// run that moves between devices through a checkpoint.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FCMAE } from '../../src/fcmae/fcmae.js';
import { PretrainEngine } from '../../src/fcmae/pretrain_engine.js';
import { loadCheckpointBytes, serializeCheckpoint, toOfficialNames } from '../../src/io/checkpoint.js';
import { loadCheckpoint } from '../../src/io/checkpoint_file.js';
import { readSafetensors } from '../../src/io/safetensors_file.js';
import type { Kernels } from '../../src/kernels/types.js';
import { makeConfig } from '../../src/model/config.js';
import { ConvNeXtV2 } from '../../src/model/convnextv2.js';
import { Rng } from '../../src/rng.js';
import { AdamW } from '../../src/train/adamw.js';
import { ModelEma } from '../../src/train/ema.js';
import { FinetuneEngine } from '../../src/train/finetune_engine.js';
import { loadOptimizerTensors } from '../../src/train/optimizer_state.js';
import type { BatchSource } from '../../src/data/batch.js';
import { close, fcmaeSmall, need, openWebGPU, relErr } from './helpers.js';
import { cpu } from '../backend.js';

const FIX = new URL('../fixtures/reference/', import.meta.url).pathname;
const gpu = await openWebGPU();

test('small_timm on webgpu: logits, pre-logits and stages match timm (1e-4)', async (t) => {
  const k = need(t, gpu);
  if (!k) return;
  const ref = readSafetensors(FIX + 'small_timm.safetensors');
  const m = new ConvNeXtV2(makeConfig({ depths: [2, 2, 2, 2], dims: [16, 32, 48, 64] }, { numClasses: 10 }), { kernels: k });
  m.loadStateDict(new Map([...ref].filter(([n]) => n.startsWith('param.')).map(([n, v]) => [n.slice(6), v])));
  for (const i of [0, 1]) {
    const out = await m.forward(ref.get(`input.${i}.pixel_values`)!, { stages: 'NCHW' });
    close(out.logits!.data, ref.get(`output.${i}.logits`)!.data, `input ${i} logits`);
    close(out.preLogits.data, ref.get(`output.${i}.pre_logits`)!.data, `input ${i} pre_logits`);
    out.stages!.forEach((s, si) => close(s.data, ref.get(`output.${i}.stage${si}`)!.data, `input ${i} stage${si}`));
  }
  // forwardTensors leaves the logits on the GPU; the host has them only by an explicit read.
  const resident = m.forwardTensors(ref.get('input.0.pixel_values')!);
  assert.ok(!(resident.logits instanceof Float32Array), 'the logits stay on the device');
  close(await k.read(resident.logits!), ref.get('output.0.logits')!.data, 'forwardTensors, then one read');
  // The analyses' activation capture is a host view: refused with one line on the device.
  await assert.rejects(() => m.forward(ref.get('input.0.pixel_values')!, { capture: () => {} }), /forward: capture reads the activations on the host; the webgpu backend keeps them on the device/);
  m.dispose();
});

test('small_timm on webgpu: every gradient matches timm, and an AdamW step matches the CPU one (1e-4)', async (t) => {
  const k = need(t, gpu);
  if (!k) return;
  const ref = readSafetensors(FIX + 'small_timm.safetensors');
  const cfg = makeConfig({ depths: [2, 2, 2, 2], dims: [16, 32, 48, 64] }, { numClasses: 10 });
  const state = new Map([...ref].filter(([n]) => n.startsWith('param.')).map(([n, v]) => [n.slice(6), v]));
  const m = new ConvNeXtV2(cfg, { kernels: k });
  m.loadStateDict(state);
  m.zeroGrad();
  m.forwardTensors(ref.get('input.0.pixel_values')!, { cache: true });
  const dx = m.backward(ref.get('grad.R')!.data, true)!;
  const dxNchw = m.buffer('test.dx', dx.length);
  k.nhwcToNchw(dx, 2, 64, 64, 3, dxNchw);
  close(await k.read(dxNchw), ref.get('grad.input')!.data, 'grad.input');
  const grads = new Map<string, Float32Array>();
  for (const p of m.params) {
    grads.set(p.name, await k.read(p.grad));
    close(grads.get(p.name)!, ref.get(`grad.${p.name}`)!.data, `grad.${p.name}`);
  }
  // One AdamW step from the same weights and gradients on both devices.
  const c = new ConvNeXtV2(cfg, { kernels: cpu });
  c.loadStateDict(state);
  for (const p of c.params) cpu.write(p.grad, grads.get(p.name)!);
  const optG = new AdamW(m.params, { lr: 1e-2, weightDecay: 0.05 });
  const optC = new AdamW(c.params, { lr: 1e-2, weightDecay: 0.05 });
  optG.update(k);
  optC.update(cpu);
  const after = await m.stateDict();
  for (const [name, v] of await c.stateDict()) close(after.get(name)!.data, v.data, `after AdamW: ${name}`);
  optG.dispose();
  m.dispose();
});

for (const mode of ['sparse', 'dense'] as const) {
  test(`fcmae_small on webgpu (${mode} encoder): loss, prediction, target and every gradient match the reference (1e-4)`, async (t) => {
    const k = need(t, gpu);
    if (!k) return;
    const { m, ref } = fcmaeSmall(k);
    m.zeroGrad();
    const out = await m.forward(ref.get('input.pixel_values')!, ref.get('input.mask')!, { mode });
    m.backward();
    const want = ref.get('output.loss')!.data[0];
    assert.ok(Math.abs(out.loss - want) / Math.abs(want) <= 1e-4, `loss ${out.loss} vs ${want}`);
    close(out.pred.data, ref.get('output.pred')!.data, 'pred');
    close(out.target.data, ref.get('output.target')!.data, 'target');
    const enc = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const p of m.encoderModel.params) enc.set(p.name, { shape: p.shape, data: await k.read(p.grad) });
    let n = 0;
    for (const [name, g] of toOfficialNames(enc)) {
      if (name.startsWith('norm.')) continue;
      close(g.data, ref.get(`grad.${name}`)!.data, `grad.${name}`);
      n++;
    }
    for (const p of m.decoderParams) {
      close(await k.read(p.grad), ref.get(`grad.${p.name.slice('fcmae.'.length)}`)!.data, `grad ${p.name}`);
      n++;
    }
    assert.equal(n, [...ref.keys()].filter((x) => x.startsWith('grad.')).length);
    m.dispose();
  });
}

// Training runs: a tiny model on 32x32 images from arrays in memory.
const S = 32, B = 4, n = 20;
const labels = Int32Array.from({ length: n }, (_, i) => i % 3);
const pixels = Float32Array.from({ length: n * 3 * S * S }, (_, i) => Math.sin(i * 0.013 + labels[Math.floor(i / (3 * S * S))]));
/** The batches of a seeded epoch order, from batch `first` to before `end` (a run stopped and resumed). */
function batches(first = 0, end = n / B): BatchSource {
  const L = 3 * S * S;
  return {
    length: n / B,
    async *epoch(e: number, start = first) {
      const order = Array.from({ length: n }, (_, i) => i);
      new Rng(1000 + e).shuffle(order);
      for (let b = start; b < end; b++) {
        const idx = order.slice(b * B, (b + 1) * B);
        const data = new Float32Array(B * L);
        idx.forEach((j, q) => data.set(pixels.subarray(j * L, (j + 1) * L), q * L));
        yield { epoch: e, batch: b, pixels: { shape: [B, 3, S, S], data }, labels: Int32Array.from(idx, (j) => labels[j]), indices: Int32Array.from(idx) };
      }
    },
  };
}
const tinyConfig = () => makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 3, dropPathRate: 0.1 });

/** Fine-tuning steps firstBatch..lastBatch-1 (drop path, label smoothing, clipping, EMA): each batch's loss. */
async function finetune(k: Kernels, model?: ConvNeXtV2, opt?: AdamW, ema?: ModelEma, firstBatch = 0, lastBatch = 5, lossReadEvery: number | null = 1): Promise<{ losses: number[]; model: ConvNeXtV2; opt: AdamW; ema: ModelEma; engine: FinetuneEngine; epochLoss: number }> {
  model ??= new ConvNeXtV2(tinyConfig(), { seed: 1, kernels: k });
  opt ??= new AdamW(model.params, { lr: 1e-3, weightDecay: 0.05 });
  ema ??= new ModelEma(model.params, 0.9, k);
  const engine = new FinetuneEngine({
    model, opt, ema, batches: batches(firstBatch, lastBatch), schedule: { lr: 1e-3, minLr: 2e-4, warmupEpochs: 0, epochs: 1 }, seed: 5, smoothing: 0.1, clipGrad: 1,
    evaluate: async () => ({ top1: 0, top5: 0, loss: 0 }), resume: { step: firstBatch, best: 0 }, lossReadEvery: lossReadEvery ?? undefined,
  });
  const losses: number[] = [];
  let sum = 0;
  // afterBatch reports the running mean loss of the epoch's batches so far: recover each batch's.
  const r = await engine.runEpoch(1, { afterBatch: (s) => { const l = s.loss * (losses.length + 1) - sum; sum += l; losses.push(l); } });
  return { losses, model, opt, ema, engine, epochLoss: r.loss };
}

test('five fine-tuning steps on webgpu give the CPU losses (1e-4), and the EMA and weights follow', async (t) => {
  const k = need(t, gpu);
  if (!k) return;
  const g = await finetune(k);
  const c = await finetune(cpu);
  assert.equal(g.losses.length, 5);
  g.losses.forEach((l, i) => assert.ok(Math.abs(l - c.losses[i]) <= 1e-4 * Math.abs(c.losses[i]), `step ${i + 1}: ${l} vs ${c.losses[i]}`));
  const w = await g.model.stateDict();
  for (const [name, v] of await c.model.stateDict()) assert.ok(relErr(w.get(name)!.data, v.data) <= 1e-3, `weights ${name}`);
  const e = await g.engine.emaTensors();
  for (const [name, v] of await c.engine.emaTensors()) assert.ok(relErr(e.get(name)!.data, v.data) <= 1e-3, `EMA ${name}`);
  g.model.dispose();
});

test('on webgpu the loss is read once per 16 microbatches by default: none before, the same epoch loss after', async (t) => {
  const k = need(t, gpu);
  if (!k) return;
  const reads: number[] = [];
  const read = k.read.bind(k);
  // Count the loss reads (one-value reads: the loss buffer is 16 values, the state reads are whole stores).
  k.read = async (b) => {
    reads.push(b.length);
    return read(b);
  };
  try {
    const each = await finetune(k, undefined, undefined, undefined, 0, 5, 1);
    const lossReads = reads.filter((n) => n === 1).length;
    reads.length = 0;
    const batched = await finetune(k, undefined, undefined, undefined, 0, 5, null);
    assert.equal(lossReads, 5, 'lossReadEvery 1: one read per microbatch');
    assert.ok(batched.losses.every((l) => Number.isNaN(l)), 'no loss known before the first read (5 < 16 microbatches)');
    assert.deepEqual(reads.filter((n) => n === 1 || n === 16), [16], 'one read of the 16 slots at the epoch end');
    assert.equal(batched.epochLoss, each.epochLoss, 'the epoch loss is the same, bit for bit');
    each.model.dispose();
    batched.model.dispose();
  } finally {
    k.read = read;
  }
});

test('five FCMAE pre-training steps on webgpu give the CPU losses (1e-4)', async (t) => {
  const k = need(t, gpu);
  if (!k) return;
  const run = async (kk: Kernels) => {
    const fcmae = new FCMAE(makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }), { decoderDim: 16, normPixLoss: true }, { seed: 2, kernels: kk });
    const opt = new AdamW(fcmae.params, { lr: 1e-3, betas: [0.9, 0.95], weightDecay: 0.05 });
    const engine = new PretrainEngine({ fcmae, opt, batches: batches(), schedule: { lr: 1e-3, minLr: 0, warmupEpochs: 1, epochs: 2 }, seed: 3, lossReadEvery: 1 });
    const losses: number[] = [];
    let sum = 0;
    await engine.runEpoch(1, { afterBatch: (s) => { const l = s.loss * (losses.length + 1) - sum; sum += l; losses.push(l); } });
    return { losses, fcmae };
  };
  const g = await run(k);
  const c = await run(cpu);
  assert.equal(g.losses.length, 5);
  g.losses.forEach((l, i) => assert.ok(Math.abs(l - c.losses[i]) <= 1e-4 * Math.abs(c.losses[i]), `step ${i + 1}: ${l} vs ${c.losses[i]}`));
  g.fcmae.dispose();
});

test('a fine-tuning run moves between devices through its checkpoint: 3 steps on webgpu then 2 on the CPU, and back', async (t) => {
  const k = need(t, gpu);
  if (!k) return;
  const whole = await finetune(k);
  for (const [first, second] of [[k, cpu], [cpu, k]] as const) {
    const a = await finetune(first, undefined, undefined, undefined, 0, 3);
    const bytes = serializeCheckpoint({
      config: a.model.config, state: await a.model.stateDict(), extra: await a.engine.checkpointExtra(),
      metadata: { optimizer_step: String(a.opt.step) },
    });
    const ck = loadCheckpointBytes(bytes, { extra: true });
    const model = new ConvNeXtV2(ck.config, { kernels: second });
    model.loadStateDict(ck.state);
    const opt = new AdamW(model.params, { lr: 1e-3, weightDecay: 0.05 });
    loadOptimizerTensors(second, opt, ck.extra!, Number(ck.metadata.optimizer_step), 'moved');
    const ema = new ModelEma(model.params, 0.9, second);
    for (const p of model.params) second.write(ema.shadow.get(p.name)!, ck.extra!.get(`ema.${p.name}`)!.data);
    const b = await finetune(second, model, opt, ema, 3, 5);
    const losses = [...a.losses, ...b.losses];
    assert.equal(losses.length, 5);
    losses.forEach((l, i) => assert.ok(Math.abs(l - whole.losses[i]) <= 1e-4 * Math.abs(whole.losses[i]), `${first.name} -> ${second.name}, step ${i + 1}: ${l} vs ${whole.losses[i]}`));
  }
});
