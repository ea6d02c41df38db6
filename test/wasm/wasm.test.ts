// The WebAssembly kernels (npm run test:wasm: builds dist/wasm/convnextv2.wasm with Debian's
// clang first): the same C++ kernel sources as the native addon, compiled for wasm32 with
// SIMD128. Against timm's small_timm (logits, stages and every gradient within 1e-4), the
// official FCMAE reference (loss and every gradient, sparse and dense encoders), the TypeScript
// reference kernels (a training step: softmax cross-entropy, backward, AdamW), bad arguments
// refused, and CONVNEXTV2_KERNELS=wasm through the CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadWasmKernels, wasmPath } from '../../src/kernels/wasm_node.js';
import { WasmKernels } from '../../src/kernels/wasm.js';
import { ReferenceKernels } from '../../src/kernels/reference.js';
import { readFileSync } from 'node:fs';
import * as node from '../../src/index.js';
import { sameBits } from '../../src/tensor.js';
import { toOfficialNames } from '../../src/io/checkpoint.js';
import { REF, relErr, SMALL_TIMM } from '../helpers.js';

const k = await loadWasmKernels(undefined, 2);
const ref = node.readSafetensors(SMALL_TIMM);

test('small_timm on the wasm kernels: logits, pre-logits, stages and every gradient within 1e-4 of timm', async () => {
  const ck = node.loadCheckpoint(SMALL_TIMM, { prefix: 'param.', allowUnexpected: true });
  const m = new node.ConvNeXtV2(ck.config, { kernels: k });
  m.loadStateDict(ck.state);
  assert.equal(m.kernels.name, 'wasm');
  for (const i of [0, 1]) {
    const out = await m.forward(ref.get(`input.${i}.pixel_values`)!, { stages: 'NCHW' });
    assert.ok(relErr(out.logits!.data, ref.get(`output.${i}.logits`)!.data) <= 1e-4, `input ${i} logits`);
    assert.ok(relErr(out.preLogits.data, ref.get(`output.${i}.pre_logits`)!.data) <= 1e-4, `input ${i} pre_logits`);
    out.stages!.forEach((s, si) => assert.ok(relErr(s.data, ref.get(`output.${i}.stage${si}`)!.data) <= 1e-4, `input ${i} stage${si}`));
  }
  m.zeroGrad();
  const x = ref.get('input.0.pixel_values')!;
  await m.forward(x, { cache: true });
  const dxNhwc = m.backward(ref.get('grad.R')!.data, true)!;
  const [N, C, H, W] = x.shape;
  const dx = new Float32Array(dxNhwc.length);
  k.nhwcToNchw(dxNhwc, N, H, W, C, dx);
  assert.ok(relErr(dx, ref.get('grad.input')!.data) <= 1e-4, 'd input');
  let n = 0;
  for (const p of m.params) {
    const g = ref.get(`grad.${p.name}`);
    assert.ok(g, `fixture has grad.${p.name}`);
    assert.ok(relErr(p.grad, g.data) <= 1e-4, `grad ${p.name}: ${relErr(p.grad, g.data)}`);
    n++;
  }
  assert.equal(n, m.params.length);
});

test('FCMAE on the wasm kernels: the official loss, pred and every gradient (sparse and dense encoders)', async () => {
  const fr = node.readSafetensors(join(REF, 'fcmae_small.safetensors'));
  for (const mode of ['sparse', 'dense'] as const) {
    const ck = node.loadCheckpoint(join(REF, 'fcmae_small_official.pt'), { extra: true });
    const f = new node.FCMAE(ck.config, { decoderDim: ck.fcmae!.decoderDim, decoderDepth: ck.fcmae!.decoderDepth, normPixLoss: true }, { kernels: k });
    f.encoderModel.loadStateDict(ck.state);
    f.loadDecoderState(ck.extra!);
    f.zeroGrad();
    const out = await f.forward(fr.get('input.pixel_values')!, fr.get('input.mask')!, { mode });
    f.backward();
    const want = fr.get('output.loss')!.data[0];
    assert.ok(Math.abs(out.loss - want) <= 1e-4 * Math.abs(want), `${mode}: loss ${out.loss} vs ${want}`);
    assert.ok(relErr(out.pred.data, fr.get('output.pred')!.data) <= 1e-4, `${mode}: pred`);
    const enc = toOfficialNames(new Map(f.encoderModel.params.map((p) => [p.name, { shape: p.shape, data: p.grad }])));
    let checked = 0;
    for (const [name, t] of enc) {
      const g = fr.get(`grad.${name}`);
      if (!g) continue;
      assert.ok(relErr(t.data, g.data) <= 1e-4, `${mode}: grad ${name}`);
      checked++;
    }
    for (const p of f.decoderParams) {
      const g = fr.get(`grad.${p.name}`);
      if (!g) continue;
      assert.ok(relErr(p.grad, g.data) <= 1e-4, `${mode}: grad ${p.name}`);
      checked++;
    }
    assert.ok(checked > 40, `${mode}: ${checked} gradients compared`);
  }
});

test('a training step (cross-entropy, backward, AdamW) on wasm equals the TypeScript reference kernels within 1e-5; bad arguments are refused', async () => {
  const cfg = node.makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses: 5, dropPathRate: 0.2 });
  const x = { shape: [2, 3, 64, 64], data: Float32Array.from({ length: 2 * 3 * 64 * 64 }, (_, i) => Math.sin(i * 0.01)) };
  const step = async (kernels: node.Kernels) => {
    const m = new node.ConvNeXtV2(cfg, { seed: 3, kernels });
    for (const p of m.params) if (p.name.includes('grn')) p.data.fill(0.3);
    m.zeroGrad();
    const loss = (await kernels.read(node.forwardBackward(m, x, [1, 4], { smoothing: 0.1, rng: new node.Rng(9) }).loss))[0];
    const grads = m.params.map((p) => Float32Array.from(p.grad));
    // A step with gradients far from zero: AdamW's first step is sign-like.
    const opt = new node.AdamW(m.params, { lr: 1e-2, weightDecay: 0.05 });
    opt.update(kernels);
    return { loss, grads, m, opt };
  };
  const a = await step(k), b = await step(new ReferenceKernels());
  assert.ok(Math.abs(a.loss - b.loss) <= 1e-5 * Math.abs(b.loss), `loss ${a.loss} vs ${b.loss}`);
  a.grads.forEach((g, i) => assert.ok(relErr(g, b.grads[i]) <= 1e-5, `gradient of ${b.m.params[i].name}`));
  // AdamW alone, on the same state: the kernels agree to rounding.
  const n = 1000;
  const p1 = Float32Array.from({ length: n }, (_, i) => Math.cos(i)), g = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 3) + 0.5);
  const [pa, ma, va] = [p1.slice(), new Float32Array(n), new Float32Array(n)];
  const [pb, mb, vb] = [p1.slice(), new Float32Array(n), new Float32Array(n)];
  k.adamw(pa, g, ma, va, n, 1e-2, 0.9, 0.999, 1e-8, 0.05, 0.1, 0.001);
  new ReferenceKernels().adamw(pb, g, mb, vb, n, 1e-2, 0.9, 0.999, 1e-8, 0.05, 0.1, 0.001);
  assert.ok(relErr(pa, pb) <= 1e-6 && relErr(ma, mb) <= 1e-6 && relErr(va, vb) <= 1e-6, 'adamw');
  assert.throws(() => k.gelu(new Float32Array(3), new Float32Array(5), 5), /gelu: x is too short: needs 5 elements, has 3/);
  assert.throws(() => k.gemm(false, false, 4, 4, 4, new Float32Array(15), 4, new Float32Array(16), 4, new Float32Array(16), 4, false, null, 0, null),
    /gemm: A is too short: needs 16 elements, has 15/);
  assert.throws(() => k.layerNormForward(new Float32Array(8), 2.5, 4, new Float32Array(4), new Float32Array(4), 1e-6, new Float32Array(8), new Float32Array(2), new Float32Array(2)),
    /M must be an integer/);
  // A strided GEMM leaves C's gaps alone (only what the kernel writes comes back).
  const C = new Float32Array(2 * 8).fill(7);
  k.gemm(false, false, 2, 3, 2, Float32Array.of(1, 2, 3, 4), 2, Float32Array.of(1, 0, 0, 0, 1, 0), 3, C, 8, false, null, 0, null);
  assert.deepEqual([...C], [1, 2, 0, 7, 7, 7, 7, 7, 3, 4, 0, 7, 7, 7, 7, 7]);
});

test('CONVNEXTV2_KERNELS=wasm through the CLI: info names it, forward gives timm\'s logits', () => {
  const dir = mkdtempSync(join(tmpdir(), 'convnextv2-wasm-'));
  try {
    const ROOT = new URL('../..', import.meta.url).pathname;
    const run = (...args: string[]) => spawnSync(process.execPath, [join(ROOT, 'dist/cli/main.js'), ...args], { encoding: 'utf8', env: { ...process.env, CONVNEXTV2_KERNELS: 'wasm' } });
    const info = run('info', '--json');
    assert.equal(info.status, 0, info.stderr);
    const rec = JSON.parse(info.stdout.trim().split('\n').pop()!) as { kernels: string; isa: string; threads: number };
    assert.deepEqual([rec.kernels, rec.isa, rec.threads], ['wasm', 'wasm', availableParallelism()]);
    const three = spawnSync(process.execPath, [join(ROOT, 'dist/cli/main.js'), 'info', '--json'], { encoding: 'utf8', env: { ...process.env, CONVNEXTV2_KERNELS: 'wasm', CONVNEXTV2_THREADS: '3' } });
    assert.equal(JSON.parse(three.stdout.trim().split('\n').pop()!).threads, 3, three.stderr);
    const ck = join(dir, 'ck.safetensors'), input = join(dir, 'in.safetensors'), out = join(dir, 'out.safetensors');
    node.writeSafetensors(ck, [...ref].filter(([n]) => n.startsWith('param.')).map(([n, t]) => [n.slice(6), t] as const));
    node.writeSafetensors(input, [['pixel_values', ref.get('input.1.pixel_values')!]]);
    const f = run('forward', '--checkpoint', ck, '--input', input, '--output', out);
    assert.equal(f.status, 0, f.stderr);
    assert.ok(relErr(node.readSafetensors(out).get('logits')!.data, ref.get('output.1.logits')!.data) <= 1e-4);
    const missing = spawnSync(process.execPath, [join(ROOT, 'dist/cli/main.js'), 'info'], {
      encoding: 'utf8', env: { ...process.env, CONVNEXTV2_KERNELS: 'wasm', CONVNEXTV2_WASM: join(dir, 'nope.wasm') },
    });
    assert.equal(missing.status, 2);
    assert.match(missing.stderr.trim(), /^convnextv2: CONVNEXTV2_KERNELS=wasm: wasm kernels not built \(.*nope\.wasm missing; run npm run build:wasm\)$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('threads: FCMAE loss, pred and every gradient are bit-identical for 1, 2, 3 and 5 wasm threads; tensors live in the shared memory and dispose returns it', async () => {
  const fr = node.readSafetensors(join(REF, 'fcmae_small.safetensors'));
  const ck = node.loadCheckpoint(join(REF, 'fcmae_small_official.pt'), { extra: true });
  const run = async (kk: node.Kernels) => {
    const f = new node.FCMAE(ck.config, { decoderDim: ck.fcmae!.decoderDim, decoderDepth: ck.fcmae!.decoderDepth, normPixLoss: true }, { kernels: kk });
    f.encoderModel.loadStateDict(ck.state);
    f.loadDecoderState(ck.extra!);
    f.zeroGrad();
    const out = await f.forward(fr.get('input.pixel_values')!, fr.get('input.mask')!, { mode: 'sparse' });
    f.backward();
    const r = { loss: out.loss, pred: out.pred.data.slice(), grads: f.params.map((p) => p.grad.slice()), inMemory: f.params.every((p) => p.data.buffer instanceof SharedArrayBuffer) };
    f.dispose();
    return r;
  };
  const module = new WebAssembly.Module(readFileSync(wasmPath));
  const { nodeThreadHost } = await import('../../src/kernels/wasm_node.js');
  const k5 = await WasmKernels.create(module, { threads: 5, host: nodeThreadHost });
  try {
    const base = k5.bytesInUse();
    k5.setThreads(1);
    const one = await run(k5);
    assert.ok(one.inMemory, 'parameters are views of the wasm memory');
    assert.ok(k5.bytesInUse() - base < 4 << 20, `dispose returned the memory (${k5.bytesInUse() - base} bytes left beyond per-thread scratch)`);
    assert.equal(k5.workerTasks(), 0, 'one thread: the workers sit out');
    for (const t of [2, 3, 5]) {
      k5.setThreads(t);
      assert.equal(k5.threads, t);
      const before = k5.workerTasks();
      const r = await run(k5);
      assert.ok(k5.workerTasks() > before, `${t} threads: the workers ran tasks`);
      assert.equal(r.loss, one.loss, `${t} threads: loss`);
      assert.ok(sameBits(r.pred, one.pred), `${t} threads: pred`);
      r.grads.forEach((g, i) => assert.ok(sameBits(g, one.grads[i]), `${t} threads: grad ${i}`));
    }
    const single = new WasmKernels(new WebAssembly.Module(readFileSync(wasmPath.replace(/\.wasm$/, '-single.wasm'))));
    assert.equal(single.memory.kind, 'host');
    const s = await run(single);
    assert.ok(!s.inMemory, 'the single-thread build keeps host arrays');
    assert.equal(s.loss, one.loss, 'single-thread build: loss');
    s.grads.forEach((g, i) => assert.ok(sameBits(g, one.grads[i]), `single-thread build: grad ${i}`));
  } finally {
    k5.close();
  }
});
