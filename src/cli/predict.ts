/**
 * `convnextv2 predict IMAGE|DIR|GLOB...`: top-k classes with probabilities per image (class
 * names from the checkpoint: ImageFolder classes or HF id2label), as text, JSON lines or a CSV
 * file; `convnextv2 embed IMAGE|DIR|GLOB...`: pre-logit features (pooled + normalised) written
 * to a safetensors file. Images go through the model in batches, with a progress bar.
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
import { Progress } from './progress.js';
import { writeBytesAtomicSync } from '../io/atomic.js';
import { csvBytes } from '../io/csv.js';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { globSync } from 'tinyglobby';
import type { Command, CommandContext } from './command.js';
import { evalPreprocessing } from './evaluate.js';
import { topClasses } from '../train/metrics.js';

/** A file the command will write, checked before any work: not a folder, in a folder that exists (usage errors). */
function checkOutputFile(command: string, flag: string, file: string): void {
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) throw new ConvNextError(`${command}: --${flag} ${file} is a directory; give a file name`, 2);
  const parent = dirname(resolve(file));
  if (!(fs.existsSync(parent) && fs.statSync(parent).isDirectory())) throw new ConvNextError(`${command}: --${flag} ${file}: the folder ${parent} does not exist`, 2);
}

/** The image files a folder is searched for (any case). */
export const IMAGE_EXTENSIONS = ['jpg', 'jpeg', 'png', 'webp', 'gif', 'tif', 'tiff', 'avif'];
const GLOB_CHARS = /[*?[\]{}]/;

/**
 * The image files the positionals name, in order: a file as given, a folder's images
 * (searched recursively, sorted), a glob's matches (sorted; for quoted globs the shell did not
 * expand). A folder without images or a glob matching nothing is a usage error.
 */
export function imageFiles(given: readonly string[]): string[] {
  if (given.length === 0) throw new ConvNextError('no images given (files, folders or globs such as "photos/*.jpg")', 2);
  const out: string[] = [];
  for (const g of given) {
    if (fs.existsSync(g) && fs.statSync(g).isDirectory()) {
      const found = globSync(`**/*.{${IMAGE_EXTENSIONS.join(',')}}`, { cwd: g, caseSensitiveMatch: false, onlyFiles: true }).sort();
      if (found.length === 0) throw new ConvNextError(`${g}: a folder with no images in it (${IMAGE_EXTENSIONS.join(', ')}, searched recursively)`, 2);
      out.push(...found.map((f) => join(g, f)));
    } else if (!fs.existsSync(g) && GLOB_CHARS.test(g)) {
      const found = globSync(g, { onlyFiles: true, expandDirectories: false, absolute: isAbsolute(g) }).sort();
      if (found.length === 0) throw new ConvNextError(`${g}: matches no file`, 2);
      out.push(...found);
    } else {
      out.push(g); // a missing file is said when it is decoded
    }
  }
  return out;
}

/**
 * The given images decoded and preprocessed in batches of `batchSize`, in order; an unreadable
 * file is skipped with a one-line warning (the command then exits 1), and none readable at all
 * is an error. A progress bar on stderr when there is more than one batch.
 */
async function* imageBatches(files: string[], S: number, cropPct: number, batchSize: number, ctx: CommandContext, skipped: { file: string; error: string }[]): AsyncGenerator<{ files: string[]; pixels: Tensor }> {
  const bar = files.length > batchSize ? new Progress('images', files.length, 'img') : null;
  let readable = 0;
  for (let at = 0; at < files.length; at += batchSize) {
    const chunk = files.slice(at, at + batchSize);
    const decoded = await Promise.all(chunk.map((f) => decodeImage(f).catch((e: unknown) => {
      if (!(e instanceof CorruptImageError)) throw e;
      return e;
    })));
    const ok: string[] = [];
    const images: Image[] = [];
    decoded.forEach((d, i) => {
      if (d instanceof CorruptImageError) {
        skipped.push({ file: chunk[i], error: d.reason });
        // One file alone: the error below says it.
        if (files.length > 1) ctx.err(`convnextv2: warning: skipping ${chunk[i]}: ${d.reason}`);
        ctx.setExitCode(1);
      } else {
        ok.push(chunk[i]);
        images.push(d);
      }
    });
    readable += ok.length;
    if (ok.length > 0) {
      const pixels = new Float32Array(ok.length * 3 * S * S);
      images.forEach((img, i) => evalTransform(img, S, cropPct, pixels, i * 3 * S * S));
      yield { files: ok, pixels: { shape: [ok.length, 3, S, S], data: pixels } };
    }
    bar?.update(Math.min(files.length, at + batchSize));
  }
  if (readable === 0) {
    throw new ConvNextError(files.length === 1 ? `cannot decode image ${skipped[0].file}: ${skipped[0].error}`
      : `none of the ${files.length} files given is a readable image (${skipped[0].file}: ${skipped[0].error})`);
  }
}

async function setup(args: ParsedArgs, ctx: CommandContext) {
  const path = args.requireString('checkpoint');
  const ck = loadCheckpoint(path, { ema: args.bool('ema') });
  const model = ConvNeXtV2.fromCheckpoint(ck, { kernels: await ctx.backend() });
  const { size: S, cropPct } = evalPreprocessing(args, ck);
  const batch = args.requireNumber('batch-size');
  if (!(batch >= 1)) throw new ConvNextError(`${args.command}: --batch-size ${batch}: must be a positive integer`, 2);
  return { ck, model, S, cropPct, batch };
}

const COMMON = {
  checkpoint: { kind: 'string' as const, help: 'checkpoint (a run folder means its best)' },
  'input-size': { kind: 'int' as const, help: "image size (default: the checkpoint's, else 224)" },
  'crop-pct': { kind: 'number' as const, help: "centre-crop fraction (default: the checkpoint's, else 0.875)" },
  ema: { kind: 'boolean' as const, help: 'use the EMA weights' },
  'batch-size': { kind: 'int' as const, help: 'images per forward pass', default: 32 },
};


export const predict: Command = {
  name: 'predict',
  positionals: 'IMAGE|DIR|GLOB...',
  summary: 'classify images (files, folders, globs): top-k classes with probabilities',
  usage: 'convnextv2 predict --checkpoint P IMAGE|DIR|GLOB... [--top-k 5] [--csv FILE] [--jsonl] [--json]',
  examples: [
    'convnextv2 predict --checkpoint timm/convnextv2_atto.fcmae_ft_in1k cat.jpg dog.png',
    'convnextv2 predict --checkpoint runs/flowers photos/ --top-k 3 --csv predictions.csv',
    'convnextv2 predict --checkpoint runs/flowers "photos/**/*.jpg" --jsonl > predictions.jsonl',
  ],
  flags: {
    ...COMMON,
    'top-k': { kind: 'int', help: 'classes shown per image', default: 5 },
    labels: { kind: 'string', help: "class names: a JSON array / id2label object or one name a line (default: the checkpoint's, ImageNet-1k for 1000 classes)" },
    csv: { kind: 'string', help: 'also write FILE: one row per image, path then label_1, probability_1 ... label_k, probability_k' },
    jsonl: { kind: 'boolean', help: 'print one JSON object per image ({"file", "top": [{"index", "label", "probability"}]}) instead of the text' },
  },
  async run(args, ctx) {
    const { ck, model, S, cropPct, batch } = await setup(args, ctx);
    const K = ck.config.numClasses;
    if (K === 0) throw new ConvNextError(`checkpoint ${ck.file}: has no classifier head; use 'convnextv2 embed' for features`);
    const k = args.requireNumber('top-k');
    if (!(k >= 1)) throw new ConvNextError(`predict: --top-k ${k}: must be a positive integer`, 2);
    const csv = args.string('csv');
    if (csv !== undefined) checkOutputFile('predict', 'csv', csv);
    const jsonl = args.bool('jsonl');
    const files = imageFiles(args.positionals);
    const names = classNames(ck, labelsArg(args.string('labels'), K))?.names ?? Array.from({ length: K }, (_, i) => `class ${i}`);
    const kk = Math.min(k, K);
    const rows: string[][] = csv ? [['path', ...Array.from({ length: kk }, (_, j) => [`label_${j + 1}`, `probability_${j + 1}`]).flat()]] : [];
    const skipped: { file: string; error: string }[] = [];
    const results: { file: string; top: ReturnType<typeof topClasses> }[] = [];
    for await (const b of imageBatches(files, S, cropPct, batch, ctx, skipped)) {
      const logits = (await model.forward(b.pixels)).logits!.data;
      b.files.forEach((file, i) => {
        const r = { file, top: topClasses(logits.subarray(i * K, (i + 1) * K), names, k) };
        results.push(r);
        if (jsonl) ctx.out(JSON.stringify(r));
        else {
          ctx.out(r.file);
          for (const t of r.top) ctx.out(`  ${(100 * t.probability).toFixed(2).padStart(6)}%  ${t.label}`);
        }
        if (csv) rows.push([file, ...r.top.flatMap((t) => [t.label, t.probability.toPrecision(6)])]);
      });
    }
    if (csv) {
      writeBytesAtomicSync(csv, csvBytes(rows));
      if (!jsonl) ctx.out(`wrote ${results.length} rows to ${csv}`);
    }
    return { predictions: results, skipped, ...(csv ? { csv } : {}) };
  },
};

export const embed: Command = {
  name: 'embed',
  positionals: 'IMAGE|DIR|GLOB...',
  summary: 'write pre-logit features of images (files, folders, globs) to a safetensors file',
  usage: 'convnextv2 embed --checkpoint P --output OUT.safetensors IMAGE|DIR|GLOB...',
  examples: [
    'convnextv2 embed --checkpoint timm/convnextv2_atto.fcmae_ft_in1k --output features.safetensors photos/',
    'convnextv2 embed --checkpoint runs/flowers --output features.safetensors "photos/*.jpg" --batch-size 64',
  ],
  flags: { ...COMMON, output: { kind: 'string', help: 'safetensors file: features [N, C]' } },
  async run(args, ctx) {
    const { ck, model, S, cropPct, batch } = await setup(args, ctx);
    const out = args.requireString('output');
    checkOutputFile('embed', 'output', out);
    const files = imageFiles(args.positionals);
    const C = ck.config.dims[3];
    const skipped: { file: string; error: string }[] = [];
    const done: string[] = [];
    const parts: Float32Array[] = [];
    for await (const b of imageBatches(files, S, cropPct, batch, ctx, skipped)) {
      parts.push(Float32Array.from((await model.forward(b.pixels)).preLogits.data));
      done.push(...b.files);
    }
    const features = new Float32Array(done.length * C);
    let at = 0;
    for (const p of parts) {
      features.set(p, at);
      at += p.length;
    }
    writeSafetensors(out, [['features', { shape: [done.length, C], data: features }]], { files: JSON.stringify(done), checkpoint: ck.file });
    ctx.out(`wrote features [${done.length}, ${C}] to ${out}`);
    return { output: out, images: done.length, dim: C, skipped };
  },
};
