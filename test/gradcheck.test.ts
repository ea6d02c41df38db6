// Finite-difference gradient checks of every layer's backward, on the float64-accumulating
// reference kernels: central differences of L = sum(y * R) against the analytic gradients.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReferenceKernels } from '../src/kernels/reference.js';
import { Param } from '../src/nn/param.js';
import { Linear } from '../src/nn/linear.js';
import { LayerNorm } from '../src/nn/layernorm.js';
import { DepthwiseConv } from '../src/nn/dwconv.js';
import { PatchConv } from '../src/nn/patchconv.js';
import { GRN } from '../src/model/grn.js';
import { Block } from '../src/model/block.js';
import { ConvNeXtV2 } from '../src/model/convnextv2.js';
import { makeConfig } from '../src/model/config.js';
import { Rng } from '../src/rng.js';
import { Arena } from '../src/nn/arena.js';
import { assertFiniteDifferences, dot64 } from './helpers.js';

/** Mean softmax cross-entropy through the kernel (loss in a one-value tensor, gradient scale 1/N). */
function ce(k: { softmaxCrossEntropy(l: Float32Array, t: Float32Array, N: number, K: number, d: Float32Array | null, loss: Float32Array, g: number): void }, logits: Float32Array, t: Float32Array, N: number, K: number, d: Float32Array | null): number {
  const loss = new Float32Array(1);
  k.softmaxCrossEntropy(logits, t, N, K, d, loss, 1 / N);
  return loss[0];
}


const sh = new Arena();
const B = (cache: boolean) => ({ shared: sh, cache });

const k = new ReferenceKernels();
const rng = new Rng(1234);
const randn = (n: number, s = 1) => Float32Array.from({ length: n }, () => rng.normal() * s);
const param = (name: string, shape: number[], s = 0.5, offset = 0) => {
  const p = new Param(name, shape, false);
  p.data.set(randn(p.size, s).map((v) => v + offset));
  return p;
};

/**
 * run(cache) computes the layer output; back(R) runs backward with dy = R and returns the
 * input gradient. Checks `count` random coordinates of the input and of each parameter.
 */
function check(name: string, x: Float32Array, params: Param[], run: (cache: boolean) => Float32Array,
  back: (dy: Float32Array) => Float32Array | null, { eps = 1e-2, tol = 2e-2, count = 12 } = {}) {
  const y0 = run(true);
  const R = randn(y0.length);
  for (const p of params) p.grad.fill(0);
  const dx = back(R);
  // The finite differences write the parameters directly: touch() marks them changed (Param.version).
  const L = () => { for (const p of params) p.touch(); return dot64(run(false), R); };
  const targets: [string, Float32Array, Float32Array | null][] = [['input', x, dx], ...params.map((p) => [p.name, p.data, p.grad] as [string, Float32Array, Float32Array])];
  assertFiniteDifferences(name, targets, L, (n) => rng.int(n), { eps, tol, count });
}

test('Linear and Linear+GELU backward match finite differences', () => {
  for (const gelu of [false, true]) {
    const M = 7, I = 5, O = 6;
    const w = param('w', [O, I]);
    const b = param('b', [O]);
    const lin = new Linear(w, b, I, O, gelu);
    const x = randn(M * I);
    check(`linear gelu=${gelu}`, x, [w, b], (c) => Float32Array.from(lin.forward(k, x, M, B(c))), (dy) => lin.backward(k, dy, sh));
  }
});

test('LayerNorm backward matches finite differences', () => {
  const M = 6, C = 7;
  const g = param('gamma', [C], 0.5, 1);
  const b = param('beta', [C]);
  const ln = new LayerNorm(g, b, C, 1e-6);
  const x = randn(M * C, 2);
  check('layernorm', x, [g, b], (c) => Float32Array.from(ln.forward(k, x, M, B(c))), (dy) => ln.backward(k, dy, sh), { eps: 1e-3 });
});

test('depthwise 7x7 convolution backward matches finite differences', () => {
  const N = 2, H = 5, W = 9, C = 3, K = 7;
  const w = param('w', [C, 1, K, K]);
  const b = param('b', [C]);
  const conv = new DepthwiseConv(w, b, C, K);
  const x = randn(N * H * W * C);
  check('dwconv', x, [w, b], (c) => Float32Array.from(conv.forward(k, x, N, H, W, B(c))), (dy) => conv.backward(k, dy, new Float32Array(x.length)));
});

test('patch convolution (stem / downsample) backward matches finite differences, odd sizes floored', () => {
  const N = 2, H = 9, W = 7, Ci = 3, Co = 4, P = 2;
  const w = param('w', [Co, Ci, P, P]);
  const b = param('b', [Co]);
  const conv = new PatchConv(w, b, Ci, Co, P);
  const x = randn(N * H * W * Ci);
  check('patchconv', x, [w, b], (c) => Float32Array.from(conv.forward(k, x, N, H, W, B(c))), (dy) => conv.backward(k, dy, sh));
});

test('GRN backward matches finite differences (per image and over uneven segments)', () => {
  const C = 5;
  for (const offsets of [GRN.perImage(2, 6), Int32Array.from([0, 3, 4, 11])]) {
    const rows = offsets[offsets.length - 1];
    const g = param('gamma', [C]);
    const b = param('beta', [C]);
    const grn = new GRN(g, b, C);
    const x = randn(rows * C);
    check(`grn ${offsets.join(',')}`, x, [g, b], (c) => Float32Array.from(grn.forward(k, x, offsets, B(c))), (dy) => grn.backward(k, dy, sh), { eps: 1e-3 });
  }
});

test('GELU, pooling, and softmax cross-entropy gradients match finite differences', () => {
  const n = 9;
  const x = randn(n, 2);
  const dy = randn(n);
  const dx = new Float32Array(n);
  k.geluBackward(dy, x, dx, n);
  const y = new Float32Array(1);
  for (let i = 0; i < n; i++) {
    const e = 1e-3;
    k.gelu(Float32Array.of(x[i] + e), y, 1); const p = y[0];
    k.gelu(Float32Array.of(x[i] - e), y, 1); const m = y[0];
    assert.ok(Math.abs((p - m) / (2 * e) * dy[i] - dx[i]) < 1e-3);
  }
  const N = 3, K = 4;
  const logits = randn(N * K, 2);
  const t = new Float32Array(N * K);
  for (let i = 0; i < N; i++) { t[i * K + (i % K)] = 0.7; for (let j = 0; j < K; j++) t[i * K + j] += 0.3 / K; }
  const dl = new Float32Array(N * K);
  ce(k, logits, t, N, K, dl);
  for (let i = 0; i < N * K; i++) {
    const e = 1e-3, old = logits[i];
    logits[i] = old + e; const lp = ce(k, logits, t, N, K, null);
    logits[i] = old - e; const lm = ce(k, logits, t, N, K, null);
    logits[i] = old;
    assert.ok(Math.abs((lp - lm) / (2 * e) - dl[i]) < 1e-3, `softmax CE d/dlogit[${i}]`);
  }
  const xs = randn(2 * 5 * 3);
  const pooled = new Float32Array(6);
  k.avgPoolForward(xs, 2, 5, 3, pooled);
  const dp = randn(6), dxs = new Float32Array(30);
  k.avgPoolBackward(dp, 2, 5, 3, dxs);
  // d/dx[n, hw, c] = dp[n, c] / HW for every position: index 7 is n 0, hw 2, c 1.
  for (let n = 0; n < 2; n++) for (let hw = 0; hw < 5; hw++) for (let c = 0; c < 3; c++) {
    assert.ok(Math.abs(dxs[(n * 5 + hw) * 3 + c] - dp[n * 3 + c] / 5) < 1e-7, `avgPool d/dx[${n},${hw},${c}]`);
  }
  for (let n = 0; n < 2; n++) for (let c = 0; c < 3; c++) {
    let s = 0;
    for (let hw = 0; hw < 5; hw++) s += xs[(n * 5 + hw) * 3 + c];
    assert.ok(Math.abs(pooled[n * 3 + c] - s / 5) < 1e-6, `avgPool mean[${n},${c}]`);
  }
});

test('a whole block, with per-sample drop path fixed by a seeded rng, matches finite differences', () => {
  const N = 2, H = 4, W = 5, C = 4;
  const names = ['conv_dw.weight', 'conv_dw.bias', 'norm.weight', 'norm.bias', 'mlp.fc1.weight', 'mlp.fc1.bias', 'mlp.grn.weight', 'mlp.grn.bias', 'mlp.fc2.weight', 'mlp.fc2.bias'];
  const shapes: Record<string, number[]> = { 'conv_dw.weight': [C, 1, 7, 7], 'conv_dw.bias': [C], 'norm.weight': [C], 'norm.bias': [C], 'mlp.fc1.weight': [4 * C, C], 'mlp.fc1.bias': [4 * C], 'mlp.grn.weight': [4 * C], 'mlp.grn.bias': [4 * C], 'mlp.fc2.weight': [C, 4 * C], 'mlp.fc2.bias': [C] };
  const ps = new Map(names.map((n) => [n, param(n, shapes[n], 0.4, n === 'norm.weight' ? 1 : 0)]));
  for (const dropPath of [0, 0.5]) {
    const blk = new Block((n) => ps.get(n)!, C, 7, 1e-6, dropPath);
    const x = randn(N * H * W * C);
    // Same drop-path draw for every evaluation: reseed before each forward.
    const run = (c: boolean) => Float32Array.from(blk.forward(k, x, N, H, W, { shared: sh, cache: c, train: dropPath > 0, rng: new Rng(7) }));
    check(`block dropPath=${dropPath}`, x, [...ps.values()], run, (dy) => blk.backward(k, Float32Array.from(dy), sh), { eps: 1e-2, count: 6 });
  }
});

test('the whole model: input gradient matches finite differences', () => {
  const cfg = makeConfig({ depths: [1, 1, 1, 1], dims: [4, 6, 8, 10] }, { numClasses: 3 });
  const model = new ConvNeXtV2(cfg, { kernels: k, seed: 3 });
  for (const p of model.params) if (p.name.includes('grn') || p.name.endsWith('bias')) p.data.set(randn(p.size, 0.3));
  const N = 1, H = 33, W = 40;
  const x = randn(N * H * W * 3);
  check('model', x, model.params.filter((p) => /fc1.weight|grn|stem.0/.test(p.name)),
    (c) => Float32Array.from(model.forwardNHWC(x, N, H, W, { cache: c }).logits as Float32Array), (dy) => model.backward(dy, true), { eps: 1e-2, count: 5 });
});
