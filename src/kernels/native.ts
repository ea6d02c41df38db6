/**
 * The native kernels: a thin binding of the C++ addon (build/Release/convnextv2.node) to the
 * Kernels interface. The addon validates every argument and throws on bad input; typed arrays
 * are passed zero-copy. The instruction-set path and the thread count are process-wide
 * settings of the addon (shared by every NativeKernels instance).
 */
import { HostKernels } from './host.js';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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

/** The functions the addon exports (argument order as in Kernels). */
interface Addon {
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
  colSum(x: Float32Array, M: number, N: number, out: Float32Array, accumulate: boolean): void;
  dwconvForward(
    x: Float32Array, N: number, H: number, W: number, C: number, K: number,
    weight: Float32Array, bias: Float32Array | null, y: Float32Array,
  ): void;
  dwconvBackwardInput(
    dy: Float32Array, N: number, H: number, W: number, C: number, K: number,
    weight: Float32Array, dx: Float32Array, accumulate: boolean,
  ): void;
  dwconvBackwardWeight(
    dy: Float32Array, x: Float32Array, N: number, H: number, W: number, C: number, K: number,
    dweight: Float32Array, dbias: Float32Array | null,
  ): void;
  dwconvForwardRows(
    x: Float32Array, rowOf: Int32Array, idx: Int32Array,
    S: number, N: number, H: number, W: number, C: number, K: number,
    weight: Float32Array, bias: Float32Array | null, y: Float32Array,
  ): void;
  dwconvBackwardInputRows(
    dy: Float32Array, rowOf: Int32Array, idx: Int32Array,
    S: number, N: number, H: number, W: number, C: number, K: number,
    weight: Float32Array, dx: Float32Array, accumulate: boolean,
  ): void;
  dwconvBackwardWeightRows(
    dy: Float32Array, x: Float32Array, rowOf: Int32Array, idx: Int32Array,
    S: number, N: number, H: number, W: number, C: number, K: number,
    dweight: Float32Array, dbias: Float32Array | null,
  ): void;
  layerNormForward(
    x: Float32Array, M: number, C: number, gamma: Float32Array, beta: Float32Array, eps: number,
    y: Float32Array, mean: Float32Array, rstd: Float32Array,
  ): void;
  layerNormBackward(
    dy: Float32Array, x: Float32Array, mean: Float32Array, rstd: Float32Array,
    gamma: Float32Array, M: number, C: number,
    dx: Float32Array, accumulate: boolean, dgamma: Float32Array, dbeta: Float32Array,
  ): void;
  grnForward(
    x: Float32Array, offsets: Int32Array, C: number, gamma: Float32Array, beta: Float32Array,
    eps: number, y: Float32Array | null, gx: Float32Array, nx: Float32Array,
    sqSums?: Float32Array | null,
  ): void;
  grnBackward(
    dy: Float32Array, x: Float32Array, offsets: Int32Array, C: number, gamma: Float32Array,
    eps: number, gx: Float32Array, nx: Float32Array,
    dx: Float32Array, dgamma: Float32Array, dbeta: Float32Array,
    geluPre?: Float32Array | null, dbias?: Float32Array | null,
  ): void;
  gelu(x: Float32Array, y: Float32Array, n: number): void;
  geluBackward(dy: Float32Array, x: Float32Array, dx: Float32Array, n: number): void;
  avgPoolForward(x: Float32Array, N: number, HW: number, C: number, y: Float32Array): void;
  avgPoolBackward(dy: Float32Array, N: number, HW: number, C: number, dx: Float32Array): void;
  softmaxCrossEntropy(
    logits: Float32Array, targets: Float32Array, N: number, K: number,
    dlogits: Float32Array | null,
  ): number;
  patchify(x: Float32Array, N: number, H: number, W: number, C: number, P: number, cols: Float32Array): void;
  unpatchify(dcols: Float32Array, N: number, H: number, W: number, C: number, P: number, dx: Float32Array): void;
  nchwToNhwc(src: Float32Array, N: number, C: number, H: number, W: number, dst: Float32Array): void;
  nhwcToNchw(src: Float32Array, N: number, H: number, W: number, C: number, dst: Float32Array): void;
  addScaled(
    x: Float32Array, branch: Float32Array, scale: Float32Array, N: number, rowsPerSample: number,
    C: number, out: Float32Array,
  ): void;
  adamw(
    p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, n: number,
    lr: number, beta1: number, beta2: number, eps: number, weightDecay: number,
    bc1: number, bc2: number,
  ): void;
  setIsa(name: string): void;
  getIsa(): string;
  supportedIsas(): string[];
  setThreads(n: number): void;
  getThreads(): number;
  measurePeak(seconds: number): number;
  measureClock(seconds: number): number;
  cpuInfo(): CpuId;
  copy(src: Float32Array, dst: Float32Array, n: number): void;
}

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
    addon = require(addonPath) as Addon;
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

export class NativeKernels extends HostKernels implements Kernels {
  readonly name = 'native';
  private readonly a: Addon;

  constructor() {
    super();
    this.a = load();
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

  colSum(x: Float32Array, M: number, N: number, out: Float32Array, accumulate: boolean): void {
    this.a.colSum(x, M, N, out, accumulate);
  }

  dwconvForward(
    x: Float32Array, N: number, H: number, W: number, C: number, K: number,
    weight: Float32Array, bias: Float32Array | null, y: Float32Array,
  ): void {
    this.a.dwconvForward(x, N, H, W, C, K, weight, bias, y);
  }

  dwconvBackwardInput(
    dy: Float32Array, N: number, H: number, W: number, C: number, K: number,
    weight: Float32Array, dx: Float32Array, accumulate: boolean,
  ): void {
    this.a.dwconvBackwardInput(dy, N, H, W, C, K, weight, dx, accumulate);
  }

  dwconvBackwardWeight(
    dy: Float32Array, x: Float32Array, N: number, H: number, W: number, C: number, K: number,
    dweight: Float32Array, dbias: Float32Array | null,
  ): void {
    this.a.dwconvBackwardWeight(dy, x, N, H, W, C, K, dweight, dbias);
  }

  dwconvForwardRows(
    x: Float32Array, rowOf: Int32Array, idx: Int32Array,
    S: number, N: number, H: number, W: number, C: number, K: number,
    weight: Float32Array, bias: Float32Array | null, y: Float32Array,
  ): void {
    this.a.dwconvForwardRows(x, rowOf, idx, S, N, H, W, C, K, weight, bias, y);
  }

  dwconvBackwardInputRows(
    dy: Float32Array, rowOf: Int32Array, idx: Int32Array,
    S: number, N: number, H: number, W: number, C: number, K: number,
    weight: Float32Array, dx: Float32Array, accumulate: boolean,
  ): void {
    this.a.dwconvBackwardInputRows(dy, rowOf, idx, S, N, H, W, C, K, weight, dx, accumulate);
  }

  dwconvBackwardWeightRows(
    dy: Float32Array, x: Float32Array, rowOf: Int32Array, idx: Int32Array,
    S: number, N: number, H: number, W: number, C: number, K: number,
    dweight: Float32Array, dbias: Float32Array | null,
  ): void {
    this.a.dwconvBackwardWeightRows(dy, x, rowOf, idx, S, N, H, W, C, K, dweight, dbias);
  }

  layerNormForward(
    x: Float32Array, M: number, C: number, gamma: Float32Array, beta: Float32Array, eps: number,
    y: Float32Array, mean: Float32Array, rstd: Float32Array,
  ): void {
    this.a.layerNormForward(x, M, C, gamma, beta, eps, y, mean, rstd);
  }

  layerNormBackward(
    dy: Float32Array, x: Float32Array, mean: Float32Array, rstd: Float32Array,
    gamma: Float32Array, M: number, C: number,
    dx: Float32Array, accumulate: boolean, dgamma: Float32Array, dbeta: Float32Array,
  ): void {
    this.a.layerNormBackward(dy, x, mean, rstd, gamma, M, C, dx, accumulate, dgamma, dbeta);
  }

  grnForward(
    x: Float32Array, offsets: Int32Array, C: number, gamma: Float32Array, beta: Float32Array,
    eps: number, y: Float32Array | null, gx: Float32Array, nx: Float32Array,
    sqSums: Float32Array | null = null,
  ): void {
    this.a.grnForward(x, offsets, C, gamma, beta, eps, y, gx, nx, sqSums);
  }

  grnBackward(
    dy: Float32Array, x: Float32Array, offsets: Int32Array, C: number, gamma: Float32Array,
    eps: number, gx: Float32Array, nx: Float32Array,
    dx: Float32Array, dgamma: Float32Array, dbeta: Float32Array,
    geluPre: Float32Array | null = null, dbias: Float32Array | null = null,
  ): void {
    this.a.grnBackward(dy, x, offsets, C, gamma, eps, gx, nx, dx, dgamma, dbeta, geluPre, dbias);
  }

  gelu(x: Float32Array, y: Float32Array, n: number): void {
    this.a.gelu(x, y, n);
  }

  geluBackward(dy: Float32Array, x: Float32Array, dx: Float32Array, n: number): void {
    this.a.geluBackward(dy, x, dx, n);
  }

  avgPoolForward(x: Float32Array, N: number, HW: number, C: number, y: Float32Array): void {
    this.a.avgPoolForward(x, N, HW, C, y);
  }

  avgPoolBackward(dy: Float32Array, N: number, HW: number, C: number, dx: Float32Array): void {
    this.a.avgPoolBackward(dy, N, HW, C, dx);
  }

  protected crossEntropy(
    logits: Float32Array, targets: Float32Array, N: number, K: number,
    dlogits: Float32Array | null,
  ): number {
    return this.a.softmaxCrossEntropy(logits, targets, N, K, dlogits);
  }

  patchify(
    x: Float32Array, N: number, H: number, W: number, C: number, P: number, cols: Float32Array,
  ): void {
    this.a.patchify(x, N, H, W, C, P, cols);
  }

  unpatchify(
    dcols: Float32Array, N: number, H: number, W: number, C: number, P: number, dx: Float32Array,
  ): void {
    this.a.unpatchify(dcols, N, H, W, C, P, dx);
  }

  nchwToNhwc(src: Float32Array, N: number, C: number, H: number, W: number, dst: Float32Array): void {
    this.a.nchwToNhwc(src, N, C, H, W, dst);
  }

  nhwcToNchw(src: Float32Array, N: number, H: number, W: number, C: number, dst: Float32Array): void {
    this.a.nhwcToNchw(src, N, H, W, C, dst);
  }

  addScaled(
    x: Float32Array, branch: Float32Array, scale: Float32Array, N: number, rowsPerSample: number,
    C: number, out: Float32Array,
  ): void {
    this.a.addScaled(x, branch, scale, N, rowsPerSample, C, out);
  }

  adamw(
    p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, n: number,
    lr: number, beta1: number, beta2: number, eps: number, weightDecay: number,
    bc1: number, bc2: number,
  ): void {
    this.a.adamw(p, g, m, v, n, lr, beta1, beta2, eps, weightDecay, bc1, bc2);
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
