/**
 * `npm run bench:gpu`: the WebGPU backend's throughput table (a benchmark, never a test): atto,
 * tiny and base at 224 px, inference, the training step (AdamW) and the FCMAE step (sparse
 * encoder), each `convnextv2 bench --device webgpu --json` in its own process, beside the
 * PyTorch bf16 figures measured on an NVIDIA H200 (timm 1.0.29, torch 2.11; ../shared/peers).
 * Prints what the adapter is first; a software adapter (llvmpipe, SwiftShader) is said to be one.
 *
 *   node --import tsx scripts/bench-gpu.ts [--seconds 8] [--models atto,tiny,base] [--batch 64] [--quick]
 *
 * `--quick` (atto at 64 px, batch 2, two iterations) checks that the script runs on a software
 * adapter; its figures mean nothing.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const argv = process.argv.slice(2);
const flag = (n: string): string | undefined => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const quick = argv.includes('--quick');
const seconds = Number(flag('seconds') ?? (quick ? 1 : 8));
const models = (flag('models') ?? (quick ? 'atto' : 'atto,tiny,base')).split(',');
const size = quick ? 64 : 224;
const ROOT = new URL('..', import.meta.url).pathname;
// The CLI to run: CONVNEXTV2_CLI (a bundled cli.mjs, see scripts/gpu-carry.ts), else the sources through tsx.
const CLI = process.env.CONVNEXTV2_CLI ? [process.env.CONVNEXTV2_CLI] : ['--import', 'tsx', join(ROOT, 'src/cli/main.ts')];

/** PyTorch 2.11 + timm 1.0.29, bf16 autocast, one H200 (../shared/peers/README.md), images/s. */
const TORCH_H200: Record<string, Partial<Record<Mode, number>>> = {
  atto: { infer: 11211, train: 3819, pretrain: 2582 },
  tiny: { infer: 4409, train: 1356 },
  base: { infer: 2125, train: 613, pretrain: 429 },
};
type Mode = 'infer' | 'train' | 'pretrain';
const MODES: Mode[] = ['infer', 'train', 'pretrain'];
/** Batch per model and mode: large enough to fill a GPU, small enough for one storage binding per tensor. */
function batch(model: string, mode: Mode): number {
  const b = flag('batch');
  if (b) return Number(b);
  if (quick) return 2;
  const big = model === 'base' ? 32 : 64;
  return mode === 'infer' ? 2 * big : big;
}

interface Rec { images_per_second: number; gflops_per_second: number; ms_per_batch: number; device?: string; kernels: string }

function run(args: string[]): Rec | string {
  const r = spawnSync(process.execPath, [...CLI, 'bench', '--device', 'webgpu', '--json', ...args], { encoding: 'utf8' });
  if (r.status !== 0) return (r.stderr.trim().split('\n').filter((l) => !/^Warning: /.test(l)).pop() ?? `exit ${r.status}`).slice(0, 200);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Rec;
}

const info = spawnSync(process.execPath, [...CLI, 'info', '--device', 'webgpu'], { encoding: 'utf8' });
const adapter = /^device: webgpu on (.*?) \(--device\)$/m.exec(info.stdout)?.[1];
if (!adapter) {
  process.stderr.write(`bench-gpu: no WebGPU adapter (${info.stderr.trim().split('\n').pop()})\n`);
  process.exit(1);
}
console.log(`adapter: ${adapter}${/software|swiftshader|llvmpipe/i.test(adapter) ? ' (a software rasteriser: figures are not a GPU\'s)' : ''}`);
console.log(`${size} px, fp32, ${seconds} s per measurement${quick ? ' (--quick)' : ''}\n`);
console.log('| model | mode | batch | images/s | ms/batch | GFLOP/s | PyTorch bf16 H200 | ours / PyTorch |');
console.log('|---|---|---|---|---|---|---|---|');
for (const model of models) {
  for (const mode of MODES) {
    const B = batch(model, mode);
    const extra = quick ? ['--iters', '2', '--warmup', '1'] : ['--seconds', String(seconds), '--warmup', '2'];
    const r = run(['--model', model, '--mode', mode, '--batch-size', String(B), '--input-size', String(size), ...extra]);
    const torch = quick ? undefined : TORCH_H200[model]?.[mode];
    if (typeof r === 'string') {
      console.log(`| ${model} | ${mode} | ${B} | failed: ${r} | | | ${torch ?? ''} | |`);
      continue;
    }
    const ratio = torch ? `${(r.images_per_second / torch).toFixed(2)}x` : '';
    console.log(`| ${model} | ${mode} | ${B} | ${r.images_per_second.toFixed(1)} | ${r.ms_per_batch.toFixed(1)} | ${r.gflops_per_second.toFixed(0)} | ${torch ?? 'not measured'} | ${ratio} |`);
  }
}
