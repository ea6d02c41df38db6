// Child process of test/isa.test.ts (and of the valgrind suite): calls every function the
// native addon exports once, on one instruction-set path, and prints one JSON line. A path the
// CPU lacks must be refused with a clear error (and nothing of it run); a signal (SIGILL) kills
// this process instead, which is what the parent looks for.
//
//   node --import tsx test/isa_child.ts <avx512|avx2|portable>   setIsa(<isa>), then every call
//   node --import tsx test/isa_child.ts env                      only load (CONVNEXTV2_ISA set by the parent)
//
// Output: {"requested", "active", "supported", "rejected": message | null, "loadError": message
// | null, "cpu", "sums": {export: sum of its outputs}}. Exit 0 unless a call misbehaved (3: an
// export this file does not call, so a new entry point must be added here).
import { createRequire } from 'node:module';
import { addonPath } from '../src/kernels/native.js';

type Fn = (...args: unknown[]) => unknown;
const want = process.argv[2];
const require = createRequire(import.meta.url);

const report: Record<string, unknown> = { requested: want, active: null, supported: null, rejected: null, loadError: null, cpu: null, sums: {} };
const done = (code = 0) => {
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exit(code);
};

let addon: Record<string, Fn>;
try {
  addon = require(addonPath) as Record<string, Fn>;
} catch (e) {
  report.loadError = e instanceof Error ? e.message : String(e);
  done();
}
report.supported = addon!.supportedIsas();
report.cpu = addon!.cpuInfo();
report.active = addon!.getIsa();
if (want === 'env') done();

try {
  addon!.setIsa(want);
} catch (e) {
  report.rejected = e instanceof Error ? e.message : String(e);
}
report.active = addon!.getIsa();

// Deterministic inputs.
let s = 7;
const rnd = (n: number, scale = 1) => Float32Array.from({ length: n }, () => {
  s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
  return (s / 4294967296 - 0.5) * scale;
});
const zeros = (n: number) => new Float32Array(n);
const sum = (...xs: (Float32Array | number)[]) => xs.reduce<number>((t, x) => t + (typeof x === 'number' ? x : x.reduce((a, b) => a + b, 0)), 0);

const sums: Record<string, number> = {};
const called = new Set<string>();
function call(name: string, run: (f: Fn) => number): void {
  called.add(name);
  sums[name] = run(addon[name]);
}

// One small shape for everything: N images of H x W x C, a 3x3 depthwise kernel.
const N = 2, H = 5, W = 6, C = 20, K = 3, M = N * H * W;
const x = rnd(M * C), dy = rnd(M * C), w = rnd(K * K * C), b = rnd(C);
call('gemm', (f) => {
  const A = rnd(M * C), B = rnd(C * 24), out = zeros(M * 24), pre = zeros(M * 24);
  f(false, false, M, 24, C, A, C, B, 24, out, 24, false, rnd(24), 1, pre);
  const out2 = zeros(M * 24), sq = zeros(N * 24);
  f(false, false, M, 24, C, A, C, B, 24, out2, 24, false, null, 0, null, rnd(N * C), H * W, rnd(C), rnd(M * 24), sq, H * W);
  return sum(out, pre, out2, sq);
});
// packedSize and packWeights, then the pack in a GEMM (the output must equal packing per call).
let packLen = 0;
call('packedSize', (f) => {
  packLen = f(24, C) as number;  // the layout is the path's own: only "holds B" compares across paths
  return packLen >= 24 * C ? 1 : 0;
});
call('packWeights', (f) => {
  const Bt = rnd(24 * C), packed = zeros(packLen), A = rnd(M * C), c1 = zeros(M * 24), c2 = zeros(M * 24);
  f(Bt, C, true, 24, C, packed);
  addon.gemm(false, true, M, 24, C, A, C, Bt, C, c1, 24, false, null, 0, null);
  addon.gemm(false, true, M, 24, C, A, C, Bt, C, c2, 24, false, null, 0, null, null, 1, null, null, null, 1, packed);
  if (c1.some((v, i) => v !== c2[i])) throw new Error('a packed B gave other bits than packing per call');
  return sum(c2);
});
call('colSum', (f) => {
  const out = zeros(C);
  f(x, M, C, out, false);
  return sum(out);
});
call('dwconvForward', (f) => {
  const y = zeros(M * C);
  f(x, N, H, W, C, K, w, b, y);
  return sum(y);
});
call('dwconvBackwardInput', (f) => {
  const dx = zeros(M * C);
  f(dy, N, H, W, C, K, w, dx, false);
  return sum(dx);
});
call('dwconvBackwardWeight', (f) => {
  const dw = zeros(K * K * C), db = zeros(C);
  f(dy, x, N, H, W, C, K, dw, db);
  return sum(dw, db);
});
// Compacted rows: every other position kept.
const idx = Int32Array.from({ length: M / 2 }, (_, i) => 2 * i);
const rowOf = Int32Array.from({ length: M }, (_, p) => (p % 2 === 0 ? p / 2 : -1));
const R = idx.length, xr = rnd(R * C), dyr = rnd(R * C);
call('dwconvForwardRows', (f) => {
  const y = zeros(R * C);
  f(xr, rowOf, idx, R, N, H, W, C, K, w, b, y);
  return sum(y);
});
call('dwconvBackwardInputRows', (f) => {
  const dx = zeros(R * C);
  f(dyr, rowOf, idx, R, N, H, W, C, K, w, dx, false);
  return sum(dx);
});
call('dwconvBackwardWeightRows', (f) => {
  const dw = zeros(K * K * C), db = zeros(C);
  f(dyr, xr, rowOf, idx, R, N, H, W, C, K, dw, db);
  return sum(dw, db);
});
const gamma = rnd(C), beta = rnd(C), mean = zeros(M), rstd = zeros(M);
call('layerNormForward', (f) => {
  const y = zeros(M * C);
  f(x, M, C, gamma, beta, 1e-6, y, mean, rstd);
  return sum(y, mean, rstd);
});
call('layerNormBackward', (f) => {
  const dx = zeros(M * C), dg = zeros(C), db = zeros(C);
  f(dy, x, mean, rstd, gamma, M, C, dx, false, dg, db);
  return sum(dx, dg, db);
});
const offsets = Int32Array.from([0, H * W, M]);
const gx = zeros(N * C), nx = zeros(N * C);
call('grnForward', (f) => {
  const y = zeros(M * C);
  f(x, offsets, C, gamma, beta, 1e-6, y, gx, nx, null);
  return sum(y, gx, nx);
});
call('grnBackward', (f) => {
  const dx = zeros(M * C), dg = zeros(C), db = zeros(C), dbias = zeros(C);
  f(dy, x, offsets, C, gamma, 1e-6, gx, nx, dx, dg, db, rnd(M * C), dbias);
  return sum(dx, dg, db, dbias);
});
call('gelu', (f) => {
  const y = zeros(M * C);
  f(x, y, M * C);
  return sum(y);
});
call('geluBackward', (f) => {
  const dx = zeros(M * C);
  f(dy, x, dx, M * C);
  return sum(dx);
});
call('avgPoolForward', (f) => {
  const y = zeros(N * C);
  f(x, N, H * W, C, y);
  return sum(y);
});
call('avgPoolBackward', (f) => {
  const dx = zeros(M * C);
  f(rnd(N * C), N, H * W, C, dx);
  return sum(dx);
});
call('crossEntropy', (f) => {
  const targets = zeros(N * C);
  targets[3] = 1;
  targets[C + 7] = 1;
  const dl = zeros(N * C);
  return sum(f(rnd(N * C), targets, N, C, dl) as number, dl);
});
call('patchify', (f) => {
  const img = rnd(2 * 8 * 8 * 3), cols = zeros(2 * 8 * 8 * 3);
  f(img, 2, 8, 8, 3, 4, cols);
  return sum(cols);
});
call('unpatchify', (f) => {
  const dx = zeros(2 * 8 * 8 * 3);
  f(rnd(2 * 8 * 8 * 3), 2, 8, 8, 3, 4, dx);
  return sum(dx);
});
call('nchwToNhwc', (f) => {
  const out = zeros(M * C);
  f(x, N, C, H, W, out);
  return sum(out);
});
call('nhwcToNchw', (f) => {
  const out = zeros(M * C);
  f(x, N, H, W, C, out);
  return sum(out);
});
call('addScaled', (f) => {
  const out = zeros(M * C);
  f(x, dy, rnd(N * C), N, H * W, C, out);
  return sum(out);
});
call('adamw', (f) => {
  const p = rnd(100), m = rnd(100, 0.1), v = rnd(100, 0.1).map(Math.abs);
  f(p, rnd(100), m, v, 100, 1e-3, 0.9, 0.999, 1e-8, 0.05, 0.1, 0.001);
  return sum(p, m, v);
});
call('copy', (f) => {
  const out = zeros(1000);
  f(rnd(1000), out, 1000);
  return sum(out);
});
// Configuration and measurements: results depend on the machine, so they count as called only.
call('setIsa', () => 0);
call('getIsa', () => 0);
call('supportedIsas', () => 0);
call('cpuInfo', () => 0);
call('measurePeak', (f) => ((f(0.01) as number) > 0 ? 0 : NaN));
call('measureClock', (f) => ((f(0.01) as number) >= 0 ? 0 : NaN));
call('setThreads', (f) => {
  f(1);
  f(0);
  return 0;
});
call('getThreads', (f) => ((f() as number) >= 1 ? 0 : NaN));

report.sums = sums;
const missing = Object.keys(addon!).filter((k) => typeof addon[k] === 'function' && !called.has(k));
if (missing.length) {
  report.missing = missing;
  done(3);
}
done(Object.values(sums).every(Number.isFinite) ? 0 : 4);
