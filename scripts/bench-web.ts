/**
 * The browser benchmark (a benchmark, not a test): ConvNeXt V2-Atto at 224 px in headless
 * Chromium, our WebAssembly kernels against onnxruntime-web (its wasm execution provider with
 * SIMD) on ../shared/peers/convnextv2_atto_timm.onnx, batch 1 and 16, the same thread count
 * on both sides (`--threads`, default the page's navigator.hardwareConcurrency; the page is
 * cross-origin isolated, so both run Web Worker threads on a shared memory), alternated in one
 * page for `--rounds` rounds (default 3), medians; then a training step's images/s in the page,
 * and the same forward in Node on the wasm and the native kernels with the same threads.
 * Everything is served locally.
 *
 *   npm run bench:web [-- --rounds 3] [-- --threads N] [-- --json]
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
const threadsArg = opt('threads', '0');
if (!/^\d+$/.test(threadsArg) || Number(rounds) < 1) throw new Error('bench-web: --threads and --rounds must be positive integers');
const onnx = opt('onnx', join(ROOT, '..', 'shared', 'peers', 'convnextv2_atto_timm.onnx'));
const json = argv.includes('--json');
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
if (!existsSync(onnx)) throw new Error(`bench-web: ${onnx} missing (--onnx FILE)`);
if (!existsSync(chromiumPath)) throw new Error(`bench-web: no Chromium at ${chromiumPath} (apt-get install -y chromium)`);

const dir = mkdtempSync(join(tmpdir(), 'convnextv2-bench-web-'));
const [wasm] = buildWasm();
await buildWeb(dir);
writeFileSync(join(dir, 'index.html'), '<!doctype html><meta charset="utf-8"><title>convnextv2 bench</title>\n');
const ortDir = dirname(fileURLToPath(import.meta.resolve('onnxruntime-web')));
const served = await serve({
  '/': join(dir, 'index.html'), '/index.js': join(dir, 'index.js'), '/wasm/': dirname(wasm), '/model.onnx': onnx, '/ort/': ortDir,
});
const browser = await chromium.launch({ executablePath: chromiumPath });
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
try {
  const page = await browser.newPage();
  await page.addInitScript('globalThis.__name = (f) => f;');
  await page.goto(`${served.origin}/`);
  const r = await page.evaluate(async ([nRounds, wantThreads]: [number, number]) => {
    const lib = await import('/index.js');
    const ort = await import('/ort/ort.wasm.min.mjs');
    const threads = wantThreads || navigator.hardwareConcurrency;
    ort.env.wasm.wasmPaths = '/ort/';
    ort.env.wasm.numThreads = threads;
    const session = await ort.InferenceSession.create('/model.onnx', { executionProviders: ['wasm'] });
    const kernels = await lib.createBackend('wasm', { wasm: { baseUrl: '/wasm/' }, threads });
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
    return { ...out, isolated: [globalThis.crossOriginIsolated ? 1 : 0], threads: [kernels.threads as number], workerTasks: [kernels.workerTasks() as number] };
  }, [rounds, Number(threadsArg)] as [number, number]);
  // Node: the same forward on the wasm and the native kernels (alternated), batch 16.
  const x = { shape: [16, 3, 224, 224], data: Float32Array.from({ length: 16 * 3 * 224 * 224 }, (_, i) => Math.sin(i * 0.001)) };
  const threads = (r as Record<string, number[]>).threads[0];
  if (threads > 1 && (r as Record<string, number[]>).workerTasks[0] === 0) throw new Error('bench-web: our worker threads ran no tasks');
  const nk = new NativeKernels();
  const wk = await node.createBackend('wasm', { threads });
  const wasmModel = new node.ConvNeXtV2(node.makeConfig('atto'), { kernels: wk, seed: 0 });
  const nativeModel = new node.ConvNeXtV2(node.makeConfig('atto'), { kernels: nk, seed: 0 });
  const nodeRate = async (m: node.ConvNeXtV2) => {
    await m.forward(x);
    const t0 = performance.now();
    await m.forward(x);
    await m.forward(x);
    return (2 * 16 * 1000) / (performance.now() - t0);
  };
  const nodeWasm: number[] = [];
  const nodeNative: number[] = [];
  nk.setThreads(threads);
  for (let i = 0; i < rounds; i++) {
    nodeWasm.push(await nodeRate(wasmModel));
    nodeNative.push(await nodeRate(nativeModel));
  }
  wk.close();
  // GFLOP/s: 2 x the multiply-adds of one image's forward x images/s.
  const gflop = (2 * node.forwardMacs(node.makeConfig('atto'), 224, 224)) / 1e9;
  const m = (k: string) => median((r as Record<string, number[]>)[k]);
  const rec = {
    chromium: browser.version(), cpu: nk.cpuInfo().brand, isa_native: nk.isa, threads, gflop_per_image: gflop,
    cross_origin_isolated: m('isolated') === 1, rounds,
    ours_b1: m('ours_b1'), ours_b16: m('ours_b16'), ort_web_b1: m('ort_web_b1'), ort_web_b16: m('ort_web_b16'),
    ours_train_b16: m('ours_train_b16'), node_wasm_b16: median(nodeWasm), node_native_b16: median(nodeNative),
  };
  const f = (v: number) => v.toFixed(2);
  const g = (v: number) => (v * gflop).toFixed(1);
  process.stdout.write(`ConvNeXt V2-Atto, 224 px (${gflop.toFixed(2)} GFLOP/image), images/s (GFLOP/s), median of ${rounds} alternated rounds, Chromium ${rec.chromium}, ${threads} thread(s) each, cross-origin isolated: ${rec.cross_origin_isolated}, ${rec.cpu}\n\n`);
  process.stdout.write('| | batch 1 | batch 16 |\n|---|---|---|\n');
  process.stdout.write(`| ours (wasm kernels) | ${f(rec.ours_b1)} (${g(rec.ours_b1)}) | ${f(rec.ours_b16)} (${g(rec.ours_b16)}) |\n`);
  process.stdout.write(`| onnxruntime-web 1.30 (wasm EP, SIMD) | ${f(rec.ort_web_b1)} (${g(rec.ort_web_b1)}) | ${f(rec.ort_web_b16)} (${g(rec.ort_web_b16)}) |\n`);
  process.stdout.write(`| ours / onnxruntime-web | ${f(rec.ours_b1 / rec.ort_web_b1)}x | ${f(rec.ours_b16 / rec.ort_web_b16)}x |\n\n`);
  process.stdout.write(`training step in the page (batch 16): ${f(rec.ours_train_b16)} images/s; Node batch 16 forward, ${threads} thread(s): wasm ${f(rec.node_wasm_b16)} (${g(rec.node_wasm_b16)} GFLOP/s), native ${rec.isa_native} ${f(rec.node_native_b16)} (${g(rec.node_native_b16)} GFLOP/s)\n`);
  if (json) process.stdout.write(JSON.stringify(rec) + '\n');
} finally {
  await browser.close();
  await served.close();
  rmSync(dir, { recursive: true, force: true });
}
