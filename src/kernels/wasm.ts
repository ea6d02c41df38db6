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
 * Arrays that are not views of this memory are always accepted and copied per call. The
 * compiled ops (ops.ts: COMPILED_OPS) are one generic call each, marshalled by the op table's
 * argument kinds; the table's validator runs before every call. Results are bit-identical for
 * any thread count (fixed-order reductions).
 */
import { HostKernels } from './host.js';
import { ConvNextError } from '../errors.js';
import { COMPILED_OPS, type CompiledOp, compiledMismatch, CROSS_ENTROPY, namedArgs, OP_BY_NAME, type OpSpec, withChecks } from './ops.js';
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
  cnx_op_count(): number;
  cnx_op_name(op: number): Ptr;
  cnx_op_signature(op: number): Ptr;
  cnx_call(op: number, slots: Ptr): number;
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
const SLOTS = 64; // cnx_call's argument slots: more than any op takes (an Int32Array takes two)

/**
 * One argument of a call: an array (or null) of which the first `need` elements are copied in
 * (`in`), or in and back out (`inout`: every array a kernel writes, so that what it leaves alone,
 * e.g. the gaps of a strided matrix, comes back unchanged). Views of the module's memory are
 * passed in place.
 */
type Arg = { a: Float32Array | Int32Array | null; need: number; name: string; io: 'in' | 'inout' };

/** The compiled ops (ops.ts: COMPILED_OPS), each one cnx_call of the module, typed as the Kernels interface types them. */
export interface WasmKernels extends Pick<Kernels, CompiledOp> {}

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
  /** Each compiled op's number in this module (cnx_call's first argument). */
  private readonly opIds = new Map<string, number>();
  /** cnx_call's argument slots (SLOTS doubles in the module's memory). */
  private readonly slots: Ptr;

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
    for (const f of ['cnx_malloc', 'cnx_free', 'cnx_worker', 'cnx_call', 'gemm']) {
      if (!(f in this.x)) throw new ConvNextError(`wasm kernels: the module has no export ${f} (not a convnextv2 kernel build of this version)`);
    }
    const signatures: Record<string, string> = {};
    for (let i = 0; i < this.x.cnx_op_count(); i++) {
      const name = this.cString(this.x.cnx_op_name(i));
      this.opIds.set(name, i);
      signatures[name] = this.cString(this.x.cnx_op_signature(i));
    }
    const stale = compiledMismatch(signatures);
    if (stale) throw new ConvNextError(`wasm kernels: the module does not match this version's op table: ${stale} (rebuild it: npm run build:wasm)`);
    this.shared = shared;
    this.threads = 1;
    if (shared) this.x.__wasm_init_tls!(this.mallocOrThrow('TLS', (this.x.__tls_size!.value as number) || 16));
    this.memory = shared ? this.linearMemory() : hostMemory;
    this.slots = this.mallocOrThrow('call slots', 8 * SLOTS);
    withChecks(this);
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

  /** The NUL-terminated string at `p` in the module's memory. */
  private cString(p: Ptr): string {
    const bytes = new Uint8Array(this.mem.buffer);
    let end = p;
    while (bytes[end] !== 0) end++;
    return new TextDecoder().decode(bytes.slice(p, end));
  }

  /**
   * Runs a compiled op: its tensors and index arrays marshalled by their kinds in the table (the
   * elements the table's sizes name, else the whole array; `in` and `idx` copied in, the others
   * in and out), then one cnx_call with the arguments in slots in the table's order.
   */
  callOp(spec: OpSpec, args: readonly unknown[]): number {
    const id = this.opIds.get(spec.name);
    if (id === undefined) throw new ConvNextError(`wasm kernels: the module has no op ${spec.name}`);
    const need = spec.sizes?.(namedArgs(spec, args) as Readonly<Record<string, number>>) ?? {};
    const arrays: Arg[] = [];
    spec.args.forEach((g, i) => {
      if (g.kind !== 'in' && g.kind !== 'out' && g.kind !== 'inout' && g.kind !== 'idx') return;
      const a = (args[i] ?? null) as Float32Array | Int32Array | null;
      arrays.push({ a, need: need[g.name] ?? a?.length ?? 0, name: g.name, io: g.kind === 'in' || g.kind === 'idx' ? 'in' : 'inout' });
    });
    return this.run(spec.name, arrays, (...ptrs) => {
      const slot = new Float64Array(this.mem.buffer, this.slots, SLOTS);
      let j = 0, k = 0;
      spec.args.forEach((g, i) => {
        const v = args[i];
        if (g.kind === 'idx') {
          slot[j++] = ptrs[k];
          slot[j++] = arrays[k++].need;
        } else if (g.kind === 'in' || g.kind === 'out' || g.kind === 'inout') {
          slot[j++] = ptrs[k++];
        } else {
          slot[j++] = typeof v === 'boolean' ? +v : (v as number);
        }
      });
      return this.x.cnx_call(id, this.slots);
    });
  }

  protected crossEntropy(logits: Float32Array, targets: Float32Array, N: number, K: number, dlogits: Float32Array | null): number {
    return this.callOp(CROSS_ENTROPY, [logits, targets, N, K, dlogits]);
  }
}

// Each compiled op is one cnx_call with the table's arguments.
for (const op of COMPILED_OPS) {
  const spec = OP_BY_NAME.get(op)!;
  Object.defineProperty(WasmKernels.prototype, op, {
    configurable: true, writable: true,
    value(this: WasmKernels, ...args: unknown[]): void {
      this.callOp(spec, args);
    },
  });
}
