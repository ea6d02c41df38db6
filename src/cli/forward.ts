/**
 * `convnextv2 forward`: run a checkpoint on `pixel_values` [N, C, H, W] from a safetensors
 * file and write `logits` (and with --features `pre_logits` and `stage0`..`stage3`, NCHW).
 */
import { ConvNextError } from '../errors.js';
import { loadCheckpoint } from '../io/checkpoint_file.js';
import { type TensorData } from '../io/safetensors.js';
import { openSafetensors, writeSafetensors } from '../io/safetensors_file.js';
import { ConvNeXtV2 } from '../model/convnextv2.js';
import { shapeStr } from '../tensor.js';
import type { Command } from './command.js';

export const forward: Command = {
  name: 'forward',
  summary: 'run a checkpoint on pixel_values from a safetensors file, write logits (and features)',
  usage: 'convnextv2 forward --checkpoint P --input IN.safetensors --output OUT.safetensors [--features] [--ema]',
  examples: [
    'convnextv2 forward --checkpoint facebook/convnextv2-atto-1k-224 --input pixels.safetensors --output logits.safetensors',
    'convnextv2 forward --checkpoint runs/flowers --input pixels.safetensors --output features.safetensors --features',
  ],
  flags: {
    checkpoint: { kind: 'string', help: 'checkpoint file or run directory (any supported format)' },
    input: { kind: 'string', help: 'safetensors file holding pixel_values [N, C, H, W] float32' },
    output: { kind: 'string', help: 'safetensors file to write' },
    features: { kind: 'boolean', help: 'also write pre_logits and stage0..stage3 (NCHW)' },
    ema: { kind: 'boolean', help: 'use the EMA weights (model_ema of .pt files, ema.* of ours)' },
  },
  async run(args, ctx) {
    const ckptPath = args.requireString('checkpoint');
    const inPath = args.requireString('input');
    const outPath = args.requireString('output');
    const ckpt = loadCheckpoint(ckptPath, { ema: args.bool('ema') });
    const model = ConvNeXtV2.fromCheckpoint(ckpt, { kernels: await ctx.backend(), stateSource: `checkpoint ${ckptPath}` });
    const reader = openSafetensors(inPath);
    const entry = reader.tensors.find((t) => t.name === 'pixel_values');
    if (!entry) {
      throw new ConvNextError(`${inPath}: no tensor named pixel_values (found: ${reader.tensors.map((t) => t.name).join(', ') || 'none'})`);
    }
    if (entry.shape.length !== 4) {
      throw new ConvNextError(`${inPath}: pixel_values must have rank 4 [N, C, H, W], got ${shapeStr(entry.shape)}`);
    }
    const pixels = { shape: entry.shape, data: reader.get('pixel_values') };
    let checked: [number, number, number];
    try {
      checked = model.checkInput(pixels.shape);
    } catch (e) {
      throw e instanceof ConvNextError ? new ConvNextError(`${inPath}: pixel_values: ${e.message}`) : e;
    }
    const [N] = checked;
    const features = args.bool('features') || !model.config.numClasses;
    const out = await model.forward(pixels, features ? { stages: 'NCHW' } : {});
    const tensors = new Map<string, TensorData>();
    if (out.logits) tensors.set('logits', out.logits);
    if (features) {
      tensors.set('pre_logits', out.preLogits);
      out.stages!.forEach((s, i) => tensors.set(`stage${i}`, s));
    }
    writeSafetensors(outPath, tensors, { format: 'convnextv2-forward', checkpoint: ckptPath });
    ctx.out(`wrote ${[...tensors.keys()].join(', ')} for ${N} image(s) to ${outPath}`);
    return { output: outPath, images: N, tensors: [...tensors.keys()], format: ckpt.format };
  },
};
