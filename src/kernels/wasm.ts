/**
 * The WebAssembly kernels: the portable C++ kernel sources compiled for wasm32 with SIMD128
 * (native/wasm/exports.cc, scripts/build-wasm.ts) behind the {@link Kernels} interface.
 * Platform-neutral: give it the compiled module (Node: ./wasm_node.ts reads dist/wasm/; a page:
 * `loadWasmKernels` of the web entry, or fetch + WebAssembly.compile) and, for threads, a
 * {@link WasmThreadHost} that starts a worker (worker_threads in Node, Web Workers in a page).
 *
 * Two builds of the same objects:
 * - `convnextv2.wasm` imports a shared memory: parameters, gradients, moments and the layers'
 *   arena buffers are allocated in it ({@link WasmKernels.memory}), and the kernels run on
 *   those views in place; extra threads are workers that instantiate the module on the same
 *   memory, each with its own stack and TLS block. Needs SharedArrayBuffer: Node, or a
 *   cross-origin-isolated page (COOP/COEP headers).
 * - `convnextv2-single.wasm` imports an unshared memory, for other pages: one thread, and the
 *   host arrays are copied in and out per call (a growing unshared memory would detach views).
 * Arrays that are not views of this memory are always accepted and copied per call. Every
 * argument is validated here (sizes against shapes, as the native binding does). Results are
 * bit-identical for any thread count (fixed-order reductions).
 */
import { HostKernels } from './host.js';
import { ConvNextError } from '../errors.js';
import { type Act, type GemmExtras, hostMemory, type Isa, type Kernels, type TensorMemory } from './types.js';

type Ptr = number;
interface Exports {
  memory?: WebAssembly.Memory;
  cnx_malloc(bytes: number): Ptr;
  cnx_free(p: Ptr): void;
  cnx_bytes_in_use(): number;
  cnx_set_threads(n: number): void;
  cnx_workers_started(): number;
  cnx_worker_tasks(): number;
  cnx_stop_workers(): void;
  __stack_pointer?: WebAssembly.Global;
  __tls_size?: WebAssembly.Global;
  __wasm_init_tls?: (p: Ptr) => void;
  [kernel: string]: unknown;
}

/** What a kernel thread is started with (structured-cloneable: a Module and a shared Memory). */
export interface WasmThreadInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  /** Top of the thread's stack and its TLS block, in the shared memory. */
  stackTop: number;
  tls: number;
  /** 1, 2, ...: the thread's index (the caller's thread is 0). */
  id: number;
}

/** Starts kernel threads: runs {@link WASM_THREAD_MAIN} on `init` in a new worker. */
export interface WasmThreadHost {
  spawn(init: WasmThreadInit, onError: (message: string) => void): { terminate(): void };
}

/** Where createBackend('wasm') finds the module. */
export interface WasmLocation {
  /** Node: the .wasm file (default dist/wasm/convnextv2.wasm, or CONVNEXTV2_WASM). */
  file?: string;
  /** A page: the folder holding convnextv2.wasm and convnextv2-single.wasm (default ../wasm/ beside the bundle). */
  baseUrl?: string | URL;
}

export interface WasmKernelsOptions {
  /** Threads including the caller's (default 1); more than 1 needs the shared-memory build and a host. */
  threads?: number;
  host?: WasmThreadHost;
  /** How long to wait for the workers to start (default 20 s). */
  startTimeoutMs?: number;
}

/**
 * The body of a kernel thread, as source for a worker: instantiates the module on the shared
 * memory, takes its own stack and TLS block, and serves the pool until the kernels are closed.
 */
export const WASM_THREAD_MAIN = `function cnxThread(d) {
  const x = new WebAssembly.Instance(d.module, { env: { memory: d.memory } }).exports;
  x.__stack_pointer.value = d.stackTop;
  x.__wasm_init_tls(d.tls);
  x.cnx_worker(d.id);
}`;

const PAGE = 65536;
const INITIAL_PAGES = 1024; // the builds' --initial-memory (64 MiB)
const MAX_PAGES = 65536; // and --max-memory (4 GiB)
const THREAD_STACK = 1 << 20;

/**
 * One argument of a call: an array (or null) of which the first `need` elements are copied in
 * (`in`), or in and back out (`inout`: every array a kernel writes, so that what it leaves alone,
 * e.g. the gaps of a strided matrix, comes back unchanged). Views of the module's memory are
 * passed in place.
 */
type Arg = { a: Float32Array | Int32Array | null; need: number; name: string; io: 'in' | 'inout' };

export class WasmKernels extends HostKernels implements Kernels {
  readonly name = 'wasm';
  readonly isa: Isa = 'wasm';
  readonly threads: number;
  /** Linear memory (shared build) or host arrays (single-thread build). */
  override readonly memory: TensorMemory;
  /** Whether the memory is shared (threads possible, tensors in place). */
  readonly shared: boolean;
  private readonly x: Exports;
  private readonly mem: WebAssembly.Memory;
  /** The SharedArrayBuffers this memory has handed out (one per growth): views of them are ours. */
  private readonly ours = new WeakSet<ArrayBufferLike>();
  private readonly ptrOf = new WeakMap<Float32Array, Ptr>();
  private workers: { terminate(): void }[] = [];

  /**
   * Instantiates `module` (either build) on a fresh memory; one thread. Use
   * {@link WasmKernels.create} for threads.
   */
  constructor(module: WebAssembly.Module, instance?: WebAssembly.Instance, memory?: WebAssembly.Memory) {
    super();
    const shared = WasmKernels.isThreadBuild(module);
    this.mem = memory ?? WasmKernels.newMemory(shared);
    const inst = instance ?? new WebAssembly.Instance(module, { env: { memory: this.mem } });
    this.x = inst.exports as unknown as Exports;
    for (const f of ['cnx_malloc', 'cnx_free', 'cnx_worker', 'gemm', 'adamw']) {
      if (!(f in this.x)) throw new ConvNextError(`wasm kernels: the module has no export ${f} (not a convnextv2 kernel build of this version)`);
    }
    this.shared = shared;
    this.threads = 1;
    if (shared) this.x.__wasm_init_tls!(this.mallocOrThrow('TLS', (this.x.__tls_size!.value as number) || 16));
    this.memory = shared ? this.linearMemory() : hostMemory;
  }

  /** The kernels with `threads` threads (the caller's plus workers started through `host`). */
  static async create(module: WebAssembly.Module, opts: WasmKernelsOptions = {}): Promise<WasmKernels> {
    const threads = opts.threads ?? 1;
    if (!Number.isInteger(threads) || threads < 1 || threads > 256) throw new ConvNextError(`wasm kernels: threads must be an integer in [1, 256], got ${threads}`);
    const shared = WasmKernels.isThreadBuild(module);
    if (threads > 1 && !shared) throw new ConvNextError('wasm kernels: threads need the shared-memory build (convnextv2.wasm) and a cross-origin-isolated page');
    if (threads > 1 && !opts.host) throw new ConvNextError('wasm kernels: threads need a host that starts workers');
    const memory = WasmKernels.newMemory(shared);
    const instance = await WebAssembly.instantiate(module, { env: { memory } });
    const k = new WasmKernels(module, instance, memory);
    if (threads > 1) await k.startWorkers(module, threads, opts.host!, opts.startTimeoutMs ?? 20000);
    return k;
  }

  /** Whether `module` is the shared-memory build (convnextv2.wasm: it exports the TLS set-up threads need). */
  static isThreadBuild(module: WebAssembly.Module): boolean {
    return WebAssembly.Module.exports(module).some((e) => e.name === '__wasm_init_tls');
  }

  private static newMemory(shared: boolean): WebAssembly.Memory {
    try {
      return new WebAssembly.Memory({ initial: INITIAL_PAGES, maximum: MAX_PAGES, shared });
    } catch (e) {
      throw new ConvNextError(`wasm kernels: cannot create the ${shared ? 'shared ' : ''}memory (${e instanceof Error ? e.message : String(e)})${shared ? '; a page must be cross-origin isolated, else use convnextv2-single.wasm' : ''}`);
    }
  }

  private async startWorkers(module: WebAssembly.Module, threads: number, host: WasmThreadHost, timeoutMs: number): Promise<void> {
    let failure: string | null = null;
    for (let i = 1; i < threads; i++) {
      const stack = this.mallocOrThrow('a thread stack', THREAD_STACK);
      const tls = this.mallocOrThrow('TLS', (this.x.__tls_size!.value as number) || 16);
      this.workers.push(host.spawn({ module, memory: this.mem, stackTop: stack + THREAD_STACK, tls, id: i }, (m) => { failure ??= m; }));
    }
    (this as { threads: number }).threads = threads;
    this.x.cnx_set_threads(threads);
    const t0 = Date.now();
    while (this.x.cnx_workers_started() < threads - 1) {
      if (failure !== null || Date.now() - t0 > timeoutMs) {
        this.close();
        throw new ConvNextError(`wasm kernels: ${failure !== null ? `a worker thread failed (${failure})` : `${threads - 1} worker thread(s) did not start within ${timeoutMs / 1000} s`}`);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** Uses `n` of the threads started (1 up to the count {@link WasmKernels.create} started). */
  setThreads(n: number): void {
    if (!Number.isInteger(n) || n < 1) throw new ConvNextError(`wasm kernels: threads must be a positive integer, got ${n}`);
    const t = Math.min(n, this.workers.length + 1);
    (this as { threads: number }).threads = t;
    this.x.cnx_set_threads(t);
  }

  /** Stops the worker threads (the kernels go on with one thread). */
  close(): void {
    if (this.workers.length === 0) return;
    this.x.cnx_stop_workers();
    for (const w of this.workers) w.terminate();
    this.workers = [];
    (this as { threads: number }).threads = 1;
    this.x.cnx_set_threads(1);
  }

  /** Tasks the worker threads have run so far (0 with one thread). */
  workerTasks(): number {
    return this.x.cnx_worker_tasks() >>> 0;
  }

  /** Bytes allocated in the module's memory (tensors, scratch, per-call copies). */
  bytesInUse(): number {
    return this.x.cnx_bytes_in_use();
  }

  private mallocOrThrow(what: string, bytes: number): Ptr {
    const p = this.x.cnx_malloc(bytes);
    if (p === 0) throw new ConvNextError(`wasm kernels: out of WebAssembly memory (${what}: ${bytes} bytes; ${this.bytesInUse()} in use, at most 4 GiB)`);
    return p;
  }

  private linearMemory(): TensorMemory {
    return {
      kind: 'wasm',
      alloc: (n: number): Float32Array => {
        if (!Number.isInteger(n) || n < 0) throw new ConvNextError(`wasm kernels: cannot allocate ${n} floats`);
        const p = this.mallocOrThrow('a tensor', Math.max(4, n * 4));
        const buf = this.mem.buffer;
        this.ours.add(buf);
        const a = new Float32Array(buf, p, n).fill(0);
        this.ptrOf.set(a, p);
        return a;
      },
      free: (a: Float32Array): void => {
        const p = this.ptrOf.get(a);
        if (p === undefined) return;
        this.ptrOf.delete(a);
        this.x.cnx_free(p);
      },
    };
  }

  /** Runs `fn` with the arguments' addresses (0 for null): views of our memory in place, others copied in (and out). */
  private run<R>(fn: string, args: Arg[], call: (...ptrs: number[]) => R): R {
    for (const g of args) {
      if (g.a === null) continue;
      if (!(g.a instanceof Float32Array) && !(g.a instanceof Int32Array)) throw new ConvNextError(`${fn}: ${g.name} must be a typed array`);
      if (g.a.length < g.need) throw new ConvNextError(`${fn}: ${g.name} has ${g.a.length} elements, needs ${g.need}`);
    }
    const copied = args.map((g) => g.a !== null && !this.ours.has(g.a.buffer));
    const ptrs = args.map((g, i) => (g.a === null ? 0 : copied[i] ? this.x.cnx_malloc(Math.max(4, g.need * 4)) : g.a.byteOffset));
    try {
      if (ptrs.some((p, i) => copied[i] && p === 0)) throw new ConvNextError(`${fn}: out of WebAssembly memory (${this.bytesInUse()} bytes in use)`);
      const buf = this.mem.buffer;
      args.forEach((g, i) => {
        if (copied[i]) new Uint8Array(buf, ptrs[i], g.need * 4).set(new Uint8Array(g.a!.buffer, g.a!.byteOffset, g.need * 4));
      });
      const r = call(...ptrs);
      const after = this.mem.buffer; // the call may have grown the memory
      args.forEach((g, i) => {
        if (copied[i] && g.io === 'inout') new Uint8Array(g.a!.buffer, g.a!.byteOffset, g.need * 4).set(new Uint8Array(after, ptrs[i], g.need * 4));
      });
      return r;
    } finally {
      args.forEach((_, i) => { if (copied[i] && ptrs[i]) this.x.cnx_free(ptrs[i]); });
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
    accumulate: boolean, bias: Float32Array | null, act: Act, preact: Float32Array | null, extras?: GemmExtras<Float32Array>,
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

  protected crossEntropy(logits: Float32Array, targets: Float32Array, N: number, K: number, dlogits: Float32Array | null): number {
    WasmKernels.dims('softmaxCrossEntropy', { N, K });
    return this.run('softmaxCrossEntropy', [
      { a: logits, need: N * K, name: 'logits', io: 'in' }, { a: targets, need: N * K, name: 'targets', io: 'in' }, { a: dlogits, need: N * K, name: 'dlogits', io: 'inout' },
    ], (pl, pt, pd) => this.fn('softmax_ce')(pl, pt, N, K, pd));
  }

  patchify(x: Float32Array, N: number, H: number, W: number, C: number, P: number, cols: Float32Array): void {
    WasmKernels.dims('patchify', { N, H, W, C, P });
    // As the op table says (and the native kernels do): Ho = floor(H / P), Wo = floor(W / P).
    if (P < 1) throw new ConvNextError('patchify: P must be an integer >= 1');
    const cells = N * Math.floor(H / P) * Math.floor(W / P) * C * P * P;
    this.run('patchify', [{ a: x, need: N * H * W * C, name: 'x', io: 'in' }, { a: cols, need: cells, name: 'cols', io: 'inout' }],
      (px, pc) => this.fn('patchify')(px, N, H, W, C, P, pc));
  }

  unpatchify(dcols: Float32Array, N: number, H: number, W: number, C: number, P: number, dx: Float32Array): void {
    WasmKernels.dims('unpatchify', { N, H, W, C, P });
    if (P < 1) throw new ConvNextError('unpatchify: P must be an integer >= 1');
    const cells = N * Math.floor(H / P) * Math.floor(W / P) * C * P * P;
    this.run('unpatchify', [{ a: dcols, need: cells, name: 'dcols', io: 'in' }, { a: dx, need: N * H * W * C, name: 'dx', io: 'inout' }],
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
