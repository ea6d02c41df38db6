// The browser bundle (scripts/build-web.ts -> dist/web/index.js) built and run here in Node:
// it reaches nothing from Node (esbuild refuses node:* and Node-only packages; the output is
// checked again), it loads every checkpoint format from bytes (ours, timm, official .pt, an HF
// folder's files, an official FCMAE .pt) and gives the reference logits and FCMAE loss on its
// TypeScript kernels, a training step matches the native Node path, and what it writes (a
// checkpoint, a PNG) is read back by the Node side.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { buildWeb } from '../scripts/build-web.js';
import * as node from '../src/index.js';
import { REF, relErr, SMALL_TIMM } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'convnextv2-web-'));
after(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'package.json'), '{"type": "module"}\n'); // as dist/ is, under the package's own
const out = await buildWeb(dir);
const web = (await import(pathToFileURL(out).href)) as typeof import('../src/web.js');
const webCpu = await web.createBackend('cpu');
const webRef = await web.createBackend('reference');
const nodeRef = await node.createBackend('reference');
const nodeCpu = await node.createBackend('cpu');
const ref = node.readSafetensors(SMALL_TIMM);
const bytes = (f: string) => new Uint8Array(readFileSync(join(REF, f)));

test('the bundle is one ES module with no Node imports, and runs on the TypeScript kernels', () => {
  const js = readFileSync(out, 'utf8');
  assert.doesNotMatch(js, /\bfrom\s*["']node:|\bimport\(["']node:|require\(["'](node:|fs|path|os|zlib|worker_threads)["']\)/);
  assert.doesNotMatch(js, /\bprocess\.env\b(?!\s*\?\?)/, 'no bare process.env');
  assert.ok(js.length < 1_000_000, `bundle is ${js.length} bytes`);
  assert.equal(webCpu.name, 'reference', 'the bundle has no addon: cpu is the reference');
});

test('loadCheckpoint from bytes: timm safetensors, official .pt and an HF folder give the reference logits', async () => {
  const params = node.serializeSafetensors([...ref].filter(([k]) => k.startsWith('param.')).map(([k, v]) => [k.slice(6), v] as const));
  const x = ref.get('input.0.pixel_values')!;
  const want = ref.get('output.0.logits')!.data;
  for (const [what, ck] of [['timm safetensors', web.loadCheckpoint(params)], ['official .pt', web.loadCheckpoint(bytes('small_official.pt'))]] as const) {
    const m = new web.ConvNeXtV2(ck.config, { kernels: webCpu });
    m.loadStateDict(ck.state);
    const got = (await m.forward(x)).logits!;
    assert.deepEqual(got.shape, [2, 10]);
    assert.ok(relErr(got.data, want) <= 1e-4, `${what}: ${relErr(got.data, want)}`);
  }
  const hfDir = join(REF, 'small_hf');
  const files = Object.fromEntries(readdirSync(hfDir).filter((f) => f !== 'expected.safetensors').map((f) => [f, new Uint8Array(readFileSync(join(hfDir, f)))]));
  const hf = web.loadCheckpoint(files);
  assert.equal(hf.naming, 'hf');
  const exp = node.readSafetensors(join(hfDir, 'expected.safetensors'));
  const m = new web.ConvNeXtV2(hf.config, { kernels: webCpu });
  m.loadStateDict(hf.state);
  assert.ok(relErr((await m.forward(exp.get('input.0.pixel_values')!)).logits!.data, exp.get('output.0.logits')!.data) <= 1e-4, 'HF folder');
  assert.throws(() => web.loadCheckpoint(new TextEncoder().encode('not a checkpoint at all')), (e: Error) => e instanceof web.ConvNextError && !/\n/.test(e.message));
});

test('an official FCMAE .pt from bytes gives the reference loss (sparse encoder)', async () => {
  const fr = node.readSafetensors(join(REF, 'fcmae_small.safetensors'));
  const ck = web.loadCheckpoint(bytes('fcmae_small_official.pt'), { extra: true });
  assert.equal(ck.format, 'fcmae');
  const f = new web.FCMAE(ck.config, { decoderDim: ck.fcmae!.decoderDim, decoderDepth: ck.fcmae!.decoderDepth, normPixLoss: true }, { kernels: webCpu });
  f.encoderModel.loadStateDict(ck.state);
  f.loadDecoderState(ck.extra!);
  const r = await f.forward(fr.get('input.pixel_values')!, fr.get('input.mask')!);
  const want = fr.get('output.loss')!.data[0];
  assert.ok(Math.abs(r.loss - want) <= 1e-4 * Math.abs(want), `${r.loss} vs ${want}`);
});

test('a training step in the bundle: loss and gradients as the native Node step (1e-5), weights as Node on the same kernels (bits); its checkpoint loads in Node; its PNG decodes', async () => {
  const cfg = node.makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 5 });
  const x = { shape: [2, 3, 64, 64], data: Float32Array.from({ length: 2 * 3 * 64 * 64 }, (_, i) => Math.sin(i * 0.01)) };
  const step = async (lib: typeof web | typeof node, kernels: node.Kernels) => {
    const m = new lib.ConvNeXtV2(cfg, { seed: 3, kernels });
    m.zeroGrad();
    const loss = (await kernels.read(lib.forwardBackward(m, x, [1, 4], { smoothing: 0.1 }).loss))[0];
    const grads = new Map(m.params.map((p) => [p.name, Float32Array.from(p.grad)]));
    new lib.AdamW(m.params, { lr: 1e-2, weightDecay: 0.05 }).update(m.kernels);
    return { loss, grads, m };
  };
  const a = await step(web, webCpu), native = await step(node, nodeCpu), same = await step(node, nodeRef);
  assert.notEqual(native.m.kernels.name, 'reference', 'the Node side runs native kernels');
  assert.ok(Math.abs(a.loss - native.loss) <= 1e-5 * Math.abs(native.loss), `loss ${a.loss} vs ${native.loss}`);
  for (const [n, g] of native.grads) assert.ok(relErr(a.grads.get(n)!, g) <= 1e-5, `gradient of ${n}: ${relErr(a.grads.get(n)!, g)}`);
  // Adam's first step is g / (|g| + eps): gradients near eps amplify rounding, so updated
  // weights are compared with Node on the same (reference) kernels: the same code, the same bits.
  for (const p of same.m.params) assert.deepEqual(a.m.param(p.name).data, p.data, p.name);
  const file = join(dir, 'from-web.safetensors');
  writeFileSync(file, web.serializeCheckpoint({ config: cfg, state: await a.m.stateDict(), labels: ['a', 'b', 'c', 'd', 'e'] }));
  const back = node.loadCheckpoint(file);
  assert.deepEqual(back.labels, ['a', 'b', 'c', 'd', 'e']);
  for (const [n, t] of await a.m.stateDict()) assert.deepEqual(back.state.get(n)!.data, t.data, n);
  const png = web.linePlot({ title: 'loss', series: [{ label: 'loss', points: [[1, 3], [2, 2], [3, 1.5], [4, 1.2]] }] });
  const img = await sharp(png).metadata();
  assert.equal(img.format, 'png');
  const raster = { width: 3, height: 2, channels: 3 as const, data: Uint8Array.from({ length: 18 }, (_, i) => i * 13) };
  const { data } = await sharp(web.encodePng(raster)).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([...data], [...raster.data], 'PNG pixels round trip through the TypeScript deflate');
});

/** Batches from arrays in memory, in a seeded order per epoch: what a page would feed the engines. */
function memoryBatches(lib: typeof web | typeof node, pixels: Float32Array, labels: Int32Array, n: number, S: number, B: number): node.BatchSource {
  const L = 3 * S * S;
  return {
    length: Math.floor(n / B),
    async *epoch(e: number, start = 0) {
      const order = Array.from({ length: n }, (_, i) => i);
      new lib.Rng(lib.sampleSeed(7, e, 0xffffffff)).shuffle(order);
      for (let b = start; b < Math.floor(n / B); b++) {
        const idx = order.slice(b * B, (b + 1) * B);
        const data = new Float32Array(B * L);
        idx.forEach((k, j) => data.set(pixels.subarray(k * L, (k + 1) * L), j * L));
        yield { epoch: e, batch: b, pixels: { shape: [B, 3, S, S], data }, labels: Int32Array.from(idx, (k) => labels[k]), indices: Int32Array.from(idx) };
      }
    },
  };
}

test('the training engines run in the bundle: fine-tuning (EMA, mixup, accumulation) and FCMAE pre-training, bit for bit as in Node on the same kernels', async () => {
  const S = 32, n = 24, B = 8;
  const labels = Int32Array.from({ length: n }, (_, i) => i % 3);
  const pixels = Float32Array.from({ length: n * 3 * S * S }, (_, i) => Math.sin(i * 0.013 + labels[Math.floor(i / (3 * S * S))]));
  const finetune = async (lib: typeof web | typeof node, kernels: node.Kernels) => {
    const model = new lib.ConvNeXtV2(lib.makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 3, dropPathRate: 0.1 }), { seed: 1, kernels });
    const opt = new lib.AdamW(model.params, { lr: 1e-3, weightDecay: 0.05 });
    const ema = new lib.ModelEma(model.params, 0.9, kernels);
    const mixup = new lib.Mixup({ mixupAlpha: 0.8, cutmixAlpha: 1, prob: 1, switchProb: 0.5, mode: 'batch', labelSmoothing: 0.1, numClasses: 3 });
    const evaluate = async (m: node.ConvNeXtV2) => {
      const out = (await m.forward({ shape: [n, 3, S, S], data: pixels })).logits!;
      let hits = 0;
      for (let i = 0; i < n; i++) {
        const row = Array.from(out.data.subarray(i * 3, i * 3 + 3));
        if (row.indexOf(Math.max(...row)) === labels[i]) hits++;
      }
      return { top1: (100 * hits) / n, top5: 100, loss: 0 };
    };
    const engine = new lib.FinetuneEngine({
      model, opt, ema, mixup, batches: memoryBatches(lib, pixels, labels, n, S, B), schedule: { lr: 2e-3, minLr: 1e-6, warmupEpochs: 1, epochs: 2 },
      evaluate, seed: 5, updateFreq: 2, clipGrad: 1, emaEval: true,
    });
    const steps: number[] = [];
    const epochs = [await engine.runEpoch(1, { afterBatch: (s) => { steps.push(s.batch); } }), await engine.runEpoch(2)];
    return { epochs, steps, state: await model.stateDict(), extra: await engine.checkpointExtra(), step: engine.step };
  };
  const a = await finetune(web, webRef), b = await finetune(node, nodeRef);
  assert.deepEqual(a.steps, [1, 2, 3], 'afterBatch after every batch');
  assert.equal(a.step, 2, '3 batches per epoch, accumulation 2: one step an epoch (the odd batch dropped)');
  assert.deepEqual(a.epochs.map((e) => [e.loss, e.val.top1, e.ema!.top1]), b.epochs.map((e) => [e.loss, e.val.top1, e.ema!.top1]));
  for (const [k, t] of b.state) assert.deepEqual(a.state.get(k)!.data, t.data, k);
  assert.deepEqual([...a.extra.keys()], [...b.extra.keys()]);
  assert.ok([...a.extra.keys()].some((k) => k.startsWith('ema.')) && [...a.extra.keys()].some((k) => k.startsWith('optimizer.m.')));
  const pretrain = async (lib: typeof web | typeof node, kernels: node.Kernels) => {
    const fcmae = new lib.FCMAE(lib.makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }), { decoderDim: 16, normPixLoss: true }, { seed: 2, kernels });
    const opt = new lib.AdamW(fcmae.params, { lr: 1e-3, betas: [0.9, 0.95], weightDecay: 0.05 });
    const engine = new lib.PretrainEngine({ fcmae, opt, batches: memoryBatches(lib, pixels, labels, n, S, B), schedule: { lr: 1e-3, minLr: 0, warmupEpochs: 1, epochs: 2 }, seed: 3 });
    const losses = [(await engine.runEpoch(1)).loss, (await engine.runEpoch(2)).loss];
    return { losses, step: engine.step, w: Float32Array.from(fcmae.params[0].data) };
  };
  const p = await pretrain(web, webRef), q = await pretrain(node, nodeRef);
  assert.deepEqual(p.losses, q.losses);
  assert.equal(p.step, 6);
  assert.deepEqual(p.w, q.w);
  const bad = new web.FinetuneEngine({
    model: new web.ConvNeXtV2(web.makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 3 }), { kernels: webCpu }), opt: new web.AdamW([], {}),
    batches: memoryBatches(web, pixels.map(() => NaN), labels, n, S, B), schedule: { lr: 1e-3, minLr: 0, warmupEpochs: 0, epochs: 1 }, seed: 0, evaluate: async () => ({ top1: 0, top5: 0, loss: 0 }),
  });
  await assert.rejects(bad.runEpoch(1), (e: Error) => e instanceof web.NonFiniteLossError && /^loss is NaN at epoch 1, step 1$/.test(e.message));
});
