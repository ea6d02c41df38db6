// WebGPU elementwise, layout, pooling, loss and optimizer kernels, memory access and the small
// kernels, against the TypeScript reference on awkward sizes and views at odd offsets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReferenceKernels } from '../../src/kernels/reference.js';
import { close, dev, need, openWebGPU, rand, randInt, rnd } from './helpers.js';

const g = await openWebGPU();
const ref = new ReferenceKernels();

test('webgpu memory: write at an offset, read, fill, copy, subarray views', async (t) => {
  const k = need(t, g);
  if (!k) return;
  const a = k.memory.alloc(100);
  assert.deepEqual(await k.read(a), new Float32Array(100), 'alloc is zeroed');
  const src = rnd(37);
  k.write(a, src, 11);
  const got = await k.read(a);
  assert.deepEqual(got.subarray(11, 48), src);
  assert.equal(got[10], 0);
  assert.equal(got[48], 0);
  const v = a.subarray(-50, -10);
  assert.equal(v.length, 40);
  assert.equal(v.offset, 50);
  assert.equal(a.subarray(20).length, 80);
  assert.equal(a.subarray(30, 10).length, 0);
  k.fill(v, 2.5);
  const f = await k.read(a);
  assert.ok(f.subarray(50, 90).every((x) => x === 2.5) && f[49] === 0 && f[90] === 0 && f[47] === src[36]);
  k.fill(a.subarray(0, 5), 0);
  assert.deepEqual((await k.read(a)).subarray(0, 5), new Float32Array(5));
  // copy: another allocation, the same allocation (kernel), a host source.
  const b = k.memory.alloc(40);
  k.copy(v, b);
  assert.ok((await k.read(b)).every((x) => x === 2.5));
  k.copy(a.subarray(11, 48), a.subarray(60, 97));
  assert.deepEqual((await k.read(a)).subarray(60, 97), src);
  k.copy(src, b.subarray(1));
  assert.deepEqual((await k.read(b)).subarray(1, 38), src);
  assert.throws(() => k.write(a, new Float32Array(10), 95), /do not fit/);
  assert.throws(() => k.fill(new Float32Array(3), 1), /must be a webgpu tensor/);
  const h = rnd(5);
  assert.deepEqual(await k.read(h), h, 'read of a host array is a copy');
  const c = k.memory.alloc(8);
  k.memory.free(c);
  assert.throws(() => k.fill(c, 1), /freed/);
  assert.throws(() => k.memory.free(a.subarray(1)), /not a view/);
});

test('webgpu gelu, geluBackward', async (t) => {
  const k = need(t, g);
  if (!k) return;
  const n = 3001;
  const x = rnd(n, 6);
  const dy = rnd(n);
  const y = new Float32Array(n);
  const dx = new Float32Array(n);
  ref.gelu(x, y, n);
  ref.geluBackward(dy, x, dx, n);
  const gy = dev(k, n);
  const gdx = dev(k, n, 6);
  k.gelu(dev(k, x), gy, n);
  k.geluBackward(dev(k, dy, 2), x, gdx, n);
  close(await k.read(gy), y, 'gelu');
  close(await k.read(gdx), dx, 'geluBackward');
});

test('webgpu colSum, avgPool forward and backward', async (t) => {
  const k = need(t, g);
  if (!k) return;
  for (const [M, N] of [[1, 1], [70, 33], [3000, 5]]) {
    const x = rnd(M * N);
    const out0 = rnd(N);
    for (const acc of [false, true]) {
      const want = out0.slice();
      ref.colSum(x, M, N, want, acc);
      const o = dev(k, out0);
      k.colSum(dev(k, x), M, N, o, acc);
      close(await k.read(o), want, `colSum ${M}x${N} acc=${acc}`);
    }
  }
  const N = 3, HW = 49, C = 37;
  const x = rnd(N * HW * C);
  const y = new Float32Array(N * C);
  ref.avgPoolForward(x, N, HW, C, y);
  const gy = dev(k, N * C);
  k.avgPoolForward(dev(k, x), N, HW, C, gy);
  close(await k.read(gy), y, 'avgPoolForward');
  const dy = rnd(N * C);
  const dx = new Float32Array(N * HW * C);
  ref.avgPoolBackward(dy, N, HW, C, dx);
  const gdx = dev(k, rnd(N * HW * C));
  k.avgPoolBackward(dev(k, dy), N, HW, C, gdx);
  close(await k.read(gdx), dx, 'avgPoolBackward');
});

test('webgpu softmaxCrossEntropy: soft targets, loss on the device, gradScale', async (t) => {
  const k = need(t, g);
  if (!k) return;
  for (const [N, K] of [[1, 1], [7, 10], [5, 1001]]) {
    const logits = rnd(N * K, 8);
    const targets = new Float32Array(N * K);
    for (let n = 0; n < N; n++) {
      targets[n * K + randInt(0, K - 1)] = 0.7;
      for (let j = 0; j < K; j++) targets[n * K + j] += 0.3 / K;
    }
    const gradScale = 1 / (N * 3);
    const dl = new Float32Array(N * K);
    const loss = new Float32Array(1);
    ref.softmaxCrossEntropy(logits, targets, N, K, dl, loss, gradScale);
    const gdl = dev(k, N * K);
    const gl = dev(k, 1, 5);
    k.softmaxCrossEntropy(dev(k, logits), dev(k, targets), N, K, gdl, gl, gradScale);
    close(await k.read(gdl), dl, `dlogits ${N}x${K}`);
    close(await k.read(gl), loss, `loss ${N}x${K}`);
    const gl2 = dev(k, 1);
    k.softmaxCrossEntropy(logits, targets, N, K, null, gl2, gradScale);
    close(await k.read(gl2), loss, `loss without dlogits ${N}x${K}`);
  }
});

test('webgpu patchify, unpatchify (floored border), nchw <-> nhwc', async (t) => {
  const k = need(t, g);
  if (!k) return;
  for (const [N, H, W, C, P] of [[2, 9, 11, 3, 4], [1, 8, 8, 5, 2], [2, 5, 7, 2, 1]]) {
    const Ho = Math.floor(H / P), Wo = Math.floor(W / P);
    const x = rnd(N * H * W * C);
    const cols = new Float32Array(N * Ho * Wo * C * P * P);
    ref.patchify(x, N, H, W, C, P, cols);
    const gc = dev(k, cols.length);
    k.patchify(dev(k, x), N, H, W, C, P, gc);
    close(await k.read(gc), cols, `patchify ${[N, H, W, C, P]}`);
    const dcols = rnd(cols.length);
    const dx = new Float32Array(x.length);
    ref.unpatchify(dcols, N, H, W, C, P, dx);
    const gdx = dev(k, rnd(x.length));
    k.unpatchify(dev(k, dcols), N, H, W, C, P, gdx);
    close(await k.read(gdx), dx, `unpatchify ${[N, H, W, C, P]}`);
  }
  const [N, C, H, W] = [2, 3, 5, 7];
  const src = rnd(N * C * H * W);
  const nhwc = new Float32Array(src.length);
  ref.nchwToNhwc(src, N, C, H, W, nhwc);
  const g1 = dev(k, src.length);
  k.nchwToNhwc(dev(k, src), N, C, H, W, g1);
  close(await k.read(g1), nhwc, 'nchwToNhwc');
  const back = new Float32Array(src.length);
  ref.nhwcToNchw(nhwc, N, H, W, C, back);
  const g2 = dev(k, src.length);
  k.nhwcToNchw(g1, N, H, W, C, g2);
  close(await k.read(g2), back, 'nhwcToNchw');
  close(back, src, 'round trip');
});

test('webgpu addScaled (also in place), adamw, ema', async (t) => {
  const k = need(t, g);
  if (!k) return;
  const N = 3, R = 17, C = 11, n = N * R * C;
  const x = rnd(n), br = rnd(n), sc = Float32Array.from([0, 1.25, 0.5]);
  const want = new Float32Array(n);
  ref.addScaled(x, br, sc, N, R, C, want);
  const gx = dev(k, x);
  const gout = dev(k, n);
  k.addScaled(gx, dev(k, br), sc, N, R, C, gout);
  close(await k.read(gout), want, 'addScaled');
  k.addScaled(gx, dev(k, br), dev(k, sc), N, R, C, gx);
  close(await k.read(gx), want, 'addScaled in place');

  const m = 1234;
  const p = rnd(m), gr = rnd(m), m1 = rnd(m, 0.1), v1 = Float32Array.from(rnd(m, 0.1), Math.abs);
  const [P, M1, V1] = [p.slice(), m1.slice(), v1.slice()];
  ref.adamw(P, gr, M1, V1, m, 1e-3, 0.9, 0.999, 1e-8, 0.05, 1 - 0.9 ** 3, 1 - 0.999 ** 3);
  const [gp, gm, gv] = [dev(k, p), dev(k, m1, 4), dev(k, v1, 8)];
  k.adamw(gp, dev(k, gr), gm, gv, m, 1e-3, 0.9, 0.999, 1e-8, 0.05, 1 - 0.9 ** 3, 1 - 0.999 ** 3);
  close(await k.read(gp), P, 'adamw p');
  close(await k.read(gm), M1, 'adamw m');
  close(await k.read(gv), V1, 'adamw v');

  const sh = rnd(m), w = rnd(m);
  const Sh = sh.slice();
  ref.ema(Sh, w, m, 0.999);
  const gsh = dev(k, sh);
  k.ema(gsh, dev(k, w), m, 0.999);
  close(await k.read(gsh), Sh, 'ema');

  const N2 = 7, K2 = 1000;
  const labels = Int32Array.from({ length: N2 }, (_, i) => (i * 389) % K2);
  const T = new Float32Array(N2 * K2);
  ref.smoothTargets(labels, N2, K2, 0.1, T);
  const gt = dev(k, N2 * K2);
  k.smoothTargets(labels, N2, K2, 0.1, gt);
  close(await k.read(gt), T, 'smoothTargets');
  assert.throws(() => k.smoothTargets(Int32Array.of(-1), 1, K2, 0, gt), /label -1 out of range/);
});

test('webgpu transpose (batched), scaleRows (in place), rowDot, scale, grnScale', async (t) => {
  const k = need(t, g);
  if (!k) return;
  for (const [B, R, C] of [[1, 49, 37], [5, 4, 3]]) {
    const src = rnd(B * R * C);
    for (const acc of [false, true]) {
      const d0 = rnd(B * R * C);
      const want = d0.slice();
      ref.transpose(src, B, R, C, want, acc);
      const gd = dev(k, d0);
      k.transpose(dev(k, src), B, R, C, gd, acc);
      close(await k.read(gd), want, `transpose ${B}x${R}x${C} acc=${acc}`);
    }
  }
  const R = 23, C = 19;
  const x = rnd(R * C), s = rnd(R), o0 = rnd(R * C);
  for (const acc of [false, true]) {
    const want = o0.slice();
    ref.scaleRows(x, R, C, s, want, acc);
    const go = dev(k, o0);
    k.scaleRows(dev(k, x), R, C, s, go, acc);
    close(await k.read(go), want, `scaleRows acc=${acc}`);
  }
  const inPlace = x.slice();
  ref.scaleRows(inPlace, R, C, s, inPlace, false);
  const gx = dev(k, x);
  k.scaleRows(gx, R, C, dev(k, s), gx, false);
  close(await k.read(gx), inPlace, 'scaleRows in place');

  const a = rnd(R * C), b = rnd(R * C), r0 = rnd(R);
  for (const acc of [false, true]) {
    const want = r0.slice();
    ref.rowDot(a, b, R, C, want, acc);
    const go = dev(k, r0);
    k.rowDot(dev(k, a), dev(k, b), R, C, go, acc);
    close(await k.read(go), want, `rowDot acc=${acc}`);
  }
  const y = rnd(101);
  const Y = y.slice();
  ref.scale(Y, 100, -0.375);
  const gy = dev(k, y);
  k.scale(gy, 100, -0.375);
  close(await k.read(gy), Y, 'scale (n < length)');

  const S = 3;
  const nx = rnd(S * C), gamma = rnd(C);
  const want = new Float32Array(S * C);
  ref.grnScale(nx, S, C, gamma, want);
  const go = dev(k, S * C);
  k.grnScale(dev(k, nx), S, C, dev(k, gamma), go);
  close(await k.read(go), want, 'grnScale');
});

test('webgpu sumSquares, clipByNorm', async (t) => {
  const k = need(t, g);
  if (!k) return;
  for (const n of [1, 1000, 70001]) {
    const x = rnd(n);
    const o0 = Float32Array.of(3.5);
    for (const acc of [false, true]) {
      const want = o0.slice();
      ref.sumSquares(x, n, want, acc);
      const go = dev(k, o0);
      k.sumSquares(dev(k, x), n, go, acc);
      close(await k.read(go), want, `sumSquares ${n} acc=${acc}`);
    }
  }
  const x = rnd(500);
  for (const maxNorm of [0.5, 1e6]) {
    const X = x.slice();
    const ss = new Float32Array(1);
    ref.sumSquares(x, 500, ss, false);
    ref.clipByNorm(X, 500, ss, maxNorm);
    const gx = dev(k, x);
    const gss = dev(k, 1);
    k.sumSquares(gx, 500, gss, false);
    k.clipByNorm(gx, 500, gss, maxNorm);
    close(await k.read(gx), X, `clipByNorm ${maxNorm}`);
  }
});

test('webgpu gatherRows (negative: zeros), scatterRows (negative: skipped)', async (t) => {
  const k = need(t, g);
  if (!k) return;
  const C = 7, rows = 30;
  const src = rnd(rows * C);
  const idx = Int32Array.from({ length: 25 }, () => (rand() < 0.2 ? -1 : randInt(0, rows - 1)));
  const want = rnd(idx.length * C);
  const gd = dev(k, want.slice());
  ref.gatherRows(src, idx, C, want);
  k.gatherRows(dev(k, src), idx, C, gd);
  close(await k.read(gd), want, 'gatherRows');
  // scatter: distinct targets.
  const perm = Int32Array.from({ length: rows }, (_, i) => i).sort(() => rand() - 0.5).subarray(0, 20);
  perm[3] = -1;
  const s = rnd(perm.length * C);
  const d0 = rnd(rows * C);
  const wantS = d0.slice();
  ref.scatterRows(s, perm, C, wantS);
  const gs = dev(k, d0);
  k.scatterRows(dev(k, s), perm, C, gs);
  close(await k.read(gs), wantS, 'scatterRows');
  assert.throws(() => k.gatherRows(dev(k, src), Int32Array.of(30), C, gd), /outside/);
});

test('webgpu fcmaeLoss: target, normalised patches, loss over removed patches, dpred', async (t) => {
  const k = need(t, g);
  if (!k) return;
  for (const norm of [false, true]) {
    const N = 2, H = 12, W = 8, C = 3, p = 4;
    const rows = N * (H / p) * (W / p), P = p * p * C;
    const x = rnd(N * H * W * C);
    const pred = rnd(rows * P);
    const mask = Float32Array.from({ length: rows }, (_, i) => (i % 3 === 0 ? 0 : 1));
    const target = new Float32Array(rows * P), dpred = new Float32Array(rows * P), loss = new Float32Array(1);
    const stats = new Float32Array(rows * 2);
    ref.fcmaeLoss(x, N, H, W, C, p, norm, pred, mask, target, dpred, loss, norm ? stats : null);
    const [gt, gdp, gl, gs] = [dev(k, rows * P), dev(k, rnd(rows * P)), dev(k, 1), dev(k, rows * 2)];
    k.fcmaeLoss(dev(k, x), N, H, W, C, p, norm, dev(k, pred), mask, gt, gdp, gl, norm ? gs : null);
    close(await k.read(gt), target, `target norm=${norm}`);
    close(await k.read(gdp), dpred, `dpred norm=${norm}`);
    close(await k.read(gl), loss, `loss norm=${norm}`);
    if (norm) close(await k.read(gs), stats, 'patchStats');
  }
});
