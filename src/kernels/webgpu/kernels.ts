/// <reference types="@webgpu/types" />
/**
 * The WebGPU backend: every kernel of the Kernels interface as WGSL compute shaders
 * (./wgsl/*). Tensors are GpuTensors (ranges of GPUBuffers, from `memory`); host
 * Float32Arrays and Int32Array index arguments are accepted as inputs and uploaded per call,
 * index tables made by `indexTable` (GpuIndex) are uploaded once; outputs must be GpuTensors. A kernel call enqueues its work and returns (one command
 * buffer per call, submitted in program order); `read` is the only wait. Every float
 * reduction runs in a fixed order (sequential loops and fixed trees, no float atomics), so
 * results are repeatable on one device.
 */
import { ConvNextError } from '../../errors.js';
import { Act, type Buf, type Capabilities, type DeviceIndex, type GemmExtras, type Idx, idxValues, type Isa, type Kernels } from '../types.js';
import { type Call, GpuRuntime } from './runtime.js';
import { BufferUsage, GpuMemory, GpuTensor, MAP_MODE_READ } from './tensor.js';
import { dwconvK, dwconvWeightPartialK } from './wgsl/dwconv.js';
import { gemmSplitReduce, gemmSqSums, gemmTiled, TILE_K, TILE_M, TILE_N } from './wgsl/gemm.js';
import {
  addScaledK, adamwK, avgPoolBackwardK, clipByNormK, copyK, emaK, erfK, fillK, gatherRowsK, geluBackwardK, geluK, grnScaleK,
  fcmaeLossK, nchwToNhwcK, nhwcToNchwK, patchifyK, rowDotK, scaleK, scaleRowsK, scatterRowsK, softmaxCrossEntropyK, sumPartsK,
  smoothTargetsK, sumSquaresPartialK, transposeK, unpatchifyK,
} from './wgsl/misc.js';
import { checkLabels } from '../host.js';
import {
  grnApplyK, grnBackwardDxK, grnBackwardParamsK, grnBackwardStatsK, grnStatsK, layerNormBackwardK, layerNormForwardK,
} from './wgsl/norm.js';
import { chunkReduce, chunkTable, colPartial } from './wgsl/reduce.js';

/** A bound argument: a whole buffer and the element offset of the tensor in it. */
interface Arg {
  buf: GPUBuffer;
  off: number;
}

/** Split K into chunks when the output has fewer tiles than this and K is at least SPLIT_MIN_K. */
const SPLIT_MAX_TILES = 64;
const SPLIT_MIN_K = 4096;
const SPLIT_MAX = 256;
const SPLIT_FLOATS = 1 << 23;

const flag = (b: boolean): number => (b ? 1 : 0);

export interface WebGPUKernelsInit {
  device: GPUDevice;
  /** The adapter's words for itself (Capabilities.description). */
  description: string;
  /** A CPU rasteriser (llvmpipe, SwiftShader), not a GPU: correct, slow. */
  software?: boolean;
  /** Destroy the device with the kernels (it was created for them). */
  ownsDevice: boolean;
  /** Whatever must stay referenced while the device lives (dawn.node's GPU object). */
  keepAlive?: unknown;
}

/**
 * An index table uploaded once (Kernels.indexTable): a buffer of this device, the host copy the
 * checks read, and the chunk tables GRN's reductions derive from it (made at first use).
 */
export class GpuIndex implements DeviceIndex {
  readonly device = 'webgpu';
  /** The rowOf table this idx table was checked against (the rows kernels' check runs once per pair). */
  rowsChecked: { rowOf: GpuIndex; positions: number } | null = null;
  /** GRN's chunking of these offsets (chunkTable), uploaded once. */
  chunks: { chunks: GpuTensor; segChunks: GpuTensor; count: number } | null = null;
  constructor(readonly tensor: GpuTensor, readonly values: Int32Array) {}
  get length(): number {
    return this.values.length;
  }
}

export class WebGPUKernels implements Kernels {
  readonly name = 'webgpu';
  readonly isa: Isa = 'webgpu';
  readonly threads = 1;
  readonly memory: GpuMemory;
  readonly device: GPUDevice;
  /** The adapter is a CPU rasteriser (llvmpipe, SwiftShader), not a GPU. */
  readonly software: boolean;
  private readonly rt: GpuRuntime;
  private readonly description: string;
  private readonly ownsDevice: boolean;
  private keepAlive: unknown;
  private lost: string | null = null;
  private destroyed = false;

  constructor(init: WebGPUKernelsInit) {
    this.device = init.device;
    this.description = init.description;
    this.software = init.software ?? false;
    this.ownsDevice = init.ownsDevice;
    this.keepAlive = init.keepAlive;
    this.rt = new GpuRuntime(this.device);
    const maxBytes = Math.min(this.device.limits.maxStorageBufferBindingSize, this.device.limits.maxBufferSize);
    // A buffer is destroyed only once the commands recorded before are submitted.
    this.memory = new GpuMemory(this.device, maxBytes, () => this.rt.flush());
    void this.device.lost.then((info) => {
      if (!this.destroyed) this.lost = info.message || info.reason || 'lost';
    });
  }

  capabilities(): Capabilities {
    return { device: true, sparseRows: true, f16: this.device.features.has('shader-f16'), software: this.software, description: this.description };
  }

  /** Frees every tensor `memory` gave, the scratch buffers, and the device when it was created here. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.memory.destroyAll();
    this.rt.destroy();
    if (this.ownsDevice) this.device.destroy();
    this.keepAlive = null;
  }

  // ---- index tables ----

  indexTable(values: Int32Array): GpuIndex {
    this.alive('indexTable');
    if (!(values instanceof Int32Array)) throw new ConvNextError('indexTable: values must be an Int32Array');
    return new GpuIndex(this.uploadInts(values), values.slice());
  }

  /** A new buffer holding `values`: no recorded command reads it, so the write cannot overtake one. */
  private uploadInts(values: Int32Array): GpuTensor {
    const t = this.memory.alloc(Math.max(values.length, 1));
    if (values.length > 0) this.device.queue.writeBuffer(t.buffer, 0, values.buffer, values.byteOffset, values.byteLength);
    return t;
  }

  freeIndexTable(t: Idx): void {
    if (!(t instanceof GpuIndex)) return;
    this.memory.free(t.tensor);
    if (t.chunks) {
      this.memory.free(t.chunks.chunks);
      this.memory.free(t.chunks.segChunks);
      t.chunks = null;
    }
  }

  /** A table of this device, checked alive. */
  private table(fn: string, name: string, t: GpuIndex): GpuIndex {
    if (!this.memory.owns(t.tensor.buffer)) throw new ConvNextError(`${fn}: ${name} is an index table that has been freed or belongs to another device`);
    return t;
  }

  // ---- arguments ----

  private alive(fn: string): void {
    if (this.destroyed) throw new ConvNextError(`webgpu ${fn}: the backend has been destroyed`);
    if (this.lost !== null) throw new ConvNextError(`webgpu ${fn}: the device was lost (${this.lost})`);
  }

  private begin(fn: string): Call {
    this.alive(fn);
    return this.rt.call();
  }

  private static dims(fn: string, d: Record<string, number>): void {
    for (const [k, v] of Object.entries(d)) {
      if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) throw new ConvNextError(`${fn}: ${k} must be an integer in [0, 2^31), got ${v}`);
    }
  }

  private static length(fn: string, name: string, b: Buf | Int32Array, need: number): void {
    if (b.length < need) throw new ConvNextError(`${fn}: ${name} has ${b.length} values, needs ${need}`);
  }

  private tensor(fn: string, name: string, b: Buf): GpuTensor {
    if (b instanceof GpuTensor) {
      if (!this.memory.owns(b.buffer)) throw new ConvNextError(`${fn}: ${name} has been freed or belongs to another device`);
      return b;
    }
    if (b instanceof Float32Array) throw new ConvNextError(`${fn}: ${name} is an output and must be a webgpu tensor (memory.alloc), not a host Float32Array`);
    throw new ConvNextError(`${fn}: ${name} is a ${(b as { device?: string }).device ?? 'foreign'} tensor, not a webgpu one`);
  }

  /** An input: a webgpu tensor as it is, a host array uploaded for this call; null binds a dummy. */
  private input(call: Call, fn: string, name: string, b: Buf | null | undefined, need: number): Arg {
    if (b === null || b === undefined) return { buf: this.rt.dummy, off: 0 };
    WebGPUKernels.length(fn, name, b, need);
    if (b instanceof Float32Array) return { buf: call.upload(b.subarray(0, need)), off: 0 };
    const t = this.tensor(fn, name, b);
    return { buf: t.buffer, off: t.offset };
  }

  /** An output (or input-output): must be a webgpu tensor. */
  private output(fn: string, name: string, b: Buf, need: number): Arg {
    const t = this.tensor(fn, name, b);
    WebGPUKernels.length(fn, name, t, need);
    return { buf: t.buffer, off: t.offset };
  }

  /** An index argument: a table as it is, a host array uploaded for this call. */
  private ints(call: Call, fn: string, name: string, a: Idx, need: number): GPUBuffer {
    if (a instanceof GpuIndex) {
      WebGPUKernels.length(fn, name, a.values, need);
      return this.table(fn, name, a).tensor.buffer;
    }
    if (!(a instanceof Int32Array)) throw new ConvNextError(`${fn}: ${name} must be an Int32Array or an index table of this device`);
    WebGPUKernels.length(fn, name, a, need);
    return call.upload(a.subarray(0, Math.max(need, 0)));
  }

  private static segments(fn: string, idx: Idx, C: number): { S: number; first: number; last: number } {
    WebGPUKernels.dims(fn, { C });
    const offsets = idxValues(idx);
    if (!(offsets instanceof Int32Array) || offsets.length < 1) throw new ConvNextError(`${fn}: offsets must be a non-empty Int32Array`);
    if (offsets[0] < 0) throw new ConvNextError(`${fn}: offsets must not be negative`);
    for (let i = 1; i < offsets.length; i++) if (!(offsets[i] >= offsets[i - 1])) throw new ConvNextError(`${fn}: offsets must not decrease`);
    return { S: offsets.length - 1, first: offsets[0], last: offsets[offsets.length - 1] };
  }

  // ---- reductions ----

  /**
   * Per-segment column sums by colPartial (MODE 0..3) over rows [offsets[s], offsets[s+1]):
   * the partial sums and the segments' chunk ranges, for `reduce`.
   */
  private partials(call: Call, mode: 0 | 1 | 2 | 3, C: number, offsets: ArrayLike<number> | GpuIndex,
    a: { x: Arg; dy?: Arg; mean?: Arg; rstd?: Arg }): { part: GPUBuffer; segChunks: GPUBuffer; J: number } {
    const t = this.chunkBuffers(call, offsets);
    const J = mode >= 2 ? 2 * C : C;
    const part = call.scratch(t.count * J);
    const d = this.rt.dummy;
    call.dispatch(colPartial,
      { nChunks: t.count, C, oX: a.x.off, oDy: a.dy?.off ?? 0, oMean: a.mean?.off ?? 0, oRstd: a.rstd?.off ?? 0 },
      { x: a.x.buf, dy: a.dy?.buf ?? d, mean: a.mean?.buf ?? d, rstd: a.rstd?.buf ?? d, chunks: t.chunks, part },
      Math.ceil((t.count * C) / colPartial.wg), { MODE: mode });
    return { part, segChunks: t.segChunks, J };
  }

  /** The chunk tables of segment offsets: uploaded for this call, or once for an index table. */
  private chunkBuffers(call: Call, offsets: ArrayLike<number> | GpuIndex): { chunks: GPUBuffer; segChunks: GPUBuffer; count: number } {
    if (!(offsets instanceof GpuIndex)) {
      const { chunks, segChunks, count } = chunkTable(offsets);
      return { chunks: call.upload(chunks), segChunks: call.upload(segChunks), count };
    }
    if (!offsets.chunks) {
      const { chunks, segChunks, count } = chunkTable(offsets.values);
      offsets.chunks = { chunks: this.uploadInts(chunks), segChunks: this.uploadInts(segChunks), count };
    }
    const c = offsets.chunks;
    return { chunks: c.chunks.buffer, segChunks: c.segChunks.buffer, count: c.count };
  }

  /** out[s*cols + j] (+)= scale * sum of the segment's chunks of part[.., jOff + j]. */
  private reduce(call: Call, p: { part: GPUBuffer; segChunks: GPUBuffer; J: number }, S: number, cols: number, jOff: number,
    out: Arg, accumulate: boolean, scale = 1): void {
    call.dispatch(chunkReduce, { S, cols, J: p.J, jOff, oOut: out.off, scale }, { part: p.part, segChunks: p.segChunks, out: out.buf },
      Math.ceil((S * cols) / chunkReduce.wg), { ACC: flag(accumulate) });
  }

  // ---- GEMM ----

  gemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number,
    A: Buf, lda: number, B: Buf, ldb: number, C: Buf, ldc: number,
    accumulate: boolean, bias: Buf | null, act: Act, preact: Buf | null, extras: GemmExtras = {},
  ): void {
    const fn = 'gemm';
    const { aScale = null, aScaleRows = 1, aShift = null, residual = null, sqSums = null, sqGroupRows = 1 } = extras;
    WebGPUKernels.dims(fn, { M, N, K, lda, ldb, ldc, aScaleRows, sqGroupRows });
    const gelu = act === Act.Gelu;
    if (act !== Act.None && !gelu) throw new ConvNextError(`${fn}: unknown activation ${String(act)}`);
    if (accumulate && gelu) throw new ConvNextError(`${fn}: accumulate and GELU cannot be combined`);
    if (residual && accumulate) throw new ConvNextError(`${fn}: residual and accumulate cannot be combined`);
    if (aScale && transA) throw new ConvNextError(`${fn}: aScale needs A not transposed`);
    if (aScale && aScaleRows < 1) throw new ConvNextError(`${fn}: aScaleRows must be at least 1`);
    if (sqSums && (sqGroupRows < 1 || M % sqGroupRows !== 0)) throw new ConvNextError(`${fn}: sqGroupRows must divide M`);
    if (lda < (transA ? M : K) || ldb < (transB ? K : N) || ldc < N) throw new ConvNextError(`${fn}: a leading dimension is smaller than its row`);
    const extent = (rows: number, cols: number, ld: number): number => (rows > 0 && cols > 0 ? (rows - 1) * ld + cols : 0);
    const call = this.begin(fn);
    const a = this.input(call, fn, 'A', A, transA ? extent(K, M, lda) : extent(M, K, lda));
    const b = this.input(call, fn, 'B', B, transB ? extent(N, K, ldb) : extent(K, N, ldb));
    const c = this.output(fn, 'C', C, extent(M, N, ldc));
    const bi = this.input(call, fn, 'bias', bias, N);
    const pre = gelu && preact ? this.output(fn, 'preact', preact, extent(M, N, ldc)) : this.input(call, fn, 'preact', null, 0);
    const res = this.input(call, fn, 'residual', residual, extent(M, N, ldc));
    const sc = this.input(call, fn, 'aScale', aScale, M > 0 ? (Math.floor((M - 1) / aScaleRows) + 1) * K : 0);
    const sh = this.input(call, fn, 'aShift', aScale ? aShift : null, K);
    const G = sqSums ? M / sqGroupRows : 0;
    const sq = sqSums ? this.output(fn, 'sqSums', sqSums, G * N) : null;
    if (M === 0 || N === 0) {
      call.submit();
      return;
    }
    const epi = {
      ACC: flag(accumulate), RES: flag(!!residual), BIAS: flag(!!bias), GELU: flag(gelu), PRE: flag(gelu && !!preact),
    };
    const tiles = Math.ceil(M / TILE_M) * Math.ceil(N / TILE_N);
    let splits = 1;
    let kChunk = K;
    // At most SPLIT_MAX chunks, and partial sums of at most SPLIT_FLOATS floats.
    const maxSplits = Math.min(SPLIT_MAX, Math.floor(SPLIT_FLOATS / (M * N)));
    if (tiles < SPLIT_MAX_TILES && K >= SPLIT_MIN_K && maxSplits >= 2) {
      kChunk = Math.max(1024, Math.ceil(K / maxSplits / TILE_K) * TILE_K);
      splits = Math.ceil(K / kChunk);
    }
    const grid = [Math.ceil(N / TILE_N), Math.ceil(M / TILE_M), splits] as const;
    const load = { TRANS_A: flag(transA), TRANS_B: flag(transB), SCALE: flag(!!aScale), SHIFT: flag(!!aScale && !!aShift) };
    const common = { M, N, K, lda, ldb, oA: a.off, oB: b.off, oScale: sc.off, oShift: sh.off, scaleRows: aScaleRows, kChunk };
    const inputs = { a: a.buf, b: b.buf, scale: sc.buf, shift: sh.buf };
    if (splits === 1) {
      call.dispatch(gemmTiled,
        { ...common, ldc, oC: c.off, oBias: bi.off, oPre: pre.off, oRes: res.off },
        { ...inputs, c: c.buf, bias: bi.buf, pre: pre.buf, res: res.buf },
        grid, { ...load, ...epi, SPLIT: 0 });
    } else {
      const part = call.scratch(splits * M * N);
      const d = this.rt.dummy;
      call.dispatch(gemmTiled,
        { ...common, ldc: N, oC: 0, oBias: 0, oPre: 0, oRes: 0 },
        { ...inputs, c: part, bias: d, pre: d, res: d },
        grid, { ...load, ACC: 0, RES: 0, BIAS: 0, GELU: 0, PRE: 0, SPLIT: 1 });
      call.dispatch(gemmSplitReduce,
        { M, N, ldc, oC: c.off, oBias: bi.off, oPre: pre.off, oRes: res.off, splits },
        { part, c: c.buf, bias: bi.buf, pre: pre.buf, res: res.buf },
        Math.ceil((M * N) / gemmSplitReduce.wg), epi);
    }
    if (sq) {
      call.dispatch(gemmSqSums, { G, N, rows: sqGroupRows, ldc, oC: c.off, oSq: sq.off }, { c: c.buf, sq: sq.buf },
        Math.ceil((G * N) / gemmSqSums.wg));
    }
    call.submit();
  }

  colSum(x: Buf, M: number, N: number, out: Buf, accumulate: boolean): void {
    const fn = 'colSum';
    WebGPUKernels.dims(fn, { M, N });
    const call = this.begin(fn);
    const xa = this.input(call, fn, 'x', x, M * N);
    const o = this.output(fn, 'out', out, N);
    this.reduce(call, this.partials(call, 0, N, [0, M], { x: xa }), 1, N, 0, o, accumulate);
    call.submit();
  }

  // ---- depthwise convolution ----

  private static dwDims(fn: string, d: { N: number; H: number; W: number; C: number; K: number }): void {
    WebGPUKernels.dims(fn, d);
    if (d.K % 2 !== 1) throw new ConvNextError(`${fn}: K must be odd, got ${d.K}`);
  }

  /** Uploads rowOf and idx after checking them (idx in range, rowOf[idx[r]] == r). */
  private rowsArgs(call: Call, fn: string, rowOfT: Idx, idxT: Idx, S: number, positions: number): { rowOf: GPUBuffer; idx: GPUBuffer } {
    WebGPUKernels.dims(fn, { S });
    const rowOf = idxValues(rowOfT), idx = idxValues(idxT);
    if (!(rowOf instanceof Int32Array) || !(idx instanceof Int32Array)) throw new ConvNextError(`${fn}: rowOf and idx must be Int32Arrays`);
    WebGPUKernels.length(fn, 'rowOf', rowOf, positions);
    WebGPUKernels.length(fn, 'idx', idx, S);
    // Tables do not change: a pair checked once (for these sizes) need not be checked again.
    const pair = idxT instanceof GpuIndex && rowOfT instanceof GpuIndex && idxT.length === S;
    if (!pair || idxT.rowsChecked?.rowOf !== rowOfT || idxT.rowsChecked.positions !== positions) {
      for (let r = 0; r < S; r++) {
        const d = idx[r];
        if (!(d >= 0 && d < positions) || rowOf[d] !== r) throw new ConvNextError(`${fn}: idx and rowOf disagree at row ${r}`);
      }
      if (pair) idxT.rowsChecked = { rowOf: rowOfT, positions };
    }
    return { rowOf: this.ints(call, fn, 'rowOf', rowOfT, positions), idx: this.ints(call, fn, 'idx', idxT, S) };
  }

  private dwconv(fn: string, flip: boolean, x: Buf, rows: { rowOf: Idx; idx: Idx; S: number } | null,
    N: number, H: number, W: number, C: number, K: number, weight: Buf, bias: Buf | null, y: Buf, accumulate: boolean): void {
    WebGPUKernels.dwDims(fn, { N, H, W, C, K });
    const call = this.begin(fn);
    const S = rows ? rows.S : N * H * W;
    const ri = rows ? this.rowsArgs(call, fn, rows.rowOf, rows.idx, S, N * H * W) : { rowOf: this.rt.dummy, idx: this.rt.dummy };
    const xa = this.input(call, fn, flip ? 'dy' : 'x', x, S * C);
    const wa = this.input(call, fn, 'weight', weight, K * K * C);
    const ba = this.input(call, fn, 'bias', bias, C);
    const ya = this.output(fn, flip ? 'dx' : 'y', y, S * C);
    call.dispatch(dwconvK, { S, H, W, C, K, oX: xa.off, oW: wa.off, oB: ba.off, oY: ya.off },
      { x: xa.buf, weight: wa.buf, bias: ba.buf, y: ya.buf, rowOf: ri.rowOf, idx: ri.idx },
      Math.ceil((S * C) / dwconvK.wg), { ROWS: flag(!!rows), FLIP: flag(flip), BIAS: flag(!!bias), ACC: flag(accumulate) });
    call.submit();
  }

  private dwconvWeight(fn: string, dy: Buf, x: Buf, rows: { rowOf: Idx; idx: Idx; S: number } | null,
    N: number, H: number, W: number, C: number, K: number, dweight: Buf, dbias: Buf | null): void {
    WebGPUKernels.dwDims(fn, { N, H, W, C, K });
    const call = this.begin(fn);
    const S = rows ? rows.S : N * H * W;
    const ri = rows ? this.rowsArgs(call, fn, rows.rowOf, rows.idx, S, N * H * W) : { rowOf: this.rt.dummy, idx: this.rt.dummy };
    const dya = this.input(call, fn, 'dy', dy, S * C);
    const xa = this.input(call, fn, 'x', x, S * C);
    const dw = this.output(fn, 'dweight', dweight, K * K * C);
    const db = dbias ? this.output(fn, 'dbias', dbias, C) : null;
    const { chunks, segChunks, count } = chunkTable([0, S]);
    const J = (K * K + 1) * C;
    const part = call.scratch(count * J);
    call.dispatch(dwconvWeightPartialK, { S, H, W, C, K, nChunks: count, oDy: dya.off, oX: xa.off },
      { dy: dya.buf, x: xa.buf, chunks: call.upload(chunks), part, rowOf: ri.rowOf, idx: ri.idx },
      Math.ceil((count * J) / dwconvWeightPartialK.wg), { ROWS: flag(!!rows) });
    const p = { part, segChunks: call.upload(segChunks), J };
    this.reduce(call, p, 1, K * K * C, 0, dw, true);
    if (db) this.reduce(call, p, 1, C, K * K * C, db, true);
    call.submit();
  }

  dwconvForward(x: Buf, N: number, H: number, W: number, C: number, K: number, weight: Buf, bias: Buf | null, y: Buf): void {
    this.dwconv('dwconvForward', false, x, null, N, H, W, C, K, weight, bias, y, false);
  }

  dwconvBackwardInput(dy: Buf, N: number, H: number, W: number, C: number, K: number, weight: Buf, dx: Buf, accumulate: boolean): void {
    this.dwconv('dwconvBackwardInput', true, dy, null, N, H, W, C, K, weight, null, dx, accumulate);
  }

  dwconvBackwardWeight(dy: Buf, x: Buf, N: number, H: number, W: number, C: number, K: number, dweight: Buf, dbias: Buf | null): void {
    this.dwconvWeight('dwconvBackwardWeight', dy, x, null, N, H, W, C, K, dweight, dbias);
  }

  dwconvForwardRows(x: Buf, rowOf: Idx, idx: Idx, S: number, N: number, H: number, W: number, C: number, K: number,
    weight: Buf, bias: Buf | null, y: Buf): void {
    this.dwconv('dwconvForwardRows', false, x, { rowOf, idx, S }, N, H, W, C, K, weight, bias, y, false);
  }

  dwconvBackwardInputRows(dy: Buf, rowOf: Idx, idx: Idx, S: number, N: number, H: number, W: number, C: number, K: number,
    weight: Buf, dx: Buf, accumulate: boolean): void {
    this.dwconv('dwconvBackwardInputRows', true, dy, { rowOf, idx, S }, N, H, W, C, K, weight, null, dx, accumulate);
  }

  dwconvBackwardWeightRows(dy: Buf, x: Buf, rowOf: Idx, idx: Idx, S: number, N: number, H: number, W: number, C: number,
    K: number, dweight: Buf, dbias: Buf | null): void {
    this.dwconvWeight('dwconvBackwardWeightRows', dy, x, { rowOf, idx, S }, N, H, W, C, K, dweight, dbias);
  }

  // ---- normalisation ----

  layerNormForward(x: Buf, M: number, C: number, gamma: Buf, beta: Buf, eps: number, y: Buf, mean: Buf, rstd: Buf): void {
    const fn = 'layerNormForward';
    WebGPUKernels.dims(fn, { M, C });
    const call = this.begin(fn);
    const xa = this.input(call, fn, 'x', x, M * C);
    const g = this.input(call, fn, 'gamma', gamma, C);
    const b = this.input(call, fn, 'beta', beta, C);
    const ya = this.output(fn, 'y', y, M * C);
    const mu = this.output(fn, 'mean', mean, M);
    const rs = this.output(fn, 'rstd', rstd, M);
    call.dispatch(layerNormForwardK, { M, C, eps, oX: xa.off, oG: g.off, oB: b.off, oY: ya.off, oMean: mu.off, oRstd: rs.off },
      { x: xa.buf, gamma: g.buf, beta: b.buf, y: ya.buf, mean: mu.buf, rstd: rs.buf }, M);
    call.submit();
  }

  layerNormBackward(dy: Buf, x: Buf, mean: Buf, rstd: Buf, gamma: Buf, M: number, C: number,
    dx: Buf, accumulate: boolean, dgamma: Buf, dbeta: Buf): void {
    const fn = 'layerNormBackward';
    WebGPUKernels.dims(fn, { M, C });
    const call = this.begin(fn);
    const dya = this.input(call, fn, 'dy', dy, M * C);
    const xa = this.input(call, fn, 'x', x, M * C);
    const mu = this.input(call, fn, 'mean', mean, M);
    const rs = this.input(call, fn, 'rstd', rstd, M);
    const g = this.input(call, fn, 'gamma', gamma, C);
    const dxa = this.output(fn, 'dx', dx, M * C);
    const dg = this.output(fn, 'dgamma', dgamma, C);
    const db = this.output(fn, 'dbeta', dbeta, C);
    call.dispatch(layerNormBackwardK, { M, C, oDy: dya.off, oX: xa.off, oMean: mu.off, oRstd: rs.off, oG: g.off, oDx: dxa.off },
      { dy: dya.buf, x: xa.buf, mean: mu.buf, rstd: rs.buf, gamma: g.buf, dx: dxa.buf }, M, { ACC: flag(accumulate) });
    const p = this.partials(call, 3, C, [0, M], { x: xa, dy: dya, mean: mu, rstd: rs });
    this.reduce(call, p, 1, C, 0, dg, true);
    this.reduce(call, p, 1, C, C, db, true);
    call.submit();
  }

  grnForward(x: Buf, offsets: Idx, C: number, gamma: Buf, beta: Buf, eps: number, y: Buf | null, gx: Buf, nx: Buf,
    sqSums: Buf | null = null): void {
    const fn = 'grnForward';
    const { S, first, last } = WebGPUKernels.segments(fn, offsets, C);
    if (offsets instanceof GpuIndex) this.table(fn, 'offsets', offsets);
    const call = this.begin(fn);
    const xa = sqSums && !y ? null : this.input(call, fn, 'x', x, last * C);
    const g = this.input(call, fn, 'gamma', gamma, C);
    const b = this.input(call, fn, 'beta', beta, C);
    const gxa = this.output(fn, 'gx', gx, S * C);
    const nxa = this.output(fn, 'nx', nx, S * C);
    const ya = y ? this.output(fn, 'y', y, last * C) : null;
    let sq: Arg;
    if (sqSums) {
      sq = this.input(call, fn, 'sqSums', sqSums, S * C);
    } else {
      sq = { buf: call.scratch(S * C), off: 0 };
      this.reduce(call, this.partials(call, 1, C, offsets instanceof GpuIndex ? offsets : idxValues(offsets), { x: xa! }), S, C, 0, sq, false);
    }
    call.dispatch(grnStatsK, { S, C, eps, oSq: sq.off, oGx: gxa.off, oNx: nxa.off }, { sq: sq.buf, gx: gxa.buf, nx: nxa.buf }, S);
    if (ya && xa && S > 0) {
      const n = (last - first) * C;
      call.dispatch(grnApplyK, { n, S, C, row0: first, oX: xa.off, oG: g.off, oB: b.off, oY: ya.off, oNx: nxa.off },
        { x: xa.buf, offsets: this.ints(call, fn, 'offsets', offsets, S + 1), gamma: g.buf, beta: b.buf, nx: nxa.buf, y: ya.buf },
        Math.ceil(n / grnApplyK.wg));
    }
    call.submit();
  }

  grnBackward(dy: Buf, x: Buf, offsets: Idx, C: number, gamma: Buf, eps: number, gx: Buf, nx: Buf,
    dx: Buf, dgamma: Buf, dbeta: Buf, geluPre: Buf | null = null, dbias: Buf | null = null): void {
    const fn = 'grnBackward';
    const { S, first, last } = WebGPUKernels.segments(fn, offsets, C);
    if (offsets instanceof GpuIndex) this.table(fn, 'offsets', offsets);
    const call = this.begin(fn);
    const dya = this.input(call, fn, 'dy', dy, last * C);
    const xa = this.input(call, fn, 'x', x, last * C);
    const g = this.input(call, fn, 'gamma', gamma, C);
    const gxa = this.input(call, fn, 'gx', gx, S * C);
    const nxa = this.input(call, fn, 'nx', nx, S * C);
    const pre = this.input(call, fn, 'geluPre', geluPre, last * C);
    const dxa = this.output(fn, 'dx', dx, last * C);
    const dg = this.output(fn, 'dgamma', dgamma, C);
    const db = this.output(fn, 'dbeta', dbeta, C);
    const dba = dbias ? this.output(fn, 'dbias', dbias, C) : null;
    if (S === 0) {
      call.submit();
      return;
    }
    // sums[s] = (sum dy*x, sum dy) per column.
    const sums: Arg = { buf: call.scratch(2 * S * C), off: 0 };
    this.reduce(call, this.partials(call, 2, C, offsets instanceof GpuIndex ? offsets : idxValues(offsets), { x: xa, dy: dya }), S, 2 * C, 0, sums, false);
    const coef = call.scratch(2 * S * C);
    call.dispatch(grnBackwardStatsK, { S, C, eps, oG: g.off, oGx: gxa.off, oNx: nxa.off },
      { sums: sums.buf, gamma: g.buf, gx: gxa.buf, nx: nxa.buf, coef }, S);
    call.dispatch(grnBackwardParamsK, { n: C, S, C, oNx: nxa.off, oDg: dg.off, oDb: db.off },
      { sums: sums.buf, nx: nxa.buf, dgamma: dg.buf, dbeta: db.buf }, Math.ceil(C / grnBackwardParamsK.wg));
    const n = (last - first) * C;
    call.dispatch(grnBackwardDxK, { n, S, C, row0: first, oDy: dya.off, oX: xa.off, oDx: dxa.off, oPre: pre.off },
      { dy: dya.buf, x: xa.buf, offsets: this.ints(call, fn, 'offsets', offsets, S + 1), coef, dx: dxa.buf, pre: pre.buf },
      Math.ceil(n / grnBackwardDxK.wg), { GELU: flag(!!geluPre) });
    if (dba) this.reduce(call, this.partials(call, 0, C, [first, last], { x: dxa }), 1, C, 0, dba, true);
    call.submit();
  }

  // ---- elementwise ----

  /** A one-dispatch elementwise kernel on n elements. */
  private unary(fn: string, n: number, run: (call: Call) => void): void {
    WebGPUKernels.dims(fn, { n });
    const call = this.begin(fn);
    run(call);
    call.submit();
  }

  gelu(x: Buf, y: Buf, n: number): void {
    this.unary('gelu', n, (call) => {
      const xa = this.input(call, 'gelu', 'x', x, n);
      const ya = this.output('gelu', 'y', y, n);
      call.dispatch(geluK, { n, oX: xa.off, oY: ya.off }, { x: xa.buf, y: ya.buf }, Math.ceil(n / geluK.wg));
    });
  }

  /** y = erf(x) as the GELU kernels evaluate it (for tests of the approximation). */
  erf(x: Buf, y: Buf, n: number): void {
    this.unary('erf', n, (call) => {
      const xa = this.input(call, 'erf', 'x', x, n);
      const ya = this.output('erf', 'y', y, n);
      call.dispatch(erfK, { n, oX: xa.off, oY: ya.off }, { x: xa.buf, y: ya.buf }, Math.ceil(n / erfK.wg));
    });
  }

  geluBackward(dy: Buf, x: Buf, dx: Buf, n: number): void {
    const fn = 'geluBackward';
    this.unary(fn, n, (call) => {
      const d = this.input(call, fn, 'dy', dy, n);
      const xa = this.input(call, fn, 'x', x, n);
      const o = this.output(fn, 'dx', dx, n);
      call.dispatch(geluBackwardK, { n, oDy: d.off, oX: xa.off, oDx: o.off }, { dy: d.buf, x: xa.buf, dx: o.buf }, Math.ceil(n / geluBackwardK.wg));
    });
  }

  avgPoolForward(x: Buf, N: number, HW: number, C: number, y: Buf): void {
    const fn = 'avgPoolForward';
    WebGPUKernels.dims(fn, { N, HW, C });
    const call = this.begin(fn);
    const xa = this.input(call, fn, 'x', x, N * HW * C);
    const ya = this.output(fn, 'y', y, N * C);
    const offsets = Array.from({ length: N + 1 }, (_, n) => n * HW);
    this.reduce(call, this.partials(call, 0, C, offsets, { x: xa }), N, C, 0, ya, false, 1 / HW);
    call.submit();
  }

  avgPoolBackward(dy: Buf, N: number, HW: number, C: number, dx: Buf): void {
    const fn = 'avgPoolBackward';
    WebGPUKernels.dims(fn, { N, HW, C });
    const n = N * HW * C;
    this.unary(fn, n, (call) => {
      const d = this.input(call, fn, 'dy', dy, N * C);
      const o = this.output(fn, 'dx', dx, n);
      call.dispatch(avgPoolBackwardK, { n, HW, C, oDy: d.off, oDx: o.off }, { dy: d.buf, dx: o.buf }, Math.ceil(n / avgPoolBackwardK.wg));
    });
  }

  softmaxCrossEntropy(logits: Buf, targets: Buf, N: number, K: number, dlogits: Buf | null, loss: Buf, gradScale: number): void {
    const fn = 'softmaxCrossEntropy';
    WebGPUKernels.dims(fn, { N, K });
    const call = this.begin(fn);
    const l = this.input(call, fn, 'logits', logits, N * K);
    const t = this.input(call, fn, 'targets', targets, N * K);
    const d = dlogits ? this.output(fn, 'dlogits', dlogits, N * K) : { buf: this.rt.dummy, off: 0 };
    const lo = this.output(fn, 'loss', loss, 1);
    const rowLoss = call.scratch(N);
    call.dispatch(softmaxCrossEntropyK, { N, K, oL: l.off, oT: t.off, oD: d.off, gradScale },
      { logits: l.buf, targets: t.buf, dlogits: d.buf, rowLoss }, N, { DL: flag(!!dlogits) });
    call.dispatch(sumPartsK, { n: 1, count: N, oY: lo.off, scale: 1 / N }, { part: rowLoss, out: lo.buf }, 1, { ACC: 0 });
    call.submit();
  }

  patchify(x: Buf, N: number, H: number, W: number, C: number, P: number, cols: Buf): void {
    this.patches('patchify', x, N, H, W, C, P, cols);
  }

  unpatchify(dcols: Buf, N: number, H: number, W: number, C: number, P: number, dx: Buf): void {
    this.patches('unpatchify', dcols, N, H, W, C, P, dx);
  }

  private patches(fn: 'patchify' | 'unpatchify', src: Buf, N: number, H: number, W: number, C: number, P: number, dst: Buf): void {
    WebGPUKernels.dims(fn, { N, H, W, C, P });
    if (P < 1) throw new ConvNextError(`${fn}: the patch size must be at least 1`);
    const Ho = Math.floor(H / P);
    const Wo = Math.floor(W / P);
    const image = N * H * W * C;
    const cols = N * Ho * Wo * C * P * P;
    const fwd = fn === 'patchify';
    const n = fwd ? cols : image;
    this.unary(fn, n, (call) => {
      const s = this.input(call, fn, fwd ? 'x' : 'dcols', src, fwd ? image : cols);
      const d = this.output(fn, fwd ? 'cols' : 'dx', dst, n);
      const params = { n, H, W, C, Pt: P, Ho, Wo, oX: s.off, oY: d.off };
      if (fwd) call.dispatch(patchifyK, params, { x: s.buf, cols: d.buf }, Math.ceil(n / patchifyK.wg));
      else call.dispatch(unpatchifyK, params, { dcols: s.buf, dx: d.buf }, Math.ceil(n / unpatchifyK.wg));
    });
  }

  nchwToNhwc(src: Buf, N: number, C: number, H: number, W: number, dst: Buf): void {
    this.layout('nchwToNhwc', src, N, C, H * W, dst);
  }

  nhwcToNchw(src: Buf, N: number, H: number, W: number, C: number, dst: Buf): void {
    this.layout('nhwcToNchw', src, N, C, H * W, dst);
  }

  private layout(fn: 'nchwToNhwc' | 'nhwcToNchw', src: Buf, N: number, C: number, HW: number, dst: Buf): void {
    WebGPUKernels.dims(fn, { N, C, HW });
    const n = N * C * HW;
    this.unary(fn, n, (call) => {
      const s = this.input(call, fn, 'src', src, n);
      const d = this.output(fn, 'dst', dst, n);
      const k = fn === 'nchwToNhwc' ? nchwToNhwcK : nhwcToNchwK;
      call.dispatch(k, { n, C, HW, oX: s.off, oY: d.off }, { src: s.buf, dst: d.buf }, Math.ceil(n / k.wg));
    });
  }

  addScaled(x: Buf, branch: Buf, scale: Buf, N: number, rowsPerSample: number, C: number, out: Buf): void {
    const fn = 'addScaled';
    WebGPUKernels.dims(fn, { N, rowsPerSample, C });
    const per = rowsPerSample * C;
    const n = N * per;
    this.unary(fn, n, (call) => {
      const xa = this.input(call, fn, 'x', x, n);
      const ba = this.input(call, fn, 'branch', branch, n);
      const sa = this.input(call, fn, 'scale', scale, N);
      const o = this.output(fn, 'out', out, n);
      call.dispatch(addScaledK, { n, per: Math.max(per, 1), oX: xa.off, oB: ba.off, oS: sa.off, oY: o.off },
        { x: xa.buf, branch: ba.buf, scale: sa.buf, out: o.buf }, Math.ceil(n / addScaledK.wg));
    });
  }

  adamw(p: Buf, g: Buf, m: Buf, v: Buf, n: number, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number,
    bc1: number, bc2: number): void {
    const fn = 'adamw';
    this.unary(fn, n, (call) => {
      const pa = this.output(fn, 'p', p, n);
      const ga = this.input(call, fn, 'g', g, n);
      const ma = this.output(fn, 'm', m, n);
      const va = this.output(fn, 'v', v, n);
      call.dispatch(adamwK, {
        n, oP: pa.off, oG: ga.off, oM: ma.off, oV: va.off,
        lr, b1: beta1, b2: beta2, c1: 1 - beta1, c2: 1 - beta2, eps, decay: 1 - lr * weightDecay, bc1, bc2,
      }, { p: pa.buf, g: ga.buf, m: ma.buf, v: va.buf }, Math.ceil(n / adamwK.wg));
    });
  }

  // ---- memory ----

  write(dst: Buf, src: Float32Array, offset = 0): void {
    const fn = 'write';
    const t = this.tensor(fn, 'dst', dst);
    if (!(src instanceof Float32Array)) throw new ConvNextError(`${fn}: src must be a Float32Array`);
    if (!Number.isInteger(offset) || offset < 0 || offset + src.length > t.length) {
      throw new ConvNextError(`${fn}: ${src.length} values at ${offset} do not fit a tensor of ${t.length}`);
    }
    this.alive(fn);
    // After the work enqueued before it, which may read or write dst.
    this.rt.flush();
    if (src.length > 0) this.device.queue.writeBuffer(t.buffer, (t.offset + offset) * 4, src.buffer, src.byteOffset, src.byteLength);
  }

  async read(t: Buf): Promise<Float32Array> {
    if (t instanceof Float32Array) return Float32Array.from(t);
    const g = this.tensor('read', 't', t);
    this.alive('read');
    this.rt.flush();
    const bytes = g.length * 4;
    const staging = this.device.createBuffer({ size: Math.max(bytes, 4), usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    try {
      const enc = this.device.createCommandEncoder();
      if (bytes > 0) enc.copyBufferToBuffer(g.buffer, g.byteOffset, staging, 0, bytes);
      this.device.queue.submit([enc.finish()]);
      await staging.mapAsync(MAP_MODE_READ);
      const out = new Float32Array(g.length);
      if (bytes > 0) out.set(new Float32Array(staging.getMappedRange(0, bytes)));
      staging.unmap();
      const err = this.rt.takeError();
      if (err !== null) throw new ConvNextError(`webgpu: a kernel failed on the device: ${err}`);
      if (this.lost !== null) throw new ConvNextError(`webgpu read: the device was lost (${this.lost})`);
      return out;
    } finally {
      staging.destroy();
    }
  }

  fill(t: Buf, value: number): void {
    const fn = 'fill';
    const g = this.tensor(fn, 't', t);
    const n = g.length;
    this.unary(fn, n, (call) => {
      if (value === 0 && !Object.is(value, -0)) {
        if (n > 0) call.encoder.clearBuffer(g.buffer, g.byteOffset, n * 4);
      } else {
        call.dispatch(fillK, { n, oY: g.offset, value }, { y: g.buffer }, Math.ceil(n / fillK.wg));
      }
    });
  }

  copy(src: Buf, dst: Buf): void {
    const fn = 'copy';
    const d = this.tensor(fn, 'dst', dst);
    const n = src.length;
    WebGPUKernels.length(fn, 'dst', d, n);
    if (src instanceof Float32Array) {
      this.write(d, src);
      return;
    }
    const s = this.tensor(fn, 'src', src);
    this.unary(fn, n, (call) => {
      if (n === 0) return;
      if (s.buffer !== d.buffer) call.encoder.copyBufferToBuffer(s.buffer, s.byteOffset, d.buffer, d.byteOffset, n * 4);
      else if (s.offset !== d.offset) call.dispatch(copyK, { n, oX: s.offset, oY: d.offset }, { x: s.buffer, y: d.buffer }, Math.ceil(n / copyK.wg));
    });
  }

  // ---- small kernels ----

  transpose(src: Buf, B: number, R: number, C: number, dst: Buf, accumulate: boolean): void {
    const fn = 'transpose';
    WebGPUKernels.dims(fn, { B, R, C });
    const n = B * R * C;
    this.unary(fn, n, (call) => {
      const s = this.input(call, fn, 'src', src, n);
      const d = this.output(fn, 'dst', dst, n);
      call.dispatch(transposeK, { n, R, C, oX: s.off, oY: d.off }, { src: s.buf, dst: d.buf }, Math.ceil(n / transposeK.wg), { ACC: flag(accumulate) });
    });
  }

  scaleRows(x: Buf, R: number, C: number, s: Buf, out: Buf, accumulate: boolean): void {
    const fn = 'scaleRows';
    WebGPUKernels.dims(fn, { R, C });
    const n = R * C;
    this.unary(fn, n, (call) => {
      const xa = this.input(call, fn, 'x', x, n);
      const sa = this.input(call, fn, 's', s, R);
      const o = this.output(fn, 'out', out, n);
      call.dispatch(scaleRowsK, { n, C: Math.max(C, 1), oX: xa.off, oS: sa.off, oY: o.off }, { x: xa.buf, s: sa.buf, out: o.buf },
        Math.ceil(n / scaleRowsK.wg), { ACC: flag(accumulate) });
    });
  }

  rowDot(a: Buf, b: Buf, R: number, C: number, out: Buf, accumulate: boolean): void {
    const fn = 'rowDot';
    WebGPUKernels.dims(fn, { R, C });
    this.unary(fn, R, (call) => {
      const aa = this.input(call, fn, 'a', a, R * C);
      const ba = this.input(call, fn, 'b', b, R * C);
      const o = this.output(fn, 'out', out, R);
      call.dispatch(rowDotK, { n: R, C, oA: aa.off, oB: ba.off, oY: o.off }, { a: aa.buf, b: ba.buf, out: o.buf },
        Math.ceil(R / rowDotK.wg), { ACC: flag(accumulate) });
    });
  }

  scale(x: Buf, n: number, s: number): void {
    const fn = 'scale';
    this.unary(fn, n, (call) => {
      const xa = this.output(fn, 'x', x, n);
      call.dispatch(scaleK, { n, oX: xa.off, s }, { x: xa.buf }, Math.ceil(n / scaleK.wg));
    });
  }

  sumSquares(x: Buf, n: number, out: Buf, accumulate: boolean): void {
    const fn = 'sumSquares';
    WebGPUKernels.dims(fn, { n });
    const call = this.begin(fn);
    const xa = this.input(call, fn, 'x', x, n);
    const o = this.output(fn, 'out', out, 1);
    const chunk = Math.max(1024, Math.ceil(n / 65536));
    const count = Math.ceil(n / chunk);
    const part = call.scratch(count);
    call.dispatch(sumSquaresPartialK, { n: count, len: n, chunk, oX: xa.off }, { x: xa.buf, part }, Math.ceil(count / sumSquaresPartialK.wg));
    call.dispatch(sumPartsK, { n: 1, count, oY: o.off, scale: 1 }, { part, out: o.buf }, 1, { ACC: flag(accumulate) });
    call.submit();
  }

  clipByNorm(x: Buf, n: number, sumSq: Buf, maxNorm: number): void {
    const fn = 'clipByNorm';
    this.unary(fn, n, (call) => {
      const xa = this.output(fn, 'x', x, n);
      const s = this.input(call, fn, 'sumSq', sumSq, 1);
      call.dispatch(clipByNormK, { n, oX: xa.off, oS: s.off, maxNorm }, { x: xa.buf, sumSq: s.buf }, Math.ceil(n / clipByNormK.wg));
    });
  }

  grnScale(nx: Buf, S: number, C: number, gamma: Buf, out: Buf): void {
    const fn = 'grnScale';
    WebGPUKernels.dims(fn, { S, C });
    const n = S * C;
    this.unary(fn, n, (call) => {
      const na = this.input(call, fn, 'nx', nx, n);
      const g = this.input(call, fn, 'gamma', gamma, C);
      const o = this.output(fn, 'out', out, n);
      call.dispatch(grnScaleK, { n, C: Math.max(C, 1), oNx: na.off, oG: g.off, oY: o.off }, { nx: na.buf, gamma: g.buf, out: o.buf },
        Math.ceil(n / grnScaleK.wg));
    });
  }

  /** idx values must be below `rows` (negative: a row of zeros / skipped). */
  private static checkRows(fn: string, t: Idx, rows: number): void {
    const idx = idxValues(t);
    if (!(idx instanceof Int32Array)) throw new ConvNextError(`${fn}: idx must be an Int32Array`);
    for (let i = 0; i < idx.length; i++) {
      if (idx[i] >= rows) throw new ConvNextError(`${fn}: row index ${idx[i]} at ${i} is outside [0, ${rows})`);
    }
  }

  smoothTargets(labels: Int32Array, N: number, K: number, smoothing: number, out: Buf): void {
    const fn = 'smoothTargets';
    WebGPUKernels.dims(fn, { N, K });
    checkLabels(fn, labels, N, K);
    const n = N * K;
    this.unary(fn, n, (call) => {
      const y = this.output(fn, 'out', out, n);
      call.dispatch(smoothTargetsK, { n, K, oY: y.off, off: smoothing / K, on: 1 - smoothing },
        { labels: this.ints(call, fn, 'labels', labels, N), y: y.buf }, Math.ceil(n / smoothTargetsK.wg));
    });
  }

  gatherRows(src: Buf, idx: Idx, C: number, dst: Buf): void {
    const fn = 'gatherRows';
    WebGPUKernels.dims(fn, { C });
    if (C < 1) throw new ConvNextError(`${fn}: C must be at least 1`);
    const rows = Math.floor(src.length / C);
    WebGPUKernels.checkRows(fn, idx, rows);
    const n = idx.length * C;
    this.unary(fn, n, (call) => {
      const s = this.input(call, fn, 'src', src, rows * C);
      const d = this.output(fn, 'dst', dst, n);
      call.dispatch(gatherRowsK, { n, C, oX: s.off, oY: d.off }, { src: s.buf, idx: this.ints(call, fn, 'idx', idx, idx.length), dst: d.buf },
        Math.ceil(n / gatherRowsK.wg));
    });
  }

  scatterRows(src: Buf, idx: Idx, C: number, dst: Buf): void {
    const fn = 'scatterRows';
    WebGPUKernels.dims(fn, { C });
    if (C < 1) throw new ConvNextError(`${fn}: C must be at least 1`);
    WebGPUKernels.checkRows(fn, idx, Math.floor(dst.length / C));
    const n = idx.length * C;
    this.unary(fn, n, (call) => {
      const s = this.input(call, fn, 'src', src, n);
      const d = this.output(fn, 'dst', dst, 0);
      call.dispatch(scatterRowsK, { n, C, oX: s.off, oY: d.off }, { src: s.buf, idx: this.ints(call, fn, 'idx', idx, idx.length), dst: d.buf },
        Math.ceil(n / scatterRowsK.wg));
    });
  }

  fcmaeLoss(x: Buf, N: number, H: number, W: number, C: number, p: number, norm: boolean,
    pred: Buf, mask: Float32Array, target: Buf, dpred: Buf, loss: Buf, patchStats: Buf | null): void {
    const fn = 'fcmaeLoss';
    WebGPUKernels.dims(fn, { N, H, W, C, p });
    if (p < 1 || H % p !== 0 || W % p !== 0) throw new ConvNextError(`${fn}: ${H}x${W} is not a multiple of the patch ${p}`);
    if (!(mask instanceof Float32Array)) throw new ConvNextError(`${fn}: mask must be a host Float32Array`);
    const gh = H / p;
    const gw = W / p;
    const rows = N * gh * gw;
    const P = p * p * C;
    if (norm && P < 2) throw new ConvNextError(`${fn}: a normalised patch needs at least 2 values`);
    WebGPUKernels.length(fn, 'mask', mask, rows);
    let msum = 0;
    for (let r = 0; r < rows; r++) msum += mask[r];
    const call = this.begin(fn);
    const xa = this.input(call, fn, 'x', x, N * H * W * C);
    const pa = this.input(call, fn, 'pred', pred, rows * P);
    const ma = this.input(call, fn, 'mask', mask, rows);
    const ta = this.output(fn, 'target', target, rows * P);
    const da = this.output(fn, 'dpred', dpred, rows * P);
    const lo = this.output(fn, 'loss', loss, 1);
    const st = norm && patchStats ? this.output(fn, 'patchStats', patchStats, rows * 2) : { buf: this.rt.dummy, off: 0 };
    const rowLoss = call.scratch(rows);
    call.dispatch(fcmaeLossK, { rows, H, W, C, p, gh, gw, msum, oX: xa.off, oPred: pa.off, oT: ta.off, oD: da.off, oS: st.off },
      { x: xa.buf, pred: pa.buf, mask: ma.buf, target: ta.buf, dpred: da.buf, stats: st.buf, rowLoss }, rows,
      { NORM: flag(norm), STATS: flag(norm && !!patchStats) });
    call.dispatch(sumPartsK, { n: 1, count: rows, oY: lo.off, scale: msum > 0 ? 1 / msum : 0 }, { part: rowLoss, out: lo.buf }, 1, { ACC: 0 });
    call.submit();
  }

  ema(shadow: Buf, w: Buf, n: number, decay: number): void {
    const fn = 'ema';
    this.unary(fn, n, (call) => {
      const s = this.output(fn, 'shadow', shadow, n);
      const wa = this.input(call, fn, 'w', w, n);
      call.dispatch(emaK, { n, oS: s.off, oW: wa.off, decay, rest: 1 - decay }, { shadow: s.buf, w: wa.buf }, Math.ceil(n / emaK.wg));
    });
  }
}
