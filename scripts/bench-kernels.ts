/**
 * Kernel micro-benchmark (not a test): GFLOP/s of the GEMM shapes of ConvNeXt V2-Atto at batch
 * 16, 224 px (forward with fused bias + GELU, input gradient, weight gradient) and GB/s of the
 * 7x7 depthwise convolution, per instruction-set path and thread count.
 *   node --import tsx scripts/bench-kernels.ts [--isa avx512,avx2] [--threads 1,2] [--quick]
 * GFLOP/s count 2*M*N*K only (the fused bias/GELU epilogue is extra work). dwconv GB/s count
 * one read of the input and one write of the output.
 */
import { NativeKernels } from '../src/kernels/native.js';
import { Act } from '../src/kernels/types.js';

const args = process.argv.slice(2);
function opt(name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}
const quick = args.includes('--quick');
const k = new NativeKernels();
const isas = (opt('--isa')?.split(',') ?? k.supportedIsas()) as ('avx512' | 'avx2' | 'portable')[];
const threadList = (opt('--threads') ?? '1,2').split(',').map(Number);

function rnd(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() - 0.5;
  return a;
}

/**
 * Seconds per call: the best of repetitions filling ~minTime seconds (the machines are
 * shared, so the minimum is the least disturbed measurement).
 */
function time(fn: () => void, minTime = quick ? 0.1 : 0.3): number {
  fn();
  const t0 = performance.now();
  fn();
  const once = Math.max((performance.now() - t0) / 1000, 1e-6);
  const reps = Math.max(3, Math.min(200, Math.ceil(minTime / once)));
  const ts: number[] = [];
  for (let r = 0; r < reps; r++) {
    const s = performance.now();
    fn();
    ts.push((performance.now() - s) / 1000);
  }
  ts.sort((a, b) => a - b);
  return ts[0];
}

const batch = 16;
const stages = [
  { C: 40, H: 56 },
  { C: 80, H: 28 },
  { C: 160, H: 14 },
  { C: 320, H: 7 },
];

for (const isa of isas) {
  k.setIsa(isa);
  for (const th of threadList) {
    k.setThreads(th);
    console.log(`\n== ${isa}, ${th} thread${th > 1 ? 's' : ''} ==`);
    for (const { C, H } of stages) {
      const M = batch * H * H;
      for (const [K, N] of [[C, 4 * C], [4 * C, C]]) {
        const X = rnd(M * K), W = rnd(N * K), bias = rnd(N), Y = new Float32Array(M * N), P = new Float32Array(M * N);
        const dY = rnd(M * N), dX = new Float32Array(M * K), dW = new Float32Array(N * K);
        const flops = 2 * M * N * K;
        const gelu = N > K;
        const tf = time(() => k.gemm(false, true, M, N, K, X, K, W, K, Y, N, false, bias, gelu ? Act.Gelu : Act.None, gelu ? P : null));
        const tp = time(() => k.gemm(false, true, M, N, K, X, K, W, K, Y, N, false, null, Act.None, null));
        const tdx = time(() => k.gemm(false, false, M, K, N, dY, N, W, K, dX, K, false, null, Act.None, null));
        const tdw = time(() => k.gemm(true, false, N, K, M, dY, N, X, K, dW, K, false, null, Act.None, null));
        const g = (t: number) => (flops / t / 1e9).toFixed(1).padStart(6);
        console.log(
          `M=${String(M).padStart(5)} K=${String(K).padStart(4)} N=${String(N).padStart(4)}  ` +
          `fwd${gelu ? '+bias+gelu' : '+bias     '} ${g(tf)}  fwd(plain) ${g(tp)}  dx ${g(tdx)}  dW ${g(tdw)}  GFLOP/s`,
        );
      }
    }
    for (const { C, H } of stages) {
      const sz = batch * H * H * C;
      const x = rnd(sz), w = rnd(49 * C), b = rnd(C), y = new Float32Array(sz), dw = new Float32Array(49 * C), db = new Float32Array(C);
      const bytes = 2 * sz * 4;
      const tf = time(() => k.dwconvForward(x, batch, H, H, C, 7, w, b, y));
      const ti = time(() => k.dwconvBackwardInput(x, batch, H, H, C, 7, w, y, false));
      const tw = time(() => k.dwconvBackwardWeight(x, y, batch, H, H, C, 7, dw, db));
      const gb = (t: number) => (bytes / t / 1e9).toFixed(1).padStart(5);
      const gf = (t: number) => ((2 * 49 * sz) / t / 1e9).toFixed(1).padStart(6);
      console.log(
        `dwconv 7x7 ${batch}x${H}x${H}x${String(C).padStart(3)}: fwd ${gb(tf)} GB/s (${gf(tf)} GFLOP/s)  ` +
        `dx ${gb(ti)} GB/s (${gf(ti)})  dW ${gb(tw)} GB/s (${gf(tw)})`,
      );
    }
  }
}
