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
const ref = node.readSafetensors(SMALL_TIMM);
const bytes = (f: string) => new Uint8Array(readFileSync(join(REF, f)));

test('the bundle is one ES module with no Node imports, and runs on the TypeScript kernels', () => {
  const js = readFileSync(out, 'utf8');
  assert.doesNotMatch(js, /\bfrom\s*["']node:|\bimport\(["']node:|require\(["'](node:|fs|path|os|zlib|worker_threads)["']\)/);
  assert.doesNotMatch(js, /\bprocess\.env\b(?!\s*\?\?)/, 'no bare process.env');
  assert.ok(js.length < 1_000_000, `bundle is ${js.length} bytes`);
  assert.equal(web.getKernels().name, 'reference');
});

test('loadCheckpoint from bytes: timm safetensors, official .pt and an HF folder give the reference logits', () => {
  const params = node.serializeSafetensors([...ref].filter(([k]) => k.startsWith('param.')).map(([k, v]) => [k.slice(6), v] as const));
  const x = ref.get('input.0.pixel_values')!;
  const want = ref.get('output.0.logits')!.data;
  for (const [what, ck] of [['timm safetensors', web.loadCheckpoint(params)], ['official .pt', web.loadCheckpoint(bytes('small_official.pt'))]] as const) {
    const m = new web.ConvNeXtV2(ck.config);
    m.loadStateDict(ck.state);
    const got = m.forward(x).logits!;
    assert.deepEqual(got.shape, [2, 10]);
    assert.ok(relErr(got.data, want) <= 1e-4, `${what}: ${relErr(got.data, want)}`);
  }
  const hfDir = join(REF, 'small_hf');
  const files = Object.fromEntries(readdirSync(hfDir).filter((f) => f !== 'expected.safetensors').map((f) => [f, new Uint8Array(readFileSync(join(hfDir, f)))]));
  const hf = web.loadCheckpoint(files);
  assert.equal(hf.naming, 'hf');
  const exp = node.readSafetensors(join(hfDir, 'expected.safetensors'));
  const m = new web.ConvNeXtV2(hf.config);
  m.loadStateDict(hf.state);
  assert.ok(relErr(m.forward(exp.get('input.0.pixel_values')!).logits!.data, exp.get('output.0.logits')!.data) <= 1e-4, 'HF folder');
  assert.throws(() => web.loadCheckpoint(new TextEncoder().encode('not a checkpoint at all')), (e: Error) => e instanceof web.ConvNextError && !/\n/.test(e.message));
});

test('an official FCMAE .pt from bytes gives the reference loss (sparse encoder)', () => {
  const fr = node.readSafetensors(join(REF, 'fcmae_small.safetensors'));
  const ck = web.loadCheckpoint(bytes('fcmae_small_official.pt'), { extra: true });
  assert.equal(ck.format, 'fcmae');
  const f = new web.FCMAE(ck.config, { decoderDim: ck.fcmae!.decoderDim, decoderDepth: ck.fcmae!.decoderDepth, normPixLoss: true });
  f.encoderModel.loadStateDict(ck.state);
  f.loadDecoderState(ck.extra!);
  const r = f.forward(fr.get('input.pixel_values')!, fr.get('input.mask')!);
  const want = fr.get('output.loss')!.data[0];
  assert.ok(Math.abs(r.loss - want) <= 1e-4 * Math.abs(want), `${r.loss} vs ${want}`);
});

test('a training step in the bundle: loss and gradients as the native Node step (1e-5), weights as Node on the same kernels (bits); its checkpoint loads in Node; its PNG decodes', async () => {
  const cfg = node.makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 5 });
  const x = { shape: [2, 3, 64, 64], data: Float32Array.from({ length: 2 * 3 * 64 * 64 }, (_, i) => Math.sin(i * 0.01)) };
  const step = (lib: typeof web | typeof node, kernels?: node.Kernels) => {
    const m = new lib.ConvNeXtV2(cfg, { seed: 3, kernels });
    m.zeroGrad();
    const { loss } = lib.forwardBackward(m, x, [1, 4], { smoothing: 0.1 });
    const grads = new Map(m.params.map((p) => [p.name, Float32Array.from(p.grad)]));
    new lib.AdamW(m.params, { lr: 1e-2, weightDecay: 0.05 }).update(m.kernels);
    return { loss, grads, m };
  };
  const a = step(web), native = step(node), same = step(node, new node.ReferenceKernels());
  assert.notEqual(native.m.kernels.name, 'reference', 'the Node side runs native kernels');
  assert.ok(Math.abs(a.loss - native.loss) <= 1e-5 * Math.abs(native.loss), `loss ${a.loss} vs ${native.loss}`);
  for (const [n, g] of native.grads) assert.ok(relErr(a.grads.get(n)!, g) <= 1e-5, `gradient of ${n}: ${relErr(a.grads.get(n)!, g)}`);
  // Adam's first step is g / (|g| + eps): gradients near eps amplify rounding, so updated
  // weights are compared with Node on the same (reference) kernels: the same code, the same bits.
  for (const p of same.m.params) assert.deepEqual(a.m.param(p.name).data, p.data, p.name);
  const file = join(dir, 'from-web.safetensors');
  writeFileSync(file, web.serializeCheckpoint({ config: cfg, state: a.m.stateDict(), labels: ['a', 'b', 'c', 'd', 'e'] }));
  const back = node.loadCheckpoint(file);
  assert.deepEqual(back.labels, ['a', 'b', 'c', 'd', 'e']);
  for (const [n, t] of a.m.stateDict()) assert.deepEqual(back.state.get(n)!.data, t.data, n);
  const png = web.linePlot({ title: 'loss', series: [{ label: 'loss', points: [[1, 3], [2, 2], [3, 1.5], [4, 1.2]] }] });
  const img = await sharp(png).metadata();
  assert.equal(img.format, 'png');
  const raster = { width: 3, height: 2, channels: 3 as const, data: Uint8Array.from({ length: 18 }, (_, i) => i * 13) };
  const { data } = await sharp(web.encodePng(raster)).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([...data], [...raster.data], 'PNG pixels round trip through the TypeScript deflate');
});
