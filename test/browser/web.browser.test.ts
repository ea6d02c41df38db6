// The browser bundle in a real browser: Debian's Chromium, headless, driven by playwright-core
// (no browser download; CHROMIUM_PATH overrides /usr/bin/chromium). A page served from
// 127.0.0.1 with COOP/COEP (cross-origin isolated, as the web app will be) imports
// dist/web/index.js, fetches the reference fixtures and runs: small_timm's logits from the timm
// safetensors, the official .pt and the HF folder (1e-4 of timm's), the official FCMAE .pt's
// loss (1e-4), and one fine-tuning step whose loss and gradients must be the native Node step's
// (1e-5); the WebAssembly kernels in the page (the same logits and gradients); and the WebGPU
// backend on navigator.gpu (Chromium's SwiftShader adapter): timm's logits and gradients.
// `npm run test:browser` (builds the wasm kernels first; needs Chromium and clang, see README).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { buildWeb } from '../../scripts/build-web.js';
import { serve, type Served } from '../../scripts/serve.js';
import * as node from '../../src/index.js';
import { REF, relErr, SMALL_TIMM } from '../helpers.js';
import { cpu } from '../backend.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const WASM = join(new URL('../..', import.meta.url).pathname, 'dist', 'wasm', 'convnextv2.wasm');
const dir = mkdtempSync(join(tmpdir(), 'convnextv2-browser-'));
let served: Served | undefined;
let browser: Browser;
let page: Page;
let origin = '';

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  await buildWeb(dir);
  const params = node.serializeSafetensors([...node.readSafetensors(SMALL_TIMM)].filter(([k]) => k.startsWith('param.')).map(([k, v]) => [k.slice(6), v] as const));
  writeFileSync(join(dir, 'small_timm_params.safetensors'), params);
  writeFileSync(join(dir, 'index.html'), '<!doctype html><meta charset="utf-8"><title>convnextv2 browser test</title><p>convnextv2</p>\n');
  assert.ok(existsSync(WASM), `${WASM} missing: npm run build:wasm`);
  served = await serve({
    '/': join(dir, 'index.html'), '/index.js': join(dir, 'index.js'), '/index.js.map': join(dir, 'index.js.map'),
    '/small_timm_params.safetensors': join(dir, 'small_timm_params.safetensors'), '/wasm/': dirname(WASM), '/fixtures/': REF,
  });
  origin = served.origin;
  // WebGPU in headless Chromium: its bundled SwiftShader adapter, behind --enable-unsafe-webgpu.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--enable-unsafe-webgpu'] });
  page = await browser.newPage();
  page.on('pageerror', (e) => { throw new Error(`page error: ${e.message}`); });
  // The functions handed to page.evaluate come from tsx (esbuild keepNames), which wraps named
  // functions in __name(...): give the page that helper.
  await page.addInitScript('globalThis.__name = (f) => f;');
  await page.goto(`${origin}/`);
});

after(async () => {
  await browser?.close();
  await served?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the page is cross-origin isolated and imports the bundle', async () => {
  const r = await page.evaluate(async () => {
    const lib = await import('/index.js');
    const refK = await lib.createBackend('reference');
    return { isolated: globalThis.crossOriginIsolated, kernels: (await lib.createBackend('cpu')).name as string, ua: navigator.userAgent };
  });
  assert.equal(r.isolated, true);
  assert.equal(r.kernels, 'reference');
  assert.match(r.ua, /HeadlessChrome|Chrome/);
});

test('in the page: small_timm logits from timm safetensors, the official .pt and an HF folder; the official FCMAE .pt loss', async () => {
  const got = await page.evaluate(async () => {
    const lib = await import('/index.js');
    const refK = await lib.createBackend('reference');
    const bytes = async (p: string) => new Uint8Array(await (await fetch(p)).arrayBuffer());
    const ref = lib.parseSafetensorsBuffer(await bytes('/fixtures/small_timm.safetensors'));
    const x = { shape: ref.info('input.0.pixel_values').shape, data: ref.get('input.0.pixel_values') };
    const logits = async (ck: { config: unknown; state: unknown }) => {
      const m = new lib.ConvNeXtV2(ck.config, { kernels: refK });
      m.loadStateDict(ck.state);
      return Array.from((await m.forward(x)).logits.data as Float32Array);
    };
    const timm = await logits(lib.loadCheckpoint(await bytes('/small_timm_params.safetensors')));
    const official = await logits(lib.loadCheckpoint(await bytes('/fixtures/small_official.pt')));
    const hfFiles = { 'model.safetensors': await bytes('/fixtures/small_hf/model.safetensors'), 'config.json': await bytes('/fixtures/small_hf/config.json') };
    const hfCk = lib.loadCheckpoint(hfFiles);
    const exp = lib.parseSafetensorsBuffer(await bytes('/fixtures/small_hf/expected.safetensors'));
    const hm = new lib.ConvNeXtV2(hfCk.config, { kernels: refK });
    hm.loadStateDict(hfCk.state);
    const hf = Array.from((await hm.forward({ shape: exp.info('input.0.pixel_values').shape, data: exp.get('input.0.pixel_values') })).logits.data as Float32Array);
    const fr = lib.parseSafetensorsBuffer(await bytes('/fixtures/fcmae_small.safetensors'));
    const fck = lib.loadCheckpoint(await bytes('/fixtures/fcmae_small_official.pt'), { extra: true });
    const f = new lib.FCMAE(fck.config, { decoderDim: fck.fcmae.decoderDim, decoderDepth: fck.fcmae.decoderDepth, normPixLoss: true }, { kernels: refK });
    f.encoderModel.loadStateDict(fck.state);
    f.loadDecoderState(fck.extra);
    const loss = (await f.forward({ shape: fr.info('input.pixel_values').shape, data: fr.get('input.pixel_values') },
      { shape: fr.info('input.mask').shape, data: fr.get('input.mask') })).loss as number;
    return { timm, official, hf, loss, naming: hfCk.naming as string };
  });
  const ref = node.readSafetensors(SMALL_TIMM);
  const want = ref.get('output.0.logits')!.data;
  assert.ok(relErr(Float32Array.from(got.timm), want) <= 1e-4, 'timm');
  assert.ok(relErr(Float32Array.from(got.official), want) <= 1e-4, 'official');
  assert.equal(got.naming, 'hf');
  const exp = node.readSafetensors(join(REF, 'small_hf', 'expected.safetensors'));
  assert.ok(relErr(Float32Array.from(got.hf), exp.get('output.0.logits')!.data) <= 1e-4, 'HF folder');
  const wantLoss = node.readSafetensors(join(REF, 'fcmae_small.safetensors')).get('output.loss')!.data[0];
  assert.ok(Math.abs(got.loss - wantLoss) <= 1e-4 * Math.abs(wantLoss), `FCMAE loss ${got.loss} vs ${wantLoss}`);
});

test('in the page: a fine-tuning step gives the native Node step\'s loss and gradients (1e-5)', async () => {
  const got = await page.evaluate(async () => {
    const lib = await import('/index.js');
    const refK = await lib.createBackend('reference');
    const cfg = lib.makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 5 });
    const m = new lib.ConvNeXtV2(cfg, { kernels: refK, seed: 3 });
    m.zeroGrad();
    const x = { shape: [2, 3, 64, 64], data: Float32Array.from({ length: 2 * 3 * 64 * 64 }, (_, i) => Math.sin(i * 0.01)) };
    const loss = (await refK.read(lib.forwardBackward(m, x, [1, 4], { smoothing: 0.1 }).loss))[0];
    return { loss: loss as number, grads: (m.params as { name: string; grad: Float32Array }[]).map((p) => [p.name, Array.from(p.grad)] as [string, number[]]) };
  });
  const cfg = node.makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 5 });
  const m = new node.ConvNeXtV2(cfg, { kernels: cpu, seed: 3 });
  assert.notEqual(m.kernels.name, 'reference');
  m.zeroGrad();
  const x = { shape: [2, 3, 64, 64], data: Float32Array.from({ length: 2 * 3 * 64 * 64 }, (_, i) => Math.sin(i * 0.01)) };
  const loss = (await cpu.read(node.forwardBackward(m, x, [1, 4], { smoothing: 0.1 }).loss))[0];
  assert.ok(Math.abs(got.loss - loss) <= 1e-5 * Math.abs(loss), `loss ${got.loss} vs ${loss}`);
  assert.equal(got.grads.length, m.params.length);
  for (const [name, g] of got.grads) assert.ok(relErr(Float32Array.from(g), m.param(name).grad) <= 1e-5, name);
});

test('in the page: the WebAssembly kernels on 2 Web Worker threads give timm\'s logits and gradients, bit-identical to 1 thread', async () => {
  const got = await page.evaluate(async () => {
    const lib = await import('/index.js');
    const refK = await lib.createBackend('reference');
    const kernels = await lib.createBackend('wasm', { wasm: { baseUrl: '/wasm/' }, threads: 2 });
    const bytes = async (p: string) => new Uint8Array(await (await fetch(p)).arrayBuffer());
    const ref = lib.parseSafetensorsBuffer(await bytes('/fixtures/small_timm.safetensors'));
    const ck = lib.loadCheckpoint(await bytes('/small_timm_params.safetensors'));
    const m = new lib.ConvNeXtV2(ck.config, { kernels });
    m.loadStateDict(ck.state);
    const x = { shape: ref.info('input.0.pixel_values').shape, data: ref.get('input.0.pixel_values') };
    const logits = Array.from((await m.forward(x)).logits.data as Float32Array);
    m.zeroGrad();
    const logits2 = Array.from((await m.forward(x, { cache: true })).logits.data as Float32Array);
    m.backward(ref.get('grad.R'), false);
    const grads = (m.params as { name: string; grad: Float32Array }[]).map((p) => [p.name, Array.from(p.grad)] as [string, number[]]);
    const workerTasks = kernels.workerTasks() as number;
    kernels.setThreads(1);
    m.zeroGrad();
    const logits1 = Array.from((await m.forward(x, { cache: true })).logits.data as Float32Array);
    m.backward(ref.get('grad.R'), false);
    const same = logits1.every((v, i) => Object.is(v, logits2[i])) &&
      (m.params as { grad: Float32Array }[]).every((p, i) => p.grad.every((v, j) => Object.is(v, grads[i][1][j])));
    const inMemory = (m.params as { data: Float32Array }[]).every((p) => p.data.buffer instanceof SharedArrayBuffer);
    kernels.close();
    return { name: kernels.name as string, logits, grads, workerTasks, same, inMemory };
  });
  assert.equal(got.name, 'wasm');
  assert.ok(got.workerTasks > 0, 'the worker thread ran tasks');
  assert.ok(got.same, '1 thread gives the same bits as 2');
  assert.ok(got.inMemory, 'parameters live in the shared wasm memory');
  const ref = node.readSafetensors(SMALL_TIMM);
  assert.ok(relErr(Float32Array.from(got.logits), ref.get('output.0.logits')!.data) <= 1e-4, 'logits');
  for (const [name, g] of got.grads) assert.ok(relErr(Float32Array.from(g), ref.get(`grad.${name}`)!.data) <= 1e-4, `grad ${name}`);
});

test('in the page: the WebGPU backend on navigator.gpu gives timm\'s logits and every gradient (1e-4)', async () => {
  const got = await page.evaluate(async () => {
    const lib = await import('/index.js');
    const refK = await lib.createBackend('reference');
    const kernels = await lib.createBackend('webgpu');
    const bytes = async (p: string) => new Uint8Array(await (await fetch(p)).arrayBuffer());
    const ref = lib.parseSafetensorsBuffer(await bytes('/fixtures/small_timm.safetensors'));
    const ck = lib.loadCheckpoint(await bytes('/small_timm_params.safetensors'));
    const m = new lib.ConvNeXtV2(ck.config, { kernels });
    m.loadStateDict(ck.state);
    const x = { shape: ref.info('input.0.pixel_values').shape, data: ref.get('input.0.pixel_values') };
    const logits = Array.from((await m.forward(x)).logits.data as Float32Array);
    m.zeroGrad();
    m.forwardTensors(x, { cache: true });
    m.backward(ref.get('grad.R'), false);
    const grads: [string, number[]][] = [];
    for (const p of m.params as { name: string; grad: unknown }[]) grads.push([p.name, Array.from(await kernels.read(p.grad) as Float32Array)]);
    const caps = kernels.capabilities() as { device: boolean; description: string };
    return { logits, grads, device: caps.device, description: caps.description, name: kernels.name as string };
  });
  assert.equal(got.name, 'webgpu');
  assert.equal(got.device, true);
  assert.match(got.description, /\S/);
  const ref = node.readSafetensors(SMALL_TIMM);
  assert.ok(relErr(Float32Array.from(got.logits), ref.get('output.0.logits')!.data) <= 1e-4, 'logits');
  assert.equal(got.grads.length, [...ref.keys()].filter((n) => n.startsWith('grad.') && n !== 'grad.R' && n !== 'grad.input').length);
  for (const [name, g] of got.grads) assert.ok(relErr(Float32Array.from(g), ref.get(`grad.${name}`)!.data) <= 1e-4, `grad.${name}`);
});
