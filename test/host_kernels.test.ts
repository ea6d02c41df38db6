// The memory kernels and the small elementwise kernels every host backend shares (src/kernels/host.ts),
// against their definitions written out in plain loops; the native backend inherits them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { maskedMse, normalizePatches, patchifyTarget } from '../src/kernels/fcmae_loss.js';
import { NativeKernels, nativeAvailable } from '../src/kernels/native.js';
import { ReferenceKernels } from '../src/kernels/reference.js';
import type { Kernels } from '../src/kernels/types.js';

let seed = 99;
function rnd(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    a[i] = (seed / 2 ** 32) * 2 - 1;
  }
  return a;
}
const f = Math.fround;
const backends: Kernels[] = [new ReferenceKernels(), ...(nativeAvailable() ? [new NativeKernels()] : [])];

for (const k of backends) {
  test(`${k.name}: write, read, fill, copy`, async () => {
    const t = new Float32Array(6);
    k.write(t, Float32Array.of(1, 2), 3);
    assert.deepEqual([...t], [0, 0, 0, 1, 2, 0]);
    assert.throws(() => k.write(t, Float32Array.of(1, 2), 5), /do not fit|does not fit/);
    const r = await k.read(t);
    t[0] = 9;
    assert.deepEqual([...r], [0, 0, 0, 1, 2, 0], 'read returns a copy');
    k.fill(t.subarray(1, 3), 7);
    assert.deepEqual([...t], [9, 7, 7, 1, 2, 0]);
    const d = new Float32Array(7);
    k.copy(t, d);
    assert.deepEqual([...d], [9, 7, 7, 1, 2, 0, 0]);
  });

  test(`${k.name}: batched transpose (and its accumulating inverse)`, () => {
    const B = 3, R = 5, C = 4;
    const src = rnd(B * R * C);
    const dst = new Float32Array(B * R * C);
    k.transpose(src, B, R, C, dst, false);
    for (let b = 0; b < B; b++) for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) assert.equal(dst[b * R * C + c * R + r], src[b * R * C + r * C + c]);
    const back = Float32Array.from(src);
    k.transpose(dst, B, C, R, back, true);
    for (let i = 0; i < back.length; i++) assert.equal(back[i], f(2 * src[i]));
  });

  test(`${k.name}: scaleRows (in place too), rowDot, scale`, () => {
    const R = 4, C = 3;
    const x = rnd(R * C), s = rnd(R), out = rnd(R * C);
    const acc = Float32Array.from(out);
    k.scaleRows(x, R, C, s, acc, true);
    for (let i = 0; i < R * C; i++) assert.equal(acc[i], f(out[i] + s[Math.floor(i / C)] * x[i]));
    const y = Float32Array.from(x);
    k.scaleRows(y, R, C, s, y, false);
    for (let i = 0; i < R * C; i++) assert.equal(y[i], f(x[i] * s[Math.floor(i / C)]));
    const d = Float32Array.of(1, 1, 1, 1);
    k.rowDot(x, out, R, C, d, true);
    for (let r = 0; r < R; r++) {
      let want = 0;
      for (let c = 0; c < C; c++) want += x[r * C + c] * out[r * C + c];
      assert.ok(Math.abs(d[r] - (1 + want)) < 1e-6);
    }
    const z = Float32Array.from(x);
    k.scale(z, 5, -2);
    assert.deepEqual([...z], [...x].map((v, i) => (i < 5 ? -2 * v : v)));
  });

  test(`${k.name}: sumSquares and clipByNorm (torch's clip_grad_norm_ factor)`, () => {
    const a = Float32Array.of(3, 4), b = Float32Array.of(12);
    const ss = Float32Array.of(5);
    k.sumSquares(a, 2, ss, false);
    k.sumSquares(b, 1, ss, true);
    assert.equal(ss[0], 169);
    k.clipByNorm(a, 2, ss, 1);
    const g = 1 / (13 + 1e-6);
    assert.deepEqual([...a], [f(3 * g), f(4 * g)]);
    const c = Float32Array.of(0.1, 0.2);
    k.clipByNorm(c, 2, Float32Array.of(0.05), 1);
    assert.deepEqual([...c], [f(0.1), f(0.2)], 'a norm under the limit leaves the gradients as they are');
  });

  test(`${k.name}: grnScale and ema`, () => {
    const S = 2, C = 3;
    const nx = rnd(S * C), gamma = rnd(C), out = new Float32Array(S * C);
    k.grnScale(nx, S, C, gamma, out);
    for (let i = 0; i < S * C; i++) assert.equal(out[i], f(1 + gamma[i % C] * nx[i]));
    const e = Float32Array.of(1, 2), w = Float32Array.of(3, 6);
    k.ema(e, w, 2, 0.9);
    assert.deepEqual([...e].map((v) => +v.toFixed(6)), [1.2, 2.4]);
  });

  test(`${k.name}: gatherRows (zeros for -1) and scatterRows (skips -1), runs and single rows`, () => {
    const C = 3, rows = 8;
    const src = rnd(rows * C);
    const idx = Int32Array.of(2, 3, 4, -1, 7, 0, -1, -1, 5);
    const g = rnd(idx.length * C);
    k.gatherRows(src, idx, C, g);
    for (let i = 0; i < idx.length; i++) for (let c = 0; c < C; c++) assert.equal(g[i * C + c], idx[i] < 0 ? 0 : src[idx[i] * C + c]);
    const d = Float32Array.from(src).fill(9);
    k.scatterRows(g, idx, C, d);
    for (let r = 0; r < rows; r++) {
      const i = idx.indexOf(r);
      for (let c = 0; c < C; c++) assert.equal(d[r * C + c], i < 0 ? 9 : src[r * C + c]);
    }
    assert.throws(() => k.gatherRows(src, Int32Array.of(8), C, g), /outside/);
    assert.throws(() => k.scatterRows(g, Int32Array.of(8), C, d), /outside/);
  });

  test(`${k.name}: fcmaeLoss = patchify target, per-patch normalisation and masked MSE`, () => {
    const N = 2, H = 8, W = 12, C = 3, p = 4;
    const rows = N * (H / p) * (W / p), P = p * p * C;
    const x = rnd(N * H * W * C), pred = rnd(rows * P);
    const mask = Float32Array.from({ length: rows }, (_, i) => (i % 3 === 1 ? 0 : 1));
    for (const norm of [false, true]) {
      const target = new Float32Array(rows * P), dpred = new Float32Array(rows * P), loss = new Float32Array(1);
      const stats = new Float32Array(rows * 2);
      k.fcmaeLoss(x, N, H, W, C, p, norm, pred, mask, target, dpred, loss, norm ? stats : null);
      const t = patchifyTarget(x, N, H, W, C, p, new Float32Array(rows * P));
      const st = norm ? normalizePatches(t, rows, P) : null;
      const d = new Float32Array(rows * P);
      const want = maskedMse(pred, t, mask, rows, P, d);
      assert.ok(Math.abs(loss[0] - want) <= 1e-6 * Math.abs(want), `loss ${loss[0]} vs ${want}`);
      assert.deepEqual(target, t);
      assert.deepEqual(dpred, d);
      if (st) assert.deepEqual(stats, st);
    }
  });

  test(`${k.name}: smoothTargets (timm's label smoothing) and its label check`, () => {
    const out = new Float32Array(2 * 4).fill(9);
    k.smoothTargets(Int32Array.of(2, 0), 2, 4, 0.2, out);
    assert.deepEqual([...out].map((v) => +v.toFixed(6)), [0.05, 0.05, 0.85, 0.05, 0.85, 0.05, 0.05, 0.05]);
    assert.throws(() => k.smoothTargets(Int32Array.of(4), 1, 4, 0, out), /label 4 out of range for 4 classes|labels\[0\] = 4 is outside \[0, 4\)/);
  });

  test(`${k.name}: capabilities`, () => {
    const c = k.capabilities();
    assert.equal(c.device, false);
    assert.equal(c.sparseRows, true);
    assert.match(c.description, new RegExp(k.name));
  });
}
