/**
 * `convnextv2 bench`: throughput of inference or a training step (forward, backward, AdamW)
 * with random weights and data. Warm-up iterations, then timed ones; prints a line per
 * measurement and, with --json, one JSON object as the last line.
 */
import { ConvNextError } from '../errors.js';
import { KernelProfiler } from '../kernels/profile.js';
import type { Buf } from '../kernels/types.js';
import { modelFromFlags } from '../model/config.js';
import { ConvNeXtV2 } from '../model/convnextv2.js';
import { fcmaeMacs, forwardMacs } from '../model/flops.js';
import { FCMAE } from '../fcmae/fcmae.js';
import { Rng } from '../rng.js';
import { tensor } from '../tensor.js';
import { AdamW } from '../train/adamw.js';
import { forwardBackward } from '../train/step.js';
import { NativeKernels } from '../kernels/native.js';
import { benchKernels, kernelTable } from './bench_kernels.js';
import type { Command } from './command.js';
import { Progress } from './progress.js';

export const bench: Command = {
  name: 'bench',
  summary: 'measure images/s and GFLOP/s of inference or training on random data',
  usage: 'convnextv2 bench [--model atto] [--mode infer|train|pretrain|kernels] [--batch-size 16] [--input-size 224] [--dense-masking] [--mask-ratio 0.6] [--peak GFLOPS] [--threads T] [--json]',
  examples: [
    'convnextv2 bench --model atto --mode infer --batch-size 16',
    'convnextv2 bench --model tiny --mode train --batch-size 32 --seconds 10 --json',
  ],
  flags: {
    model: { kind: 'string', help: 'model size (atto ... huge)', default: 'atto' },
    mode: { kind: 'string', help: 'infer, train (classifier step), pretrain (FCMAE step) or kernels (GEMM and depthwise shapes against the measured peak)', default: 'infer' },
    peak: { kind: 'number', help: 'kernels: nominal fp32 peak in GFLOP/s for the % column (default: cores x FLOP/cycle of the ISA x measured clock)' },
    'mask-ratio': { kind: 'number', help: 'pretrain: fraction of patches removed', default: 0.6 },
    'dense-masking': { kind: 'boolean', help: 'pretrain: the dense-masked encoder instead of the sparse one' },
    'decoder-embed-dim': { kind: 'int', help: 'pretrain: decoder width', default: 512 },
    'decoder-depth': { kind: 'int', help: 'pretrain: decoder blocks', default: 1 },
    'batch-size': { kind: 'int', help: 'images per batch', default: 16 },
    'input-size': { kind: 'int', help: 'image height and width', default: 224 },
    'num-classes': { kind: 'int', help: 'classifier outputs', default: 1000 },
    warmup: { kind: 'int', help: 'untimed iterations first', default: 2 },
    iters: { kind: 'int', help: 'timed iterations (0: as many as fit in --seconds)', default: 0 },
    seconds: { kind: 'number', help: 'time budget for the timed iterations', default: 10 },
    profile: { kind: 'boolean', help: 'print time per kernel (one extra profiled iteration per timed one)' },
  },
  async run(args, ctx) {
    const mode = args.requireString('mode');
    if (mode !== 'infer' && mode !== 'train' && mode !== 'pretrain' && mode !== 'kernels') throw new ConvNextError(`bench: --mode must be infer, train, pretrain or kernels, got '${mode}'`, 2);
    const B = args.requireNumber('batch-size');
    const S = args.requireNumber('input-size');
    if (B < 1) throw new ConvNextError('bench: --batch-size must be at least 1', 2);
    if (S < 32) throw new ConvNextError('bench: --input-size must be at least 32', 2);
    const cfg = modelFromFlags(args.requireString('model'), undefined, undefined, { numClasses: args.requireNumber('num-classes') });
    if (mode === 'kernels') {
      const nk = await ctx.backend();
      if (!(nk instanceof NativeKernels)) throw new ConvNextError('bench: --mode kernels needs the native addon (npm run build)', 1);
      const peak = args.number('peak');
      if (peak !== undefined && !(peak > 0)) throw new ConvNextError('bench: --peak must be positive', 2);
      const bar = new Progress('kernels', 3 * cfg.dims.length, 'shape');
      const r = benchKernels(nk, cfg, B, S, Math.min(0.3, args.requireNumber('seconds') / 40), (d) => bar.update(d));
      ctx.out(kernelTable(r, peak));
      return { model: args.requireString('model'), mode, batch_size: B, input_size: S, nominal_peak: peak ?? r.nominal.gflops, ...r };
    }
    const backend = await ctx.backend();
    const profiler = args.bool('profile') ? new KernelProfiler(backend) : null;
    const model = new ConvNeXtV2(cfg, { seed: 0, kernels: profiler?.kernels ?? backend });
    const k = model.kernels;
    const rng = new Rng(1);
    const x = tensor([B, cfg.inChans, S, S]);
    for (let i = 0; i < x.data.length; i++) x.data[i] = rng.normal();
    const labels = Array.from({ length: B }, () => rng.int(cfg.numClasses));
    // A step returns a tensor it wrote last: on a device backend, reading it waits for the step's work.
    let step: () => Buf;
    let flopsPerImage = 2 * forwardMacs(cfg, S, S) * (mode === 'train' ? 3 : 1);
    if (mode === 'pretrain') {
      if (S % 32 !== 0) throw new ConvNextError('bench: --mode pretrain needs --input-size a multiple of 32', 2);
      const dec = { decoderDim: args.requireNumber('decoder-embed-dim'), decoderDepth: args.requireNumber('decoder-depth'), patchSize: 32 };
      const fcmae = new FCMAE(cfg, { ...dec, maskRatio: args.requireNumber('mask-ratio'), normPixLoss: true }, { seed: 0, kernels: model.kernels });
      const fopt = new AdamW(fcmae.params, { lr: 1e-4, betas: [0.9, 0.95], weightDecay: 0.05 });
      const encMode = args.bool('dense-masking') ? 'dense' as const : 'sparse' as const;
      const L = (S / 32) ** 2;
      const visible = encMode === 'dense' ? 1 : Math.floor(L * (1 - fcmae.opts.maskRatio)) / L;
      flopsPerImage = 2 * 3 * fcmaeMacs(cfg, S, S, dec, visible);
      step = () => {
        const r = fcmae.forwardTensors(x, fcmae.randomMask(B, S, S), { mode: encMode });
        fcmae.backward();
        fopt.update(fcmae.kernels);
        fcmae.zeroGrad();
        return r.loss;
      };
    } else {
      const opt = new AdamW(model.params, { lr: 1e-4, weightDecay: 0.05 });
      step = mode === 'infer'
        ? () => { const r = model.forwardTensors(x); return r.logits ?? r.preLogits; }
        : () => {
          const r = forwardBackward(model, x, labels);
          opt.update(k);
          model.zeroGrad();
          return r.loss;
        };
    }
    const device = k.capabilities().device;
    const run = device ? async () => { await k.read(step().subarray(0, 1)); } : step;
    const warmup = args.requireNumber('warmup');
    for (let i = 0; i < warmup; i++) await run();
    const iters = args.requireNumber('iters');
    const budget = args.requireNumber('seconds') * 1000;
    const times: number[] = [];
    const t0 = performance.now();
    while (iters > 0 ? times.length < iters : (times.length < 3 || performance.now() - t0 < budget)) {
      const t = performance.now();
      await run();
      times.push(performance.now() - t);
    }
    if (profiler) {
      profiler.reset();
      const t = performance.now();
      const n = Math.min(times.length, 5);
      for (let i = 0; i < n; i++) await run();
      const wall = (performance.now() - t) / n;
      const { rows, totalMs } = profiler.report();
      ctx.out(`profile (${n} iterations, per batch):`);
      ctx.out(`| kernel | calls | ms | % | GFLOP/s |\n|---|---|---|---|---|`);
      const rate = (r: { flops: number; ms: number }) => (r.flops > 0 && r.ms > 0 ? (r.flops / r.ms / 1e6).toFixed(1) : '');
      for (const r of rows) ctx.out(`| ${r.kernel} | ${r.calls / n} | ${(r.ms / n).toFixed(2)} | ${((100 * r.ms) / n / wall).toFixed(1)} | ${rate(r)} |`);
      ctx.out(`| outside kernels (TypeScript, allocation) | | ${(wall - totalMs / n).toFixed(2)} | ${((100 * (wall - totalMs / n)) / wall).toFixed(1)} | |`);
      ctx.out(`| total | | ${wall.toFixed(2)} | 100 | |`);
    }
    times.sort((a, b) => a - b);
    const median = times[Math.floor(times.length / 2)];
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    const ips = (B * 1000) / median;
    const result = {
      model: args.requireString('model'),
      mode: mode === 'pretrain' && args.bool('dense-masking') ? 'pretrain-dense' : mode,
      batch_size: B,
      input_size: S,
      iterations: times.length,
      ms_per_batch: round(median, 2),
      ms_per_batch_mean: round(mean, 2),
      images_per_second: round(ips, 2),
      gflops_per_image: round(flopsPerImage / 1e9, 3),
      gflops_per_second: round((flopsPerImage * ips) / 1e9, 1),
      peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
      threads: k.threads,
      isa: k.isa,
      kernels: k.name,
      ...(device ? { device: k.capabilities().description } : {}),
    };
    ctx.out(`${result.model} ${result.mode} batch ${B} @${S}px: ${result.images_per_second} images/s, ${result.ms_per_batch} ms/batch (median of ${times.length}), ` +
      `${result.gflops_per_second} GFLOP/s, peak RSS ${result.peak_rss_mb} MB, ${result.threads} threads, ${result.isa}`);
    return result;
  },
};

function round(v: number, d: number): number {
  const f = 10 ** d;
  return Math.round(v * f) / f;
}
