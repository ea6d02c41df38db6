// The web app (`npm run web`) end to end in Debian's headless Chromium (playwright-core): the
// app is built (type-check + bundles) and served exactly as `npm run web` serves it; the test
// opens checkpoints through the file inputs, classifies fixture-like images (top-5 within 1e-4
// of the same computation in Node), draws FCMAE reconstructions (those of Node), fine-tunes in
// the Worker from the official FCMAE fixture (2 classes from a folder of class folders, a fifth
// held out for validation): the settings are checked at their fields first, a cancelled run
// keeps what it trained (curves, head, a checkpoint Node loads), a run to the end plots its loss
// on an axis scaled to the data and the validation accuracy per epoch; classifies with the new
// head, downloads the checkpoint and loads it in Node (library and CLI `predict`: the page's
// probabilities), checks bad input gets one line in the page and that an error goes with the
// next action in its section, switches to the GPU (WebGPU in the Worker: Chromium's SwiftShader
// adapter, behind --enable-unsafe-webgpu) and back, the open model moving along and classifying
// as on the CPU (1e-4); last, on a fresh page, the default settings learn the sample images
// within a minute, and it leaves a screenshot: $SCREENSHOT_DIR (default the OS temp
// folder)/web-app.png; UPDATE_SCREENSHOTS=1 also writes docs/web-app.png.
// `npm run test:browser` (builds the wasm kernels first; needs Chromium and clang, see README).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { appRoutes, buildApp } from '../../scripts/build-app.js';
import { buildWeb } from '../../scripts/build-web.js';
import { serve, type Served } from '../../scripts/serve.js';
import { cpu } from '../backend.js';
import * as node from '../../src/index.js';
import * as web from '../../src/web.js';
import { reconstructImages } from '../../src/fcmae/reconstruction.js';
import { REF, smallTimmParams } from '../helpers.js';
import { lossAxis } from '../../web/loss_plot.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const WASM_DIR = join(ROOT, 'dist', 'wasm');
const FCMAE_PT = join(REF, 'fcmae_small_official.pt');
const dir = mkdtempSync(join(tmpdir(), 'convnextv2-app-'));
const files = join(dir, 'files');
const shotDir = process.env.SCREENSHOT_DIR ?? tmpdir();
let served: Served | undefined;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];
/** The CPU's classification of CLASSIFY with model.safetensors (the GPU case compares with it). */
let cpuTimm: PageResult[] = [];

/** The two classes of the fine-tune: synthetic shapes and textures with an orange or a teal cast. */
const CLASSES = ['orange', 'teal'];
const TINTS = [[1.0, 0.55, 0.15], [0.1, 0.55, 0.75]];

/**
 * Synthetic image `i` with the colour cast of class `k`, as PNG bytes, `w` x `h` (cropped from a
 * square render). The cast makes the classes learnable from a few images by the fixture's
 * random-weight encoder, so the fine-tune visibly works in seconds.
 */
function syntheticPng(i: number, k: number, w = 96, h = w): Uint8Array {
  const S = Math.max(w, h);
  const { image } = web.renderSynthetic(i, 'train', { size: S });
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) data[(y * w + x) * 3 + c] = Math.round((0.55 * image[c * S * S + y * S + x] + 0.45 * TINTS[k][c]) * 255);
    }
  }
  return web.encodePng({ width: w, height: h, channels: 3, data });
}

/**
 * An image like the app's sample images (web/worker.ts's SAMPLE: the synthetic set's 64 px images
 * with the class's 45% colour cast), from the set's 'val' split: not among the sample's.
 */
function sampleLikePng(name: 'h-stripes' | 'v-stripes' | 'disc', j: number): Uint8Array {
  const S = 64;
  const tint = { 'h-stripes': [0.95, 0.45, 0.15], 'v-stripes': [0.15, 0.6, 0.75], disc: [0.6, 0.3, 0.8] }[name];
  const k = (web.SYNTHETIC_CLASSES as readonly string[]).indexOf(name);
  const { image } = web.renderSynthetic(j * web.SYNTHETIC_CLASSES.length + k, 'val', { size: S });
  const data = new Uint8Array(S * S * 3);
  for (let p = 0; p < S * S; p++) for (let c = 0; c < 3; c++) data[p * 3 + c] = Math.round((0.55 * image[c * S * S + p] + 0.45 * tint[c]) * 255);
  return web.encodePng({ width: S, height: S, channels: 3, data });
}
const SAMPLE_LIKE = ['h-stripes', 'v-stripes', 'disc'] as const;

const img = (name: string) => join(files, name);
const CLASSIFY = ['orange.png', 'teal.png', 'wide.png'];

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  assert.ok(existsSync(join(WASM_DIR, 'convnextv2.wasm')), `${WASM_DIR}/convnextv2.wasm missing: npm run build:wasm`);
  const webDir = join(dir, 'web');
  await buildWeb(webDir);
  await buildApp(join(webDir, 'app'));
  mkdirSync(files);
  writeFileSync(img('model.safetensors'), web.serializeSafetensors([...smallTimmParams()]));
  // Not among the fine-tuning images.
  writeFileSync(img('orange.png'), syntheticPng(100, 0));
  writeFileSync(img('teal.png'), syntheticPng(105, 1));
  writeFileSync(img('wide.png'), syntheticPng(110, 0, 128, 88));
  for (const [k, name] of CLASSES.entries()) {
    mkdirSync(join(files, 'classes', name), { recursive: true });
    for (let j = 0; j < 8; j++) writeFileSync(join(files, 'classes', name, `${j}.png`), syntheticPng(j * 7 + k * 3, k));
  }
  writeFileSync(join(files, 'classes', 'README.txt'), 'not an image: ignored by the folder chooser\n');
  for (const name of SAMPLE_LIKE) writeFileSync(img(`sample-${name}.png`), sampleLikePng(name, 0));
  // Bad input: a ViT-like safetensors, a truncated checkpoint, a text file.
  const z = (n: number) => ({ shape: [n], data: new Float32Array(n) });
  writeFileSync(img('vit.safetensors'), web.serializeSafetensors([['cls_token', z(8)], ['pos_embed', z(40)], ['blocks.0.attn.qkv.weight', z(192)]]));
  const full = readFileSync(img('model.safetensors'));
  writeFileSync(img('truncated.safetensors'), full.subarray(0, full.length >> 1));
  writeFileSync(img('notes.txt'), 'these are not pixels\n');

  served = await serve(appRoutes(webDir, WASM_DIR));
  // WebGPU in headless Chromium: its bundled SwiftShader adapter, behind --enable-unsafe-webgpu.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--enable-unsafe-webgpu'] });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.addInitScript('globalThis.__name = (f) => f;');
  await page.goto(`${served.origin}/`);
  await page.waitForFunction(() => !(document.getElementById('kernels')?.textContent ?? '').includes('starting'));
});

after(async () => {
  await browser?.close();
  await served?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Waits until the page is idle (no task running) and returns the message of section `msgId`. */
async function settled(msgId: string, timeout = 60_000): Promise<{ text: string; kind: string }> {
  await page.waitForFunction((id) => !document.body.classList.contains('busy') && (document.getElementById(id)?.textContent ?? '') !== '', msgId, { timeout });
  return page.evaluate((id) => {
    const e = document.getElementById(id) as HTMLElement;
    return { text: e.textContent ?? '', kind: e.className.replace('msg', '').trim() };
  }, msgId);
}

/** Sets files on an input and returns the section's message once the page is idle again. */
async function choose(input: string, paths: string | string[], msgId: string): Promise<{ text: string; kind: string }> {
  await page.evaluate((id) => { (document.getElementById(id) as HTMLElement).textContent = ''; }, msgId);
  await page.setInputFiles(input, paths);
  return settled(msgId);
}

interface PageResult { name: string; top: { label: string; p: number }[]; dim: number; norm: number }

function classifyResults(): Promise<PageResult[]> {
  return page.$$eval('#classify-results .result', (els) => els.map((e) => ({
    name: e.getAttribute('data-name') ?? '',
    top: Array.from(e.querySelectorAll('ol.top li'), (li) => ({ label: li.getAttribute('data-label') ?? '', p: Number(li.getAttribute('data-probability')) })),
    dim: Number(e.querySelector('.emb')?.getAttribute('data-dim')),
    norm: Number(e.querySelector('.emb')?.getAttribute('data-norm')),
  })));
}

function assertOneLineError(m: { text: string; kind: string }, pattern: RegExp, what: string): void {
  assert.equal(m.kind, 'error', `${what}: ${m.text}`);
  assert.match(m.text, pattern, what);
  assert.ok(!/[\r\n]/.test(m.text) && !/\bat .*\.js:\d+/.test(m.text), `${what}: one line, no stack: ${m.text}`);
}

test('the app starts in a cross-origin-isolated page on the WebAssembly kernels; the reference kernels with a note without the .wasm', async () => {
  assert.match(await page.textContent('#kernels') ?? '', /WebAssembly kernels .*cross-origin isolated/);
  const other = await browser.newPage();
  await other.route('**/wasm/*.wasm', (r) => r.fulfill({ status: 404 }));
  await other.goto(`${served!.origin}/`);
  await other.waitForFunction(() => !(document.getElementById('kernels')?.textContent ?? '').includes('starting'));
  assert.match(await other.textContent('#kernels') ?? '', /reference kernels/);
  assert.match(await other.textContent('#open-msg') ?? '', /no WebAssembly kernels: .*HTTP 404.*reference kernels/);
  await other.close();
});

test('bad input gets one line in the page: an image before any checkpoint, a PNG, a ViT-like and a truncated file as checkpoints', async () => {
  // A drop (DataTransfer) of an image on Classify before a checkpoint is open.
  await page.evaluate(async (bytes) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(bytes)], 'early.png', { type: 'image/png' }));
    document.getElementById('classify-drop')!.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, [...syntheticPng(1, 0, 32)]);
  assertOneLineError(await settled('classify-msg'), /^Open a checkpoint first/, 'image before a checkpoint');
  assertOneLineError(await choose('#open-input', img('orange.png'), 'open-msg'), /orange\.png: is a PNG image, not a checkpoint/, 'PNG as checkpoint');
  assertOneLineError(await choose('#open-input', img('vit.safetensors'), 'open-msg'), /vit\.safetensors: cannot recognise the parameter names .*cls_token/, 'ViT-like file');
  assertOneLineError(await choose('#open-input', img('truncated.safetensors'), 'open-msg'), /truncated\.safetensors: .*(bytes|truncated)/, 'truncated file');
  assertOneLineError(await choose('#open-input', [img('notes.txt'), img('orange.png')], 'open-msg'), /hold none of model\.safetensors/, 'two unrelated files');
  assert.equal(await page.isDisabled('#open-input'), false, 'the controls are enabled again');
  assert.equal(await page.isHidden('#ck-info'), true, 'nothing is open');
});

/** The text and kind of message `id` now. */
function message(id: string): Promise<{ text: string; kind: string }> {
  return page.$eval(`#${id}`, (e) => ({ text: e.textContent ?? '', kind: e.className.replace('msg', '').trim() }));
}

test('an error goes with the next action in its section: images added to a class clear a fine-tune error', async () => {
  await page.click('#ft-start');
  assertOneLineError(await message('ft-msg'), /^Open a checkpoint first/, 'fine-tune before a checkpoint');
  await page.setInputFiles('#ft-classes .class-card:first-child .class-files', [img('orange.png')]);
  assert.match(await page.textContent('#ft-classes .class-card:first-child .count') ?? '', /1 image/);
  assert.deepEqual(await message('ft-msg'), { text: '', kind: '' }, 'the error is gone after the next action');
  await page.click('#ft-clear');
});

test('open a Hugging Face folder (the folder chooser: config.json + model.safetensors); it clears "Open a checkpoint first" in Classify', async () => {
  assertOneLineError(await message('classify-msg'), /^Open a checkpoint first/, 'still there before a checkpoint is open');
  const opened = await choose('#open-folder', join(REF, 'small_hf'), 'open-msg');
  assert.equal(opened.kind, 'ok', opened.text);
  assert.match(await page.textContent('#ck-info') ?? '', /Hugging Face transformers \(safetensors\)/);
  assert.deepEqual(await message('classify-msg'), { text: '', kind: '' }, 'opening a checkpoint answers "Open a checkpoint first"');
});

test('open timm safetensors and classify: the top-5 and the embedding are those of the same computation in Node (1e-4)', async () => {
  const opened = await choose('#open-input', img('model.safetensors'), 'open-msg');
  assert.equal(opened.kind, 'ok', opened.text);
  const info = await page.textContent('#ck-info') ?? '';
  assert.match(info, /timm \(safetensors\)/);
  assert.match(info, /ConvNeXt V2 \(custom\) 2-2-2-2 \/ 16-32-48-64, 166\.1 k parameters/);
  assert.match(info, /10 \(no names in the file\): class 0, class 1/);
  assert.match(info, /224 px, crop 0\.875/);
  const msg = await choose('#classify-input', CLASSIFY.map(img), 'classify-msg');
  assert.equal(msg.kind, 'ok', msg.text);
  const got = await classifyResults();
  assert.deepEqual(got.map((r) => r.name), CLASSIFY);
  cpuTimm = got;

  // Node: sharp decoding, the predict preprocessing (224 px, crop 0.875), native kernels.
  const ck = node.loadCheckpoint(img('model.safetensors'));
  const model = new node.ConvNeXtV2(ck.config, { kernels: cpu });
  model.loadStateDict(ck.state);
  for (const [i, name] of CLASSIFY.entries()) {
    const x = node.evalTransform(await node.decodeImage(img(name)), 224, 0.875);
    const r = await model.forward({ shape: [1, 3, 224, 224], data: x });
    const logits = Array.from(r.logits!.data);
    const mx = Math.max(...logits);
    const e = logits.map((v) => Math.exp(v - mx));
    const s = e.reduce((a, b) => a + b, 0);
    const want = e.map((v, k) => ({ label: `class ${k}`, p: v / s })).sort((a, b) => b.p - a.p).slice(0, 5);
    assert.equal(got[i].top.length, 5);
    for (const [k, w] of want.entries()) {
      assert.ok(Math.abs(got[i].top[k].p - w.p) <= 1e-4, `${name} #${k + 1}: ${got[i].top[k].label} ${got[i].top[k].p} vs ${w.label} ${w.p}`);
      if (k === 0 || Math.abs(want[k - 1].p - w.p) > 1e-4) assert.equal(got[i].top[k].label, w.label, `${name} #${k + 1}`);
    }
    const norm = Math.hypot(...r.preLogits.data);
    assert.equal(got[i].dim, 64);
    assert.ok(Math.abs(got[i].norm - norm) <= 1e-4 * norm, `${name} embedding norm ${got[i].norm} vs ${norm}`);
  }
  // A file that is not an image: one line, the results and the checkpoint stay.
  assertOneLineError(await choose('#classify-input', img('notes.txt'), 'classify-msg'), /cannot decode image notes\.txt: not an image/, 'text file as image');
  assert.equal((await classifyResults()).length, 3);
});

test('an official FCMAE .pt: its parts are shown, and the reconstructions are those of Node', async () => {
  const opened = await choose('#open-input', FCMAE_PT, 'open-msg');
  assert.equal(opened.kind, 'ok', opened.text);
  const info = await page.textContent('#ck-info') ?? '';
  assert.match(info, /official FCMAE pre-training \(torch\.save\)/);
  assert.match(info, /none: a backbone/);
  assert.match(info, /decoder 1 × 32, 113\.8 k parameters, mask ratio 0\.6/);
  assert.match(info, /128 px/);
  // Opening it re-ran Classify: embeddings only.
  assert.match(await settled('classify-msg').then((m) => m.text), /embeddings only/);
  const names = ['orange.png', 'teal.png'];
  const msg = await choose('#rec-input', names.map(img), 'rec-msg');
  assert.equal(msg.kind, 'ok', msg.text);
  const got = await page.$$eval('#rec-results .triplet', (rows) => rows.map((row) => Array.from(row.querySelectorAll('canvas'), (c) => {
    const d = (c as HTMLCanvasElement).getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    return Array.from(d.filter((_, i) => i % 4 !== 3));
  })));
  assert.equal(got.length, 2);
  // Node: the same images, transform, mask seed and FCMAE (norm-pix loss, as the app assumes), native kernels.
  const ck = node.loadCheckpoint(FCMAE_PT, { extra: true });
  const fcmae = new node.FCMAE(ck.config, { decoderDim: 32, decoderDepth: 1, maskRatio: 0.6, normPixLoss: true }, { kernels: cpu });
  fcmae.encoderModel.loadStateDict(ck.state);
  fcmae.loadDecoderState(ck.extra!);
  const S = 128;
  const x = new Float32Array(2 * 3 * S * S);
  for (const [i, n] of names.entries()) node.evalTransform(await node.decodeImage(img(n)), S, 0.875, x, i * 3 * S * S);
  const want = (await reconstructImages(fcmae, { shape: [2, 3, S, S], data: x }, 0)).images;
  for (const [i, w] of want.entries()) {
    assert.deepEqual(got[i][0], Array.from(w.original.data), 'original');
    assert.deepEqual(got[i][1], Array.from(w.masked.data), 'masked');
    let worst = 0;
    w.reconstruction.data.forEach((v, k) => { worst = Math.max(worst, Math.abs(v - got[i][2][k])); });
    assert.ok(worst <= 2, `reconstruction differs by up to ${worst} levels`);
  }
});

/** The fields' messages of the fine-tune settings (empty: none). */
function fieldMessages(): Promise<Record<string, string>> {
  return page.evaluate(() => Object.fromEntries(['ft-epochs', 'ft-lr', 'ft-batch', 'ft-size'].map((id) => [id, document.getElementById(`${id}-msg`)?.textContent ?? ''])));
}

/** The plot's data attributes. */
function plotData(): Promise<Record<string, string>> {
  return page.$eval('#ft-plot', (c) => ({ ...(c as HTMLCanvasElement).dataset }) as Record<string, string>);
}

test('fine-tune settings are checked at their fields (batch vs the training images, image size vs the stride of 32, epochs, lr); Start refuses bad ones', async () => {
  await page.setInputFiles('#ft-folder', join(files, 'classes'));
  assert.match(await page.textContent('#ft-msg') ?? '', /2 classes, 16 images \(1 other files ignored\)/);
  assert.deepEqual(await page.$$eval('#ft-classes .class-name', (els) => els.map((e) => (e as HTMLInputElement).value)), CLASSES);
  assert.match(await page.textContent('#ft-split') ?? '', /^4 of 16 images held out for validation/);
  await page.fill('#ft-batch', '13');
  await page.fill('#ft-size', '100');
  await page.fill('#ft-epochs', '0');
  await page.fill('#ft-lr', '');
  const got = await fieldMessages();
  assert.match(got['ft-batch'], /^batch 13 is more than the 12 training images: at most 12$/);
  assert.match(got['ft-size'], /^image size 100: must be a multiple of 32 \(the model's total stride\)/);
  assert.match(got['ft-epochs'], /^epochs 0: must be a whole number from 1 to 1000$/);
  assert.match(got['ft-lr'], /^learning rate empty: must be above 0/);
  assert.equal(await page.getAttribute('#ft-batch', 'aria-invalid'), 'true');
  await page.click('#ft-start');
  assertOneLineError(await message('ft-msg'), /^check the settings marked above: epochs 0/, 'Start with bad settings');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await page.evaluate(() => document.body.classList.contains('busy')), false, 'no run started');
  assert.equal(await page.isHidden('#ft-plot'), true, 'no run started');
  assert.equal(await page.isHidden('#ft-progress'), true, 'no run started');
  // Fixed: the messages go.
  await page.fill('#ft-size', '64');
  await page.fill('#ft-batch', '4');
  await page.fill('#ft-lr', '0.002');
  await page.fill('#ft-epochs', '500');
  assert.deepEqual(Object.values(await fieldMessages()), ['', '', '', '']);
  assert.equal(await page.getAttribute('#ft-batch', 'aria-invalid'), 'false');
});

test('cancel keeps what was trained: the curves stay, Classify uses the partly trained head, and the checkpoint downloaded loads in Node with those weights', async () => {
  await page.click('#ft-start');
  await page.waitForFunction(() => Number(document.getElementById('ft-plot')?.dataset.points ?? 0) >= 2, null, { timeout: 30_000 });
  const t0 = Date.now();
  assert.equal(await page.evaluate(() => document.title), 'ConvNeXt V2 in the browser');
  assert.ok(Date.now() - t0 < 1000, 'the page answers while the Worker trains');
  await page.click('#ft-cancel');
  const cancelled = await settled('ft-msg');
  const m = /^Cancelled after step (\d+) of 1500 \(12 images of 2 classes, 4 held out for validation\): Classify uses the head as trained so far/.exec(cancelled.text);
  assert.ok(m, cancelled.text);
  const steps = Number(m[1]);
  assert.ok(steps >= 2, `${steps} steps`);
  assert.deepEqual([(await plotData()).points, (await plotData()).steps], [String(steps), '1500'], 'the loss curve so far stays');
  assert.equal(await page.isHidden('#ft-plot'), false);
  assert.match(await page.textContent('#ft-status') ?? '', new RegExp(`^cancelled after step ${steps} of 1500`));
  assert.match(await page.textContent('#ck-info') ?? '', /2 \(fine-tuned here\): orange, teal.*cancelled after step/);
  // Classify ran again, with the partly trained head.
  await page.waitForFunction(() => (document.getElementById('classify-msg')?.textContent ?? '').includes('fine-tuned head'));
  const classified = await classifyResults();
  assert.deepEqual(classified.map((r) => r.name), CLASSIFY);
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#ft-download')]);
  const file = join(dir, `cancelled-${dl.suggestedFilename()}`);
  await dl.saveAs(file);
  const ck = node.loadCheckpoint(file);
  assert.equal(ck.format, 'convnextv2');
  assert.equal(ck.config.numClasses, 2);
  assert.deepEqual(ck.labels, CLASSES);
  assert.deepEqual(ck.preprocessing, { inputSize: 64, cropPct: 0.875 });
  assert.equal(ck.metadata.step, String(steps));
  // Node, from the file: the page's probabilities (the weights as trained up to the cancel).
  const model = new node.ConvNeXtV2(ck.config, { kernels: cpu });
  model.loadStateDict(ck.state);
  for (const [i, name] of CLASSIFY.entries()) {
    const r = await model.forward({ shape: [1, 3, 64, 64], data: node.evalTransform(await node.decodeImage(img(name)), 64, 0.875) });
    const [a, b] = r.logits!.data;
    const p0 = 1 / (1 + Math.exp(b - a));
    const mine = classified[i].top.find((t) => t.label === CLASSES[0])!.p;
    assert.ok(Math.abs(mine - p0) <= 1e-4, `${name}: page ${mine} vs Node ${p0}`);
  }
});

test('a run to the end: live plot, loss axis scaled to the data, validation top-1 per epoch; the new head classifies', async () => {
  await page.fill('#ft-epochs', '6');
  await page.click('#ft-start');
  const done = await settled('ft-msg');
  assert.equal(done.kind, 'ok', done.text);
  assert.match(done.text, /Fine-tuned on 12 images of 2 classes \(orange, teal\), 4 held out for validation/);
  const bar = await page.$eval('#ft-bar', (b) => ({ value: (b as HTMLProgressElement).value, max: (b as HTMLProgressElement).max, done: b.getAttribute('data-done') }));
  assert.deepEqual(bar, { value: 18, max: 18, done: 'true' }, 'progress at the end: 6 epochs of 3 steps');
  const plot = await plotData();
  assert.deepEqual([plot.points, plot.steps], ['18', '18']);
  assert.match(await page.textContent('#ft-status') ?? '', /^done: 6 epochs, 18 steps in [\d.]+ s; epoch 6: loss [\d.]+, val top-1 (0|25|50|75|100)%$/);
  // The validation accuracy of every epoch (4 held-out images: multiples of 25%).
  const top1 = plot.top1.split(',').map(Number);
  assert.equal(top1.length, 6);
  for (const v of top1) assert.ok([0, 25, 50, 75, 100].includes(v), `val top-1 ${v}`);
  // The loss axis: 0 to a round number just above the largest loss (2 classes: about ln 2), not 0-2.
  const yMax = Number(plot.yMax);
  const maxLoss = Number(plot.maxLoss);
  assert.ok(maxLoss > 0.3 && maxLoss < 1.5, `largest loss ${maxLoss}`);
  assert.equal(yMax, lossAxis(maxLoss).top);
  assert.ok(yMax >= maxLoss && yMax <= 1.3 * maxLoss, `axis top ${yMax} for losses up to ${maxLoss}`);
  assert.deepEqual(plot.yTicks.split(',').map(Number), lossAxis(maxLoss).ticks);
  assert.match(await page.textContent('#ck-info') ?? '', /2 \(fine-tuned here\): orange, teal/);
  // Classify ran again with the new head.
  await page.waitForFunction(() => (document.getElementById('classify-msg')?.textContent ?? '').includes('fine-tuned head'));
  const got = await classifyResults();
  assert.deepEqual(got.map((r) => r.name), CLASSIFY);
  for (const r of got) {
    assert.deepEqual(r.top.map((t) => t.label).sort(), CLASSES);
    assert.ok(Math.abs(r.top[0].p + r.top[1].p - 1) < 1e-6);
  }
});

test('the loss axis is 0 to a round number at or just above the data, for losses above 2 and tiny ones', () => {
  const cases: [number, number][] = [[3.7, 4], [2.3, 2.5], [1.0986, 1.25], [0.72, 0.8], [0.0042, 0.005], [25, 25], [0, 1]];
  for (const [max, top] of cases) {
    const a = lossAxis(max);
    assert.equal(a.top, top, `losses up to ${max}`);
    assert.equal(a.ticks[0], 0);
    assert.equal(a.ticks[a.ticks.length - 1], top);
    assert.ok(a.ticks.length >= 2 && a.ticks.length <= 6, `${a.ticks}`);
  }
});

test('download: the fine-tuned checkpoint loads in Node (library and CLI predict) with the new classes and gives the page\'s probabilities', async () => {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#ft-download')]);
  const file = join(dir, dl.suggestedFilename());
  await dl.saveAs(file);
  assert.match(dl.suggestedFilename(), /\.safetensors$/);
  const ck = web.loadCheckpoint(new Uint8Array(readFileSync(file)));
  assert.equal(ck.format, 'convnextv2');
  assert.equal(ck.config.numClasses, 2);
  assert.deepEqual(ck.labels, CLASSES);
  assert.deepEqual(ck.preprocessing, { inputSize: 64, cropPct: 0.875 });
  assert.deepEqual(ck.config.dims, [16, 32, 48, 64]);
  const out = execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'main.ts'), 'predict', '--checkpoint', file, ...CLASSIFY.map(img), '--json', '--quiet'],
    { cwd: ROOT, encoding: 'utf8', env: { ...process.env, CONVNEXTV2_THREADS: '1' } });
  const cli = JSON.parse(out.trim().split('\n').pop()!) as { predictions: { file: string; top: { label: string; probability: number }[] }[] };
  const got = await classifyResults();
  for (const [i, p] of cli.predictions.entries()) {
    assert.deepEqual(p.top.map((t) => t.label).sort(), CLASSES);
    for (const t of p.top) {
      const mine = got[i].top.find((x) => x.label === t.label)!;
      assert.ok(Math.abs(mine.p - t.probability) <= 1e-4, `${p.file} ${t.label}: page ${mine.p} vs CLI ${t.probability}`);
    }
  }
  // And the app opens it again: our checkpoint, with its class names.
  const opened = await choose('#open-input', file, 'open-msg');
  assert.equal(opened.kind, 'ok', opened.text);
  assert.match(await page.textContent('#ck-info') ?? '', /convnextv2 checkpoint \(safetensors: fine-tuned\).*2 \(names from the checkpoint\): orange, teal.*64 px, crop 0\.875/);
  assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
});

/** `got` (one device's page results) against `want` (another's): the same ranking and probabilities within `tol`, the same embedding norms. */
function assertSameResults(got: PageResult[], want: PageResult[], tol: number, what: string): void {
  assert.deepEqual(got.map((r) => r.name), want.map((r) => r.name), what);
  for (const [i, w] of want.entries()) {
    assert.equal(got[i].top.length, w.top.length, `${what}: ${w.name}`);
    for (const [k, t] of w.top.entries()) {
      const g = got[i].top[k];
      assert.ok(Math.abs(g.p - t.p) <= tol, `${what}: ${w.name} #${k + 1}: ${g.label} ${g.p} vs ${t.label} ${t.p}`);
      // Labels must agree unless two classes are tied within the tolerance.
      const tied = w.top.some((o, j) => j !== k && Math.abs(o.p - t.p) <= tol);
      if (!tied) assert.equal(g.label, t.label, `${what}: ${w.name} #${k + 1}`);
    }
    assert.equal(got[i].dim, w.dim);
    assert.ok(Math.abs(got[i].norm - w.norm) <= tol * Math.max(1, w.norm), `${what}: ${w.name} embedding norm ${got[i].norm} vs ${w.norm}`);
  }
}

test('the GPU (WebGPU in the Worker): the open model moves there, the timm checkpoint classifies as on the CPU (1e-4), the adapter is shown; and back', async (t) => {
  assert.equal(await page.$eval('#device option[value=gpu]', (o) => (o as HTMLOptionElement).disabled), false, 'the GPU is offered');
  assert.equal(await page.inputValue('#device'), 'cpu');
  // The fine-tuned checkpoint (opened again by the download case) moves to the GPU and is classified again there.
  const cpuFinetuned = await classifyResults();
  assert.equal(cpuFinetuned.length, CLASSIFY.length);
  await page.evaluate(() => { for (const id of ['device-msg', 'classify-msg']) (document.getElementById(id) as HTMLElement).textContent = ''; });
  await page.selectOption('#device', 'gpu');
  const moved = await settled('device-msg');
  assert.notEqual(moved.kind, 'error', moved.text);
  const adapter = await page.$eval('#kernels', (b) => (b as HTMLElement).dataset.adapter ?? '');
  const badge = await page.textContent('#kernels') ?? '';
  t.diagnostic(`adapter: ${adapter}; ${moved.text}`);
  assert.match(adapter, /\S/);
  assert.ok(badge.includes('WebGPU') && badge.includes(adapter), `the badge names the adapter: ${badge}`);
  assert.ok(moved.text.startsWith(`Computing on the GPU: ${adapter}.`), moved.text);
  if (/swiftshader|llvmpipe|lavapipe|software/i.test(adapter)) assert.match(moved.text, /software adapter.*correct but slower than the CPU/);
  assert.match(moved.text, /was reloaded there/);
  assert.equal(await page.inputValue('#device'), 'gpu');
  assert.match(await page.textContent('#ck-info') ?? '', /2 \(names from the checkpoint\): orange, teal/);
  await page.waitForFunction(() => (document.getElementById('classify-msg')?.textContent ?? '') !== '');
  assertSameResults(await classifyResults(), cpuFinetuned, 1e-4, 'fine-tuned model on the GPU');

  // The timm checkpoint opened on the GPU and the same images classified: the CPU's results.
  const opened = await choose('#open-input', img('model.safetensors'), 'open-msg');
  assert.equal(opened.kind, 'ok', opened.text);
  assert.match(await page.textContent('#ck-info') ?? '', /ConvNeXt V2 \(custom\) 2-2-2-2 \/ 16-32-48-64, 166\.1 k parameters/);
  const msg = await choose('#classify-input', CLASSIFY.map(img), 'classify-msg');
  assert.equal(msg.kind, 'ok', msg.text);
  assertSameResults(await classifyResults(), cpuTimm, 1e-4, 'timm checkpoint on the GPU');

  // Back to the CPU: the model moves back, the WebAssembly kernels give the first run's results.
  await page.evaluate(() => { (document.getElementById('device-msg') as HTMLElement).textContent = ''; });
  await page.selectOption('#device', 'cpu');
  const back = await settled('device-msg');
  assert.equal(back.kind, 'ok', back.text);
  assert.match(back.text, /^Computing on the CPU: WebAssembly kernels/);
  assert.match(await page.textContent('#kernels') ?? '', /WebAssembly kernels .*cross-origin isolated/);
  await settled('classify-msg');
  assertSameResults(await classifyResults(), cpuTimm, 1e-6, 'timm checkpoint back on the CPU');
  assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
});

test('the default settings learn the sample images within a minute (a fresh page, the official FCMAE fixture: a random encoder)', async (t) => {
  await page.reload();
  await page.waitForFunction(() => !(document.getElementById('kernels')?.textContent ?? '').includes('starting'));
  const opened = await choose('#open-input', FCMAE_PT, 'open-msg');
  assert.equal(opened.kind, 'ok', opened.text);
  await page.click('#ft-sample');
  const sample = await settled('ft-msg');
  assert.equal(sample.kind, 'ok', sample.text);
  assert.match(sample.text, /^Sample: 3 classes of synthetic 64 px images \(h-stripes, v-stripes, disc\), 90 images\.$/);
  assert.deepEqual(await page.$$eval('#ft-classes .class-name', (els) => els.map((e) => (e as HTMLInputElement).value)), ['disc', 'h-stripes', 'v-stripes']);
  assert.match(await page.textContent('#ft-split') ?? '', /^18 of 90 images held out for validation/);
  const settings = await page.evaluate(() => ['ft-epochs', 'ft-lr', 'ft-batch', 'ft-size', 'ft-augment', 'ft-backbone'].map((id) => (document.getElementById(id) as HTMLInputElement).value));
  assert.deepEqual(settings, ['15', '0.003', '8', '128', 'light', 'slow'], 'the defaults (the image size: the checkpoint\'s)');
  await page.click('#ft-start');
  const done = await settled('ft-msg', 120_000);
  assert.equal(done.kind, 'ok', done.text);
  assert.match(done.text, /^Fine-tuned on 72 images of 3 classes \(disc, h-stripes, v-stripes\), 18 held out for validation/);
  const status = await page.textContent('#ft-status') ?? '';
  const m = /^done: 15 epochs, 135 steps in ([\d.]+) s; epoch 15: loss [\d.]+, val top-1 (\d+)%$/.exec(status);
  assert.ok(m, status);
  const top1 = (await plotData()).top1.split(',').map(Number);
  t.diagnostic(`sample run: ${m[1]} s, val top-1 per epoch ${top1.map((v) => v.toFixed(0)).join(' ')}`);
  assert.ok(Number(m[1]) < 60, `${m[1]} s: more than a minute`);
  assert.ok(top1[top1.length - 1] >= 200 / 3, `val top-1 ${top1[top1.length - 1]}%: not clearly above chance (33%)`);
  // Three new images like the sample's, classified with the new head.
  const msg = await choose('#classify-input', SAMPLE_LIKE.map((n) => img(`sample-${n}.png`)), 'classify-msg');
  assert.match(msg.text, /^3 images with the fine-tuned head/);
  const got = await classifyResults();
  t.diagnostic(`new sample-like images: ${got.map((r) => `${r.name} -> ${r.top[0].label} ${(100 * r.top[0].p).toFixed(0)}%`).join(', ')}`);
  for (const r of got) assert.deepEqual(r.top.map((x) => x.label).sort(), ['disc', 'h-stripes', 'v-stripes']);
  assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
});

test('a screenshot of the app after the sample fine-tune', async (t) => {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.mouse.move(0, 0);
  const shot = join(shotDir, 'web-app.png');
  await page.screenshot({ path: shot, fullPage: true });
  t.diagnostic(`screenshot: ${shot}`);
  if (process.env.UPDATE_SCREENSHOTS === '1') {
    mkdirSync(join(ROOT, 'docs'), { recursive: true });
    copyFileSync(shot, join(ROOT, 'docs', 'web-app.png'));
    t.diagnostic('wrote docs/web-app.png');
  }
});
