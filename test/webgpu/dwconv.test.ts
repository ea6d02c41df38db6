// WebGPU depthwise convolution, dense and on the sparse encoder's compacted rows, forward,
// input gradient and weight gradient, against the TypeScript reference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReferenceKernels } from '../../src/kernels/reference.js';
import { close, dev, need, openWebGPU, rand, rnd } from './helpers.js';

const g = await openWebGPU();
const ref = new ReferenceKernels();

const SHAPES: [number, number, number, number, number][] = [
  // N, H, W, C, K
  [2, 7, 9, 5, 7],
  [1, 3, 2, 37, 7],
  [3, 6, 5, 4, 3],
  [1, 1, 1, 3, 1],
];

test('webgpu dwconv dense: forward, input gradient, weight gradient', async (t) => {
  const k = need(t, g);
  if (!k) return;
  for (const [N, H, W, C, K] of SHAPES) {
    const what = `${N}x${H}x${W}x${C} K=${K}`;
    const n = N * H * W * C;
    const x = rnd(n), w = rnd(K * K * C), b = rnd(C);
    for (const withBias of [true, false]) {
      const y = new Float32Array(n);
      ref.dwconvForward(x, N, H, W, C, K, w, withBias ? b : null, y);
      const gy = dev(k, n);
      k.dwconvForward(dev(k, x), N, H, W, C, K, dev(k, w), withBias ? dev(k, b) : null, gy);
      close(await k.read(gy), y, `${what} forward bias=${withBias}`);
    }
    const dy = rnd(n);
    for (const acc of [false, true]) {
      const dx0 = rnd(n);
      const dx = dx0.slice();
      ref.dwconvBackwardInput(dy, N, H, W, C, K, w, dx, acc);
      const gdx = dev(k, dx0);
      k.dwconvBackwardInput(dev(k, dy), N, H, W, C, K, w, gdx, acc);
      close(await k.read(gdx), dx, `${what} input grad acc=${acc}`);
    }
    for (const withBias of [true, false]) {
      const dw0 = rnd(K * K * C), db0 = rnd(C);
      const dw = dw0.slice(), db = db0.slice();
      ref.dwconvBackwardWeight(dy, x, N, H, W, C, K, dw, withBias ? db : null);
      const [gdw, gdb] = [dev(k, dw0), dev(k, db0)];
      k.dwconvBackwardWeight(dev(k, dy), dev(k, x), N, H, W, C, K, gdw, withBias ? gdb : null);
      close(await k.read(gdw), dw, `${what} weight grad`);
      if (withBias) close(await k.read(gdb), db, `${what} bias grad`);
    }
  }
});

test('webgpu dwconv dense: the weight gradient over many rows (several chunks)', async (t) => {
  const k = need(t, g);
  if (!k) return;
  const [N, H, W, C, K] = [4, 28, 28, 6, 7];
  const n = N * H * W * C;
  const x = rnd(n), dy = rnd(n);
  const dw = new Float32Array(K * K * C), db = new Float32Array(C);
  ref.dwconvBackwardWeight(dy, x, N, H, W, C, K, dw, db);
  const [gdw, gdb] = [dev(k, K * K * C), dev(k, C)];
  const [gx, gdy] = [dev(k, x), dev(k, dy)];
  k.dwconvBackwardWeight(gdy, gx, N, H, W, C, K, gdw, gdb);
  const first = await k.read(gdw);
  close(first, dw, 'weight grad');
  close(await k.read(gdb), db, 'bias grad');
  k.fill(gdw, 0);
  k.dwconvBackwardWeight(gdy, gx, N, H, W, C, K, gdw, null);
  assert.deepEqual(new Uint32Array((await k.read(gdw)).buffer), new Uint32Array(first.buffer), 'repeatable bit for bit');
});

/** A random visibility mask: rowOf (dense -> row or -1) and idx (row -> dense). */
function mask(positions: number, keep: number): { rowOf: Int32Array; idx: Int32Array; S: number } {
  const rowOf = new Int32Array(positions).fill(-1);
  const idx: number[] = [];
  for (let p = 0; p < positions; p++) {
    if (rand() < keep) {
      rowOf[p] = idx.length;
      idx.push(p);
    }
  }
  return { rowOf, idx: Int32Array.from(idx), S: idx.length };
}

test('webgpu dwconv rows (sparse encoder): forward, input gradient, weight gradient', async (t) => {
  const k = need(t, g);
  if (!k) return;
  for (const [N, H, W, C, K] of [...SHAPES, [2, 14, 14, 8, 7] as [number, number, number, number, number]]) {
    const what = `${N}x${H}x${W}x${C} K=${K}`;
    const { rowOf, idx, S } = mask(N * H * W, 0.6);
    const x = rnd(S * C), w = rnd(K * K * C), b = rnd(C), dy = rnd(S * C);
    const y = new Float32Array(S * C);
    ref.dwconvForwardRows(x, rowOf, idx, S, N, H, W, C, K, w, b, y);
    const gy = dev(k, S * C);
    k.dwconvForwardRows(dev(k, x), rowOf, idx, S, N, H, W, C, K, dev(k, w), dev(k, b), gy);
    close(await k.read(gy), y, `${what} rows forward`);
    for (const acc of [false, true]) {
      const dx0 = rnd(S * C);
      const dx = dx0.slice();
      ref.dwconvBackwardInputRows(dy, rowOf, idx, S, N, H, W, C, K, w, dx, acc);
      const gdx = dev(k, dx0);
      k.dwconvBackwardInputRows(dev(k, dy), rowOf, idx, S, N, H, W, C, K, dev(k, w), gdx, acc);
      close(await k.read(gdx), dx, `${what} rows input grad acc=${acc}`);
    }
    const dw0 = rnd(K * K * C), db0 = rnd(C);
    const dw = dw0.slice(), db = db0.slice();
    ref.dwconvBackwardWeightRows(dy, x, rowOf, idx, S, N, H, W, C, K, dw, db);
    const [gdw, gdb] = [dev(k, dw0), dev(k, db0)];
    k.dwconvBackwardWeightRows(dev(k, dy), dev(k, x), rowOf, idx, S, N, H, W, C, K, gdw, gdb);
    close(await k.read(gdw), dw, `${what} rows weight grad`);
    close(await k.read(gdb), db, `${what} rows bias grad`);
  }
});

test('webgpu dwconv: bad arguments throw', (t) => {
  const k = need(t, g);
  if (!k) return;
  const a = k.memory.alloc(1000);
  assert.throws(() => k.dwconvForward(a, 1, 4, 4, 2, 4, a, null, a), /K must be odd/);
  assert.throws(() => k.dwconvForward(a, 1, 30, 30, 2, 3, a, null, a), /x has 1000 values, needs 1800/);
  const rowOf = Int32Array.from([0, -1, 1, -1]);
  assert.throws(() => k.dwconvForwardRows(a, rowOf, Int32Array.from([0, 3]), 2, 1, 2, 2, 3, 3, a, null, a), /disagree at row 1/);
  assert.throws(() => k.dwconvForwardRows(a, rowOf, Int32Array.from([0, 7]), 2, 1, 2, 2, 3, 3, a, null, a), /disagree at row 1/);
});
