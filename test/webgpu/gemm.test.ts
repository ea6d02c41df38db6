// WebGPU GEMM against the TypeScript reference: layouts, strides, epilogues, extras, split-K.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReferenceKernels } from '../../src/kernels/reference.js';
import { Act, type GemmExtras } from '../../src/kernels/types.js';
import { close, dev, need, openWebGPU, randInt, rnd } from './helpers.js';

const g = await openWebGPU();
const ref = new ReferenceKernels();

interface Case {
  transA: boolean; transB: boolean; M: number; N: number; K: number;
  padA?: number; padB?: number; padC?: number;
  accumulate?: boolean; bias?: boolean; gelu?: boolean; preact?: boolean; residual?: boolean;
  aScaleRows?: number; aShift?: boolean; sqGroupRows?: number; hostInputs?: boolean;
}

async function check(c: Case, what: string): Promise<void> {
  const k = g.k!;
  const { transA, transB, M, N, K } = c;
  const lda = (transA ? M : K) + (c.padA ?? 0);
  const ldb = (transB ? K : N) + (c.padB ?? 0);
  const ldc = N + (c.padC ?? 0);
  const A = rnd(transA ? K * lda : M * lda);
  const B = rnd(transB ? N * ldb : K * ldb);
  const C0 = rnd(M * ldc);
  const bias = c.bias ? rnd(N) : null;
  const residual = c.residual ? rnd(M * ldc) : null;
  const aScale = c.aScaleRows ? rnd(Math.ceil(M / c.aScaleRows) * K, 2) : null;
  const aShift = c.aScaleRows && c.aShift ? rnd(K) : null;
  const sqSums = c.sqGroupRows ? new Float32Array((M / c.sqGroupRows) * N) : null;
  const act = c.gelu ? Act.Gelu : Act.None;
  const wantC = C0.slice();
  const wantPre = c.preact ? new Float32Array(M * ldc) : null;
  const ex: GemmExtras<Float32Array> = { aScale, aScaleRows: c.aScaleRows ?? 1, aShift, residual, sqSums, sqGroupRows: c.sqGroupRows ?? 1 };
  ref.gemm(transA, transB, M, N, K, A, lda, B, ldb, wantC, ldc, !!c.accumulate, bias, act, wantPre, ex);

  const dA = c.hostInputs ? A : dev(k, A, 5);
  const dB = c.hostInputs ? B : dev(k, B, 7);
  const dC = dev(k, C0, 1);
  const dPre = c.preact ? dev(k, new Float32Array(M * ldc), 9) : null;
  const dSq = sqSums ? dev(k, sqSums.length, 2) : null;
  k.gemm(transA, transB, M, N, K, dA, lda, dB, ldb, dC, ldc, !!c.accumulate, bias && (c.hostInputs ? bias : dev(k, bias)), act, dPre, {
    aScale: aScale && dev(k, aScale), aScaleRows: c.aScaleRows ?? 1, aShift: aShift && dev(k, aShift),
    residual: residual && dev(k, residual, 11), sqSums: dSq, sqGroupRows: c.sqGroupRows ?? 1,
  });
  close(await k.read(dC), wantC, `${what} C`);
  if (wantPre && dPre) {
    // Only the M x N entries are written; compare those.
    const got = await k.read(dPre);
    for (let i = 0; i < M; i++) for (let j = N; j < ldc; j++) got[i * ldc + j] = 0;
    close(got, wantPre, `${what} preact`);
  }
  if (sqSums && dSq) close(await k.read(dSq), sqSums, `${what} sqSums`);
}

test('webgpu gemm: all layouts, awkward sizes, strided views', async (t) => {
  if (!need(t, g)) return;
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      for (const [M, N, K] of [[1, 1, 1], [67, 45, 33], [130, 70, 17], [5, 131, 64], [64, 64, 16]]) {
        await check({ transA, transB, M, N, K, padA: 3, padB: 1, padC: 2 }, `tA=${transA} tB=${transB} ${M}x${N}x${K}`);
      }
    }
  }
});

test('webgpu gemm: epilogues (accumulate, bias, GELU with preact, residual), host inputs', async (t) => {
  if (!need(t, g)) return;
  await check({ transA: false, transB: true, M: 77, N: 50, K: 41, accumulate: true, bias: true }, 'acc+bias');
  await check({ transA: false, transB: false, M: 77, N: 50, K: 41, bias: true, gelu: true, preact: true, padC: 3 }, 'gelu+preact');
  await check({ transA: false, transB: false, M: 70, N: 66, K: 20, gelu: true }, 'gelu');
  await check({ transA: false, transB: true, M: 65, N: 33, K: 19, residual: true, bias: true, padC: 1 }, 'residual');
  await check({ transA: true, transB: false, M: 20, N: 30, K: 40, bias: true, hostInputs: true }, 'host A, B, bias');
});

test('webgpu gemm: aScale per image, aShift, sqSums per group', async (t) => {
  if (!need(t, g)) return;
  await check({ transA: false, transB: true, M: 3 * 29, N: 45, K: 38, aScaleRows: 29 }, 'aScale');
  await check({ transA: false, transB: false, M: 3 * 29, N: 45, K: 38, aScaleRows: 29, aShift: true, bias: true }, 'aScale+aShift');
  await check({ transA: false, transB: true, M: 4 * 25, N: 70, K: 22, bias: true, sqGroupRows: 25, padC: 2 }, 'sqSums');
  await check({ transA: false, transB: true, M: 4 * 25, N: 70, K: 22, gelu: true, preact: true, sqGroupRows: 25, residual: false }, 'sqSums of gelu');
  await check({ transA: false, transB: true, M: 2 * 33, N: 20, K: 9, residual: true, aScaleRows: 33, sqGroupRows: 33 }, 'residual+aScale+sqSums');
});

test('webgpu gemm: weight-gradient form (transA, large K) through split-K', async (t) => {
  if (!need(t, g)) return;
  await check({ transA: true, transB: false, M: 37, N: 29, K: 5000 }, 'split-K');
  await check({ transA: true, transB: false, M: 37, N: 29, K: 9001, accumulate: true, padA: 2, padB: 5 }, 'split-K accumulate');
  await check({ transA: false, transB: true, M: 10, N: 12, K: 4100, bias: true, gelu: true, preact: true }, 'split-K epilogue');
  await check({ transA: true, transB: true, M: 3, N: 5, K: 4096, residual: true }, 'split-K residual');
});

test('webgpu gemm: repeatable bit for bit, A and C in one allocation', async (t) => {
  const k = need(t, g);
  if (!k) return;
  const M = 50, N = 40, K = 6000;
  const A = rnd(K * M), B = rnd(K * N);
  const arena = k.memory.alloc(K * M + M * N + 7);
  const dA = arena.subarray(3, 3 + K * M);
  const dC = arena.subarray(3 + K * M, 3 + K * M + M * N);
  k.write(dA, A);
  const dB = dev(k, B);
  k.gemm(true, false, M, N, K, dA, M, dB, N, dC, N, false, null, Act.None, null);
  const a = await k.read(dC);
  k.gemm(true, false, M, N, K, dA, M, dB, N, dC, N, false, null, Act.None, null);
  const b = await k.read(dC);
  assert.deepEqual(new Uint32Array(a.buffer), new Uint32Array(b.buffer));
  const want = new Float32Array(M * N);
  ref.gemm(true, false, M, N, K, A, M, B, N, want, N, false, null, Act.None, null);
  close(a, want, 'arena');
});

test('webgpu gemm: random shapes', async (t) => {
  if (!need(t, g)) return;
  for (let i = 0; i < 6; i++) {
    const c: Case = {
      transA: randInt(0, 1) === 1, transB: randInt(0, 1) === 1, M: randInt(1, 140), N: randInt(1, 140), K: randInt(1, 90),
      padA: randInt(0, 3), padB: randInt(0, 3), padC: randInt(0, 3), bias: randInt(0, 1) === 1,
    };
    await check(c, JSON.stringify(c));
  }
});

test('webgpu gemm: bad arguments throw', (t) => {
  const k = need(t, g);
  if (!k) return;
  const a = k.memory.alloc(16);
  assert.throws(() => k.gemm(false, false, 4, 4, 4, a, 4, a, 4, new Float32Array(16), 4, false, null, Act.None, null), /must be a webgpu tensor/);
  assert.throws(() => k.gemm(false, false, 4, 4, 5, a, 5, a, 4, a, 4, false, null, Act.None, null), /A has 16 values, needs 20/);
  assert.throws(() => k.gemm(false, false, 4, 4, 4, a, 4, a, 4, a, 4, true, null, Act.Gelu, null), /accumulate and GELU/);
  assert.throws(() => k.gemm(false, false, 4, 4, 4, a, 4, a, 4, a, 4, false, null, Act.None, null, { sqSums: a, sqGroupRows: 3 }), /sqGroupRows/);
});
