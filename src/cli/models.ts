/**
 * `convnextv2 models`: the model sizes, atto to huge, with their parameters and GMACs at 224 px
 * (ours, counted from the config), the paper's ImageNet-1K top-1 after FCMAE pre-training and
 * fine-tuning (the official README's table), and the hub ids that load each by name.
 */
import { countParams, makeConfig, MODEL_SIZES } from '../model/config.js';
import { forwardMacs } from '../model/flops.js';
import type { Command } from './command.js';

/** The official README's ImageNet-1K fine-tuned top-1 (%) at 224 px, FCMAE pre-trained on ImageNet-1K. */
export const PAPER_TOP1: Readonly<Record<string, number>> = {
  atto: 76.7, femto: 78.5, pico: 80.3, nano: 81.9, tiny: 83.0, base: 84.9, large: 85.8, huge: 86.3,
};

/** One size: its shape, its counts, the paper's figure and its names on the Hugging Face hub. */
export interface ModelRow {
  name: string;
  depths: number[];
  dims: number[];
  params: number;
  gmacs224: number;
  paperTop1: number;
  hub: { hf: string; timm: string; fcmae: string };
}

export function modelRows(): ModelRow[] {
  return Object.entries(MODEL_SIZES).map(([name, s]) => {
    const cfg = makeConfig(name);
    return {
      name, depths: [...s.depths], dims: [...s.dims], params: countParams(cfg), gmacs224: forwardMacs(cfg, 224, 224) / 1e9, paperTop1: PAPER_TOP1[name],
      hub: { hf: `facebook/convnextv2-${name}-1k-224`, timm: `timm/convnextv2_${name}.fcmae_ft_in1k`, fcmae: `timm/convnextv2_${name}.fcmae` },
    };
  });
}

export const models: Command = {
  name: 'models',
  summary: 'the model sizes: parameters, GMACs at 224 px, the paper\'s ImageNet top-1, and the hub ids that load by name',
  usage: 'convnextv2 models [--json]',
  examples: ['convnextv2 models', 'convnextv2 models --json'],
  flags: {},
  run(_args, ctx) {
    const rows = modelRows();
    const table = [
      ['size', 'depths', 'dims', 'params', 'GMACs@224', 'paper top-1', 'classifier (HF / timm)', 'FCMAE encoder'],
      ...rows.map((r) => [r.name, r.depths.join(','), r.dims.join(','), `${(r.params / 1e6).toFixed(1)}M`, r.gmacs224.toFixed(2), `${r.paperTop1.toFixed(1)}%`, `${r.hub.hf} / ${r.hub.timm}`, r.hub.fcmae]),
    ];
    const widths = table[0].map((_, c) => Math.max(...table.map((row) => row[c].length)));
    for (const row of table) ctx.out(row.map((cell, c) => (c >= 3 && c <= 5 ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ').trimEnd());
    ctx.out('');
    ctx.out('params and GMACs are counted from the config (1000 classes; the paper\'s "FLOPs" are these multiply-adds); top-1: ImageNet-1K, 224 px, FCMAE pre-trained and fine-tuned (the official README).');
    ctx.out('Any id loads by name: --checkpoint ID (predict, eval, convert, inspect) or --init ID (finetune); see convnextv2 help finetune.');
    return { models: rows.map((r) => ({ name: r.name, depths: r.depths, dims: r.dims, params: r.params, gmacs_224: r.gmacs224, paper_top1: r.paperTop1, hub: r.hub })) };
  },
};
