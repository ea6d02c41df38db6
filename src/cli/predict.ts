/**
 * `convnextv2 predict IMAGE...`: top-k classes with probabilities per image (class names
 * from the checkpoint: ImageFolder classes or HF id2label); `convnextv2 embed IMAGE...`:
 * pre-logit features (pooled + normalised) written to a safetensors file.
 */
import * as fs from 'node:fs';
import { ConvNextError } from '../errors.js';
import { CorruptImageError, decodeImage, type Image } from '../data/image.js';
import { evalTransform } from '../data/transforms.js';
import { loadCheckpoint } from '../io/checkpoint_file.js';
import { classNames } from '../io/labels.js';
import { labelsArg } from '../io/labels_file.js';
import { writeSafetensors } from '../io/safetensors_file.js';
import { ConvNeXtV2 } from '../model/convnextv2.js';
import type { Tensor } from '../tensor.js';
import type { ParsedArgs } from './args.js';
import type { Command, CommandContext } from './command.js';
import { evalPreprocessing } from './evaluate.js';
import { topClasses } from '../train/metrics.js';

/**
 * Decodes the image files given (the positionals). An unreadable one is skipped with a warning
 * and sets exit code 1 for the end of the command; none readable is an error.
 */
async function loadBatch(args: ParsedArgs, S: number, cropPct: number, ctx: CommandContext): Promise<{ files: string[]; pixels: Tensor; skipped: { file: string; error: string }[] }> {
  const given = args.positionals;
  if (given.length === 0) throw new ConvNextError('no image files given', 2);
  for (const f of given) {
    if (fs.existsSync(f) && fs.statSync(f).isDirectory()) throw new ConvNextError(`${f}: is a folder; give image files (e.g. ${f}/*.jpg)`, 2);
  }
  const images: Image[] = [];
  const files: string[] = [];
  const skipped: { file: string; error: string }[] = [];
  for (const f of given) {
    try {
      images.push(await decodeImage(f));
      files.push(f);
    } catch (e) {
      if (!(e instanceof CorruptImageError)) throw e;
      skipped.push({ file: f, error: e.reason });
    }
  }
  if (files.length === 0) {
    throw new ConvNextError(`none of the ${given.length} file(s) given is a readable image (${skipped[0].file}: ${skipped[0].error})`);
  }
  for (const k of skipped) ctx.err(`convnextv2: warning: skipping ${k.file}: cannot decode it as an image (${k.error})`);
  if (skipped.length > 0) ctx.setExitCode(1);
  const pixels = new Float32Array(files.length * 3 * S * S);
  images.forEach((img, i) => evalTransform(img, S, cropPct, pixels, i * 3 * S * S));
  return { files, pixels: { shape: [files.length, 3, S, S], data: pixels }, skipped };
}

async function setup(args: ParsedArgs, ctx: CommandContext) {
  const path = args.requireString('checkpoint');
  const ck = loadCheckpoint(path, { ema: args.bool('ema') });
  const model = ConvNeXtV2.fromCheckpoint(ck, { kernels: await ctx.backend() });
  const { size: S, cropPct } = evalPreprocessing(args, ck);
  return { ck, model, S, cropPct };
}

const COMMON = {
  checkpoint: { kind: 'string' as const, help: 'checkpoint (a run folder means its best)' },
  'input-size': { kind: 'int' as const, help: "image size (default: the checkpoint's, else 224)" },
  'crop-pct': { kind: 'number' as const, help: "centre-crop fraction (default: the checkpoint's, else 0.875)" },
  ema: { kind: 'boolean' as const, help: 'use the EMA weights' },
};

export const predict: Command = {
  name: 'predict',
  positionals: 'IMAGE...',
  summary: 'classify image files: top-k classes with probabilities',
  usage: 'convnextv2 predict --checkpoint P IMAGE... [--top-k 5] [--json]',
  flags: {
    ...COMMON,
    'top-k': { kind: 'int', help: 'classes shown per image', default: 5 },
    labels: { kind: 'string', help: "class names: a JSON array / id2label object or one name a line (default: the checkpoint's, ImageNet-1k for 1000 classes)" },
  },
  async run(args, ctx) {
    const { ck, model, S, cropPct } = await setup(args, ctx);
    const K = ck.config.numClasses;
    if (K === 0) throw new ConvNextError(`checkpoint ${ck.file}: has no classifier head; use 'convnextv2 embed' for features`);
    const k = args.requireNumber('top-k');
    if (!(k >= 1)) throw new ConvNextError(`predict: --top-k ${k}: must be a positive integer`, 2);
    const { files, pixels, skipped } = await loadBatch(args, S, cropPct, ctx);
    const logits = (await model.forward(pixels)).logits!.data;
    const names = classNames(ck, labelsArg(args.string('labels'), K))?.names ?? Array.from({ length: K }, (_, i) => `class ${i}`);
    const results = files.map((file, i) => ({ file, top: topClasses(logits.subarray(i * K, (i + 1) * K), names, k) }));
    for (const r of results) {
      ctx.out(r.file);
      for (const t of r.top) ctx.out(`  ${(100 * t.probability).toFixed(2).padStart(6)}%  ${t.label}`);
    }
    return { predictions: results, skipped };
  },
};

export const embed: Command = {
  name: 'embed',
  positionals: 'IMAGE...',
  summary: 'write pre-logit features of image files to a safetensors file',
  usage: 'convnextv2 embed --checkpoint P --output OUT.safetensors IMAGE...',
  flags: { ...COMMON, output: { kind: 'string', help: 'safetensors file: features [N, C]' } },
  async run(args, ctx) {
    const { ck, model, S, cropPct } = await setup(args, ctx);
    const out = args.requireString('output');
    const { files, pixels, skipped } = await loadBatch(args, S, cropPct, ctx);
    const r = await model.forward(pixels);
    const C = ck.config.dims[3];
    writeSafetensors(out, [['features', r.preLogits]], { files: JSON.stringify(files), checkpoint: ck.file });
    ctx.out(`wrote features [${files.length}, ${C}] to ${out}`);
    return { output: out, images: files.length, dim: C, skipped };
  },
};
