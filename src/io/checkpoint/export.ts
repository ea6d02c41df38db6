/**
 * Export to other namings as files: the Hugging Face config.json, timm's conv-MLP choice, the
 * plan of what an export writes, and an export as bytes.
 */
import { ConvNextError } from '../../errors.js';
import { configJson, type ConvNeXtV2Config } from '../../model/config.js';
import { serializeSafetensors, type TensorData } from '../safetensors.js';
import { serializeTorchCheckpoint } from '../torch.js';
import { matchModelSize } from './infer.js';
import { toNaming, type Naming, type StateDict, type TimmExportOptions } from './names.js';
import { DEFAULT_PREPROCESSING, hfPreprocessorJson, preprocessingMetadata, type Preprocessing } from './preprocessing.js';
import { checkState } from './save.js';

/**
 * A Hugging Face `config.json`: `ConvNextV2ForImageClassification` with `id2label`, or a bare
 * `ConvNextV2Model` for a backbone (numClasses 0). `layer_norm_eps` is the final norm's
 * epsilon (headNormEps; transformers uses 1e-6 for the other norms, as we do).
 */
export function hfConfigJson(config: ConvNeXtV2Config, labels?: readonly string[], pre: Preprocessing = DEFAULT_PREPROCESSING): Record<string, unknown> {
  const n = config.numClasses;
  const out: Record<string, unknown> = {
    architectures: [n > 0 ? 'ConvNextV2ForImageClassification' : 'ConvNextV2Model'],
    model_type: 'convnextv2',
    depths: [...config.depths],
    hidden_sizes: [...config.dims],
    num_channels: config.inChans,
    num_stages: 4,
    patch_size: 4,
    hidden_act: 'gelu',
    layer_norm_eps: config.headNormEps,
    drop_path_rate: config.dropPathRate,
    initializer_range: 0.02,
    image_size: pre.inputSize,
  };
  if (n > 0) {
    const names = labels && labels.length === n ? labels : Array.from({ length: n }, (_v, i) => `LABEL_${i}`);
    const id2label: Record<string, string> = {};
    const label2id: Record<string, number> = {};
    names.forEach((l, i) => {
      Object.defineProperty(id2label, String(i), { value: l, enumerable: true, writable: true, configurable: true });
      Object.defineProperty(label2id, l, { value: i, enumerable: true, writable: true, configurable: true });
    });
    out.id2label = id2label;
    out.label2id = label2id;
  }
  return out;
}

/**
 * Whether timm stores this model's MLP as 1x1 convolutions: its registered convnextv2_atto,
 * _femto, _pico and _nano set `conv_mlp=True`; every other size, and timm's `ConvNeXt`
 * default for custom depths/dims, uses Linear layers.
 */
export function timmUsesConvMlp(config: Pick<ConvNeXtV2Config, 'depths' | 'dims'>): boolean {
  const name = matchModelSize(config.depths, config.dims);
  return name !== undefined && ['atto', 'femto', 'pico', 'nano'].includes(name);
}

export interface ExportOptions extends TimmExportOptions {
  naming: Naming;
  /** The preprocessing the model was trained with (written to every target that has a place for it). */
  preprocessing?: Preprocessing;
  /** Class names (written to config.json for `hf`, to metadata otherwise). */
  labels?: readonly string[];
  /**
   * For `official`: `torch` writes a `torch.save` zip holding `{"model": state_dict}` (what
   * `torch.load(f)["model"]` of the official code expects); default safetensors.
   */
  container?: 'safetensors' | 'torch';
}

/** What an export writes: one safetensors or torch.save file, or an HF folder's three files. */
export interface ExportPlan {
  kind: 'safetensors' | 'torch' | 'hf';
  tensors: StateDict;
  /** safetensors metadata (`kind: 'safetensors'`; `{format: 'pt'}` for the HF weights). */
  metadata: Record<string, string>;
  /** For `hf`: config.json and preprocessor_config.json, as text. */
  configJson?: string;
  preprocessorJson?: string;
}

/** Checks a model for export under `opts` and names what to write (see {@link exportCheckpoint} in io/checkpoint_file.ts). */
export function planExport(model: { config: ConvNeXtV2Config; state: ReadonlyMap<string, TensorData> }, opts: ExportOptions, label: string): ExportPlan {
  checkState(model.config, model.state, `cannot export to ${label}`);
  if (opts.naming === 'hf' && model.config.block === 'v1') {
    throw new ConvNextError(`cannot export to ${label}: Hugging Face's ConvNextV2 has no ConvNeXt V1 blocks (LayerScale); use timm or official naming`);
  }
  let tensors = toNaming(model.state, opts.naming, opts);
  if (opts.naming === 'hf') {
    if (model.config.numClasses === 0) {
      // save_pretrained of a ConvNextV2Model: no `convnextv2.` level.
      tensors = new Map([...tensors].map(([k, t]) => [k.startsWith('convnextv2.') ? k.slice('convnextv2.'.length) : k, t]));
    }
    const json = (o: unknown) => JSON.stringify(o, null, 2) + '\n';
    const pre = opts.preprocessing ?? DEFAULT_PREPROCESSING;
    return {
      kind: 'hf', tensors, metadata: { format: 'pt' },
      configJson: json(hfConfigJson(model.config, opts.labels, pre)), preprocessorJson: json(hfPreprocessorJson(pre)),
    };
  }
  if (opts.container === 'torch') {
    if (opts.naming !== 'official') throw new ConvNextError(`cannot export to ${label}: torch.save files are written in the official naming only`);
    return { kind: 'torch', tensors, metadata: {} };
  }
  const metadata: Record<string, string> = { format: 'pt', naming: opts.naming, config: configJson(model.config), ...preprocessingMetadata(opts.preprocessing) };
  if (opts.labels) metadata.labels = JSON.stringify(opts.labels);
  return { kind: 'safetensors', tensors, metadata };
}

/**
 * An export as bytes (a browser download): one file (`model.safetensors` for timm/official,
 * `model.pt` for the torch container) or, for `hf`, the folder's three files by name.
 */
export function exportBytes(model: { config: ConvNeXtV2Config; state: ReadonlyMap<string, TensorData> }, opts: ExportOptions): Map<string, Uint8Array> {
  const plan = planExport(model, opts, 'a buffer');
  const text = (t: string) => new TextEncoder().encode(t);
  if (plan.kind === 'hf') {
    return new Map([
      ['model.safetensors', serializeSafetensors(plan.tensors, plan.metadata)],
      ['config.json', text(plan.configJson!)],
      ['preprocessor_config.json', text(plan.preprocessorJson!)],
    ]);
  }
  if (plan.kind === 'torch') return new Map([['model.pt', serializeTorchCheckpoint({ model: plan.tensors })]]);
  return new Map([['model.safetensors', serializeSafetensors(plan.tensors, plan.metadata)]]);
}
