/**
 * The native kernels: a thin binding of the C++ addon (build/Release/convnextv2.node) to the
 * Kernels interface. The compiled ops (ops.ts: COMPILED_OPS) are the addon's functions of the
 * same names with the table's arguments; the table's validator runs before each (the addon
 * checks only the kinds of the values), typed arrays are passed zero-copy. The instruction-set path and the thread count are process-wide
 * settings of the addon (shared by every NativeKernels instance).
 */
import { HostKernels } from './host.js';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { COMPILED_OPS, type CompiledOp, compiledMismatch, withChecks } from './ops.js';
import type { Act, GemmExtras, Isa, Kernels, NativeIsa, PackedWeights } from './types.js';

/** What cpuid says the CPU is ('' and 0 without cpuid). */
export interface CpuId {
  /** 'GenuineIntel', 'AuthenticAMD'. */
  vendor: string;
  /** The brand string, e.g. 'AMD EPYC 7B13'. */
  brand: string;
  /** Display family and model (cpuid leaf 1, extended fields folded in). */
  family: number;
  model: number;
}

/** The functions the addon exports: the ops above, gemm, and the process-wide settings. */
type Addon = Record<CompiledOp, (...args: unknown[]) => void> & {
  /** The compiled ops' C++ signatures (native/ops.h), name -> one character per argument. */
  opSignatures: Record<string, string>;
  gemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number,
    A: Float32Array, lda: number, B: Float32Array, ldb: number, C: Float32Array, ldc: number,
    accumulate: boolean, bias: Float32Array | null, act: number, preact: Float32Array | null,
    aScale?: Float32Array | null, aScaleRows?: number, aShift?: Float32Array | null,
    residual?: Float32Array | null, sqSums?: Float32Array | null, sqGroupRows?: number,
    packedB?: Float32Array | null,
  ): void;
  packedSize(N: number, K: number): number;
  packWeights(B: Float32Array, ldb: number, transB: boolean, N: number, K: number, out: Float32Array): void;
  crossEntropy(logits: Float32Array, targets: Float32Array, N: number, K: number, dlogits: Float32Array | null): number;
  setIsa(name: string): void;
  getIsa(): string;
  supportedIsas(): string[];
  setThreads(n: number): void;
  getThreads(): number;
  measurePeak(seconds: number): number;
  measureClock(seconds: number): number;
  cpuInfo(): CpuId;
  copy(src: Float32Array, dst: Float32Array, n: number): void;
};

/** The package root: two levels above this file (src/kernels or dist/kernels). */
const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/**
 * Where node-gyp puts the addon; CONVNEXTV2_ADDON names another build (A/B benchmarks of
 * kernel variants: `CONVNEXTV2_ADDON=/tmp/variant.node convnextv2 bench ...`).
 */
export const addonPath = process.env.CONVNEXTV2_ADDON || path.join(packageRoot, 'build', 'Release', 'convnextv2.node');

let addon: Addon | null = null;
let loadError: string | null = null;

function load(): Addon {
  if (addon) return addon;
  if (loadError !== null) throw new Error(loadError);
  try {
    if (!existsSync(addonPath)) {
      throw new Error(`native addon not built (${addonPath} missing; run npm run build)`);
    }
    const require = createRequire(import.meta.url);
    const a = require(addonPath) as Addon;
    const stale = compiledMismatch(a.opSignatures ?? {});
    if (stale) throw new Error(`native addon ${addonPath} does not match this version's op table: ${stale} (run npm run build)`);
    addon = a;
    return addon;
  } catch (e) {
    loadError = e instanceof Error ? e.message : String(e);
    throw new Error(loadError);
  }
}

/** True when the addon loads (it is built and supports this CPU). */
export function nativeAvailable(): boolean {
  try {
    load();
    return true;
  } catch {
    return false;
  }
}

/** A pack made by NativeKernels.packWeights: the panels of this ISA's GEMM. */
class NativePacked implements PackedWeights {
  constructor(readonly N: number, readonly K: number, readonly transB: boolean, readonly isa: string, readonly data: Float32Array) {}
  get bytes(): number {
    return this.data.byteLength;
  }
}

/** The compiled ops (ops.ts: COMPILED_OPS), forwarded to the addon, typed as the Kernels interface types them. */
export interface NativeKernels extends Pick<Kernels, CompiledOp> {}

export class NativeKernels extends HostKernels implements Kernels {
  readonly name = 'native';
  private readonly a: Addon;

  /** Every call is validated by the op table first: the addon trusts its arguments' sizes. */
  constructor() {
    super();
    this.a = load();
    withChecks(this);
  }

  /** The addon behind `k` (for the forwarded ops). */
  static addonOf(k: NativeKernels): Addon {
    return k.a;
  }

  /** The instruction-set path in use (process-wide). */
  get isa(): Isa {
    return this.a.getIsa() as Isa;
  }

  /** Threads used by parallel kernels (process-wide). */
  get threads(): number {
    return this.a.getThreads();
  }

  /** Switches the instruction-set path; throws when the CPU or build lacks it. */
  setIsa(isa: NativeIsa): void {
    this.a.setIsa(isa);
  }

  /** Sets the thread-pool size (n >= 1; 0 restores the default: CPUs or CONVNEXTV2_THREADS). */
  setThreads(n: number): void {
    this.a.setThreads(n);
  }

  /** The paths usable on this machine, best first (always ends with 'portable'). */
  supportedIsas(): NativeIsa[] {
    return this.a.supportedIsas() as NativeIsa[];
  }

  gemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number,
    A: Float32Array, lda: number, B: Float32Array, ldb: number, C: Float32Array, ldc: number,
    accumulate: boolean, bias: Float32Array | null, act: Act, preact: Float32Array | null,
    extras?: GemmExtras<Float32Array>,
  ): void {
    if (!extras) {
      this.a.gemm(transA, transB, M, N, K, A, lda, B, ldb, C, ldc, accumulate, bias, act, preact);
      return;
    }
    const { aScale = null, aScaleRows = 1, aShift = null, residual = null, sqSums = null, sqGroupRows = 1, packedB = null } = extras;
    let packed: Float32Array | null = null;
    if (packedB) {
      if (!(packedB instanceof NativePacked) || packedB.isa !== this.isa) throw new Error(`gemm: packedB was packed by other kernels or for another instruction set (repack with packWeights on ${this.isa})`);
      if (!transB || packedB.N !== N || packedB.K !== K) {
        throw new Error(`gemm: packedB is for N=${packedB.N}, K=${packedB.K}${packedB.transB ? ', transB' : ''}; the call has N=${N}, K=${K}${transB ? ', transB' : ''}`);
      }
      packed = packedB.data;
    }
    this.a.gemm(transA, transB, M, N, K, A, lda, B, ldb, C, ldc, accumulate, bias, act, preact, aScale, aScaleRows, aShift, residual,
      sqSums, sqGroupRows, packed);
  }

  packWeights(B: Float32Array, ldb: number, transB: boolean, N: number, K: number): PackedWeights {
    if (!transB) throw new Error('packWeights: only transposed operands (Linear weights [out, in]) are packed');
    const data = new Float32Array(this.a.packedSize(N, K));
    this.a.packWeights(B, ldb, transB, N, K, data);
    return new NativePacked(N, K, transB, this.isa, data);
  }

  protected crossEntropy(
    logits: Float32Array, targets: Float32Array, N: number, K: number,
    dlogits: Float32Array | null,
  ): number {
    return this.a.crossEntropy(logits, targets, N, K, dlogits);
  }

  /**
   * The fp32 peak this process reaches now: GFLOP/s of independent vector FMAs on all pool
   * threads with the active ISA, best round within `seconds` (for `bench`; shared machines
   * give less than the nominal peak when other work runs).
   */
  measurePeak(seconds = 0.5): number {
    return this.a.measurePeak(seconds);
  }

  /** The calling thread's core clock in GHz now (0 where it cannot be measured: not x86). */
  measureClock(seconds = 0.2): number {
    return this.a.measureClock(seconds);
  }

  /** What cpuid says the CPU is (vendor, brand string, display family and model). */
  cpuInfo(): CpuId {
    return this.a.cpuInfo();
  }

  /** dst[0:n] = src[0:n] (n: all of src by default), vectorised and threaded. */
  override copy(src: Float32Array, dst: Float32Array, n = src.length): void {
    this.a.copy(src, dst, n);
  }
}

// Each compiled op is the addon's function of the same name with the same arguments.
for (const op of COMPILED_OPS) {
  Object.defineProperty(NativeKernels.prototype, op, {
    configurable: true, writable: true,
    value(this: NativeKernels, ...args: unknown[]): void {
      NativeKernels.addonOf(this)[op](...args);
    },
  });
}
