/**
 * `convnextv2 analyze`: the paper's feature analyses of one or more checkpoints on a data set.
 * Every block's MLP hidden activation (after GELU, the input of GRN) is captured during the
 * model's own forward; per checkpoint it computes the feature cosine distance per block
 * (averaged over images), class selectivity indices per block (labelled data) and the
 * activation maps of one layer for a few images. Writes to --out:
 *   cosine-distance.png   the curves against relative depth, one line per checkpoint
 *   selectivity.png       selectivity distributions per block, a box per checkpoint
 *   maps-<label>.png      activation maps of the chosen layer
 *   analysis.json         every number
 *   report.md             the pictures and tables
 */
import { mkdirSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { ConvNextError } from '../errors.js';
import { datasetFromShared, openDataset, type Split } from '../data/dataset.js';
import { DataLoader } from '../data/loader.js';
import { fromNormalizedCHW } from '../data/transforms.js';
import { writeBytesAtomicSync } from '../io/atomic.js';
import { type LoadedCheckpoint } from '../io/checkpoint.js';
import { loadCheckpoint } from '../io/checkpoint_file.js';
import { ConvNeXtV2 } from '../model/convnextv2.js';
import { ActivationAnalyzer, modelLayers, resolveLayer, type ModelAnalysis } from '../analysis/collect.js';
import { activationMapsPng, cosineDistancePlot, selectivityPlot } from '../analysis/plots.js';
import { analysisReport, type ReportModel } from '../analysis/report.js';
import type { Command } from './command.js';
import { DATA_FLAG, requireData } from './runlog.js';

/** The input size a checkpoint was trained at: fine-tuning metadata, else the pre-training flags. */
function trainedSize(ck: LoadedCheckpoint): number | undefined {
  const s = ck.preprocessing?.inputSize;
  if (s !== undefined && Number.isInteger(s)) return s;
  try {
    const a = JSON.parse(ck.metadata.args ?? '{}') as Record<string, unknown>;
    const v = Number(a['input-size']);
    if (Number.isInteger(v) && v > 0) return v;
  } catch {
    // no usable args
  }
  return ck.fcmae?.inputSize;
}

/** A label from a checkpoint path: the run folder's name, or the file name without extension. */
function defaultLabel(path: string): string {
  const b = basename(path);
  const stem = b.replace(/\.(safetensors|pt|pth|bin)$/i, '');
  if (stem !== b && /^checkpoint-(best|last)$/.test(stem)) return basename(dirname(path));
  return stem || path;
}

function fileSafe(label: string): string {
  return label.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 60) || 'model';
}

export const analyze: Command = {
  name: 'analyze',
  summary: "the paper's feature analyses: cosine distance per block, class selectivity, activation maps",
  usage: 'convnextv2 analyze --checkpoint P [--checkpoint Q ...] [--label NAME ...] --data SPEC --out DIR [--images N] [--layer S.B] [--split val]',
  examples: [
    'convnextv2 analyze --checkpoint runs/pretrain --data synthetic --out analysis',
    'convnextv2 analyze --checkpoint runs/v1 --label V1 --checkpoint runs/v2 --label V2 --data fashion-mnist --images 256 --out analysis',
  ],
  flags: {
    checkpoint: { kind: 'list', help: 'checkpoint (file or run folder); repeat to compare several on one plot' },
    label: { kind: 'list', help: "name of each checkpoint in plots and tables, in order (default: the run folder's name)" },
    data: DATA_FLAG,
    split: { kind: 'string', help: 'train, val or test', default: 'val' },
    images: { kind: 'int', help: 'images analysed, spread evenly over the split', default: 500 },
    layer: { kind: 'string', help: 'block of the activation maps: S.B, stages.S.blocks.B or an index (default: last block of stage 2)' },
    'map-images': { kind: 'int', help: 'images in the activation-map PNGs', default: 4 },
    'map-channels': { kind: 'int', help: 'channels shown per image (the first ones)', default: 64 },
    'input-size': { kind: 'int', help: "image size (default: the first checkpoint's training size, else 224)" },
    'crop-pct': { kind: 'number', help: 'evaluation centre-crop fraction', default: 0.875 },
    'batch-size': { kind: 'int', help: 'images per forward', default: 32 },
    ema: { kind: 'boolean', help: 'use the EMA weights of fine-tuning checkpoints' },
    workers: { kind: 'int', help: 'data loading worker threads' },
    out: { kind: 'string', help: 'output folder (report.md, PNGs, analysis.json)' },
  },
  async run(args, ctx) {
    const kernels = await ctx.backend();
    if (kernels.capabilities().device) {
      throw new ConvNextError('analyze: the analyses read every block\'s activations on the host as the forward runs; use --device cpu', 2);
    }
    const paths = args.list('checkpoint');
    if (paths.length === 0) throw new ConvNextError('analyze: missing --checkpoint', 2);
    const labels = args.list('label');
    if (labels.length > paths.length) throw new ConvNextError(`analyze: ${labels.length} --label values for ${paths.length} checkpoints`, 2);
    const names = paths.map((p, i) => labels[i] ?? defaultLabel(p));
    if (new Set(names).size !== names.length) throw new ConvNextError(`analyze: labels must differ (${names.join(', ')}); give --label for each checkpoint`, 2);
    const out = resolve(args.requireString('out'));
    const split = args.requireString('split') as Split;
    if (!['train', 'val', 'test'].includes(split)) throw new ConvNextError(`analyze: --split must be train, val or test, got '${split}'`, 2);
    const count = args.requireNumber('images');
    const B = args.requireNumber('batch-size');
    const mapImages = args.requireNumber('map-images');
    const mapChannels = args.requireNumber('map-channels');
    if (count < 1 || B < 1 || mapImages < 0 || mapChannels < 1) throw new ConvNextError('analyze: --images, --batch-size and --map-channels must be positive, --map-images not negative', 2);
    const spec = requireData('analyze', args);

    const cks = paths.map((p) => loadCheckpoint(p, { ema: args.bool('ema') }));
    const S = args.number('input-size') ?? trainedSize(cks[0]) ?? 224;
    if (!(Number.isInteger(S) && S >= 32)) throw new ConvNextError(`analyze: --input-size ${S} must be an integer of at least 32`, 2);
    const cropPct = args.requireNumber('crop-pct');

    const full = openDataset(spec, split, {});
    const n = Math.min(count, full.length);
    // Evenly spread over the split, so folder-ordered data sets give every class.
    const indices = Int32Array.from({ length: n }, (_, i) => Math.floor((i * full.length) / n));
    const ds = n === full.length ? full : datasetFromShared({ kind: 'subset', source: `${full.source}, ${n} images spread evenly`, base: full.share(), indices });
    const K = full.classes.length;

    // Every model and --layer checked before --out is created (a bad one leaves no folder behind).
    const models = cks.map((ck, i) => {
      const model = ConvNeXtV2.fromCheckpoint(ck, { kernels });
      const layers = modelLayers(model);
      const mapLayer = resolveLayer(layers, args.string('layer'));
      return { ck, label: names[i], model, analyzer: new ActivationAnalyzer(model, { numClasses: K, mapLayer, mapImages, mapChannels }) };
    });
    mkdirSync(out, { recursive: true });
    ctx.out(`analyze: ${models.length} checkpoint${models.length > 1 ? 's' : ''} on ${ds.source}, ${S} px, kernels ${models[0].model.kernels.isa} x${models[0].model.kernels.threads}`);

    const loader = new DataLoader(ds, { batchSize: B, transform: { kind: 'eval', size: S, cropPct }, fill: false, workers: args.number('workers') ?? 'auto' });
    const t0 = performance.now();
    let seen = 0;
    try {
      for await (const b of loader.epoch(0)) {
        const N = b.labels.length;
        if (N === 0) continue;
        const inputs = (i: number) => fromNormalizedCHW(b.pixels.data, S, S, undefined, undefined, i * 3 * S * S);
        for (const m of models) m.analyzer.addBatch(b.pixels.data, N, S, b.labels, inputs);
        seen += N;
      }
    } finally {
      await loader.close();
    }
    if (seen === 0) throw new ConvNextError(`analyze: no readable images in ${ds.source}`);
    ctx.out(`analysed ${seen} images in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const results: { label: string; analysis: ModelAnalysis }[] = models.map((m) => ({ label: m.label, analysis: m.analyzer.result() }));
    const hasSel = results.every((r) => r.analysis.layers.every((l) => l.selectivity !== null));
    writeBytesAtomicSync(join(out, 'cosine-distance.png'), cosineDistancePlot(results));
    if (hasSel) writeBytesAtomicSync(join(out, 'selectivity.png'), selectivityPlot(results));
    const reportModels: ReportModel[] = models.map((m, i) => {
      const a = results[i].analysis;
      let mapsPng: string | null = null;
      if (a.maps.length > 0) {
        mapsPng = `maps-${fileSafe(m.label)}.png`;
        writeBytesAtomicSync(join(out, mapsPng), activationMapsPng(a.maps, a.mapChannels,
          `${m.label}: ${a.mapLayer.name} MLP hidden activation, channels ${a.mapChannels[0]}-${a.mapChannels[a.mapChannels.length - 1]}`, full.classes));
      }
      return { label: m.label, file: m.ck.file, config: m.ck.config, analysis: a, mapsPng };
    });
    const report = analysisReport({
      models: reportModels, data: spec, split, inputSize: S, cosinePng: 'cosine-distance.png', selectivityPng: hasSel ? 'selectivity.png' : null,
      selectivityNote: hasSel ? undefined : `Not computed: the analysed images hold fewer than 2 classes (${K} in the data set).`,
    });
    writeBytesAtomicSync(join(out, 'report.md'), Buffer.from(report + '\n', 'utf8'));
    const json = {
      data: spec, split, images: seen, input_size: S,
      models: reportModels.map((m) => ({
        label: m.label, checkpoint: m.file, block: m.config.block, depths: m.config.depths, dims: m.config.dims,
        layers: m.analysis.layers.map((l) => ({
          name: l.name, relative_depth: l.relativeDepth, channels: l.channels, cosine_distance: l.cosine, cosine_distance_sd: l.cosineStd,
          selectivity: l.selectivityStats, silent_channels: l.silentChannels,
        })),
      })),
    };
    writeBytesAtomicSync(join(out, 'analysis.json'), Buffer.from(JSON.stringify(json, null, 2) + '\n', 'utf8'));
    for (const m of reportModels) {
      const ls = m.analysis.layers;
      ctx.out(`${m.label}: cosine distance per block ${ls.map((l) => l.cosine.toFixed(3)).join(' ')} (mean ${(ls.reduce((a, l) => a + l.cosine, 0) / ls.length).toFixed(3)})`);
    }
    ctx.out(`report: ${join(out, 'report.md')}`);
    return { out, report: join(out, 'report.md'), images: seen, models: json.models.map((m) => ({ label: m.label, cosine_distance: m.layers.map((l) => l.cosine_distance) })) };
  },
};
