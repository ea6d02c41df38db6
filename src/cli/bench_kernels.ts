/**
 * `convnextv2 bench --mode kernels`: GFLOP/s of the GEMM and depthwise-convolution shapes of a
 * model at a batch size (default atto, batch 16, 224 px), next to the machine's fp32 peak and
 * copy bandwidth measured in the same run. The machines we run on are shared: the peak an FMA
 * loop reaches varies from minute to minute, so "% of peak" is given against both the nominal
 * peak (cores x FLOPs per cycle of the active ISA on this CPU x the clock measured in this
 * run, see src/kernels/cpu.ts; --peak overrides it) and the one measured here.
 *
 * GEMM FLOPs count 2*M*N*K (epilogues are extra work). The pointwise layers are measured as
 * the model calls them: pwconv1 with bias + GELU (inference: no pre-activation kept),
 * pwconv2 with bias + the residual accumulated into C; then the input gradient (dX = dY W)
 * and the weight gradient (dW = dY^T X) of each. The 7x7 depthwise convolution reads its
 * input and writes its output once: 98 FLOPs per 8 bytes, so on a machine whose copy
 * bandwidth times 12.25 FLOP/byte exceeds the FMA peak it is bound by arithmetic, not memory.
 */
import { cpuInfo, cpuName, nominalPeak, type NativeIsa, type NominalPeak } from '../kernels/cpu.js';
import type { NativeKernels } from '../kernels/native.js';
import { Act } from '../kernels/types.js';
import type { ConvNeXtV2Config as ModelConfig } from '../model/config.js';

export interface KernelRow {
  kind: 'gemm' | 'dwconv';
  /** pwconv1 / pwconv2 forward, dX, dW; dwconv fwd, dX, dW. */
  op: string;
  stage: number;
  /** GEMM shape (M, N, K) or depthwise shape (N, H, W, C). */
  shape: number[];
  gflops: number;
  /** Bytes read + written once per second (depthwise rows only). */
  gbps?: number;
}

export interface KernelBench {
  isa: string;
  threads: number;
  /** The CPU the run measured: brand string, vendor, family, model. */
  cpu: string;
  /** Cores x FLOP/cycle x clock (the clock: the fastest measured before and after the rows). */
  nominal: NominalPeak;
  /**
   * FMA-loop GFLOP/s: the best of measurements before, between the stages and after the rows
   * (on a shared machine a kernel timed in a quiet moment must not beat a peak timed in a busy one).
   */
  measuredPeak: number;
  /** Copy GB/s (read + write) on a buffer of the first stage's activation size. */
  copyGbps: number;
  rows: KernelRow[];
}

function rnd(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 4294967296 - 0.5;
  }
  return a;
}

/** Seconds per call: the fastest of repetitions filling ~minSeconds (the least disturbed). */
function best(fn: () => void, minSeconds: number): number {
  fn();
  const t0 = performance.now();
  fn();
  const once = Math.max((performance.now() - t0) / 1000, 1e-6);
  const reps = Math.max(3, Math.min(200, Math.ceil(minSeconds / once)));
  let b = Infinity;
  for (let r = 0; r < reps; r++) {
    const s = performance.now();
    fn();
    b = Math.min(b, (performance.now() - s) / 1000);
  }
  return b;
}

export function benchKernels(
  k: NativeKernels, cfg: ModelConfig, batch: number, size: number, minSeconds = 0.3,
  progress?: (done: number, total: number) => void,
): KernelBench {
  const clockBefore = k.measureClock(0.2);
  const peaks = [k.measurePeak(0.5)];
  const stages = cfg.dims.map((C, i) => ({ C, H: Math.floor(size / (4 * 2 ** i)) }));
  const rows: KernelRow[] = [];
  const total = stages.length * 3;
  let done = 0;
  for (const [si, { C, H }] of stages.entries()) {
    const M = batch * H * H;
    const X = rnd(M * C, 1), Hd = rnd(M * 4 * C, 2), W1 = rnd(4 * C * C, 3), W2 = rnd(C * 4 * C, 4);
    const b1 = rnd(4 * C, 5), b2 = rnd(C, 6), dY1 = rnd(M * 4 * C, 7), dY2 = rnd(M * C, 8);
    const Y1 = new Float32Array(M * 4 * C), Y2 = new Float32Array(M * C);
    const dX1 = new Float32Array(M * C), dX2 = new Float32Array(M * 4 * C);
    const dW1 = new Float32Array(4 * C * C), dW2 = new Float32Array(C * 4 * C);
    const gemm = (op: string, Mm: number, N: number, K: number, fn: () => void) =>
      rows.push({ kind: 'gemm', op, stage: si + 1, shape: [Mm, N, K], gflops: (2 * Mm * N * K) / best(fn, minSeconds) / 1e9 });
    // pwconv1: [M, C] x [4C, C]^T + bias, GELU; pwconv2: [M, 4C] x [C, 4C]^T + bias + residual.
    gemm('pwconv1 fwd (bias+GELU)', M, 4 * C, C, () => k.gemm(false, true, M, 4 * C, C, X, C, W1, C, Y1, 4 * C, false, b1, Act.Gelu, null));
    gemm('pwconv2 fwd (bias+residual)', M, C, 4 * C, () => k.gemm(false, true, M, C, 4 * C, Hd, 4 * C, W2, 4 * C, Y2, C, true, b2, Act.None, null));
    gemm('pwconv1 dX', M, C, 4 * C, () => k.gemm(false, false, M, C, 4 * C, dY1, 4 * C, W1, C, dX1, C, false, null, Act.None, null));
    gemm('pwconv2 dX', M, 4 * C, C, () => k.gemm(false, false, M, 4 * C, C, dY2, C, W2, 4 * C, dX2, 4 * C, false, null, Act.None, null));
    gemm('pwconv1 dW', 4 * C, C, M, () => k.gemm(true, false, 4 * C, C, M, dY1, 4 * C, X, C, dW1, C, false, null, Act.None, null));
    gemm('pwconv2 dW', C, 4 * C, M, () => k.gemm(true, false, C, 4 * C, M, dY2, C, Hd, 4 * C, dW2, 4 * C, false, null, Act.None, null));
    progress?.(++done, total);
    const w = rnd(49 * C, 9), b = rnd(C, 10), y = new Float32Array(M * C), dw = new Float32Array(49 * C), db = new Float32Array(C);
    const dwRow = (op: string, fn: () => void) => {
      const t = best(fn, minSeconds);
      rows.push({ kind: 'dwconv', op, stage: si + 1, shape: [batch, H, H, C], gflops: (2 * 49 * M * C) / t / 1e9, gbps: (8 * M * C) / t / 1e9 });
    };
    dwRow('dwconv 7x7 fwd', () => k.dwconvForward(X, batch, H, H, C, 7, w, b, y));
    dwRow('dwconv 7x7 dX', () => k.dwconvBackwardInput(X, batch, H, H, C, 7, w, y, false));
    dwRow('dwconv 7x7 dW', () => k.dwconvBackwardWeight(X, y, batch, H, H, C, 7, dw, db));
    progress?.(++done, total);
    const n = M * C;
    const src = rnd(n, 11), dst = new Float32Array(n);
    if (si === 0) rows.push({ kind: 'dwconv', op: 'copy', stage: 1, shape: [batch, H, H, C], gflops: 0, gbps: (8 * n) / best(() => k.copy(src, dst, n), minSeconds) / 1e9 });
    peaks.push(k.measurePeak(0.2));
    progress?.(++done, total);
  }
  peaks.push(k.measurePeak(0.5));
  const clock = Math.max(clockBefore, k.measureClock(0.2));
  const copyRow = rows.findIndex((r) => r.op === 'copy');
  const copyGbps = rows[copyRow].gbps ?? 0;
  rows.splice(copyRow, 1);
  const cpu = cpuInfo(k);
  return {
    isa: k.isa, threads: k.threads, cpu: cpuName(cpu), nominal: nominalPeak(cpu, k.isa as NativeIsa, k.threads, clock),
    measuredPeak: Math.max(...peaks), copyGbps, rows,
  };
}

/**
 * Markdown table of a kernel bench, % of the nominal and of the measured peak; `peak` (a
 * user's --peak) replaces the nominal figure.
 */
export function kernelTable(r: KernelBench, peak?: number): string {
  const f = (v: number, d = 1) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');
  const nominalPeak = peak ?? r.nominal.gflops;
  const nominal = peak !== undefined ? `${f(peak)} GFLOP/s (--peak)` : `${f(r.nominal.gflops)} GFLOP/s = ${r.nominal.basis}`;
  const lines = [
    `${r.cpu}, ${r.isa}, ${r.threads} thread(s).`,
    `FMA peak measured in this run: ${f(r.measuredPeak)} GFLOP/s; nominal: ${nominal}; copy ${f(r.copyGbps)} GB/s.`,
    '',
    '| stage | op | M x N x K (GEMM) or N x H x W x C | GFLOP/s | % nominal peak | % measured peak | GB/s |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const row of r.rows) {
    lines.push(`| ${row.stage} | ${row.op} | ${row.shape.join(' x ')} | ${f(row.gflops)} | ${f((100 * row.gflops) / nominalPeak)} | ${f((100 * row.gflops) / r.measuredPeak)} | ${row.gbps !== undefined ? f(row.gbps) : ''} |`);
  }
  return lines.join('\n');
}
