/**
 * The browser benchmark (a benchmark, not a test): ConvNeXt V2-Atto at 224 px in headless
 * Chromium, our WebAssembly kernels against onnxruntime-web (its wasm execution provider with
 * SIMD) on ../shared/peers/convnextv2_atto_timm.onnx, batch 1 and 16, the same thread count
 * (ours runs one thread, so onnxruntime-web gets numThreads 1), alternated in one page for
 * `--rounds` rounds (default 3), medians; then a training step's images/s in the page, and the
 * same forward in Node on the wasm and the native kernels. Everything is served locally.
 *
 *   npm run bench:web [-- --rounds 3] [-- --json]
 *
 * Needs Chromium and the wasm kernels (see README); the ONNX model from ../shared/peers or
 * --onnx FILE.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { buildWasm } from './build-wasm.js';
import { buildWeb } from './build-web.js';
import { serve } from './serve.js';
import * as node from '../src/index.js';
import { NativeKernels } from '../src/kernels/native.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const argv = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : def;
};
const rounds = Number(opt('rounds', '3'));
const onnx = opt('onnx', join(ROOT, '..', 'shared', 'peers', 'convnextv2_atto_timm.onnx'));
const json = argv.includes('--json');
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
if (!existsSync(onnx)) throw new Error(`bench-web: ${onnx} missing (--onnx FILE)`);
if (!existsSync(chromiumPath)) throw new Error(`bench-web: no Chromium at ${chromiumPath} (apt-get install -y chromium)`);

const dir = mkdtempSync(join(tmpdir(), 'convnextv2-bench-web-'));
const wasm = buildWasm();
await buildWeb(dir);
writeFileSync(join(dir, 'index.html'), '<!doctype html><meta charset="utf-8"><title>convnextv2 bench</title>\n');
const ortDir = dirname(fileURLToPath(import.meta.resolve('onnxruntime-web')));
const served = await serve({
  '/': join(dir, 'index.html'), '/index.js': join(dir, 'index.js'), '/convnextv2.wasm': wasm, '/model.onnx': onnx, '/ort/': ortDir,
});
const browser = await chromium.launch({ executablePath: chromiumPath });
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
try {
  const page = await browser.newPage();
  await page.addInitScript('globalThis.__name = (f) => f;');
  await page.goto(`${served.origin}/`);
  const r = await page.evaluate(async (nRounds: number) => {
    const lib = await import('/index.js');
    const ort = await import('/ort/ort.wasm.min.mjs');
    ort.env.wasm.wasmPaths = '/ort/';
    ort.env.wasm.numThreads = 1;
    const session = await ort.InferenceSession.create('/model.onnx', { executionProviders: ['wasm'] });
    const kernels = new lib.WasmKernels(await WebAssembly.compile(await (await fetch('/convnextv2.wasm')).arrayBuffer()));
    const model = new lib.ConvNeXtV2(lib.makeConfig('atto'), { kernels, seed: 0 });
    const input = (b: number) => Float32Array.from({ length: b * 3 * 224 * 224 }, (_, i) => Math.sin(i * 0.001));
    const ours = (x: Float32Array, b: number) => model.forward({ shape: [b, 3, 224, 224], data: x });
    const theirs = async (x: Float32Array, b: number) => session.run({ pixel_values: new ort.Tensor('float32', x, [b, 3, 224, 224]) });
    const rate = async (f: () => unknown, b: number, seconds: number) => {
      await f();
      let n = 0;
      const t0 = performance.now();
      while (performance.now() - t0 < seconds * 1000 || n < 2) {
        await f();
        n++;
      }
      return (b * n * 1000) / (performance.now() - t0);
    };
    const out: Record<string, number[]> = { ours_b1: [], ort_web_b1: [], ours_b16: [], ort_web_b16: [] };
    for (let round = 0; round < nRounds; round++) {
      for (const b of [1, 16]) {
        const x = input(b);
        out[`ours_b${b}`].push(await rate(() => ours(x, b), b, b === 1 ? 2 : 4));
        out[`ort_web_b${b}`].push(await rate(() => theirs(x, b), b, b === 1 ? 2 : 4));
      }
    }
    // A training step in the page: forward, cross-entropy, backward, AdamW (atto, batch 16).
    const tm = new lib.ConvNeXtV2(lib.makeConfig('atto', { numClasses: 10 }), { kernels, seed: 0 });
    const opt = new lib.AdamW(tm.params, { lr: 1e-3, weightDecay: 0.05 });
    const labels = Array.from({ length: 16 }, (_, i) => i % 10);
    const x16 = input(16);
    out.ours_train_b16 = [await rate(() => lib.trainStep(tm, opt, { shape: [16, 3, 224, 224], data: x16 }, labels), 16, 6)];
    return { ...out, isolated: [globalThis.crossOriginIsolated ? 1 : 0] };
  }, rounds);
  // Node: the same forward on the wasm and the native kernels (alternated), batch 16.
  const x = { shape: [16, 3, 224, 224], data: Float32Array.from({ length: 16 * 3 * 224 * 224 }, (_, i) => Math.sin(i * 0.001)) };
  const nk = new NativeKernels();
  const wasmModel = new node.ConvNeXtV2(node.makeConfig('atto'), { kernels: node.loadWasmKernels(), seed: 0 });
  const nativeModel = new node.ConvNeXtV2(node.makeConfig('atto'), { kernels: nk, seed: 0 });
  const nodeRate = (m: node.ConvNeXtV2) => {
    m.forward(x);
    const t0 = performance.now();
    m.forward(x);
    m.forward(x);
    return (2 * 16 * 1000) / (performance.now() - t0);
  };
  const nodeWasm: number[] = [];
  const nodeNative1: number[] = [];
  for (let i = 0; i < rounds; i++) {
    nodeWasm.push(nodeRate(wasmModel));
    nk.setThreads(1);
    nodeNative1.push(nodeRate(nativeModel));
    nk.setThreads(0);
  }
  const m = (k: string) => median((r as Record<string, number[]>)[k]);
  const rec = {
    chromium: browser.version(), cpu: nk.cpuInfo().brand, isa_native: nk.isa, threads: 1,
    cross_origin_isolated: m('isolated') === 1, rounds,
    ours_b1: m('ours_b1'), ours_b16: m('ours_b16'), ort_web_b1: m('ort_web_b1'), ort_web_b16: m('ort_web_b16'),
    ours_train_b16: m('ours_train_b16'), node_wasm_b16: median(nodeWasm), node_native_1thread_b16: median(nodeNative1),
  };
  const f = (v: number) => v.toFixed(2);
  process.stdout.write(`ConvNeXt V2-Atto, 224 px, images/s (median of ${rounds} alternated rounds), Chromium ${rec.chromium}, 1 thread, cross-origin isolated: ${rec.cross_origin_isolated}\n\n`);
  process.stdout.write('| | batch 1 | batch 16 |\n|---|---|---|\n');
  process.stdout.write(`| ours (wasm kernels) | ${f(rec.ours_b1)} | ${f(rec.ours_b16)} |\n| onnxruntime-web 1.30 (wasm EP, SIMD) | ${f(rec.ort_web_b1)} | ${f(rec.ort_web_b16)} |\n`);
  process.stdout.write(`| ours / onnxruntime-web | ${f(rec.ours_b1 / rec.ort_web_b1)}x | ${f(rec.ours_b16 / rec.ort_web_b16)}x |\n\n`);
  process.stdout.write(`training step in the page (batch 16): ${f(rec.ours_train_b16)} images/s; Node batch 16 forward: wasm ${f(rec.node_wasm_b16)}, native ${rec.isa_native} 1 thread ${f(rec.node_native_1thread_b16)} images/s\n`);
  if (json) process.stdout.write(JSON.stringify(rec) + '\n');
} finally {
  await browser.close();
  await served.close();
  rmSync(dir, { recursive: true, force: true });
}
