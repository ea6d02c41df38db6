/**
 * The WebAssembly kernels: the portable C++ kernel sources compiled for wasm32 with SIMD128
 * (native/wasm/exports.cc, scripts/build-wasm.ts) behind the {@link Kernels} interface.
 * Platform-neutral: give it the compiled module (Node: ./wasm_node.ts reads
 * dist/wasm/convnextv2.wasm; a page: fetch + WebAssembly.compile).
 *
 * Arguments are validated here (sizes against shapes, as the native binding does) and copied
 * into the module's linear memory for the call and back out after it: the arrays of the model
 * are host arrays today. One thread.
 */
import { ConvNextError } from '../errors.js';
import type { Act, GemmExtras, Isa, Kernels } from './types.js';

type Ptr = number;
interface Exports {
  memory: WebAssembly.Memory;
  cnx_malloc(bytes: number): Ptr;
  cnx_free(p: Ptr): void;
  [kernel: string]: unknown;
}

/**
 * One argument of a call: an array (or null) of which the first `need` elements are copied in
 * (`in`), or in and back out (`inout`: every array a kernel writes, so that what it leaves alone,
 * e.g. the gaps of a strided matrix, comes back unchanged).
 */
type Arg = { a: Float32Array | Int32Array | null; need: number; name: string; io: 'in' | 'inout' };

export class WasmKernels implements Kernels {
  readonly name = 'wasm';
  readonly isa: Isa = 'wasm';
  readonly threads = 1;
  private readonly x: Exports;

  constructor(module: WebAssembly.Module) {
    const inst = new WebAssembly.Instance(module, {});
    this.x = inst.exports as unknown as Exports;
    for (const f of ['memory', 'cnx_malloc', 'cnx_free', 'gemm', 'adamw']) {
      if (!(f in this.x)) throw new ConvNextError(`wasm kernels: the module has no export ${f} (not a convnextv2 kernel build)`);
    }
  }

  /** Copies the arguments in, runs `fn` with their addresses (0 for null), copies outputs back. */
  private run<R>(fn: string, args: Arg[], call: (...ptrs: number[]) => R): R {
    for (const g of args) {
      if (g.a === null) continue;
      if (!(g.a instanceof Float32Array) && !(g.a instanceof Int32Array)) throw new ConvNextError(`${fn}: ${g.name} must be a typed array`);
      if (g.a.length < g.need) throw new ConvNextError(`${fn}: ${g.name} has ${g.a.length} elements, needs ${g.need}`);
    }
    const ptrs = args.map((g) => (g.a === null ? 0 : this.x.cnx_malloc(Math.max(4, g.need * 4))));
    try {
      if (ptrs.some((p, i) => args[i].a !== null && p === 0)) throw new ConvNextError(`${fn}: out of WebAssembly memory`);
      const buf = this.x.memory.buffer;
      args.forEach((g, i) => {
        if (g.a !== null) new Uint8Array(buf, ptrs[i], g.need * 4).set(new Uint8Array(g.a.buffer, g.a.byteOffset, g.need * 4));
      });
      const r = call(...ptrs);
      const after = this.x.memory.buffer; // the call may have grown the memory
      args.forEach((g, i) => {
        if (g.a !== null && g.io === 'inout') new Uint8Array(g.a.buffer, g.a.byteOffset, g.need * 4).set(new Uint8Array(after, ptrs[i], g.need * 4));
      });
      return r;
    } finally {
      for (const p of ptrs) if (p) this.x.cnx_free(p);
    }
  }

  private fn(name: string): (...a: number[]) => number {
    return this.x[name] as (...a: number[]) => number;
  }

  private static dims(fn: string, dims: Record<string, number>): void {
    for (const [k, v] of Object.entries(dims)) {
      if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) throw new ConvNextError(`${fn}: ${k} must be an integer in [0, 2^31), got ${v}`);
    }
  }

  gemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number,
    A: Float32Array, lda: number, B: Float32Array, ldb: number, C: Float32Array, ldc: number,
    accumulate: boolean, bias: Float32Array | null, act: Act, preact: Float32Array | null, extras?: GemmExtras,
  ): void {
    WasmKernels.dims('gemm', { M, N, K, lda, ldb, ldc });
    const extent = (rows: number, cols: number, ld: number) => (rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols);
    const [aRows, aCols] = transA ? [K, M] : [M, K];
    const [bRows, bCols] = transB ? [N, K] : [K, N];
    const { aScale = null, aScaleRows = 1, aShift = null, residual = null, sqSums = null, sqGroupRows = 1 } = extras ?? {};
    WasmKernels.dims('gemm', { aScaleRows, sqGroupRows });
    if (aScale && transA) throw new ConvNextError('gemm: aScale needs A not transposed');
    const groups = aScaleRows > 0 ? Math.ceil(M / aScaleRows) : 0;
    const sqRows = Math.max(1, sqGroupRows);
    this.run('gemm', [
      { a: A, need: extent(aRows, aCols, lda), name: 'A', io: 'in' },
      { a: B, need: extent(bRows, bCols, ldb), name: 'B', io: 'in' },
      { a: C, need: extent(M, N, ldc), name: 'C', io: 'inout' },
      { a: bias, need: N, name: 'bias', io: 'in' },
      { a: preact, need: extent(M, N, ldc), name: 'preact', io: 'inout' },
      { a: aScale, need: groups * K, name: 'aScale', io: 'in' },
      { a: aShift, need: K, name: 'aShift', io: 'in' },
      { a: residual, need: extent(M, N, ldc), name: 'residual', io: 'in' },
      { a: sqSums, need: Math.floor(M / sqRows) * N, name: 'sqSums', io: 'inout' },
    ], (pA, pB, pC, pBias, pPre, pScale, pShift, pRes, pSq) => this.fn('gemm')(
      +transA, +transB, M, N, K, pA, lda, pB, ldb, pC, ldc, +accumulate, pBias, act, pPre, pScale, aScaleRows, pShift, pRes, pSq, sqRows));
  }

  colSum(x: Float32Array, M: number, N: number, out: Float32Array, accumulate: boolean): void {
    WasmKernels.dims('colSum', { M, N });
    this.run('colSum', [{ a: x, need: M * N, name: 'x', io: 'in' }, { a: out, need: N, name: 'out', io: 'inout' }],
      (px, po) => this.fn('col_sum')(px, M, N, po, +accumulate));
  }

  dwconvForward(x: Float32Array, N: number, H: number, W: number, C: number, K: number, weight: Float32Array, bias: Float32Array | null, y: Float32Array): void {
    WasmKernels.dims('dwconvForward', { N, H, W, C, K });
    const sz = N * H * W * C;
    this.run('dwconvForward', [
      { a: x, need: sz, name: 'x', io: 'in' }, { a: weight, need: K * K * C, name: 'weight', io: 'in' },
      { a: bias, need: C, name: 'bias', io: 'in' }, { a: y, need: sz, name: 'y', io: 'inout' },
    ], (px, pw, pb, py) => this.fn('dwconv_fwd')(px, N, H, W, C, K, pw, pb, py));
  }

  dwconvBackwardInput(dy: Float32Array, N: number, H: number, W: number, C: number, K: number, weight: Float32Array, dx: Float32Array, accumulate: boolean): void {
    WasmKernels.dims('dwconvBackwardInput', { N, H, W, C, K });
    const sz = N * H * W * C;
    this.run('dwconvBackwardInput', [
      { a: dy, need: sz, name: 'dy', io: 'in' }, { a: weight, need: K * K * C, name: 'weight', io: 'in' }, { a: dx, need: sz, name: 'dx', io: 'inout' },
    ], (pdy, pw, pdx) => this.fn('dwconv_bwd_in')(pdy, N, H, W, C, K, pw, pdx, +accumulate));
  }

  dwconvBackwardWeight(dy: Float32Array, x: Float32Array, N: number, H: number, W: number, C: number, K: number, dweight: Float32Array, dbias: Float32Array | null): void {
    WasmKernels.dims('dwconvBackwardWeight', { N, H, W, C, K });
    const sz = N * H * W * C;
    this.run('dwconvBackwardWeight', [
      { a: dy, need: sz, name: 'dy', io: 'in' }, { a: x, need: sz, name: 'x', io: 'in' },
      { a: dweight, need: K * K * C, name: 'dweight', io: 'inout' }, { a: dbias, need: C, name: 'dbias', io: 'inout' },
    ], (pdy, px, pdw, pdb) => this.fn('dwconv_bwd_w')(pdy, px, N, H, W, C, K, pdw, pdb));
  }

  private rowsArgs(fn: string, rowOf: Int32Array, idx: Int32Array, S: number, N: number, H: number, W: number, C: number, K: number): Arg[] {
    WasmKernels.dims(fn, { S, N, H, W, C, K });
    if (!(rowOf instanceof Int32Array) || !(idx instanceof Int32Array)) throw new ConvNextError(`${fn}: rowOf and idx must be Int32Arrays`);
    for (let r = 0; r < S; r++) {
      const d = idx[r];
      if (!(d >= 0 && d < N * H * W) || rowOf[d] !== r) throw new ConvNextError(`${fn}: idx and rowOf disagree at row ${r}`);
    }
    return [{ a: rowOf, need: N * H * W, name: 'rowOf', io: 'in' }, { a: idx, need: S, name: 'idx', io: 'in' }];
  }

  dwconvForwardRows(x: Float32Array, rowOf: Int32Array, idx: Int32Array, S: number, N: number, H: number, W: number, C: number, K: number,
    weight: Float32Array, bias: Float32Array | null, y: Float32Array): void {
    const ri = this.rowsArgs('dwconvForwardRows', rowOf, idx, S, N, H, W, C, K);
    this.run('dwconvForwardRows', [
      { a: x, need: S * C, name: 'x', io: 'in' }, ...ri, { a: weight, need: K * K * C, name: 'weight', io: 'in' },
      { a: bias, need: C, name: 'bias', io: 'in' }, { a: y, need: S * C, name: 'y', io: 'inout' },
    ], (px, pr, pi, pw, pb, py) => this.fn('dwconv_rows_fwd')(px, pr, pi, S, N, H, W, C, K, pw, pb, py));
  }

  dwconvBackwardInputRows(dy: Float32Array, rowOf: Int32Array, idx: Int32Array, S: number, N: number, H: number, W: number, C: number, K: number,
    weight: Float32Array, dx: Float32Array, accumulate: boolean): void {
    const ri = this.rowsArgs('dwconvBackwardInputRows', rowOf, idx, S, N, H, W, C, K);
    this.run('dwconvBackwardInputRows', [
      { a: dy, need: S * C, name: 'dy', io: 'in' }, ...ri, { a: weight, need: K * K * C, name: 'weight', io: 'in' }, { a: dx, need: S * C, name: 'dx', io: 'inout' },
    ], (pdy, pr, pi, pw, pdx) => this.fn('dwconv_rows_bwd_in')(pdy, pr, pi, S, N, H, W, C, K, pw, pdx, +accumulate));
  }

  dwconvBackwardWeightRows(dy: Float32Array, x: Float32Array, rowOf: Int32Array, idx: Int32Array, S: number, N: number, H: number, W: number, C: number, K: number,
    dweight: Float32Array, dbias: Float32Array | null): void {
    const ri = this.rowsArgs('dwconvBackwardWeightRows', rowOf, idx, S, N, H, W, C, K);
    this.run('dwconvBackwardWeightRows', [
      { a: dy, need: S * C, name: 'dy', io: 'in' }, { a: x, need: S * C, name: 'x', io: 'in' }, ...ri,
      { a: dweight, need: K * K * C, name: 'dweight', io: 'inout' }, { a: dbias, need: C, name: 'dbias', io: 'inout' },
    ], (pdy, px, pr, pi, pdw, pdb) => this.fn('dwconv_rows_bwd_w')(pdy, px, pr, pi, S, N, H, W, C, K, pdw, pdb));
  }

  layerNormForward(x: Float32Array, M: number, C: number, gamma: Float32Array, beta: Float32Array, eps: number, y: Float32Array, mean: Float32Array, rstd: Float32Array): void {
    WasmKernels.dims('layerNormForward', { M, C });
    this.run('layerNormForward', [
      { a: x, need: M * C, name: 'x', io: 'in' }, { a: gamma, need: C, name: 'gamma', io: 'in' }, { a: beta, need: C, name: 'beta', io: 'in' },
      { a: y, need: M * C, name: 'y', io: 'inout' }, { a: mean, need: M, name: 'mean', io: 'inout' }, { a: rstd, need: M, name: 'rstd', io: 'inout' },
    ], (px, pg, pb, py, pm, pr) => this.fn('ln_fwd')(px, M, C, pg, pb, eps, py, pm, pr));
  }

  layerNormBackward(dy: Float32Array, x: Float32Array, mean: Float32Array, rstd: Float32Array, gamma: Float32Array, M: number, C: number,
    dx: Float32Array, accumulate: boolean, dgamma: Float32Array, dbeta: Float32Array): void {
    WasmKernels.dims('layerNormBackward', { M, C });
    this.run('layerNormBackward', [
      { a: dy, need: M * C, name: 'dy', io: 'in' }, { a: x, need: M * C, name: 'x', io: 'in' }, { a: mean, need: M, name: 'mean', io: 'in' },
      { a: rstd, need: M, name: 'rstd', io: 'in' }, { a: gamma, need: C, name: 'gamma', io: 'in' }, { a: dx, need: M * C, name: 'dx', io: 'inout' },
      { a: dgamma, need: C, name: 'dgamma', io: 'inout' }, { a: dbeta, need: C, name: 'dbeta', io: 'inout' },
    ], (pdy, px, pm, pr, pg, pdx, pdg, pdb) => this.fn('ln_bwd')(pdy, px, pm, pr, pg, M, C, pdx, +accumulate, pdg, pdb));
  }

  private segments(fn: string, offsets: Int32Array, C: number): { S: number; rows: number } {
    WasmKernels.dims(fn, { C });
    if (!(offsets instanceof Int32Array) || offsets.length < 1) throw new ConvNextError(`${fn}: offsets must be a non-empty Int32Array`);
    for (let i = 1; i < offsets.length; i++) if (!(offsets[i] >= offsets[i - 1])) throw new ConvNextError(`${fn}: offsets must not decrease`);
    if (offsets[0] !== 0) throw new ConvNextError(`${fn}: offsets must start at 0`);
    return { S: offsets.length - 1, rows: offsets[offsets.length - 1] };
  }

  grnForward(x: Float32Array, offsets: Int32Array, C: number, gamma: Float32Array, beta: Float32Array, eps: number, y: Float32Array | null,
    gx: Float32Array, nx: Float32Array, sqSums: Float32Array | null = null): void {
    const { S, rows } = this.segments('grnForward', offsets, C);
    this.run('grnForward', [
      { a: x, need: rows * C, name: 'x', io: 'in' }, { a: offsets, need: S + 1, name: 'offsets', io: 'in' },
      { a: gamma, need: C, name: 'gamma', io: 'in' }, { a: beta, need: C, name: 'beta', io: 'in' }, { a: y, need: rows * C, name: 'y', io: 'inout' },
      { a: gx, need: S * C, name: 'gx', io: 'inout' }, { a: nx, need: S * C, name: 'nx', io: 'inout' }, { a: sqSums, need: S * C, name: 'sqSums', io: 'in' },
    ], (px, po, pg, pb, py, pgx, pnx, psq) => this.fn('grn_fwd')(px, po, S, C, pg, pb, eps, py, pgx, pnx, psq));
  }

  grnBackward(dy: Float32Array, x: Float32Array, offsets: Int32Array, C: number, gamma: Float32Array, eps: number, gx: Float32Array, nx: Float32Array,
    dx: Float32Array, dgamma: Float32Array, dbeta: Float32Array, geluPre: Float32Array | null = null, dbias: Float32Array | null = null): void {
    const { S, rows } = this.segments('grnBackward', offsets, C);
    this.run('grnBackward', [
      { a: dy, need: rows * C, name: 'dy', io: 'in' }, { a: x, need: rows * C, name: 'x', io: 'in' }, { a: offsets, need: S + 1, name: 'offsets', io: 'in' },
      { a: gamma, need: C, name: 'gamma', io: 'in' }, { a: gx, need: S * C, name: 'gx', io: 'in' }, { a: nx, need: S * C, name: 'nx', io: 'in' },
      { a: dx, need: rows * C, name: 'dx', io: 'inout' }, { a: dgamma, need: C, name: 'dgamma', io: 'inout' }, { a: dbeta, need: C, name: 'dbeta', io: 'inout' },
      { a: geluPre, need: rows * C, name: 'geluPre', io: 'in' }, { a: dbias, need: C, name: 'dbias', io: 'inout' },
    ], (pdy, px, po, pg, pgx, pnx, pdx, pdg, pdb, ppre, pdbias) =>
      this.fn('grn_bwd')(pdy, px, po, S, C, pg, eps, pgx, pnx, pdx, pdg, pdb, ppre, pdbias));
  }

  gelu(x: Float32Array, y: Float32Array, n: number): void {
    WasmKernels.dims('gelu', { n });
    this.run('gelu', [{ a: x, need: n, name: 'x', io: 'in' }, { a: y, need: n, name: 'y', io: 'inout' }], (px, py) => this.fn('gelu')(px, py, n));
  }

  geluBackward(dy: Float32Array, x: Float32Array, dx: Float32Array, n: number): void {
    WasmKernels.dims('geluBackward', { n });
    this.run('geluBackward', [{ a: dy, need: n, name: 'dy', io: 'in' }, { a: x, need: n, name: 'x', io: 'in' }, { a: dx, need: n, name: 'dx', io: 'inout' }],
      (pdy, px, pdx) => this.fn('gelu_bwd')(pdy, px, pdx, n));
  }

  avgPoolForward(x: Float32Array, N: number, HW: number, C: number, y: Float32Array): void {
    WasmKernels.dims('avgPoolForward', { N, HW, C });
    this.run('avgPoolForward', [{ a: x, need: N * HW * C, name: 'x', io: 'in' }, { a: y, need: N * C, name: 'y', io: 'inout' }],
      (px, py) => this.fn('avgpool_fwd')(px, N, HW, C, py));
  }

  avgPoolBackward(dy: Float32Array, N: number, HW: number, C: number, dx: Float32Array): void {
    WasmKernels.dims('avgPoolBackward', { N, HW, C });
    this.run('avgPoolBackward', [{ a: dy, need: N * C, name: 'dy', io: 'in' }, { a: dx, need: N * HW * C, name: 'dx', io: 'inout' }],
      (pdy, pdx) => this.fn('avgpool_bwd')(pdy, N, HW, C, pdx));
  }

  softmaxCrossEntropy(logits: Float32Array, targets: Float32Array, N: number, K: number, dlogits: Float32Array | null): number {
    WasmKernels.dims('softmaxCrossEntropy', { N, K });
    return this.run('softmaxCrossEntropy', [
      { a: logits, need: N * K, name: 'logits', io: 'in' }, { a: targets, need: N * K, name: 'targets', io: 'in' }, { a: dlogits, need: N * K, name: 'dlogits', io: 'inout' },
    ], (pl, pt, pd) => this.fn('softmax_ce')(pl, pt, N, K, pd));
  }

  patchify(x: Float32Array, N: number, H: number, W: number, C: number, P: number, cols: Float32Array): void {
    WasmKernels.dims('patchify', { N, H, W, C, P });
    if (P < 1 || H % P || W % P) throw new ConvNextError(`patchify: ${H}x${W} is not a multiple of the patch ${P}`);
    this.run('patchify', [{ a: x, need: N * H * W * C, name: 'x', io: 'in' }, { a: cols, need: N * H * W * C, name: 'cols', io: 'inout' }],
      (px, pc) => this.fn('patchify')(px, N, H, W, C, P, pc));
  }

  unpatchify(dcols: Float32Array, N: number, H: number, W: number, C: number, P: number, dx: Float32Array): void {
    WasmKernels.dims('unpatchify', { N, H, W, C, P });
    if (P < 1 || H % P || W % P) throw new ConvNextError(`unpatchify: ${H}x${W} is not a multiple of the patch ${P}`);
    this.run('unpatchify', [{ a: dcols, need: N * H * W * C, name: 'dcols', io: 'in' }, { a: dx, need: N * H * W * C, name: 'dx', io: 'inout' }],
      (pc, pdx) => this.fn('unpatchify')(pc, N, H, W, C, P, pdx));
  }

  nchwToNhwc(src: Float32Array, N: number, C: number, H: number, W: number, dst: Float32Array): void {
    WasmKernels.dims('nchwToNhwc', { N, C, H, W });
    const n = N * C * H * W;
    this.run('nchwToNhwc', [{ a: src, need: n, name: 'src', io: 'in' }, { a: dst, need: n, name: 'dst', io: 'inout' }], (ps, pd) => this.fn('nchw_to_nhwc')(ps, N, C, H, W, pd));
  }

  nhwcToNchw(src: Float32Array, N: number, H: number, W: number, C: number, dst: Float32Array): void {
    WasmKernels.dims('nhwcToNchw', { N, C, H, W });
    const n = N * C * H * W;
    this.run('nhwcToNchw', [{ a: src, need: n, name: 'src', io: 'in' }, { a: dst, need: n, name: 'dst', io: 'inout' }], (ps, pd) => this.fn('nhwc_to_nchw')(ps, N, H, W, C, pd));
  }

  addScaled(x: Float32Array, branch: Float32Array, scale: Float32Array, N: number, rowsPerSample: number, C: number, out: Float32Array): void {
    WasmKernels.dims('addScaled', { N, rowsPerSample, C });
    const sz = N * rowsPerSample * C;
    this.run('addScaled', [
      { a: x, need: sz, name: 'x', io: 'in' }, { a: branch, need: sz, name: 'branch', io: 'in' }, { a: scale, need: N, name: 'scale', io: 'in' },
      { a: out, need: sz, name: 'out', io: 'inout' },
    ], (px, pb, ps, po) => this.fn('add_scaled')(px, pb, ps, N, rowsPerSample, C, po));
  }

  adamw(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, n: number, lr: number, beta1: number, beta2: number, eps: number,
    weightDecay: number, bc1: number, bc2: number): void {
    WasmKernels.dims('adamw', { n });
    this.run('adamw', [
      { a: p, need: n, name: 'p', io: 'inout' }, { a: g, need: n, name: 'g', io: 'in' }, { a: m, need: n, name: 'm', io: 'inout' }, { a: v, need: n, name: 'v', io: 'inout' },
    ], (pp, pg, pm, pv) => this.fn('adamw')(pp, pg, pm, pv, n, lr, beta1, beta2, eps, weightDecay, bc1, bc2));
  }
}
