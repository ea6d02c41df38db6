/**
 * `convnextv2 eval`: top-1 / top-5 (percent) and loss of a checkpoint on a data set split,
 * with the official evaluation preprocessing (evaluate.ts).
 */
import { ConvNextError } from '../errors.js';
import { openDataset, type Split } from '../data/dataset.js';
import { loadCheckpoint } from '../io/checkpoint_file.js';
import { ConvNeXtV2 } from '../model/convnextv2.js';
import type { Command } from './command.js';
import { evalPreprocessing, evaluate } from './evaluate.js';
import { classNames } from '../io/labels.js';
import { labelsArg } from '../io/labels_file.js';

export const evalCommand: Command = {
  name: 'eval',
  summary: 'top-1 / top-5 accuracy and loss of a checkpoint on a data set',
  usage: 'convnextv2 eval --checkpoint P --data SPEC [--split val|test] [--input-size S] [--crop-pct F] [--ema] [--json]',
  flags: {
    checkpoint: { kind: 'string', help: 'classifier checkpoint (a run folder means its best)' },
    data: { kind: 'string', help: 'DIR, fashion-mnist[:DIR], cifar10:DIR or synthetic[:SIZE]' },
    split: { kind: 'string', help: 'val or test', default: 'val' },
    'input-size': { kind: 'int', help: 'image size (default: the checkpoint\'s, else 224)' },
    'crop-pct': { kind: 'number', help: 'centre-crop fraction below 384 px (default: the checkpoint\'s, else 0.875)' },
    'batch-size': { kind: 'int', help: 'images per forward', default: 64 },
    'val-split': { kind: 'number', help: 'the fraction carved out of train as validation (as in training)' },
    seed: { kind: 'int', help: 'seed of the --val-split carve-out', default: 0 },
    ema: { kind: 'boolean', help: 'evaluate the EMA weights' },
    labels: { kind: 'string', help: 'class names for --json per_class: a JSON array / id2label object or one name a line (default: the checkpoint\'s, ImageNet-1k for 1000 classes)' },
    limit: { kind: 'int', help: 'first N images' },
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
    const ds = openDataset(args.requireString('data'), split as Split, { valSplit, seed: args.requireNumber('seed'), limit: args.number('limit') });
    if (ds.classes.length !== ck.config.numClasses) {
      throw new ConvNextError(`eval: the checkpoint has ${ck.config.numClasses} classes, ${ds.source} has ${ds.classes.length}`);
    }
    const { size, cropPct } = evalPreprocessing(args, ck);
    const batchSize = args.requireNumber('batch-size');
    if (!(batchSize >= 1)) throw new ConvNextError(`eval: --batch-size ${batchSize}: must be a positive integer`, 2);
    // Class names (a bad --labels file) before the evaluation, not after it.
    const named = classNames(ck, labelsArg(args.string('labels'), ck.config.numClasses));
    const r = await evaluate(model, ds, { size, cropPct, batchSize });
    ctx.out(`${ds.source}: top-1 ${r.top1.toFixed(2)}%, top-5 ${r.top5.toFixed(2)}%, loss ${r.loss.toFixed(4)} on ${r.images} images (${size} px, crop ${cropPct})`);
    // Per-class top-1 by name: the checkpoint's class names, --labels, the ImageNet-1k names for 1000 classes, else the data set's.
    const names = named?.names ?? ds.classes;
    const perClass = r.classImages.flatMap((count, k) => (count > 0 ? [{ index: k, label: names[k], images: count, top1: (100 * r.classCorrect[k]) / count }] : []));
    return { top1: r.top1, top5: r.top5, loss: r.loss, images: r.images, checkpoint: ck.file, data: ds.source, labels: named?.source ?? 'data', per_class: perClass };
  },
};
