/**
 * `convnextv2 convert`: read a checkpoint in any supported format and write it for another
 * ecosystem. Targets:
 * - `ours`: our safetensors checkpoint (model weights, class names, and an FCMAE checkpoint's
 *   decoder as `fcmae.*`; no optimizer or EMA state: `--ema` picks the EMA weights as the model);
 * - `timm`: safetensors with timm's names, MLP as 1x1 convolutions for atto..nano (timm's
 *   `conv_mlp`), Linear for the other sizes and custom ones (`--conv-mlp` / `--no-conv-mlp`);
 * - `hf`: a directory with config.json, model.safetensors and preprocessor_config.json;
 * - `official`: a torch.save zip `{"model": state_dict}` in the official repository's names
 *   (`--format safetensors` for a safetensors copy);
 * - `onnx`: an ONNX model (opset 17 by default) with input `pixel_values`, output `logits`.
 * Every written checkpoint (not ONNX) is read back and compared bit for bit.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConvNextError } from '../errors.js';
import { classNames } from '../io/labels.js';
import { labelsArg } from '../io/labels_file.js';
import { preprocessingMetadata, timmUsesConvMlp, type LoadedCheckpoint, type StateDict } from '../io/checkpoint.js';
import { exportCheckpoint, loadCheckpoint, saveCheckpoint } from '../io/checkpoint_file.js';
import { FCMAE_PREFIX } from '../io/fcmae.js';
import { exportOnnx } from '../io/onnx.js';
import { countParams } from '../model/config.js';
import { sameBits } from '../tensor.js';
import type { Command } from './command.js';

const TARGETS = ['ours', 'timm', 'hf', 'official', 'onnx'] as const;
type Target = (typeof TARGETS)[number];

function describe(ck: LoadedCheckpoint): string {
  const c = ck.config;
  const arch = ck.modelName ?? `depths [${c.depths.join(',')}] dims [${c.dims.join(',')}]`;
  return `${arch}, ${countParams(c).toLocaleString('en-US')} parameters, ${c.numClasses > 0 ? `${c.numClasses} classes` : 'backbone (no head)'}`;
}

/** Reads `out` back and checks that it holds exactly `ck`'s weights (and FCMAE extras). */
function verify(out: string, ck: LoadedCheckpoint, extra: StateDict | undefined): void {
  const back = loadCheckpoint(out, { extra: extra !== undefined });
  const bad = (why: string): never => { throw new ConvNextError(`convert: ${out} does not read back as written: ${why}`); };
  if (back.state.size !== ck.state.size) bad(`${back.state.size} tensors instead of ${ck.state.size}`);
  for (const [k, t] of ck.state) {
    const b = back.state.get(k);
    if (!b || !sameBits(b.data, t.data)) bad(`tensor ${k} differs`);
  }
  for (const [k, t] of extra ?? []) {
    const b = back.extra?.get(k);
    if (!b || !sameBits(b.data, t.data)) bad(`tensor ${k} differs`);
  }
}

export const convert: Command = {
  name: 'convert',
  summary: 'convert a checkpoint (ours, timm, HF, official .pt, official FCMAE) to ours, timm, hf, official or onnx',
  usage: 'convnextv2 convert --checkpoint IN --to ours|timm|hf|official|onnx --output OUT [--format safetensors] [--ema]',
  examples: [
    'convnextv2 convert --checkpoint facebook/convnextv2-atto-1k-224 --to timm --output atto-timm.safetensors',
    'convnextv2 convert --checkpoint runs/flowers --to onnx --output flowers.onnx',
  ],
  flags: {
    checkpoint: { kind: 'string', help: 'input: file or directory, any supported format (detected)' },
    to: { kind: 'string', help: 'ours, timm, hf, official or onnx' },
    output: { kind: 'string', help: 'output file (a directory for hf)' },
    labels: { kind: 'string', help: "class names to write: a JSON array / id2label object or one name a line (default: the input's; --to hf of 1000 classes: ImageNet-1k)" },
    format: { kind: 'string', help: 'official: pt (torch.save zip, default) or safetensors' },
    ema: { kind: 'boolean', help: 'convert the EMA weights (model_ema of .pt files, ema.* of ours)' },
    prefix: { kind: 'string', help: 'key prefix of the model tensors when the input holds several' },
    'allow-unexpected': { kind: 'boolean', help: 'ignore input tensors that map to nothing' },
    'conv-mlp': { kind: 'boolean', help: 'timm: MLP as 1x1 convolutions (default: as timm, yes for atto..nano only)' },
    opset: { kind: 'int', help: 'onnx: opset version (17 to 23)', default: 17 },
    'external-data': { kind: 'boolean', help: 'onnx: weights in OUT.data beside the model (default: only over 1 GiB)' },
  },
  run(args, ctx) {
    const input = args.requireString('checkpoint');
    const to = args.requireString('to') as Target;
    const output = args.requireString('output');
    if (!TARGETS.includes(to)) throw new ConvNextError(`convert: --to must be one of ${TARGETS.join(', ')}, got '${to}'`, 2);
    const format = args.string('format');
    if (format !== undefined) {
      const ok = to === 'official' ? ['pt', 'safetensors'] : to === 'ours' || to === 'timm' ? ['safetensors'] : [];
      if (!ok.includes(format)) {
        throw new ConvNextError(`convert: --format ${format} does not apply to --to ${to}${ok.length ? ` (use ${ok.join(' or ')})` : ''}`, 2);
      }
    }
    if (args.has('conv-mlp') && to !== 'timm') throw new ConvNextError('convert: --conv-mlp applies to --to timm only', 2);
    if ((args.has('external-data') || args.string('opset') !== '17') && to !== 'onnx') {
      throw new ConvNextError('convert: --opset and --external-data apply to --to onnx only', 2);
    }
    const opset = args.requireNumber('opset');
    if (to === 'onnx' && !(opset >= 17 && opset <= 23)) throw new ConvNextError(`convert: --opset ${opset}: must be 17 to 23`, 2);
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(output);
    } catch {
      st = undefined;
    }
    if (st?.isDirectory() && to !== 'hf') throw new ConvNextError(`convert: --output ${output} is a directory; give a file name`);
    if (st && !st.isDirectory() && to === 'hf') throw new ConvNextError(`convert: --output ${output} is a file; --to hf writes a directory`);
    const parent = path.dirname(path.resolve(output));
    if (!st && !(fs.existsSync(parent) && fs.statSync(parent).isDirectory())) {
      throw new ConvNextError(`convert: --output ${output}: the folder ${parent} does not exist`);
    }

    const ck = loadCheckpoint(input, {
      ema: args.bool('ema'),
      extra: to === 'ours',
      prefix: args.string('prefix'),
      allowUnexpected: args.bool('allow-unexpected'),
    });
    const model = { config: ck.config, state: ck.state };
    // Class names: --labels, else the checkpoint's; a 1000-class HF export without any gets the
    // ImageNet-1k names in id2label, as the facebook/convnextv2-* repos have.
    const named = classNames(ck, labelsArg(args.string('labels'), ck.config.numClasses));
    const labels = named && named.source !== 'imagenet-1k' ? [...named.names] : undefined;
    // The FCMAE decoder travels with our own checkpoints only.
    let fcmaeExtra: StateDict | undefined;
    if (to === 'ours' && ck.fcmae && ck.extra) {
      fcmaeExtra = new Map([...ck.extra].filter(([k]) => k.startsWith(FCMAE_PREFIX)));
    }
    const files: string[] = [];
    let convMlp: boolean | undefined;
    switch (to) {
      case 'ours': {
        const metadata: Record<string, string> = { source: input, source_format: ck.format, ...preprocessingMetadata(ck.preprocessing) };
        saveCheckpoint(output, {
          config: ck.config, state: ck.state, extra: fcmaeExtra, metadata, labels,
          initialised: ck.initialised, fcmae: fcmaeExtra ? ck.fcmae : undefined,
        });
        files.push(output);
        break;
      }
      case 'timm':
        convMlp = args.has('conv-mlp') ? args.bool('conv-mlp') : timmUsesConvMlp(ck.config);
        exportCheckpoint(output, model, { naming: 'timm', labels, convMlp, preprocessing: ck.preprocessing });
        files.push(output);
        break;
      case 'hf':
        exportCheckpoint(output, model, { naming: 'hf', labels: named ? [...named.names] : undefined, preprocessing: ck.preprocessing });
        files.push(`${output}/config.json`, `${output}/model.safetensors`, `${output}/preprocessor_config.json`);
        break;
      case 'official':
        exportCheckpoint(output, model, { naming: 'official', labels, container: format === 'safetensors' ? 'safetensors' : 'torch', preprocessing: ck.preprocessing });
        files.push(output);
        break;
      case 'onnx': {
        const metadata: Record<string, string> = { ...preprocessingMetadata(ck.preprocessing) };
        if (labels) metadata.labels = JSON.stringify(labels);
        files.push(...exportOnnx(output, model, {
          opset,
          externalData: args.has('external-data') ? args.bool('external-data') : undefined,
          metadata,
        }));
        break;
      }
    }
    if (to !== 'onnx') verify(output, ck, fcmaeExtra);
    const from = `${ck.format}${ck.stateDictKey ? ` "${ck.stateDictKey}"` : ''}`;
    ctx.out(`read ${input} (${from}): ${describe(ck)}`);
    if (ck.initialised.length) ctx.out(`note: ${ck.initialised.join(', ')} not in the input; set to their initial values`);
    ctx.out(`wrote ${to}${convMlp ? ' (conv MLP)' : ''} to ${files.join(', ')}${to !== 'onnx' ? ' (read back: identical)' : ''}`);
    const result: Record<string, unknown> = {
      input, output, from: ck.format, to, files, params: countParams(ck.config), numClasses: ck.config.numClasses,
      depths: ck.config.depths, dims: ck.config.dims, verified: to !== 'onnx',
    };
    if (ck.modelName) result.model = ck.modelName;
    if (convMlp !== undefined) result.convMlp = convMlp;
    if (fcmaeExtra) result.fcmaeTensors = fcmaeExtra.size;
    return result;
  },
};
