/**
 * `convnextv2 inspect`: a quick look at a checkpoint before use: container and format,
 * architecture (depths, dims, matching size), parameter count, classes and labels, the
 * extra records of `.pt` files (epoch, args), metadata, FCMAE parts and the extra tensors of
 * our checkpoints. Loading validates the file exactly as every other command does.
 */
import { type LoadedCheckpoint } from '../io/checkpoint.js';
import { loadCheckpoint } from '../io/checkpoint_file.js';
import type { JsonValue } from '../io/sources.js';
import { countParams } from '../model/config.js';
import type { Command } from './command.js';

const MAX_LABELS = 5;

function oneLine(v: JsonValue, max = 160): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}

function recordLines(records: Record<string, JsonValue>): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(records)) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const fields = Object.entries(v).filter(([f]) => f !== '__class__');
      const cls = typeof v.__class__ === 'string' ? ` (${v.__class__})` : '';
      const shown = fields.slice(0, 12).map(([f, x]) => `${f}=${oneLine(x, 40)}`).join(', ');
      out.push(`${k}${cls}: ${shown}${fields.length > 12 ? `, ... (${fields.length} fields)` : ''}`);
    } else {
      out.push(`${k}: ${oneLine(v)}`);
    }
  }
  return out;
}

function extraCounts(ck: LoadedCheckpoint): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const n of ck.extraNames) {
    const p = n.slice(0, n.indexOf('.') + 1 || n.length);
    counts[p] = (counts[p] ?? 0) + 1;
  }
  return counts;
}

export const inspect: Command = {
  name: 'inspect',
  summary: 'show a checkpoint\'s format, architecture, parameter count, classes and extra records',
  usage: 'convnextv2 inspect --checkpoint P [--ema] [--json]',
  examples: [
    'convnextv2 inspect --checkpoint runs/flowers',
    'convnextv2 inspect --checkpoint facebook/convnextv2-atto-1k-224 --json',
  ],
  flags: {
    checkpoint: { kind: 'string', help: 'file or directory, any supported format' },
    ema: { kind: 'boolean', help: 'look at the EMA weights (model_ema of .pt files, ema.* of ours)' },
    prefix: { kind: 'string', help: 'key prefix of the model tensors when the file holds several' },
    'allow-unexpected': { kind: 'boolean', help: 'ignore tensors that map to nothing (listed)' },
  },
  run(args, ctx) {
    const path = args.requireString('checkpoint');
    const ck = loadCheckpoint(path, { ema: args.bool('ema'), prefix: args.string('prefix'), allowUnexpected: args.bool('allow-unexpected') });
    const c = ck.config;
    const params = countParams(c);
    const extras = extraCounts(ck);
    const lines: Array<[string, string]> = [];
    lines.push(['file', `${ck.file} (${ck.container})`]);
    lines.push(['format', `${ck.format}, ${ck.naming} names${ck.stateDictKey ? `, state dict "${ck.stateDictKey}"` : ''}`]);
    lines.push(['architecture', `${ck.modelName ?? 'custom'}${c.block === 'v1' ? ' with ConvNeXt V1 blocks (LayerScale, no GRN)' : ''}: depths [${c.depths.join(', ')}], dims [${c.dims.join(', ')}], kernel ${c.kernelSize}, ${c.inChans} input channels, head norm eps ${c.headNormEps < 1e-3 ? c.headNormEps.toExponential() : c.headNormEps}`]);
    lines.push(['parameters', params.toLocaleString('en-US')]);
    const labelText = ck.labels ? `; labels ${ck.labels.slice(0, MAX_LABELS).map((l) => JSON.stringify(l)).join(', ')}${ck.labels.length > MAX_LABELS ? ', ...' : ''}` : '';
    lines.push(['classes', c.numClasses > 0 ? `${c.numClasses}${labelText}` : '0 (backbone: no classifier head)']);
    if (ck.initialised.length) lines.push(['initialised', `${ck.initialised.join(', ')} (not in the file; initial values)`]);
    if (ck.fcmae) {
      const f = ck.fcmae;
      const more = [f.maskRatio !== undefined ? `mask ratio ${f.maskRatio}` : '', f.normPixLoss !== undefined ? `norm_pix_loss ${f.normPixLoss}` : '', f.inputSize !== undefined ? `input ${f.inputSize}` : ''].filter(Boolean);
      lines.push(['fcmae', `decoder dim ${f.decoderDim}, depth ${f.decoderDepth}, patch ${f.patchSize}${more.length ? `, ${more.join(', ')}` : ''} (${extras['fcmae.'] ?? 0} tensors)`]);
    }
    const otherExtras = Object.entries(extras).filter(([p]) => p !== 'fcmae.' || !ck.fcmae);
    if (otherExtras.length) lines.push(['extra tensors', otherExtras.map(([p, n]) => `${p}* ${n}`).join(', ')]);
    for (const l of recordLines(ck.records ?? {})) lines.push(['record', l]);
    const meta = Object.entries(ck.metadata).filter(([k]) => k !== 'config' && k !== 'labels');
    for (const [k, v] of meta) lines.push(['metadata', `${k}=${oneLine(v, 120)}`]);
    if (ck.unused.length) lines.push(['unused', `${ck.unused.length} tensors (${ck.unused.slice(0, 4).join(', ')}${ck.unused.length > 4 ? ', ...' : ''})`]);
    for (const [k, v] of lines) ctx.out(`${`${k}:`.padEnd(15)} ${v}`);

    const result: Record<string, unknown> = {
      file: ck.file,
      container: ck.container,
      format: ck.format,
      naming: ck.naming,
      model: ck.modelName ?? null,
      depths: c.depths,
      dims: c.dims,
      kernelSize: c.kernelSize,
      block: c.block,
      inChans: c.inChans,
      headNormEps: c.headNormEps,
      params,
      numClasses: c.numClasses,
      backbone: ck.backbone,
      labels: ck.labels ? ck.labels.slice(0, 10) : null,
      initialised: ck.initialised,
      extraTensors: extras,
      metadata: Object.fromEntries(meta),
    };
    if (ck.stateDictKey) result.stateDictKey = ck.stateDictKey;
    if (ck.records) result.records = ck.records;
    if (ck.fcmae) result.fcmae = ck.fcmae;
    if (ck.unused.length) result.unused = ck.unused.length;
    return result;
  },
};
