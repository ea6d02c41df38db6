/**
 * `npm run bench`: the project's performance table (a benchmark, never a test). Runs, in
 * alternating rounds so that the shared machine's noise hits both sides alike:
 * - ours: atto at 224 px, inference batch 16 and 1, training step batch 16, FCMAE step
 *   (sparse and dense-masked) batch 16, via `convnextv2 bench --json`;
 * - onnxruntime-node (devDependency) on timm's atto ONNX from ../shared/peers, or on our own
 *   ONNX export of atto when that file is absent;
 * - PyTorch on the CPU (../shared/peers/torch_peer.py) when python3 can import torch;
 * - the kernels (`bench --mode kernels`): atto's GEMM and depthwise shapes at batch 16 with
 *   the FMA peak measured in the same round;
 * then memory (atto training at batch 64, base at batch 16: peak RSS) and prints Markdown
 * tables of medians with GFLOP/s, % of the machine's peak and the ratios to the peers.
 *
 * The peak for "% of peak" is the nominal one of the CPU and ISA in use (cores x FLOP/cycle x
 * the clock measured in the kernel rounds, src/kernels/cpu.ts) unless --peak gives one.
 *
 *   node --import tsx scripts/bench-table.ts [--rounds 3] [--seconds 8] [--peak GFLOPS] [--quick]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportOnnx } from '../src/io/onnx.js';
import { makeConfig } from '../src/model/config.js';
import { ConvNeXtV2 } from '../src/model/convnextv2.js';
import { createBackend } from '../src/kernels/index.js';

const argv = process.argv.slice(2);
const opt = (n: string, d: number) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const quick = argv.includes('--quick');
const rounds = opt('rounds', quick ? 1 : 3);
const seconds = opt('seconds', quick ? 3 : 8);
const peakFlag = opt('peak', NaN);
const ROOT = new URL('..', import.meta.url).pathname;
const MAIN = join(ROOT, 'src/cli/main.ts');
const PEERS = join(ROOT, '..', 'shared', 'peers');

type Rec = { images_per_second: number; gflops_per_second: number; peak_rss_mb: number; isa: string; threads: number };
type KernelRow = { kind: string; op: string; stage: number; shape: number[]; gflops: number; gbps?: number };
type KernelRec = { measuredPeak: number; copyGbps: number; rows: KernelRow[]; cpu: string; isa: string; nominal: { gflops: number; basis: string } };

function ours<T = Rec>(args: string[]): T {
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, 'bench', '--json', '--seconds', String(seconds), ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bench ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

// onnxruntime-node, in a child process (its threads and ours must not overlap).
const require = createRequire(import.meta.url);
let ortModel: string | null = null;
let ortNote = '';
try {
  require.resolve('onnxruntime-node');
  const shared = join(PEERS, 'convnextv2_atto_timm.onnx');
  if (existsSync(shared)) {
    ortModel = shared;
    ortNote = "timm's convnextv2_atto ONNX (../shared/peers)";
  } else {
    const m = new ConvNeXtV2(makeConfig('atto'), { kernels: await createBackend('reference') });
    ortModel = join(mkdtempSync(join(tmpdir(), 'cnx-bench-')), 'atto.onnx');
    exportOnnx(ortModel, { config: m.config, state: await m.stateDict() });
    ortNote = 'our ONNX export of atto';
  }
} catch {
  ortNote = 'onnxruntime-node not installed';
}
const ORT_SCRIPT = `
const ort = require('onnxruntime-node');
(async () => {
  const [model, b, secs] = process.argv.slice(1);
  const B = Number(b);
  const s = await ort.InferenceSession.create(model, { intraOpNumThreads: 2, graphOptimizationLevel: 'all' });
  const x = new ort.Tensor('float32', Float32Array.from({ length: B * 3 * 224 * 224 }, () => Math.random()), [B, 3, 224, 224]);
  for (let i = 0; i < 3; i++) await s.run({ [s.inputNames[0]]: x });
  const times = [];
  const t0 = performance.now();
  while (times.length < 3 || performance.now() - t0 < Number(secs) * 1000) { const t = performance.now(); await s.run({ [s.inputNames[0]]: x }); times.push(performance.now() - t); }
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({ images_per_second: B * 1000 / times[times.length >> 1] }));
})();`;
function ort(batch: number): number | null {
  if (!ortModel) return null;
  const r = spawnSync(process.execPath, ['-e', ORT_SCRIPT, ortModel, String(batch), String(seconds)], { encoding: 'utf8', cwd: ROOT });
  if (r.status !== 0) return null;
  return (JSON.parse(r.stdout.trim().split('\n').pop()!) as { images_per_second: number }).images_per_second;
}

// The first Python that imports torch (Debian's python3-torch lives under /usr/bin/python3).
const python = existsSync(join(PEERS, 'torch_peer.py'))
  ? [process.env.PYTHON, 'python3', '/usr/bin/python3'].find((py) => py && spawnSync(py, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0)
  : undefined;
const torchOk = python !== undefined;
function torch(what: 'infer' | 'train' | 'fcmae'): Record<string, number> | null {
  if (!torchOk) return null;
  // The machine pins OpenBLAS to Haswell kernels for old numpy builds; the peer gets AVX-512.
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const r = spawnSync(python!, [join(PEERS, 'torch_peer.py'), '2', what], { encoding: 'utf8', env });
  if (r.status !== 0) return null;
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>;
}

const median = (v: number[]) => {
  const s = v.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length ? s[s.length >> 1] : NaN;
};
const rows: Record<string, { ips: number[]; gf: number[] }> = {};
const peers: Record<string, number[]> = {};
const add = (k: string, r: Rec) => {
  (rows[k] ??= { ips: [], gf: [] }).ips.push(r.images_per_second);
  rows[k].gf.push(r.gflops_per_second);
};
const addPeer = (k: string, v: number | null | undefined) => { if (v != null) (peers[k] ??= []).push(v); };
let meta: Rec | null = null;
const kernelRuns: KernelRec[] = [];
for (let round = 1; round <= rounds; round++) {
  process.stderr.write(`round ${round}/${rounds}\n`);
  meta = ours(['--mode', 'infer', '--batch-size', '16']);
  add('infer16', meta);
  addPeer('ort16', ort(16));
  add('infer1', ours(['--mode', 'infer', '--batch-size', '1']));
  addPeer('ort1', ort(1));
  add('train16', ours(['--mode', 'train', '--batch-size', '16']));
  addPeer('torchTrain', torch('train')?.atto_train_b16_img_s);
  // The dense-masked FCMAE step: the peer of the FCMAE target.
  addPeer('torchFcmae', torch('fcmae')?.atto_fcmae_dense_b16_img_s);
  add('pretrain16', ours(['--mode', 'pretrain', '--batch-size', '16']));
  add('pretrainDense16', ours(['--mode', 'pretrain', '--batch-size', '16', '--dense-masking']));
  kernelRuns.push(ours<KernelRec>(['--mode', 'kernels', '--batch-size', '16']));
}
process.stderr.write('memory\n');
const mem64 = quick ? null : ours(['--mode', 'train', '--batch-size', '64', '--iters', '2', '--warmup', '1']);
const memBase = quick ? null : ours(['--model', 'base', '--mode', 'train', '--batch-size', '16', '--iters', '1', '--warmup', '1']);

const fmt = (v: number, d = 1) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');
const m = (k: string) => median(rows[k]?.ips ?? []);
const g = (k: string) => median(rows[k]?.gf ?? []);
const p = (k: string) => median(peers[k] ?? []);
const nominals = kernelRuns.map((r) => r.nominal.gflops);
const peak = Number.isFinite(peakFlag) ? peakFlag : median(nominals);
const peakSource = Number.isFinite(peakFlag)
  ? `${fmt(peak)} GFLOP/s (--peak)`
  : `the nominal ${fmt(peak)} GFLOP/s (median of the rounds; ${kernelRuns[0]?.nominal.basis})`;
const lines = [
  `${kernelRuns[0]?.cpu ?? 'unknown CPU'}: atto at 224 px, ${meta?.threads} threads, ${meta?.isa}; medians of ${rounds} alternating round(s); peak: ${peakSource}.`,
  '',
  '| measurement | convnextv2 images/s | GFLOP/s | % of peak | peer images/s | ratio |',
  '|---|---|---|---|---|---|',
  `| inference, batch 16 | ${fmt(m('infer16'))} | ${fmt(g('infer16'))} | ${fmt((100 * g('infer16')) / peak)} | onnxruntime-node ${fmt(p('ort16'))} | ${fmt(m('infer16') / p('ort16'), 2)}x |`,
  `| inference, batch 1 | ${fmt(m('infer1'))} | ${fmt(g('infer1'))} | ${fmt((100 * g('infer1')) / peak)} | onnxruntime-node ${fmt(p('ort1'))} | ${fmt(m('infer1') / p('ort1'), 2)}x |`,
  `| training step, batch 16 | ${fmt(m('train16'))} | ${fmt(g('train16'))} | ${fmt((100 * g('train16')) / peak)} | PyTorch CPU ${torchOk ? fmt(p('torchTrain')) : 'not installed'} | ${torchOk ? `${fmt(m('train16') / p('torchTrain'), 2)}x` : 'n/a'} |`,
  `| FCMAE step, sparse, batch 16, mask 0.6 | ${fmt(m('pretrain16'))} | ${fmt(g('pretrain16'))} | ${fmt((100 * g('pretrain16')) / peak)} | our dense-masked ${fmt(m('pretrainDense16'))} | ${fmt(m('pretrain16') / m('pretrainDense16'), 2)}x |`,
  `| FCMAE step, sparse, vs PyTorch's dense-masked step | | | | PyTorch CPU ${torchOk ? fmt(p('torchFcmae')) : 'not installed'} | ${torchOk ? `${fmt(m('pretrain16') / p('torchFcmae'), 2)}x` : 'n/a'} |`,
  `| FCMAE sparse step vs our classifier step | | | | | ${fmt(m('pretrain16') / m('train16'), 2)}x |`,
  '',
  mem64 ? `Peak RSS: atto training at batch 64: ${mem64.peak_rss_mb} MB; base training at batch 16: ${memBase?.peak_rss_mb} MB.` : 'Memory runs skipped (--quick).',
  `ONNX peer: ${ortNote}.${torchOk ? '' : ' PyTorch peer: python3 cannot import torch (apt-get install python3-torch libopenblas0-pthread).'}`,
];

// Kernels: per row, the median over rounds of GFLOP/s and of its ratio to the round's measured peak.
const mPeak = median(kernelRuns.map((r) => r.measuredPeak));
const krows = kernelRuns[0]?.rows ?? [];
const kmed = krows.map((_, i) => ({
  row: krows[i],
  gflops: median(kernelRuns.map((r) => r.rows[i].gflops)),
  ofMeasured: median(kernelRuns.map((r) => r.rows[i].gflops / r.measuredPeak)),
  gbps: median(kernelRuns.map((r) => r.rows[i].gbps ?? NaN)),
}));
// The issue's shapes: M = N*H*W rows, K/N = C/4C (forward and input gradient); weight
// gradients (K = N*H*W) apart.
const gemms = kmed.filter((k) => k.row.kind === 'gemm');
const bigK = gemms.filter((k) => !k.row.op.includes('dW') && k.row.shape[2] >= 256);
const smallK = gemms.filter((k) => !k.row.op.includes('dW') && k.row.shape[2] < 256);
const dW = gemms.filter((k) => k.row.op.includes('dW'));
const dws = kmed.filter((k) => k.row.kind === 'dwconv');
const span = (v: number[]) => (v.length ? `${fmt(Math.min(...v))}-${fmt(Math.max(...v))}` : 'n/a');
lines.push(
  '',
  `Kernels on ${kernelRuns[0]?.cpu ?? 'unknown CPU'}, ${kernelRuns[0]?.isa} (atto's shapes at batch 16; medians of ${rounds} round(s)). FMA-loop peak measured in the same rounds: ${fmt(mPeak)} GFLOP/s ` +
    `(nominal ${fmt(peak)}); copy bandwidth ${fmt(median(kernelRuns.map((r) => r.copyGbps)))} GB/s. ` +
    `GEMMs with K >= 256: ${span(bigK.map((k) => k.gflops))} GFLOP/s (${span(bigK.map((k) => (100 * k.gflops) / peak))}% of nominal, ` +
    `${span(bigK.map((k) => 100 * k.ofMeasured))}% of measured); K < 256: ${span(smallK.map((k) => k.gflops))} GFLOP/s ` +
    `(${span(smallK.map((k) => 100 * k.ofMeasured))}% of measured); weight gradients: ${span(dW.map((k) => k.gflops))} GFLOP/s ` +
    `(${span(dW.map((k) => 100 * k.ofMeasured))}% of measured); 7x7 depthwise: ${span(dws.map((k) => k.gflops))} GFLOP/s ` +
    `(${span(dws.map((k) => 100 * k.ofMeasured))}% of measured) at ${span(dws.map((k) => k.gbps))} GB/s.`,
  '',
  '| stage | op | M x N x K or N x H x W x C | GFLOP/s | % of nominal peak | % of measured peak | GB/s |',
  '|---|---|---|---|---|---|---|',
  ...kmed.map((k) => `| ${k.row.stage} | ${k.row.op} | ${k.row.shape.join(' x ')} | ${fmt(k.gflops)} | ${fmt((100 * k.gflops) / peak)} | ${fmt(100 * k.ofMeasured)} | ${Number.isFinite(k.gbps) ? fmt(k.gbps) : ''} |`),
);
console.log(lines.join('\n'));
