// WebGPU LayerNorm and GRN (forward, backward, the fused GELU / bias gradient, y = null and
// sqSums) against the TypeScript reference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReferenceKernels } from '../../src/kernels/reference.js';
import { close, dev, need, openWebGPU, rnd } from './helpers.js';

const g = await openWebGPU();
const ref = new ReferenceKernels();

test('webgpu layerNorm forward and backward', async (t) => {
  const k = need(t, g);
  if (!k) return;
  for (const [M, C] of [[1, 1], [37, 96], [5, 131], [300, 7], [70000, 3]]) { // 70000 rows: a grid folded into 2D
    const x = rnd(M * C, 3);
    for (let i = 0; i < M * C; i++) x[i] += 0.5; // a mean to remove
    const gamma = rnd(C), beta = rnd(C), eps = 1e-6;
    const y = new Float32Array(M * C), mean = new Float32Array(M), rstd = new Float32Array(M);
    ref.layerNormForward(x, M, C, gamma, beta, eps, y, mean, rstd);
    const [gy, gm, gr] = [dev(k, M * C), dev(k, M, 5), dev(k, M, 2)];
    k.layerNormForward(dev(k, x), M, C, dev(k, gamma), beta, eps, gy, gm, gr);
    close(await k.read(gy), y, `ln y ${M}x${C}`);
    close(await k.read(gm), mean, `ln mean ${M}x${C}`);
    close(await k.read(gr), rstd, `ln rstd ${M}x${C}`);
    const dy = rnd(M * C);
    for (const acc of [false, true]) {
      const dx0 = rnd(M * C), dg0 = rnd(C), db0 = rnd(C);
      const [dx, dg, db] = [dx0.slice(), dg0.slice(), db0.slice()];
      ref.layerNormBackward(dy, x, mean, rstd, gamma, M, C, dx, acc, dg, db);
      const [gdx, gdg, gdb] = [dev(k, dx0), dev(k, dg0), dev(k, db0)];
      k.layerNormBackward(dev(k, dy), dev(k, x), gm, gr, dev(k, gamma), M, C, gdx, acc, gdg, gdb);
      close(await k.read(gdx), dx, `ln dx ${M}x${C} acc=${acc}`);
      close(await k.read(gdg), dg, `ln dgamma ${M}x${C} acc=${acc}`);
      close(await k.read(gdb), db, `ln dbeta ${M}x${C} acc=${acc}`);
    }
  }
});

/** Dense (per image), one big sparse segment, and segments with an empty one. */
const SEGMENTS: [string, Int32Array, number][] = [
  ['per image', Int32Array.from([0, 49, 98, 147]), 37],
  ['one segment', Int32Array.from([0, 1500]), 5],
  ['with an empty segment', Int32Array.from([0, 10, 10, 33]), 70],
];

test('webgpu grnForward: y, statistics only (y null), sqSums given', async (t) => {
  const k = need(t, g);
  if (!k) return;
  for (const [name, offsets, C] of SEGMENTS) {
    const S = offsets.length - 1, rows = offsets[S];
    const x = rnd(rows * C);
    for (let i = 0; i < rows; i++) x[i * C + 1] = 0; // a zero column: gx = 0
    const gamma = rnd(C), beta = rnd(C), eps = 1e-6;
    const y = new Float32Array(rows * C), gx = new Float32Array(S * C), nx = new Float32Array(S * C);
    ref.grnForward(x, offsets, C, gamma, beta, eps, y, gx, nx);
    const sq = new Float32Array(S * C);
    for (let s = 0; s < S; s++) for (let i = offsets[s]; i < offsets[s + 1]; i++) for (let c = 0; c < C; c++) sq[s * C + c] += x[i * C + c] ** 2;
    const dx = dev(k, x);
    for (const mode of ['y', 'stats', 'sqSums', 'sqSums+y']) {
      const withY = mode === 'y' || mode === 'sqSums+y';
      const [gy, ggx, gnx] = [dev(k, rows * C), dev(k, S * C), dev(k, S * C, 4)];
      k.grnForward(dx, offsets, C, dev(k, gamma), dev(k, beta), eps, withY ? gy : null, ggx, gnx, mode.startsWith('sqSums') ? dev(k, sq) : null);
      close(await k.read(ggx), gx, `${name} ${mode} gx`);
      close(await k.read(gnx), nx, `${name} ${mode} nx`);
      if (withY) close(await k.read(gy), y, `${name} ${mode} y`);
    }
  }
});

test('webgpu grnBackward: plain, with geluPre and dbias', async (t) => {
  const k = need(t, g);
  if (!k) return;
  for (const [name, offsets, C] of SEGMENTS) {
    const S = offsets.length - 1, rows = offsets[S];
    const x = rnd(rows * C);
    for (let i = 0; i < rows; i++) x[i * C + 1] = 0;
    const gamma = rnd(C), beta = rnd(C), eps = 1e-6;
    const gx = new Float32Array(S * C), nx = new Float32Array(S * C);
    ref.grnForward(x, offsets, C, gamma, beta, eps, null, gx, nx);
    const dy = rnd(rows * C), pre = rnd(rows * C, 3);
    for (const fused of [false, true]) {
      const dg0 = rnd(C), db0 = rnd(C), dbias0 = rnd(C);
      const dx = new Float32Array(rows * C), dg = dg0.slice(), db = db0.slice(), dbias = dbias0.slice();
      ref.grnBackward(dy, x, offsets, C, gamma, eps, gx, nx, dx, dg, db, fused ? pre : null, fused ? dbias : null);
      const gdx = dev(k, rnd(rows * C)), gdg = dev(k, dg0), gdb = dev(k, db0), gdbias = dev(k, dbias0);
      k.grnBackward(dev(k, dy), dev(k, x), offsets, C, dev(k, gamma), eps, dev(k, gx), dev(k, nx), gdx, gdg, gdb,
        fused ? dev(k, pre) : null, fused ? gdbias : null);
      close(await k.read(gdx), dx, `${name} fused=${fused} dx`);
      close(await k.read(gdg), dg, `${name} fused=${fused} dgamma`);
      close(await k.read(gdb), db, `${name} fused=${fused} dbeta`);
      if (fused) close(await k.read(gdbias), dbias, `${name} dbias`);
      else assert.deepEqual(await k.read(gdbias), dbias0, 'dbias untouched when not given');
    }
  }
});

test('webgpu grn: bad offsets throw', (t) => {
  const k = need(t, g);
  if (!k) return;
  const a = k.memory.alloc(100);
  assert.throws(() => k.grnForward(a, Int32Array.from([0, 5, 3]), 2, a, a, 1e-6, null, a, a), /must not decrease/);
  assert.throws(() => k.grnForward(a, Int32Array.from([0, 60]), 2, a, a, 1e-6, a, a, a), /x has 100 values, needs 120/);
});
