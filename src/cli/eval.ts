/**
 * `convnextv2 eval`: top-1 / top-5 (percent) and loss of a checkpoint on a data set split,
 * with the official evaluation preprocessing (evaluate.ts); per-class top-1 and the confusion
 * matrix as text (up to 20 classes) and as files: per-class-SPLIT.csv, confusion-SPLIT.csv and
 * confusion-SPLIT.png in --out (default: beside the checkpoint; ./eval-NAME for weights from
 * the Hugging Face cache).
 */
import { ConvNextError } from '../errors.js';
import { openDataset, type Split } from '../data/dataset.js';
import { loadCheckpoint } from '../io/checkpoint_file.js';
import { ConvNeXtV2 } from '../model/convnextv2.js';
import type { Command } from './command.js';
import { evalPreprocessing, evaluate } from './evaluate.js';
import { classNames } from '../io/labels.js';
import { labelsArg } from '../io/labels_file.js';
import { DATA_FLAG, requireData, skippedOnce } from './runlog.js';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { writeBytesAtomicSync } from '../io/atomic.js';
import { csvBytes } from '../io/csv.js';
import { hubCacheDir } from '../io/hub.js';
import { confusionMatrixCanvas } from '../viz/plot.js';

/** Where eval writes its files by default: the run folder or the checkpoint's folder; for the hub cache, ./eval-NAME. */
export function defaultEvalOut(file: string): string {
  const abs = resolve(file);
  const cache = resolve(hubCacheDir());
  if (abs === cache || abs.startsWith(cache + sep)) {
    const repo = /models--([^/\\]+)/.exec(abs)?.[1]?.split('--').pop() ?? 'checkpoint';
    return join('.', `eval-${repo}`);
  }
  return existsSync(abs) && statSync(abs).isDirectory() ? file : dirname(file);
}


/** The confusion matrix as aligned text: a row per true class, a column per predicted class (by index; names in the row labels). */
function confusionText(m: Int32Array, K: number, names: readonly string[]): string[] {
  const w = Math.max(3, ...Array.from(m, (v) => String(v).length)) + 1;
  const nameW = Math.min(16, Math.max(...names.map((n) => n.length)));
  const label = (k: number) => `${String(k).padStart(String(K - 1).length)} ${names[k].slice(0, nameW).padEnd(nameW)}`;
  const head = ' '.repeat(label(0).length) + ' |' + Array.from({ length: K }, (_, k) => String(k).padStart(w)).join('');
  const lines = ['confusion matrix (rows: true class, columns: predicted class):', head, '-'.repeat(head.length)];
  for (let y = 0; y < K; y++) lines.push(`${label(y)} |` + Array.from({ length: K }, (_, x) => String(m[y * K + x]).padStart(w)).join(''));
  return lines;
}

export const evalCommand: Command = {
  name: 'eval',
  summary: 'top-1 / top-5 accuracy and loss of a checkpoint on a data set',
  usage: 'convnextv2 eval --checkpoint P --data SPEC [--split val|test] [--input-size S] [--crop-pct F] [--ema] [--out DIR] [--json]',
  examples: [
    'convnextv2 eval --checkpoint runs/flowers --data flowers/ --split val',
    'convnextv2 eval --checkpoint timm/convnextv2_atto.fcmae_ft_in1k --data imagenet/ --split val --json',
  ],
  flags: {
    checkpoint: { kind: 'string', help: 'classifier checkpoint (a run folder means its best)' },
    data: DATA_FLAG,
    split: { kind: 'string', help: 'val or test', default: 'val' },
    'input-size': { kind: 'int', help: 'image size (default: the checkpoint\'s, else 224)' },
    'crop-pct': { kind: 'number', help: 'centre-crop fraction below 384 px (default: the checkpoint\'s, else 0.875)' },
    'batch-size': { kind: 'int', help: 'images per forward', default: 64 },
    'val-split': { kind: 'number', help: 'the fraction carved out of train as validation (as in training)' },
    seed: { kind: 'int', help: 'seed of the --val-split carve-out', default: 0 },
    ema: { kind: 'boolean', help: 'evaluate the EMA weights' },
    labels: { kind: 'string', help: 'class names for --json per_class: a JSON array / id2label object or one name a line (default: the checkpoint\'s, ImageNet-1k for 1000 classes)' },
    limit: { kind: 'int', help: 'use N images: a seeded, class-stratified subset' },
    out: { kind: 'string', help: "folder for per-class-SPLIT.csv, confusion-SPLIT.csv and confusion-SPLIT.png (default: beside the checkpoint; ./eval-NAME for hub weights)" },
    'strict-data': { kind: 'boolean', help: 'stop at the first unreadable image (default: skip it and count it)' },
  },
  async run(args, ctx) {
    const split = args.requireString('split');
    if (split !== 'val' && split !== 'test') throw new ConvNextError(`eval: --split must be val or test, got '${split}'`, 2);
    const valSplit = args.number('val-split');
    if (valSplit !== undefined && !(valSplit >= 0 && valSplit < 1)) throw new ConvNextError(`eval: --val-split ${valSplit}: must be in [0, 1)`, 2);
    const path = args.requireString('checkpoint');
    const ck = loadCheckpoint(path, { ema: args.bool('ema') });
    if (ck.config.numClasses === 0) throw new ConvNextError(`checkpoint ${path}: has no classifier head (a backbone or FCMAE checkpoint); fine-tune it first`);
    const model = ConvNeXtV2.fromCheckpoint(ck, { kernels: await ctx.backend() });
    const limit = args.number('limit');
    if (limit !== undefined && !(limit >= 1)) throw new ConvNextError(`eval: --limit ${limit}: must be a positive integer`, 2);
    const ds = openDataset(requireData('eval', args), split as Split, { valSplit, seed: args.requireNumber('seed'), limit: args.number('limit') });
    if (ds.classes.length !== ck.config.numClasses) {
      throw new ConvNextError(`eval: the checkpoint has ${ck.config.numClasses} classes, ${ds.source} has ${ds.classes.length}`);
    }
    const { size, cropPct } = evalPreprocessing(args, ck);
    const batchSize = args.requireNumber('batch-size');
    if (!(batchSize >= 1)) throw new ConvNextError(`eval: --batch-size ${batchSize}: must be a positive integer`, 2);
    // Class names (a bad --labels file) before the evaluation, not after it.
    const named = classNames(ck, labelsArg(args.string('labels'), ck.config.numClasses));
    const out = args.string('out') ?? defaultEvalOut(ck.file);
    const r = await evaluate(model, ds, { size, cropPct, batchSize, progress: `eval ${split}`, confusion: true, strict: args.bool('strict-data') });
    ctx.out(`${ds.source}: top-1 ${r.top1.toFixed(2)}%, top-5 ${r.top5.toFixed(2)}%, loss ${r.loss.toFixed(4)} on ${r.images} images (${size} px, crop ${cropPct})${skippedOnce(ds)}`);
    if (ds.skipped.length > 0) ctx.setExitCode(1);
    // Per-class top-1 by name: the checkpoint's class names, --labels, the ImageNet-1k names for 1000 classes, else the data set's.
    const names = named?.names ?? ds.classes;
    const K = ck.config.numClasses;
    const perClass = r.classImages.flatMap((count, k) => (count > 0 ? [{ index: k, label: names[k], images: count, top1: (100 * r.classCorrect[k]) / count }] : []));
    if (K <= 20) {
      ctx.out('per-class top-1:');
      const nameW = Math.max(...perClass.map((c) => c.label.length));
      for (const c of perClass) ctx.out(`  ${String(c.index).padStart(String(K - 1).length)} ${c.label.padEnd(nameW)}  ${c.top1.toFixed(2).padStart(6)}%  of ${c.images}`);
      for (const l of confusionText(r.confusion!, K, names)) ctx.out(l);
    } else {
      const worst = [...perClass].sort((a, b) => a.top1 - b.top1 || a.index - b.index).slice(0, 5);
      ctx.out(`lowest per-class top-1: ${worst.map((c) => `${c.label} ${c.top1.toFixed(1)}%`).join(', ')}`);
    }
    mkdirSync(out, { recursive: true });
    const files = { perClass: join(out, `per-class-${split}.csv`), confusion: join(out, `confusion-${split}.csv`), confusionPng: join(out, `confusion-${split}.png`) };
    writeBytesAtomicSync(files.perClass, csvBytes([['index', 'label', 'images', 'top1'], ...perClass.map((c) => [c.index, c.label, c.images, c.top1.toFixed(4)])]));
    writeBytesAtomicSync(files.confusion, csvBytes([['true \\ predicted', ...names.slice(0, K)], ...Array.from({ length: K }, (_, y) => [names[y], ...r.confusion!.subarray(y * K, (y + 1) * K)])]));
    writeBytesAtomicSync(files.confusionPng, confusionMatrixCanvas(r.confusion!, K, {
      labels: names, title: `${basename(ck.file)} on ${split}: top-1 ${r.top1.toFixed(2)}% of ${r.images} images`,
    }).toPng());
    ctx.out(`wrote ${files.perClass}, ${files.confusion} and ${files.confusionPng}`);
    return {
      top1: r.top1, top5: r.top5, loss: r.loss, images: r.images, checkpoint: ck.file, data: ds.source, labels: named?.source ?? 'data', per_class: perClass,
      skipped: ds.skipped, files: { per_class: files.perClass, confusion: files.confusion, confusion_png: files.confusionPng },
    };
  },
};
