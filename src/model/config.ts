/**
 * ConvNeXt V2 configurations and the parameter list every other part agrees on.
 *
 * Canonical parameter names are timm's (`stem.0`, `stages.S.downsample.{0,1}`,
 * `stages.S.blocks.B.{conv_dw,norm,mlp.fc1,mlp.grn,mlp.fc2}`, `head.{norm,fc}`) with
 * PyTorch layouts and the Linear MLP form (`mlp.fc1.weight` is [4C, C]). Checkpoint readers
 * map other namings onto these; checkpoint writers map back.
 *
 * `block: 'v1'` builds ConvNeXt V1 blocks instead (Liu et al. 2022, for the paper's GRN
 * ablation): no GRN, and LayerScale, a per-channel `gamma` [C] (timm's
 * `stages.S.blocks.B.gamma`, initialised to 1e-6) multiplying the MLP output before drop path.
 */
import { block, downsample, HEAD_FC, HEAD_NORM, STEM_CONV, STEM_NORM } from './names.js';
import { checkKnownKeys, ConvNextError } from '../errors.js';

/** ConvNeXt V2 blocks (GRN in the MLP) or ConvNeXt V1 blocks (no GRN, LayerScale). */
export type BlockType = 'v2' | 'v1';

/** LayerScale's initial value in ConvNeXt V1 (`layer_scale_init_value`, timm `ls_init_value`). */
export const LAYER_SCALE_INIT = 1e-6;

export interface ConvNeXtV2Config {
  /** Blocks per stage (four stages). */
  depths: number[];
  /** Channels per stage. */
  dims: number[];
  /** Classifier outputs; 0 means no `head.fc` (a backbone). */
  numClasses: number;
  /** Input channels (3 for RGB). */
  inChans: number;
  /** Stochastic depth: rate of the last block, increasing linearly from 0 over all blocks. */
  dropPathRate: number;
  /** Scale applied to the initial head weights and bias (official `head_init_scale`). */
  headInitScale: number;
  /** Epsilon of the stem, downsampling and block LayerNorms (1e-6 everywhere in timm). */
  layerNormEps: number;
  /** Epsilon of the head's final LayerNorm (1e-6; Hugging Face configs may say otherwise). */
  headNormEps: number;
  /** Depthwise convolution kernel size (7). */
  kernelSize: number;
  /** Block kind: `v2` (GRN, the default) or `v1` (LayerScale `gamma`, no GRN). */
  block: BlockType;
}

/** The named sizes of the paper and timm: depths and dims. */
export const MODEL_SIZES: Readonly<Record<string, { depths: number[]; dims: number[] }>> = {
  atto: { depths: [2, 2, 6, 2], dims: [40, 80, 160, 320] },
  femto: { depths: [2, 2, 6, 2], dims: [48, 96, 192, 384] },
  pico: { depths: [2, 2, 6, 2], dims: [64, 128, 256, 512] },
  nano: { depths: [2, 2, 8, 2], dims: [80, 160, 320, 640] },
  tiny: { depths: [3, 3, 9, 3], dims: [96, 192, 384, 768] },
  base: { depths: [3, 3, 27, 3], dims: [128, 256, 512, 1024] },
  large: { depths: [3, 3, 27, 3], dims: [192, 384, 768, 1536] },
  huge: { depths: [3, 3, 27, 3], dims: [352, 704, 1408, 2816] },
};

export type ConfigOverrides = Partial<ConvNeXtV2Config>;

/** A full config from a size name (`atto` ... `huge`) or explicit depths/dims, plus overrides. */
export function makeConfig(model: string | { depths: number[]; dims: number[] }, over: ConfigOverrides = {}): ConvNeXtV2Config {
  let base: { depths: number[]; dims: number[] };
  if (typeof model === 'string') {
    const size = MODEL_SIZES[model];
    if (!size) {
      throw new ConvNextError(`unknown model '${model}' (expected one of ${Object.keys(MODEL_SIZES).join(', ')})`, 2);
    }
    base = size;
  } else {
    base = model;
  }
  const defaults = { numClasses: 1000, inChans: 3, dropPathRate: 0, headInitScale: 1, layerNormEps: 1e-6, headNormEps: 1e-6, kernelSize: 7, block: 'v2' };
  checkKnownKeys('makeConfig', over, ['depths', 'dims', ...Object.keys(defaults)]);
  if (typeof model !== 'string') checkKnownKeys('makeConfig', model, ['depths', 'dims']);
  const cfg: ConvNeXtV2Config = {
    depths: [...base.depths],
    dims: [...base.dims],
    numClasses: 1000,
    inChans: 3,
    dropPathRate: 0,
    headInitScale: 1,
    layerNormEps: 1e-6,
    headNormEps: 1e-6,
    kernelSize: 7,
    block: 'v2',
    ...over,
  };
  validateConfig(cfg);
  return cfg;
}

/** The config as JSON with its keys in one fixed order (checkpoints of one run are byte-comparable). */
export function configJson(cfg: ConvNeXtV2Config): string {
  const { depths, dims, numClasses, inChans, dropPathRate, headInitScale, layerNormEps, headNormEps, kernelSize, block } = cfg;
  return JSON.stringify({ depths, dims, numClasses, inChans, dropPathRate, headInitScale, layerNormEps, headNormEps, kernelSize, block });
}

export function validateConfig(cfg: ConvNeXtV2Config): void {
  const bad = (why: string): never => { throw new ConvNextError(`invalid model config: ${why}`, 2); };
  if (cfg.depths.length !== 4 || cfg.dims.length !== 4) bad('depths and dims need 4 entries each');
  for (const d of cfg.depths) if (!Number.isInteger(d) || d < 0) bad(`depth ${d} is not a non-negative integer`);
  for (const d of cfg.dims) if (!Number.isInteger(d) || d < 1) bad(`dim ${d} is not a positive integer`);
  if (!Number.isInteger(cfg.numClasses) || cfg.numClasses < 0) bad(`numClasses ${cfg.numClasses}`);
  if (!Number.isInteger(cfg.inChans) || cfg.inChans < 1) bad(`inChans ${cfg.inChans}`);
  if (!(cfg.dropPathRate >= 0 && cfg.dropPathRate < 1)) bad(`dropPathRate ${cfg.dropPathRate} not in [0, 1)`);
  if (!(cfg.kernelSize >= 1 && cfg.kernelSize % 2 === 1)) bad(`kernelSize ${cfg.kernelSize} must be odd`);
  if (cfg.block !== 'v2' && cfg.block !== 'v1') bad(`block '${String(cfg.block)}' (expected v2 or v1)`);
}

/** Parses a `--block` value. */
export function parseBlockType(v: string): BlockType {
  if (v === 'v2' || v === 'v1') return v;
  throw new ConvNextError(`--block must be v2 or v1, got '${v}'`, 2);
}

export interface ParamSpec {
  name: string;
  shape: number[];
  /**
   * Initialisation, as the official classifier: trunc_normal(0.02) weights, zero biases, LN 1/0,
   * GRN 0/0, LayerScale (V1 blocks) 1e-6.
   */
  init: 'trunc_normal' | 'zeros' | 'ones' | 'layer_scale';
  /** True for tensors AdamW must not decay (1-D tensors, biases, GRN gamma/beta, LayerScale). */
  noDecay: boolean;
}

/** The constant a non-random initialisation fills a parameter with. */
export function initConstant(init: Exclude<ParamSpec['init'], 'trunc_normal'>): number {
  return init === 'ones' ? 1 : init === 'layer_scale' ? LAYER_SCALE_INIT : 0;
}

/** Every parameter of the model in timm order (the order of timm's state_dict). */
export function paramSpecs(cfg: ConvNeXtV2Config): ParamSpec[] {
  const out: ParamSpec[] = [];
  const w = (name: string, shape: number[]) => out.push({ name, shape, init: 'trunc_normal', noDecay: shape.length === 1 });
  const z = (name: string, shape: number[]) => out.push({ name, shape, init: 'zeros', noDecay: true });
  const o = (name: string, shape: number[]) => out.push({ name, shape, init: 'ones', noDecay: true });
  const ls = (name: string, shape: number[]) => out.push({ name, shape, init: 'layer_scale', noDecay: true });
  const v1 = cfg.block === 'v1';
  const { dims, depths, kernelSize: k } = cfg;
  w(`${STEM_CONV}.weight`, [dims[0], cfg.inChans, 4, 4]);
  z(`${STEM_CONV}.bias`, [dims[0]]);
  o(`${STEM_NORM}.weight`, [dims[0]]);
  z(`${STEM_NORM}.bias`, [dims[0]]);
  for (let s = 0; s < 4; s++) {
    const C = dims[s];
    if (s > 0) {
      const Cp = dims[s - 1];
      const d = downsample(s);
      o(`${d.norm}.weight`, [Cp]);
      z(`${d.norm}.bias`, [Cp]);
      w(`${d.conv}.weight`, [C, Cp, 2, 2]);
      z(`${d.conv}.bias`, [C]);
    }
    for (let b = 0; b < depths[s]; b++) {
      const p = block(s, b);
      // A module's own parameters precede its submodules' in a PyTorch state_dict.
      if (v1) ls(`${p}.gamma`, [C]);
      w(`${p}.conv_dw.weight`, [C, 1, k, k]);
      z(`${p}.conv_dw.bias`, [C]);
      o(`${p}.norm.weight`, [C]);
      z(`${p}.norm.bias`, [C]);
      w(`${p}.mlp.fc1.weight`, [4 * C, C]);
      z(`${p}.mlp.fc1.bias`, [4 * C]);
      if (!v1) {
        z(`${p}.mlp.grn.weight`, [4 * C]);
        z(`${p}.mlp.grn.bias`, [4 * C]);
      }
      w(`${p}.mlp.fc2.weight`, [C, 4 * C]);
      z(`${p}.mlp.fc2.bias`, [C]);
    }
  }
  o(`${HEAD_NORM}.weight`, [dims[3]]);
  z(`${HEAD_NORM}.bias`, [dims[3]]);
  if (cfg.numClasses > 0) {
    w(`${HEAD_FC}.weight`, [cfg.numClasses, dims[3]]);
    z(`${HEAD_FC}.bias`, [cfg.numClasses]);
  }
  return out;
}

/** Number of scalar parameters. */
export function countParams(cfg: ConvNeXtV2Config): number {
  let n = 0;
  for (const p of paramSpecs(cfg)) n += p.shape.reduce((a, b) => a * b, 1);
  return n;
}

/** A model from a size name, or from explicit comma-separated depths and dims (both given). */
export function modelFromFlags(model: string, depths?: string, dims?: string, over: ConfigOverrides = {}): ConvNeXtV2Config {
  if (depths === undefined && dims === undefined) {
    if (!Object.hasOwn(MODEL_SIZES, model)) throw new ConvNextError(`--model ${model}: unknown size (one of ${Object.keys(MODEL_SIZES).join(', ')}; or --depths and --dims)`, 2);
    return makeConfig(model, over);
  }
  const parse = (flag: string, v?: string): number[] => {
    const a = (v ?? '').split(/[ ,]+/).filter((x) => x !== '').map(Number);
    if (a.length !== 4 || a.some((x) => !Number.isInteger(x) || x < 0)) throw new ConvNextError(`--${flag} needs four integers, e.g. 2,2,6,2`, 2);
    return a;
  };
  return makeConfig({ depths: parse('depths', depths), dims: parse('dims', dims) }, over);
}
