/**
 * `convnextv2 demo` (npm run demo): trains a small ConvNeXt V2 from scratch on the embedded
 * `synthetic` set (ten shape/texture classes) with AdamW and a warmup + cosine schedule,
 * evaluates it on held-out images and saves the checkpoint. A few minutes on 2 cores; no
 * flags needed. (FCMAE pre-training joins the demo with the pre-training issue.)
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { saveCheckpoint } from '../io/checkpoint.js';
import { makeConfig } from '../model/config.js';
import { ConvNeXtV2 } from '../model/convnextv2.js';
import { Rng } from '../rng.js';
import { SYNTHETIC_CLASSES, syntheticBatch } from '../data/synthetic.js';
import { AdamW } from '../train/adamw.js';
import { trainStep } from '../train/step.js';
import type { Command } from './command.js';
import { Progress } from './progress.js';

export const demo: Command = {
  name: 'demo',
  summary: 'train a small ConvNeXt V2 on the embedded synthetic set and evaluate it',
  usage: 'convnextv2 demo [--out results/demo] [--epochs 6] [--train-images 4000]',
  flags: {
    out: { kind: 'string', help: 'results folder', default: 'results/demo' },
    epochs: { kind: 'int', help: 'training epochs', default: 6 },
    'train-images': { kind: 'int', help: 'training images', default: 4000 },
    'val-images': { kind: 'int', help: 'validation images', default: 500 },
    'batch-size': { kind: 'int', help: 'batch size', default: 32 },
    'input-size': { kind: 'int', help: 'image size', default: 64 },
    lr: { kind: 'number', help: 'peak learning rate', default: 2e-3 },
    seed: { kind: 'int', help: 'random seed', default: 0 },
  },
  run(args, ctx) {
    const out = resolve(args.requireString('out'));
    mkdirSync(out, { recursive: true });
    const S = args.requireNumber('input-size');
    const B = args.requireNumber('batch-size');
    const E = args.requireNumber('epochs');
    const nTrain = args.requireNumber('train-images');
    const nVal = args.requireNumber('val-images');
    const seed = args.requireNumber('seed');
    const peak = args.requireNumber('lr');
    const cfg = makeConfig({ depths: [2, 2, 2, 2], dims: [32, 64, 128, 256] }, { numClasses: SYNTHETIC_CLASSES.length, dropPathRate: 0.05 });
    const model = new ConvNeXtV2(cfg, { seed });
    const opt = new AdamW(model.params, { lr: peak, weightDecay: 0.05 });
    ctx.out(`demo: ConvNeXt V2 depths ${cfg.depths} dims ${cfg.dims} (${(model.numParams() / 1e6).toFixed(2)} M params), ` +
      `${nTrain} synthetic ${S}px training images, ${E} epochs, kernels ${model.kernels.name}/${model.kernels.isa} x${model.kernels.threads}`);
    const rng = new Rng(seed + 1);
    const stepsPerEpoch = Math.floor(nTrain / B);
    const total = E * stepsPerEpoch;
    const warm = Math.max(1, Math.floor(total * 0.1));
    const lrAt = (t: number) => (t < warm ? (peak * (t + 1)) / warm : 1e-6 + (peak - 1e-6) * 0.5 * (1 + Math.cos((Math.PI * (t - warm)) / (total - warm))));
    let step = 0;
    const rows: { epoch: number; loss: number; val_top1: number }[] = [];
    for (let epoch = 1; epoch <= E; epoch++) {
      const order = Array.from({ length: nTrain }, (_, i) => i);
      rng.shuffle(order);
      const bar = new Progress(`epoch ${epoch}/${E}`, stepsPerEpoch, 'img');
      let sum = 0;
      for (let i = 0; i < stepsPerEpoch; i++) {
        const { pixels, labels } = syntheticBatch(order.slice(i * B, (i + 1) * B), 'train', { size: S, seed });
        const r = trainStep(model, opt, { shape: [B, 3, S, S], data: pixels }, labels, { lr: lrAt(step), smoothing: 0.1 });
        sum += r.loss;
        step++;
        bar.update(i + 1, { loss: sum / (i + 1), lr: lrAt(step - 1) }, (i + 1) * B);
      }
      const top1 = evaluate(model, nVal, S, seed);
      rows.push({ epoch, loss: sum / stepsPerEpoch, val_top1: top1 });
      ctx.out(`epoch ${epoch}: train loss ${(sum / stepsPerEpoch).toFixed(4)}, val top-1 ${top1.toFixed(2)}%`);
    }
    const ckpt = join(out, 'checkpoint-last.safetensors');
    saveCheckpoint(ckpt, { config: cfg, state: model.stateDict(), metadata: { labels: JSON.stringify(SYNTHETIC_CLASSES) } });
    ctx.out(`\n| epoch | train loss | val top-1 (%) |\n|---|---|---|`);
    for (const r of rows) ctx.out(`| ${r.epoch} | ${r.loss.toFixed(4)} | ${r.val_top1.toFixed(2)} |`);
    ctx.out(`\nchance is ${(100 / SYNTHETIC_CLASSES.length).toFixed(0)}%. Checkpoint: ${ckpt}`);
    ctx.out(`Results folder: ${out}`);
    return { out, epochs: rows, checkpoint: ckpt };
  },
};

function evaluate(model: ConvNeXtV2, n: number, S: number, seed: number): number {
  let correct = 0;
  const B = 50;
  for (let i = 0; i < n; i += B) {
    const idx = Array.from({ length: Math.min(B, n - i) }, (_, j) => i + j);
    const { pixels, labels } = syntheticBatch(idx, 'val', { size: S, seed });
    const logits = model.forward({ shape: [idx.length, 3, S, S], data: pixels }).logits!;
    const K = model.config.numClasses;
    for (let b = 0; b < idx.length; b++) {
      let best = 0;
      for (let c = 1; c < K; c++) if (logits[b * K + c] > logits[b * K + best]) best = c;
      if (best === labels[b]) correct++;
    }
  }
  return (100 * correct) / n;
}
