// Native kernels against the TypeScript reference, for every kernel and every instruction-set
// path this CPU supports; bit-identical results for any thread count; bad arguments throw.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { NativeKernels, nativeAvailable } from '../src/kernels/native.js';
import { ReferenceKernels } from '../src/kernels/reference.js';
import { COMPILED_OPS, compiledMismatch } from '../src/kernels/ops.js';
import { Act } from '../src/kernels/types.js';
import { assertClose } from './helpers.js';

/** Mean softmax cross-entropy through the kernel (loss in a one-value tensor, gradient scale 1/N). */
function ce(k: { softmaxCrossEntropy(l: Float32Array, t: Float32Array, N: number, K: number, d: Float32Array | null, loss: Float32Array, g: number): void }, logits: Float32Array, t: Float32Array, N: number, K: number, d: Float32Array | null): number {
  const loss = new Float32Array(1);
  k.softmaxCrossEntropy(logits, t, N, K, d, loss, 1 / N);
  return loss[0];
}


assert.ok(nativeAvailable(), 'the native addon must load (build it with npm run build)');
const nk = new NativeKernels();
const ref = new ReferenceKernels();
const ISAS = nk.supportedIsas();
const defaultThreads = nk.threads;
after(() => nk.setThreads(defaultThreads));

// Deterministic random numbers (mulberry32).
let seed = 12345;
function rand(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
function randInt(lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}
function rnd(n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rand() * 2 - 1) * scale;
  return a;
}

/** max |got - want| / max(|want|, tiny), over the whole arrays. */
const close = assertClose;
function sameBits(a: Float32Array, b: Float32Array, what: string): void {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) {
    if (ua[i] !== ub[i]) assert.fail(`${what}: differs at ${i}: ${a[i]} vs ${b[i]}`);
  }
}
/** A Float32Array view at a non-zero offset inside a larger buffer (zero-copy handling). */
function view(src: Float32Array, pad = 3): Float32Array {
  const buf = new Float32Array(src.length + 2 * pad).fill(Number.NaN);
  buf.set(src, pad);
  return buf.subarray(pad, pad + src.length);
}

/** Visible positions of an N x H x W map: the compact row of each position (-1 masked), the positions of the rows. */
interface RowMap { rowOf: Int32Array; idx: Int32Array; S: number }
type MaskKind = 'random' | 'cells' | 'all' | 'single' | 'none';
function rowMap(N: number, H: number, W: number, kind: MaskKind): RowMap {
  const M = N * H * W;
  const keep = new Uint8Array(M);
  if (kind === 'all') keep.fill(1);
  else if (kind === 'single') keep[randInt(0, M - 1)] = 1;
  else if (kind === 'random') for (let i = 0; i < M; i++) keep[i] = rand() < 0.5 ? 1 : 0;
  else if (kind === 'cells') {
    // FCMAE-like: square cells of 2 or 3 positions, each visible with probability 0.4.
    const cs = randInt(2, 3);
    const gh = Math.ceil(H / cs), gw = Math.ceil(W / cs);
    const cell = Array.from({ length: N * gh * gw }, () => (rand() < 0.4 ? 1 : 0));
    for (let n = 0; n < N; n++)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) keep[(n * H + y) * W + x] = cell[(n * gh + Math.floor(y / cs)) * gw + Math.floor(x / cs)];
  }
  const rowOf = new Int32Array(M).fill(-1);
  const idx: number[] = [];
  for (let i = 0; i < M; i++) if (keep[i]) { rowOf[i] = idx.length; idx.push(i); }
  return { rowOf, idx: Int32Array.from(idx), S: idx.length };
}
/** Dense [M, C] map with the rows at their positions and zeros elsewhere. */
function scatter(rows: Float32Array, m: RowMap, M: number, C: number): Float32Array {
  const d = new Float32Array(M * C);
  for (let r = 0; r < m.S; r++) d.set(rows.subarray(r * C, (r + 1) * C), m.idx[r] * C);
  return d;
}
function gather(dense: Float32Array, m: RowMap, C: number): Float32Array {
  const o = new Float32Array(m.S * C);
  for (let r = 0; r < m.S; r++) o.set(dense.subarray(m.idx[r] * C, (m.idx[r] + 1) * C), r * C);
  return o;
}
const ROW_SHAPES: [number, number, number, number, number][] = [
  [2, 9, 11, 37, 7], [1, 5, 4, 16, 3], [2, 14, 14, 40, 7], [1, 7, 7, 33, 7], [1, 13, 9, 17, 3],
  [1, 6, 30, 8, 7], [3, 8, 8, 20, 7], [1, 1, 1, 3, 7], [1, 9, 7, 64, 3], [1, 5, 7, 5, 5], [1, 4, 3, 2, 1],
];
const ROW_MASKS: MaskKind[] = ['random', 'cells', 'all', 'single', 'none'];

interface GemmCase {
  tA: boolean; tB: boolean; M: number; N: number; K: number;
  padA: number; padB: number; padC: number;
  acc: boolean; bias: boolean; act: Act; preact: boolean;
  /** Per-row-group scales of A (rows per group), and a shift with them. */
  aScaleRows?: number; aShift?: boolean;
  /** A separate residual input instead of accumulate. */
  residual?: boolean;
  /** Column sums of squares of C per group of this many rows. */
  sqRows?: number;
}

function runGemm(c: GemmCase, tol: number): void {
  const { tA, tB, M, N, K } = c;
  const lda = (tA ? M : K) + c.padA, ldb = (tB ? K : N) + c.padB, ldc = N + c.padC;
  const A = rnd((tA ? K : M) * lda), B = rnd((tB ? N : K) * ldb);
  const C0 = rnd(M * ldc);
  const bias = c.bias ? rnd(N) : null;
  const C1 = view(C0), C2 = C0.slice();
  const P1 = c.preact ? view(new Float32Array(M * ldc)) : null;
  const P2 = c.preact ? new Float32Array(M * ldc) : null;
  const rows = c.aScaleRows ?? 0;
  const aScale = rows ? rnd(Math.ceil(M / rows) * K) : null;
  const aShift = rows && c.aShift ? rnd(K) : null;
  const R = c.residual ? rnd(M * ldc) : null;
  const sq1 = c.sqRows ? new Float32Array((M / c.sqRows) * N) : null;
  const sq2 = c.sqRows ? new Float32Array((M / c.sqRows) * N) : null;
  nk.gemm(tA, tB, M, N, K, view(A), lda, view(B), ldb, C1, ldc, c.acc, bias, c.act, P1,
    { aScale: aScale && view(aScale), aScaleRows: rows || 1, aShift: aShift && view(aShift), residual: R && view(R), sqSums: sq1, sqGroupRows: c.sqRows });
  ref.gemm(tA, tB, M, N, K, A, lda, B, ldb, C2, ldc, c.acc, bias, c.act, P2, { aScale, aScaleRows: rows || 1, aShift, residual: R, sqSums: sq2, sqGroupRows: c.sqRows });
  if (sq1 && sq2) close(sq1, sq2, tol * 10, `gemm ${JSON.stringify(c)} sums of squares`);
  const what = `gemm ${JSON.stringify(c)}`;
  close(C1.slice(), C2, tol, what);
  if (P1 && P2) close(P1.slice(), P2, tol, `${what} preact`);
}

// A path this CPU lacks is reported as skipped, by name (not silently absent).
for (const isa of ['avx512', 'avx2', 'portable'] as const) {
  if (!ISAS.includes(isa)) test(`native kernels, ${isa}`, { skip: `this CPU (${nk.cpuInfo().brand}) lacks ${isa}` }, () => undefined);
}

for (const isa of ISAS) {
  describe(`native kernels, ${isa}`, () => {
    const use = () => {
      nk.setIsa(isa);
      nk.setThreads(defaultThreads);
    };

    test('isa switch', () => {
      use();
      assert.equal(nk.isa, isa);
    });

    test('gemm: edges, transposes, strides, epilogues', () => {
      use();
      const fixed: GemmCase[] = [
        { tA: false, tB: false, M: 1, N: 1, K: 1, padA: 0, padB: 0, padC: 0, acc: false, bias: false, act: Act.None, preact: false },
        { tA: false, tB: true, M: 37, N: 45, K: 1, padA: 2, padB: 0, padC: 5, acc: true, bias: true, act: Act.None, preact: false },
        { tA: true, tB: false, M: 13, N: 70, K: 29, padA: 1, padB: 3, padC: 0, acc: false, bias: true, act: Act.Gelu, preact: true },
        { tA: true, tB: true, M: 50, N: 17, K: 64, padA: 0, padB: 7, padC: 1, acc: true, bias: false, act: Act.None, preact: false },
        { tA: false, tB: false, M: 25, N: 33, K: 0, padA: 0, padB: 0, padC: 0, acc: true, bias: true, act: Act.None, preact: false },
        { tA: false, tB: false, M: 9, N: 10, K: 0, padA: 0, padB: 0, padC: 0, acc: false, bias: true, act: Act.Gelu, preact: true },
        // several k-blocks, multi-task grid
        { tA: false, tB: true, M: 130, N: 96, K: 700, padA: 0, padB: 0, padC: 0, acc: true, bias: true, act: Act.None, preact: false },
        { tA: false, tB: false, M: 300, N: 160, K: 40, padA: 0, padB: 0, padC: 0, acc: false, bias: true, act: Act.Gelu, preact: true },
        // large outputs: streaming stores, misaligned views (shifted column tiles)
        { tA: false, tB: true, M: 2100, N: 1008, K: 5, padA: 0, padB: 0, padC: 0, acc: false, bias: true, act: Act.Gelu, preact: true },
        { tA: false, tB: false, M: 2100, N: 1024, K: 3, padA: 1, padB: 0, padC: 0, acc: true, bias: true, act: Act.None, preact: false },
        { tA: false, tB: false, M: 1030, N: 2080, K: 2, padA: 0, padB: 0, padC: 16, acc: false, bias: false, act: Act.None, preact: false },
        // few rows, many columns (computed transposed: batch-1 inference, the head)
        { tA: false, tB: true, M: 49, N: 1280, K: 320, padA: 0, padB: 0, padC: 0, acc: false, bias: true, act: Act.Gelu, preact: true },
        { tA: false, tB: true, M: 49, N: 320, K: 1280, padA: 3, padB: 1, padC: 2, acc: true, bias: true, act: Act.None, preact: false },
        { tA: false, tB: true, M: 1, N: 1000, K: 320, padA: 0, padB: 0, padC: 0, acc: false, bias: true, act: Act.None, preact: false },
        { tA: true, tB: false, M: 7, N: 300, K: 33, padA: 1, padB: 2, padC: 0, acc: true, bias: false, act: Act.None, preact: false },
        { tA: false, tB: false, M: 16, N: 64, K: 2500, padA: 0, padB: 0, padC: 0, acc: false, bias: true, act: Act.Gelu, preact: true },
        // wide N (several column blocks)
        { tA: false, tB: true, M: 14, N: 1100, K: 20, padA: 0, padB: 0, padC: 3, acc: false, bias: true, act: Act.Gelu, preact: false },
      ];
      for (const c of fixed) runGemm(c, c.K > 500 ? 1e-4 : 1e-5);
      for (let t = 0; t < 40; t++) {
        const act = rand() < 0.3 ? Act.Gelu : Act.None;
        runGemm({
          tA: rand() < 0.5, tB: rand() < 0.5,
          M: randInt(1, 70), N: randInt(1, 90), K: randInt(1, 100),
          padA: randInt(0, 3) * randInt(0, 1), padB: randInt(0, 5) * randInt(0, 1), padC: randInt(0, 2),
          acc: act === Act.None && rand() < 0.4, bias: rand() < 0.5, act, preact: act === Act.Gelu && rand() < 0.7,
        }, 1e-5);
      }
    });

    test('gemm: per-row-group A scales and shift (GRN folded into the next layer)', () => {
      use();
      const base = { tA: false, padA: 0, padB: 0, padC: 0, bias: true, act: Act.None, preact: false } as const;
      // groups straddling the 12-row tiles, one group, one row per group, several k-blocks,
      // the serial path (small work), the shared-packing path, the split-K path, GELU
      for (const [M, N, K, rows, tB, acc, shift] of [
        [3136 / 4, 40, 160, 49, true, true, true], [98, 320, 1280, 49, true, true, true], [13, 7, 9, 13, false, false, true],
        [30, 33, 17, 1, true, false, false], [600, 80, 700, 196, true, true, true], [9, 11, 4100, 4, true, true, true],
        [50, 64, 64, 25, false, false, false],
      ] as [number, number, number, number, boolean, boolean, boolean][]) {
        runGemm({ ...base, tB, M, N, K, acc, aScaleRows: rows, aShift: shift }, K > 500 ? 1e-4 : 1e-5);
      }
      runGemm({ ...base, tB: true, M: 200, N: 64, K: 40, acc: false, act: Act.Gelu, preact: true, aScaleRows: 50, aShift: true }, 1e-5);
      const a = new Float32Array(16);
      assert.throws(() => nk.gemm(true, false, 2, 2, 2, a, 2, a, 2, a, 2, false, null, Act.None, null, { aScale: a }), /aScale needs A not transposed/);
      assert.throws(() => nk.gemm(false, false, 4, 2, 4, a, 4, a, 2, a, 2, false, null, Act.None, null, { aScale: new Float32Array(4), aScaleRows: 2 }), /aScale/);
    });

    test('gemm: a residual input (C = R + AB), every path', () => {
      use();
      const base = { padA: 0, padB: 0, acc: false, bias: true, preact: false, residual: true } as const;
      for (const [tA, tB, M, N, K, padC, act] of [
        [false, true, 300, 40, 160, 0, Act.None], [false, true, 130, 96, 700, 3, Act.None], [false, false, 5, 7, 9, 0, Act.None],
        [false, true, 49, 1280, 320, 0, Act.None], [true, false, 20, 37, 5000, 1, Act.None], [false, true, 2100, 1008, 5, 0, Act.None],
        [true, true, 50, 17, 64, 1, Act.Gelu],
      ] as [boolean, boolean, number, number, number, number, Act][]) {
        runGemm({ ...base, tA, tB, M, N, K, padC, act, preact: act === Act.Gelu }, K > 500 ? 1e-4 : 1e-5);
      }
      runGemm({ ...base, tA: false, tB: true, M: 98, N: 320, K: 1280, padC: 0, act: Act.None, aScaleRows: 49, aShift: true }, 1e-4);
      const a = new Float32Array(16);
      assert.throws(() => nk.gemm(false, false, 2, 2, 2, a, 2, a, 2, a, 2, true, null, Act.None, null, { residual: a }), /residual and accumulate/);
      assert.throws(() => nk.gemm(false, false, 4, 4, 2, a, 2, a, 4, a, 4, false, null, Act.None, null, { residual: new Float32Array(8) }), /residual/);
    });

    test('gemm: column sums of squares per row group (GRN statistics from the epilogue), every path', () => {
      use();
      const base = { padA: 0, padB: 0, padC: 0, acc: false, bias: true, preact: false } as const;
      for (const [tA, tB, M, N, K, sqRows, act] of [
        [false, true, 6272, 160, 40, 3136, Act.Gelu], [false, true, 196 * 3, 640, 160, 196, Act.Gelu], [false, true, 49 * 2, 1280, 320, 49, Act.Gelu],
        [false, true, 49, 1280, 320, 49, Act.Gelu], [false, false, 24, 64, 16, 12, Act.None], [false, true, 8, 256, 16, 4, Act.Gelu],
        [true, false, 20, 40, 5000, 5, Act.None], [false, true, 300, 40, 160, 100, Act.None], [false, true, 2100, 1008, 5, 700, Act.Gelu],
        [false, true, 64, 64, 700, 1, Act.None],
      ] as [boolean, boolean, number, number, number, number, Act][]) {
        runGemm({ ...base, tA, tB, M, N, K, act, sqRows }, K > 500 ? 1e-4 : 1e-5);
      }
      runGemm({ ...base, tA: false, tB: true, M: 98, N: 40, K: 160, act: Act.None, residual: true, sqRows: 49 }, 1e-5);
      const a = new Float32Array(64);
      assert.throws(() => nk.gemm(false, false, 6, 2, 2, a, 2, a, 2, a, 2, false, null, Act.None, null, { sqSums: a, sqGroupRows: 4 }), /sqGroupRows must divide M/);
      // bit-identical for any thread count
      const M = 3136 * 2, N = 160, K = 40;
      const A = rnd(M * K, 1), B = rnd(N * K, 1);
      const sums = [1, 2, 3].map((t) => {
        nk.setThreads(t);
        const out = new Float32Array(2 * N);
        nk.gemm(false, true, M, N, K, A, K, B, K, new Float32Array(M * N), N, false, null, Act.Gelu, null, { sqSums: out, sqGroupRows: 3136 });
        return out;
      });
      nk.setThreads(defaultThreads);
      sameBits(sums[1], sums[0], 'sums with 2 threads');
      sameBits(sums[2], sums[0], 'sums with 3 threads');
    });

    test('gemm: split-K weight-gradient shapes', () => {
      use();
      for (const [M, N, K] of [[20, 37, 5000], [40, 48, 2100], [3, 5, 9000], [160, 40, 2100]]) {
        runGemm({ tA: true, tB: false, M, N, K, padA: 0, padB: 0, padC: 0, acc: true, bias: false, act: Act.None, preact: false }, 1e-4);
        runGemm({ tA: true, tB: false, M, N, K, padA: 2, padB: 1, padC: 4, acc: false, bias: true, act: Act.Gelu, preact: true }, 1e-4);
      }
      runGemm({ tA: false, tB: true, M: 9, N: 11, K: 4100, padA: 0, padB: 0, padC: 0, acc: false, bias: true, act: Act.None, preact: false }, 1e-4);
    });

    test('gemm: B packed once (packWeights) gives the bits of packing per call, every path and thread count', () => {
      use();
      // [M, N, K, ldb pad, epilogue]: M <= 64 (the transposed path without a pack), tiny work
      // (serial), several k-blocks, N off the panel width, GRN-folded A scales with a residual,
      // sums of squares, a split-K shape (which packs its own chunks and ignores the pack).
      const cases: [number, number, number, number, string][] = [
        [49, 320, 1280, 0, 'gelu'], [49, 1280, 320, 3, 'gelu+pre'], [3, 20, 7, 0, 'bias'], [196, 45, 800, 1, 'none'],
        [98, 80, 320, 0, 'grn'], [784, 96, 64, 2, 'sq'], [9, 11, 4100, 0, 'bias'], [1, 1000, 320, 0, 'bias'],
      ];
      for (const [M, N, K, pad, epi] of cases) {
        const ldb = K + pad;
        const A = rnd(M * K), B = rnd(N * ldb), bias = rnd(N);
        const packed = nk.packWeights(B, ldb, true, N, K);
        assert.equal(packed.N, N);
        assert.ok(packed.bytes >= N * K * 4);
        const extras = (p: typeof packed | null) => epi === 'grn'
          ? { aScale: rnd(2 * K), aScaleRows: M / 2, aShift: rnd(K), residual: rnd(M * N), packedB: p }
          : epi === 'sq' ? { sqSums: new Float32Array(N * 2), sqGroupRows: M / 2, packedB: p } : { packedB: p };
        for (const threads of [1, 2, 3]) {
          nk.setThreads(threads);
          seed = 11;  // the same scales and residual for both calls
          const e1 = extras(null), C1 = new Float32Array(M * N), P1 = new Float32Array(M * N);
          seed = 11;
          const e2 = extras(packed), C2 = new Float32Array(M * N), P2 = new Float32Array(M * N);
          const act = epi.startsWith('gelu') ? Act.Gelu : Act.None;
          const pre = epi === 'gelu+pre';
          nk.gemm(false, true, M, N, K, A, K, B, ldb, C1, N, false, epi === 'none' ? null : bias, act, pre ? P1 : null, e1);
          nk.gemm(false, true, M, N, K, A, K, B, ldb, C2, N, false, epi === 'none' ? null : bias, act, pre ? P2 : null, e2);
          const what = `${M}x${N}x${K} ${epi}, ${threads} thread(s)`;
          sameBits(C2, C1, what);
          if (pre) sameBits(P2, P1, `${what} preact`);
          if (e1.sqSums && e2.sqSums) sameBits(e2.sqSums, e1.sqSums, `${what} sums of squares`);
        }
        nk.setThreads(defaultThreads);
      }
      const B = rnd(6 * 5), packed = nk.packWeights(B, 5, true, 6, 5), a = new Float32Array(64);
      assert.throws(() => nk.gemm(false, true, 2, 6, 4, a, 4, B, 5, a, 6, false, null, Act.None, null, { packedB: packed }), /packedB is for N=6, K=5/);
      assert.throws(() => nk.gemm(false, false, 2, 6, 5, a, 5, a, 6, a, 6, false, null, Act.None, null, { packedB: packed }), /packedB is for/);
      assert.throws(() => nk.packWeights(B, 6, false, 6, 5), /only transposed/);
      assert.throws(() => nk.packWeights(B, 4, true, 6, 5), /ldb must be >= 5/);
      const other = ISAS.find((i) => i !== isa);
      if (other) {
        nk.setIsa(other);
        assert.throws(() => nk.gemm(false, true, 2, 6, 5, a, 5, B, 5, a, 6, false, null, Act.None, null, { packedB: packed }), /packed by other kernels or for another instruction set/);
        use();
      }
    });

    test('gemm: very large B (per-task packing) matches the serial path and sampled dot products', () => {
      use();
      // K x N beyond the shared-packing cap and M x N beyond the split-K limit.
      const M = 512, N = 4112, K = 4100;
      const A = rnd(M * K), B = rnd(N * K), bias = rnd(N);
      const C1 = new Float32Array(M * N), C2 = new Float32Array(M * N);
      nk.setThreads(1);
      nk.gemm(false, true, M, N, K, A, K, B, K, C1, N, false, bias, Act.None, null);
      nk.setThreads(2);
      nk.gemm(false, true, M, N, K, A, K, B, K, C2, N, false, bias, Act.None, null);
      nk.setThreads(defaultThreads);
      sameBits(C1, C2, 'large gemm, 1 vs 2 threads');
      let maxErr = 0, maxRef = 0;
      for (let t = 0; t < 40; t++) {
        const i = randInt(0, M - 1), j = randInt(0, N - 1);
        let s = bias[j];
        for (let k = 0; k < K; k++) s += A[i * K + k] * B[j * K + k];
        maxErr = Math.max(maxErr, Math.abs(C1[i * N + j] - s));
        maxRef = Math.max(maxRef, Math.abs(s));
      }
      assert.ok(maxErr <= 1e-4 * Math.max(maxRef, 1), `sampled error ${maxErr} (scale ${maxRef})`);
    });

    test('colSum', () => {
      use();
      for (const [M, N] of [[1, 1], [7, 37], [1000, 19], [3, 100], [0, 5]]) {
        for (const acc of [false, true]) {
          const x = rnd(M * N), o0 = rnd(N);
          const o1 = view(o0), o2 = o0.slice();
          nk.colSum(view(x), M, N, o1, acc);
          ref.colSum(x, M, N, o2, acc);
          close(o1.slice(), o2, 1e-4, `colSum ${M}x${N} acc=${acc}`);
        }
      }
    });

    test('dwconv forward, input and weight gradients', () => {
      use();
      const shapes = [
        [2, 9, 11, 37, 7], [1, 5, 4, 16, 3], [1, 3, 3, 5, 5], [2, 14, 14, 40, 7], [1, 1, 1, 3, 7],
        [1, 20, 17, 8, 7], [1, 6, 30, 33, 7], [1, 4, 4, 1, 1],
      ];
      for (const [N, H, W, C, K] of shapes) {
        const sz = N * H * W * C;
        const x = rnd(sz), w = rnd(K * K * C), b = rnd(C), dy = rnd(sz);
        for (const useBias of [true, false]) {
          const y1 = view(new Float32Array(sz)), y2 = new Float32Array(sz);
          nk.dwconvForward(view(x), N, H, W, C, K, view(w), useBias ? b : null, y1);
          ref.dwconvForward(x, N, H, W, C, K, w, useBias ? b : null, y2);
          close(y1.slice(), y2, 1e-5, `dwconvForward ${[N, H, W, C, K]} bias=${useBias}`);
        }
        for (const acc of [false, true]) {
          const d0 = rnd(sz);
          const d1 = view(d0), d2 = d0.slice();
          nk.dwconvBackwardInput(view(dy), N, H, W, C, K, w, d1, acc);
          ref.dwconvBackwardInput(dy, N, H, W, C, K, w, d2, acc);
          close(d1.slice(), d2, 1e-5, `dwconvBackwardInput ${[N, H, W, C, K]} acc=${acc}`);
        }
        const dw0 = rnd(K * K * C), db0 = rnd(C);
        const dw1 = view(dw0), dw2 = dw0.slice(), db1 = view(db0), db2 = db0.slice();
        nk.dwconvBackwardWeight(view(dy), view(x), N, H, W, C, K, dw1, db1);
        ref.dwconvBackwardWeight(dy, x, N, H, W, C, K, dw2, db2);
        close(dw1.slice(), dw2, 1e-4, `dwconvBackwardWeight dw ${[N, H, W, C, K]}`);
        close(db1.slice(), db2, 1e-4, `dwconvBackwardWeight db ${[N, H, W, C, K]}`);
        const dw3 = dw0.slice(), dw4 = dw0.slice();
        nk.dwconvBackwardWeight(dy, x, N, H, W, C, K, dw3, null);
        ref.dwconvBackwardWeight(dy, x, N, H, W, C, K, dw4, null);
        close(dw3, dw4, 1e-4, `dwconvBackwardWeight (no bias) ${[N, H, W, C, K]}`);
      }
    });

    test('dwconv on compacted rows (submanifold): forward, input and weight gradients vs the reference', () => {
      use();
      for (const [N, H, W, C, K] of ROW_SHAPES) {
        for (const kind of ROW_MASKS) {
          const m = rowMap(N, H, W, kind);
          const { rowOf, idx, S } = m;
          const what = `${[N, H, W, C, K]} ${kind} S=${S}`;
          const x = rnd(S * C), w = rnd(K * K * C), b = rnd(C), dy = rnd(S * C);
          for (const useBias of [true, false]) {
            const y1 = view(new Float32Array(S * C)), y2 = new Float32Array(S * C);
            nk.dwconvForwardRows(view(x), rowOf, idx, S, N, H, W, C, K, view(w), useBias ? b : null, y1);
            ref.dwconvForwardRows(x, rowOf, idx, S, N, H, W, C, K, w, useBias ? b : null, y2);
            close(y1.slice(), y2, 1e-5, `dwconvForwardRows ${what} bias=${useBias}`);
          }
          for (const acc of [false, true]) {
            const d0 = rnd(S * C);
            const d1 = view(d0), d2 = d0.slice();
            nk.dwconvBackwardInputRows(view(dy), rowOf, idx, S, N, H, W, C, K, w, d1, acc);
            ref.dwconvBackwardInputRows(dy, rowOf, idx, S, N, H, W, C, K, w, d2, acc);
            close(d1.slice(), d2, 1e-5, `dwconvBackwardInputRows ${what} acc=${acc}`);
          }
          const dw0 = rnd(K * K * C), db0 = rnd(C);
          const dw1 = view(dw0), dw2 = dw0.slice(), db1 = view(db0), db2 = db0.slice();
          nk.dwconvBackwardWeightRows(view(dy), view(x), rowOf, idx, S, N, H, W, C, K, dw1, db1);
          ref.dwconvBackwardWeightRows(dy, x, rowOf, idx, S, N, H, W, C, K, dw2, db2);
          close(dw1.slice(), dw2, 1e-4, `dwconvBackwardWeightRows dw ${what}`, 1);
          close(db1.slice(), db2, 1e-4, `dwconvBackwardWeightRows db ${what}`, 1);
          const dw3 = dw0.slice(), dw4 = dw0.slice();
          nk.dwconvBackwardWeightRows(dy, x, rowOf, idx, S, N, H, W, C, K, dw3, null);
          ref.dwconvBackwardWeightRows(dy, x, rowOf, idx, S, N, H, W, C, K, dw4, null);
          close(dw3, dw4, 1e-4, `dwconvBackwardWeightRows (no bias) ${what}`, 1);
        }
      }
    });

    test('dwconv on rows = the dense kernels on the scattered map, gathered', () => {
      use();
      for (const [N, H, W, C, K] of ROW_SHAPES) {
        for (const kind of ROW_MASKS) {
          const m = rowMap(N, H, W, kind);
          const { rowOf, idx, S } = m;
          const M = N * H * W;
          const what = `${[N, H, W, C, K]} ${kind}`;
          const x = rnd(S * C), w = rnd(K * K * C), b = rnd(C), dy = rnd(S * C);
          const xd = scatter(x, m, M, C), dyd = scatter(dy, m, M, C);
          // Forward and input gradient: the same sums (masked taps add exact zeros), bit for bit.
          for (const kk of [ref, nk]) {
            const y = new Float32Array(S * C), yd = new Float32Array(M * C);
            kk.dwconvForwardRows(x, rowOf, idx, S, N, H, W, C, K, w, b, y);
            kk.dwconvForward(xd, N, H, W, C, K, w, b, yd);
            sameBits(y, gather(yd, m, C), `${kk.name} forward rows vs dense ${what}`);
            const dx = new Float32Array(S * C), dxd = new Float32Array(M * C);
            kk.dwconvBackwardInputRows(dy, rowOf, idx, S, N, H, W, C, K, w, dx, false);
            kk.dwconvBackwardInput(dyd, N, H, W, C, K, w, dxd, false);
            sameBits(dx, gather(dxd, m, C), `${kk.name} input gradient rows vs dense ${what}`);
          }
          // Weight gradient: the same terms, summed in another order.
          const dw1 = new Float32Array(K * K * C), db1 = new Float32Array(C);
          const dw2 = new Float32Array(K * K * C), db2 = new Float32Array(C);
          nk.dwconvBackwardWeightRows(dy, x, rowOf, idx, S, N, H, W, C, K, dw1, db1);
          nk.dwconvBackwardWeight(dyd, xd, N, H, W, C, K, dw2, db2);
          close(dw1, dw2, 1e-4, `weight gradient rows vs dense ${what}`, 1);
          close(db1, db2, 1e-4, `bias gradient rows vs dense ${what}`, 1);
        }
      }
    });

    test('dwconv on rows: bit-identical for 1, 2 and 3 threads', () => {
      use();
      for (const [N, H, W, C, K] of [[4, 28, 28, 40, 7], [2, 20, 20, 33, 3], [3, 14, 14, 24, 5]] as const) {
        const m = rowMap(N, H, W, 'cells');
        const { rowOf, idx, S } = m;
        const x = rnd(S * C), w = rnd(K * K * C), b = rnd(C), dy = rnd(S * C);
        const outs: Float32Array[][] = [];
        for (const th of [1, 2, 3]) {
          nk.setThreads(th);
          const y = new Float32Array(S * C), dx = new Float32Array(S * C);
          const dw = new Float32Array(K * K * C), db = new Float32Array(C);
          nk.dwconvForwardRows(x, rowOf, idx, S, N, H, W, C, K, w, b, y);
          nk.dwconvBackwardInputRows(dy, rowOf, idx, S, N, H, W, C, K, w, dx, false);
          nk.dwconvBackwardWeightRows(dy, x, rowOf, idx, S, N, H, W, C, K, dw, db);
          outs.push([y, dx, dw, db]);
        }
        nk.setThreads(defaultThreads);
        for (let t = 1; t < outs.length; t++)
          for (let i = 0; i < outs[0].length; i++) sameBits(outs[t][i], outs[0][i], `rows ${[N, H, W, C, K]} output ${i} with ${t + 1} threads`);
      }
    });

    test('layerNorm forward and backward, C = 1..odd', () => {
      use();
      for (const C of [1, 2, 3, 5, 7, 16, 17, 31, 33, 40, 100]) {
        const M = randInt(1, 40) + (C === 40 ? 600 : 0);
        const x = rnd(M * C, 3);
        for (let i = 0; i < M * C; i++) x[i] += 0.5;
        const g = rnd(C), bt = rnd(C), dy = rnd(M * C);
        const y1 = new Float32Array(M * C), m1 = new Float32Array(M), r1 = new Float32Array(M);
        const y2 = new Float32Array(M * C), m2 = new Float32Array(M), r2 = new Float32Array(M);
        nk.layerNormForward(view(x), M, C, g, bt, 1e-6, y1, m1, r1);
        ref.layerNormForward(x, M, C, g, bt, 1e-6, y2, m2, r2);
        // C = 2: y = +-1 * g + b, with x - mean a difference of two nearby floats (rounding
        // of the float mean alone gives relative errors of a few 1e-5 for close pairs).
        close(y1, y2, C === 2 ? 1e-4 : 1e-5, `layerNormForward y C=${C}`);
        close(m1, m2, 1e-5, `layerNormForward mean C=${C}`);
        close(r1, r2, 1e-5, `layerNormForward rstd C=${C}`);
        for (const acc of [false, true]) {
          const dx0 = rnd(M * C), dg0 = rnd(C), db0 = rnd(C);
          const dx1 = view(dx0), dx2 = dx0.slice(), dg1 = dg0.slice(), dg2 = dg0.slice(), db1 = db0.slice(), db2 = db0.slice();
          nk.layerNormBackward(view(dy), x, m2, r2, g, M, C, dx1, acc, dg1, db1);
          ref.layerNormBackward(dy, x, m2, r2, g, M, C, dx2, acc, dg2, db2);
          // For C <= 2, dx is 0 in exact arithmetic: measure against the scale of rstd * g.
          let scale = 0;
          for (let i = 0; i < M; i++) for (let c = 0; c < C; c++) scale = Math.max(scale, Math.abs(r2[i] * dy[i * C + c] * g[c]));
          close(dx1.slice(), dx2, 1e-5, `layerNormBackward dx C=${C} acc=${acc}`, scale);
          close(dg1, dg2, 1e-4, `layerNormBackward dgamma C=${C}`);
          close(db1, db2, 1e-4, `layerNormBackward dbeta C=${C}`);
        }
      }
    });

    test('GRN forward and backward, unequal segments', () => {
      use();
      const cases: [number[], number][] = [
        [[0, 5, 5, 300, 1000], 37],
        [[0, 49, 98], 40],
        [[0, 1, 19], 1],
        [[0, 600], 17],
        [[0, 7, 20, 21, 300], 64],
      ];
      for (const [offs, C] of cases) {
        const off = new Int32Array(offs);
        const rows = offs[offs.length - 1];
        const S = offs.length - 1;
        const x = rnd(rows * C), dy = rnd(rows * C), g = rnd(C), bt = rnd(C);
        // a channel that is all zero in the last segment: gx == 0 there
        if (C > 3) for (let i = offs[S - 1]; i < rows; i++) x[i * C + 2] = 0;
        const y1 = new Float32Array(rows * C), gx1 = new Float32Array(S * C), nx1 = new Float32Array(S * C);
        const y2 = new Float32Array(rows * C), gx2 = new Float32Array(S * C), nx2 = new Float32Array(S * C);
        nk.grnForward(view(x), off, C, g, bt, 1e-6, y1, gx1, nx1);
        ref.grnForward(x, off, C, g, bt, 1e-6, y2, gx2, nx2);
        const rowsFrom = offs[0] * C;
        close(y1.subarray(rowsFrom), y2.subarray(rowsFrom), 1e-5, `grnForward y ${offs}`);
        close(gx1, gx2, 1e-4, `grnForward gx ${offs}`);
        close(nx1, nx2, 1e-4, `grnForward nx ${offs}`);
        // statistics only (y null): the same gx and nx, bit for bit
        const gx3 = new Float32Array(S * C), nx3 = new Float32Array(S * C);
        nk.grnForward(view(x), off, C, g, bt, 1e-6, null, gx3, nx3);
        assert.deepEqual([gx3, nx3], [gx1, nx1], `grnForward statistics only ${offs}`);
        // given sums of squares (from the GEMM that wrote x): the same statistics and output
        const sums = new Float32Array(S * C);
        for (let sg = 0; sg < S; sg++)
          for (let c = 0; c < C; c++) {
            let t = 0;
            for (let i = offs[sg]; i < offs[sg + 1]; i++) t += x[i * C + c] ** 2;
            sums[sg * C + c] = t;
          }
        const y5 = new Float32Array(rows * C), gx5 = new Float32Array(S * C), nx5 = new Float32Array(S * C);
        nk.grnForward(view(x), off, C, g, bt, 1e-6, y5, gx5, nx5, view(sums));
        close(y5.subarray(rowsFrom), y2.subarray(rowsFrom), 1e-5, `grnForward y from sums ${offs}`);
        close(gx5, gx2, 1e-5, `grnForward gx from sums ${offs}`);
        close(nx5, nx2, 1e-5, `grnForward nx from sums ${offs}`);
        const dg0 = rnd(C), db0 = rnd(C);
        const dx1 = new Float32Array(rows * C), dx2 = new Float32Array(rows * C);
        const dg1 = dg0.slice(), dg2 = dg0.slice(), db1 = db0.slice(), db2 = db0.slice();
        nk.grnBackward(view(dy), x, off, C, g, 1e-6, gx2, nx2, dx1, dg1, db1);
        ref.grnBackward(dy, x, off, C, g, 1e-6, gx2, nx2, dx2, dg2, db2);
        close(dx1.subarray(rowsFrom), dx2.subarray(rowsFrom), 1e-4, `grnBackward dx ${offs}`);
        close(dg1, dg2, 1e-4, `grnBackward dgamma ${offs}`);
        close(db1, db2, 1e-4, `grnBackward dbeta ${offs}`);
        // fused with the GELU and bias of the layer before: dx * gelu'(pre), its column sums
        const pre = rnd(rows * C, 2), bias0 = rnd(C);
        const dx3 = new Float32Array(rows * C), dx4 = new Float32Array(rows * C);
        const bias3 = bias0.slice(), bias4 = bias0.slice();
        nk.grnBackward(view(dy), x, off, C, g, 1e-6, gx2, nx2, dx3, dg0.slice(), db0.slice(), view(pre), bias3);
        ref.grnBackward(dy, x, off, C, g, 1e-6, gx2, nx2, dx4, dg0.slice(), db0.slice(), pre, bias4);
        close(dx3.subarray(rowsFrom), dx4.subarray(rowsFrom), 1e-4, `grnBackward fused dx ${offs}`);
        close(bias3, bias4, 1e-4, `grnBackward fused dbias ${offs}`);
      }
    });

    test('gelu and its gradient', () => {
      use();
      const n = 20011;
      const x = rnd(n, 8);
      x.set([0, -0, 1e-8, -1e-8, 30, -30, 1e4, -1e4, 6, -6, 3, -3, 0.5, -0.5]);
      const y1 = view(new Float32Array(n)), y2 = new Float32Array(n);
      nk.gelu(view(x), y1, n);
      ref.gelu(x, y2, n);
      close(y1.slice(), y2, 1e-6, 'gelu');
      let abs = 0;
      for (let i = 0; i < n; i++) if (Math.abs(x[i]) <= 8) abs = Math.max(abs, Math.abs(y1[i] - y2[i]));
      assert.ok(abs < 2e-6, `gelu absolute error ${abs}`);
      const dy = rnd(n);
      const d1 = new Float32Array(n), d2 = new Float32Array(n);
      nk.geluBackward(dy, x, d1, n);
      ref.geluBackward(dy, x, d2, n);
      close(d1, d2, 1e-5, 'geluBackward');
      // n not a multiple of the vector width (5, 21), and n = 0: exactly n values written
      for (const m of [5, 21, 0]) {
        const ym = new Float32Array(32).fill(7);
        nk.gelu(x, ym, m);
        close(ym.slice(0, m), y2.slice(0, m), 1e-6, `gelu n=${m}`);
        assert.ok(ym.subarray(m).every((v) => v === 7), `gelu n=${m} wrote past n`);
      }
    });

    test('avgPool forward and backward', () => {
      use();
      for (const [N, HW, C] of [[2, 49, 37], [1, 1, 3], [3, 10, 320], [2, 5, 1]]) {
        const x = rnd(N * HW * C), dy = rnd(N * C);
        const y1 = new Float32Array(N * C), y2 = new Float32Array(N * C);
        nk.avgPoolForward(view(x), N, HW, C, y1);
        ref.avgPoolForward(x, N, HW, C, y2);
        close(y1, y2, 1e-5, `avgPoolForward ${[N, HW, C]}`);
        const d1 = rnd(N * HW * C), d2 = new Float32Array(N * HW * C);
        nk.avgPoolBackward(dy, N, HW, C, d1);
        ref.avgPoolBackward(dy, N, HW, C, d2);
        close(d1, d2, 1e-6, `avgPoolBackward ${[N, HW, C]}`);
      }
    });

    test('softmax cross-entropy with soft targets', () => {
      use();
      for (const [N, K] of [[4, 10], [1, 1], [7, 1000], [3, 3]]) {
        const logits = rnd(N * K, 10);
        const t = new Float32Array(N * K);
        for (let i = 0; i < N; i++) {
          // smoothed labels mixed between two classes
          for (let k = 0; k < K; k++) t[i * K + k] = 0.1 / K;
          t[i * K + randInt(0, K - 1)] += 0.6;
          t[i * K + randInt(0, K - 1)] += 0.3;
        }
        const d1 = new Float32Array(N * K), d2 = new Float32Array(N * K);
        const l1 = ce(nk, view(logits), t, N, K, d1);
        const l2 = ce(ref, logits, t, N, K, d2);
        assert.ok(Math.abs(l1 - l2) <= 1e-6 * Math.max(1, Math.abs(l2)), `loss ${l1} vs ${l2}`);
        close(d1, d2, 1e-5, `softmaxCrossEntropy dlogits ${N}x${K}`);
        assert.ok(Math.abs(ce(nk, logits, t, N, K, null) - l2) <= 1e-6 * Math.max(1, Math.abs(l2)));
      }
    });

    test('patchify and unpatchify (floored borders)', () => {
      use();
      for (const [N, H, W, C, P] of [[2, 8, 8, 3, 4], [1, 9, 7, 5, 2], [1, 4, 4, 40, 2], [1, 3, 3, 2, 4], [1, 5, 5, 1, 1]]) {
        const Ho = Math.floor(H / P), Wo = Math.floor(W / P);
        const x = rnd(N * H * W * C), dcols = rnd(N * Ho * Wo * C * P * P);
        const c1 = new Float32Array(N * Ho * Wo * C * P * P), c2 = new Float32Array(c1.length);
        nk.patchify(view(x), N, H, W, C, P, c1);
        ref.patchify(x, N, H, W, C, P, c2);
        sameBits(c1, c2, `patchify ${[N, H, W, C, P]}`);
        const d1 = rnd(N * H * W * C), d2 = new Float32Array(d1.length);
        nk.unpatchify(view(dcols), N, H, W, C, P, d1);
        ref.unpatchify(dcols, N, H, W, C, P, d2);
        sameBits(d1, d2, `unpatchify ${[N, H, W, C, P]}`);
      }
    });

    test('NCHW <-> NHWC', () => {
      use();
      for (const [N, C, H, W] of [[2, 3, 5, 7], [1, 40, 33, 35], [1, 1, 1, 1]]) {
        const x = rnd(N * C * H * W);
        const a1 = new Float32Array(x.length), a2 = new Float32Array(x.length);
        nk.nchwToNhwc(view(x), N, C, H, W, a1);
        ref.nchwToNhwc(x, N, C, H, W, a2);
        sameBits(a1, a2, 'nchwToNhwc');
        const b1 = new Float32Array(x.length), b2 = new Float32Array(x.length);
        nk.nhwcToNchw(a1, N, H, W, C, b1);
        ref.nhwcToNchw(a2, N, H, W, C, b2);
        sameBits(b1, b2, 'nhwcToNchw');
        sameBits(b1, x, 'round trip');
      }
    });

    test('addScaled (also in place)', () => {
      use();
      const [N, R, C] = [3, 17, 37];
      const x = rnd(N * R * C), br = rnd(N * R * C), sc = new Float32Array([0, 1.25, -0.5]);
      const o1 = new Float32Array(x.length), o2 = new Float32Array(x.length);
      nk.addScaled(view(x), view(br), sc, N, R, C, o1);
      ref.addScaled(x, br, sc, N, R, C, o2);
      close(o1, o2, 1e-6, 'addScaled');
      const inPlace = x.slice();
      nk.addScaled(inPlace, br, sc, N, R, C, inPlace);
      close(inPlace, o2, 1e-6, 'addScaled in place');
    });

    test('adamw', () => {
      use();
      const n = 1037;
      const p = rnd(n), g = rnd(n), m = rnd(n, 0.1), v = new Float32Array(n).map(() => rand() * 0.01);
      const [p1, m1, v1] = [view(p), view(m), view(v)];
      const [p2, m2, v2] = [p.slice(), m.slice(), v.slice()];
      const t = 7, b1 = 0.9, b2 = 0.999;
      nk.adamw(p1, view(g), m1, v1, n, 1e-3, b1, b2, 1e-8, 0.05, 1 - b1 ** t, 1 - b2 ** t);
      ref.adamw(p2, g, m2, v2, n, 1e-3, b1, b2, 1e-8, 0.05, 1 - b1 ** t, 1 - b2 ** t);
      close(p1.slice(), p2, 1e-6, 'adamw p');
      close(m1.slice(), m2, 1e-6, 'adamw m');
      close(v1.slice(), v2, 1e-6, 'adamw v');
    });

    test('bit-identical results for 1, 2 and 3 threads', () => {
      use();
      const outs: Float32Array[][] = [];
      const inputs = {
        a: rnd(6000 * 160), b: rnd(6000 * 40), big: rnd(3000 * 64), dy: rnd(2 * 20 * 20 * 40), x: rnd(2 * 20 * 20 * 40),
      };
      const off = new Int32Array([0, 400, 450, 3000]);
      for (const th of [1, 2, 3]) {
        nk.setThreads(th);
        assert.equal(nk.threads, th);
        const r: Float32Array[] = [];
        // weight gradients: split-K (transA) and a non-split shape
        const c1 = new Float32Array(160 * 40);
        nk.gemm(true, false, 160, 40, 6000, inputs.a, 160, inputs.b, 40, c1, 40, false, null, Act.None, null);
        r.push(c1);
        const c2 = new Float32Array(300 * 64);
        nk.gemm(false, true, 300, 64, 64, inputs.big, 64, inputs.big, 64, c2, 64, false, null, Act.Gelu, null);
        r.push(c2);
        const cs = new Float32Array(64);
        nk.colSum(inputs.big, 3000, 64, cs, false);
        r.push(cs);
        const mean = new Float32Array(3000), rstd = new Float32Array(3000), y = new Float32Array(3000 * 64);
        const g = inputs.big.subarray(0, 64), bt = inputs.big.subarray(64, 128);
        nk.layerNormForward(inputs.big, 3000, 64, g, bt, 1e-6, y, mean, rstd);
        const dx = new Float32Array(3000 * 64), dg = new Float32Array(64), db = new Float32Array(64);
        nk.layerNormBackward(y, inputs.big, mean, rstd, g, 3000, 64, dx, false, dg, db);
        r.push(y, dx, dg, db);
        const gy = new Float32Array(3000 * 64), gx = new Float32Array(3 * 64), nx = new Float32Array(3 * 64);
        nk.grnForward(inputs.big, off, 64, g, bt, 1e-6, gy, gx, nx);
        const gdx = new Float32Array(3000 * 64), gdg = new Float32Array(64), gdb = new Float32Array(64);
        nk.grnBackward(y, inputs.big, off, 64, g, 1e-6, gx, nx, gdx, gdg, gdb);
        r.push(gy, gx, nx, gdx, gdg, gdb);
        const dw = new Float32Array(49 * 40), dbias = new Float32Array(40);
        nk.dwconvBackwardWeight(inputs.dy, inputs.x, 2, 20, 20, 40, 7, dw, dbias);
        r.push(dw, dbias);
        outs.push(r);
      }
      for (let t = 1; t < outs.length; t++)
        for (let i = 0; i < outs[0].length; i++) sameBits(outs[t][i], outs[0][i], `output ${i} with ${t + 1} threads`);
      nk.setThreads(defaultThreads);
    });
  });
}

describe('native kernels: argument validation', () => {
  test('bad arguments throw instead of crashing', () => {
    const a = new Float32Array(12), b = new Float32Array(12), c = new Float32Array(12);
    nk.gemm(false, false, 3, 4, 3, a, 3, b, 4, c, 4, false, null, Act.None, null); // fits exactly
    assert.throws(() => nk.gemm(false, false, 4, 4, 3, a, 3, b, 4, c, 4, false, null, Act.None, null), /too short/);
    assert.throws(() => nk.gemm(false, false, -1, 4, 3, a, 3, b, 4, c, 4, false, null, Act.None, null), /M must be an integer >= 0/);
    assert.throws(() => nk.gemm(false, false, 1.5, 4, 3, a, 3, b, 4, c, 4, false, null, Act.None, null), /M must be/);
    assert.throws(() => nk.gemm(false, false, 3, 4, 3, a, 2, b, 4, c, 4, false, null, Act.None, null), /lda/);
    assert.throws(() => nk.gemm(false, false, 3, 4, 3, a, 3, b, 4, c, 4, true, null, Act.Gelu, null), /accumulate/);
    assert.throws(() => nk.gemm(false, false, 3, 4, 3, a, 3, b, 4, c, 4, false, new Float32Array(3), Act.None, null), /bias/);
    assert.throws(() => nk.gemm(false, false, 3, 4, 3, new Float64Array(12) as unknown as Float32Array, 3, b, 4, c, 4, false, null, Act.None, null), /Float32Array/);
    assert.throws(() => nk.gemm(false, false, 3, 4, 3, a, 3, b, 4, c, 4, false, null, 2 as Act, null), /act/);
    assert.throws(() => nk.colSum(a, 5, 3, c, false), /too short/);
    assert.throws(() => nk.dwconvForward(a, 1, 2, 2, 3, 4, new Float32Array(48), null, c), /odd/);
    assert.throws(() => nk.dwconvForward(a, 1, 2, 2, 3, 3, new Float32Array(26), null, c), /weight/);
    {
      // 2x2 map, 3 channels, rows 0 and 1 at positions 0 and 3
      const rowOf = Int32Array.of(0, -1, -1, 1), idx = Int32Array.of(0, 3), w9 = new Float32Array(27), y = new Float32Array(6);
      nk.dwconvForwardRows(a, rowOf, idx, 2, 1, 2, 2, 3, 3, w9, null, y); // fits
      assert.throws(() => nk.dwconvForwardRows(a, rowOf, Int32Array.of(0, 4), 2, 1, 2, 2, 3, 3, w9, null, y), /idx\[1\] = 4 is outside/);
      assert.throws(() => nk.dwconvForwardRows(a, rowOf, Int32Array.of(-1, 3), 2, 1, 2, 2, 3, 3, w9, null, y), /idx\[0\]/);
      assert.throws(() => nk.dwconvForwardRows(a, rowOf, Int32Array.of(0), 2, 1, 2, 2, 3, 3, w9, null, y), /idx is too short/);
      assert.throws(() => nk.dwconvForwardRows(a, rowOf.subarray(0, 3), idx, 2, 1, 2, 2, 3, 3, w9, null, y), /rowOf is too short/);
      assert.throws(() => nk.dwconvForwardRows(a, rowOf, idx, 5, 1, 2, 2, 3, 3, w9, null, y), /too short/);
      assert.throws(() => nk.dwconvForwardRows(a, rowOf, idx, 2, 1, 2, 2, 3, 2, w9, null, y), /odd/);
      assert.throws(() => nk.dwconvForwardRows(a, new Float32Array(4) as unknown as Int32Array, idx, 2, 1, 2, 2, 3, 3, w9, null, y), /rowOf must be an Int32Array/);
      assert.throws(() => nk.dwconvBackwardInputRows(a, rowOf, idx, 2, 1, 2, 2, 3, 3, w9, new Float32Array(5), false), /dx/);
      assert.throws(() => nk.dwconvBackwardWeightRows(a, a, rowOf, Int32Array.of(0, 9), 2, 1, 2, 2, 3, 3, w9, null), /idx\[1\]/);
      // rowOf values outside [0, S) count as masked (no out-of-bounds reads), as in the reference.
      const bad = Int32Array.of(0, 1 << 30, -7, 1), x6 = rnd(6), wr = rnd(27), y1 = new Float32Array(6), y2 = new Float32Array(6);
      nk.dwconvForwardRows(x6, bad, idx, 2, 1, 2, 2, 3, 3, wr, null, y1);
      ref.dwconvForwardRows(x6, rowOf, idx, 2, 1, 2, 2, 3, 3, wr, null, y2);
      close(y1, y2, 1e-6, 'rows with out-of-range rowOf values');
    }
    assert.throws(() => nk.layerNormForward(a, 4, 3, a, a, 1e-6, c, new Float32Array(3), new Float32Array(4)), /mean/);
    assert.throws(() => nk.grnForward(a, new Int32Array([0, 3, 2]), 3, a, a, 1e-6, c, c, c), /non-decreasing/);
    assert.throws(() => nk.grnForward(a, new Int32Array([0, 5]), 3, a, a, 1e-6, c, c, c), /too short/);
    assert.throws(() => nk.grnForward(a, new Float32Array([0, 4]) as unknown as Int32Array, 3, a, a, 1e-6, c, c, c), /Int32Array/);
    assert.throws(() => nk.gelu(a, c, 13), /too short/);
    assert.throws(() => nk.gelu(a, c, Number.NaN), /n must be/);
    assert.throws(() => nk.patchify(a, 1, 2, 2, 3, 0, c), /P must be/);
    assert.throws(() => nk.adamw(a, a, a, a, 12, 1e-3, 0.9, 0.999, 1e-8, 0, 0, 1), /bc1/);
    assert.throws(() => nk.softmaxCrossEntropy(a, b, 3, 5, null, new Float32Array(1), 1 / 3), /too short/);
    assert.throws(() => nk.setIsa('sse9' as 'avx2'), /unknown ISA/);
    assert.throws(() => nk.setThreads(-2), /n must be/);
    assert.throws(() => (nk.gemm as unknown as (...x: unknown[]) => void)(false), /must be|missing/);
  });

  test('the compiled ops are bound from one list that matches the op table', () => {
    // The addon's functions are made by native/ops.h from the parameter types; each declares
    // its signature, and a build whose signatures differ from the table is refused at load.
    const raw = NativeKernels.addonOf(nk) as unknown as { opSignatures: Record<string, string> } & Record<string, (...a: unknown[]) => unknown>;
    assert.equal(compiledMismatch(raw.opSignatures), null);
    assert.deepEqual(Object.keys(raw.opSignatures).sort(), [...COMPILED_OPS, 'crossEntropy'].sort());
    assert.equal(raw.opSignatures.dwconvForward, 'innnnniio');
    assert.match(compiledMismatch({ ...raw.opSignatures, gelu: 'oin' }) ?? '', /gelu takes \(oin\), the op table says \(ion\)/);
    assert.match(compiledMismatch({ ...raw.opSignatures, adamw: undefined as unknown as string }) ?? '', /no op adamw/);
    // Called directly (past the validator), the addon still refuses values of the wrong kind.
    const a = new Float32Array(4);
    assert.throws(() => raw.gelu(a, a, -1), /gelu: argument 2 must be an integer/);
    assert.throws(() => raw.gelu(a, new Int32Array(4), 4), /gelu: argument 1 must be a Float32Array/);
    assert.throws(() => raw.grnForward(a, a, 1, a, a, 1e-6, a, a, a, null), /grnForward: argument 1 must be an Int32Array/);
    assert.throws(() => raw.gelu(a, a, 4, 5), /takes 3 arguments/);
    raw.gelu(Float32Array.of(1, 2, 3, 4), a, 4);
    assert.ok(Math.abs(a[0] - 0.8413447) < 1e-6);
  });
});

describe('native kernels: environment', () => {
  const probe = (env: Record<string, string>) =>
    spawnSync(process.execPath, ['--import', 'tsx', '-e',
      "import('./src/kernels/native.ts').then((m) => { try { const k = new m.NativeKernels(); console.log(k.isa + ' ' + k.threads); } catch (e) { console.log('error: ' + e.message); } })"],
    { encoding: 'utf8', cwd: new URL('..', import.meta.url).pathname, env: { ...process.env, ...env } });

  test('CONVNEXTV2_ISA and CONVNEXTV2_THREADS choose the path and the pool size', () => {
    const last = ISAS[ISAS.length - 1];
    const r = probe({ CONVNEXTV2_ISA: last, CONVNEXTV2_THREADS: '3' });
    assert.equal(r.stdout.trim(), `${last} 3`, r.stderr);
    const bad = probe({ CONVNEXTV2_ISA: 'sse9' });
    assert.match(bad.stdout, /error: .*unknown ISA/, bad.stderr);
  });
});
