/**
 * Official FCMAE pre-training checkpoints (facebookresearch/ConvNeXt-V2 `main_pretrain.py`):
 * names, layouts and their mapping.
 *
 * The encoder is a sparse (MinkowskiEngine) ConvNeXt V2: `encoder.stages.S.B.dwconv.kernel`
 * [K*K, C], `encoder.downsample_layers.I.1.kernel` [4, Cin, Cout] (I >= 1), biases [1, C],
 * `…norm.ln.*`, `…pwconv1.linear.*`, GRN gamma/beta [1, C]; the stem
 * (`encoder.downsample_layers.0.*`) is dense. The decoder (`decoder.I.*`, dense ConvNeXt V2
 * blocks), `proj`, `mask_token` and `pred` are dense.
 *
 * The encoder maps onto the official fine-tuning names exactly as the official
 * `remap_checkpoint_keys` (utils.py) does: drop `encoder.`; `X.kernel` becomes `X.weight`
 * with a kernel offset `k = col*K + row` (a transpose relative to row-major:
 * `W[o, i, row, col] = kernel[col*K + row, i, o]`, and `W[c, 0, row, col] = kernel[col*K + row, c]`
 * for the depthwise convolution); a key containing `ln` or `linear` loses its second-to-last
 * part; biases become [C]; GRN gamma/beta become [1, 1, 1, C]. From there the official
 * naming maps to ours as usual. The encoder has no final norm (`norm`, our `head.norm`) and
 * no head: it is a backbone (see `loadCheckpoint`).
 *
 * The decoder parts are kept for FCMAE under the prefix `fcmae.` in their own (official,
 * dense) names and PyTorch layouts, with the decoder GRN gamma/beta as [C]:
 * `fcmae.mask_token` [1, D, 1, 1], `fcmae.proj.{weight [D, C3, 1, 1], bias}`,
 * `fcmae.decoder.I.{dwconv, norm, pwconv1, grn.gamma, grn.beta, pwconv2}.*`,
 * `fcmae.pred.{weight [p*p*inChans, D, 1, 1], bias}`.
 */
import { ConvNextError } from '../errors.js';
import type { TensorData } from './safetensors.js';

/** Prefix of the FCMAE decoder parts in our checkpoints. */
export const FCMAE_PREFIX = 'fcmae.';

/** What an FCMAE checkpoint says about its pre-training setup. */
export interface FcmaeInfo {
  /** Decoder width (`decoder_embed_dim`). */
  decoderDim: number;
  /** Number of decoder blocks (`decoder_depth`). */
  decoderDepth: number;
  /** Patch size of the masking and of `pred` (32 in the paper). */
  patchSize: number;
  /** Depthwise kernel size of the decoder blocks (7). */
  decoderKernelSize: number;
  /** From the checkpoint's args or metadata, when present. */
  maskRatio?: number;
  normPixLoss?: boolean;
  inputSize?: number;
}

/** How a source tensor's values are reordered on the way to the dense layout. */
export type FcmaeTransform = 'none' | 'dwconv' | 'conv';

export interface FcmaeMapEntry {
  /** Source name (with the file's prefix). */
  source: string;
  /** Official fine-tune name (encoder) or our `fcmae.` name (decoder parts). */
  name: string;
  /** Shape after the mapping. */
  shape: number[];
  transform: FcmaeTransform;
  /** Kernel size for `dwconv` / `conv`. */
  kernel?: number;
}

export interface FcmaeMapping {
  prefix: string;
  /** Encoder tensors, in official fine-tune names. */
  encoder: FcmaeMapEntry[];
  /** Decoder parts, in our `fcmae.` names. */
  decoder: FcmaeMapEntry[];
  /** Source names under the prefix that map to nothing. */
  unused: string[];
}

const SPARSE_KERNEL = /^(.*?)encoder\.(stages\.\d+\.\d+\.dwconv|downsample_layers\.\d+\.1)\.kernel$/;

/**
 * The key prefix of an official FCMAE pre-training state dict among `names` (the part before
 * `encoder.`), or undefined when no sparse encoder kernel is there. With `prefix` given, only
 * names under it count. Several prefixes: a ConvNextError.
 */
export function detectFcmae(names: Iterable<string>, label: string, prefix?: string): string | undefined {
  const found = new Set<string>();
  for (const n of names) {
    if (prefix !== undefined && !n.startsWith(prefix)) continue;
    const m = SPARSE_KERNEL.exec(n);
    if (m && (m[1] === '' || m[1].endsWith('.'))) found.add(m[1]);
  }
  if (found.size === 0) return undefined;
  const list = [...found].sort((a, b) => a.length - b.length);
  if (prefix !== undefined) return prefix;
  if (list.length > 1) throw new ConvNextError(`${label}: holds several FCMAE models (key prefixes '${list[0]}' and '${list[1]}'); choose one with the prefix option`);
  return list[0];
}

function isqrt(n: number): number | undefined {
  const r = Math.round(Math.sqrt(n));
  return r * r === n && r > 0 ? r : undefined;
}

/**
 * Maps the names and shapes of an FCMAE state dict (keys under `prefix`) following the
 * official `remap_checkpoint_keys` for the encoder, and into `fcmae.` names for the rest.
 * Only names and shapes: the values are reordered by {@link applyFcmaeTransform}.
 */
export function mapFcmaeNames(shapes: Iterable<readonly [string, readonly number[]]>, prefix: string, label: string): FcmaeMapping {
  const encoder: FcmaeMapEntry[] = [];
  const decoder: FcmaeMapEntry[] = [];
  const unused: string[] = [];
  const bad = (name: string, shape: readonly number[], why: string): ConvNextError =>
    new ConvNextError(`${label}: FCMAE tensor ${name} has shape [${shape.join(',')}]: ${why}`);
  for (const [source, shape] of shapes) {
    if (!source.startsWith(prefix)) { unused.push(source); continue; }
    const k0 = source.slice(prefix.length);
    if (k0.startsWith('encoder.')) {
      // remap_checkpoint_keys, step 1: names and kernels.
      let k = k0.split('.').slice(1).join('.');
      let out: FcmaeMapEntry;
      if (k.endsWith('kernel')) {
        k = `${k.split('.').slice(0, -1).join('.')}.weight`;
        if (shape.length === 3) {
          const ks = isqrt(shape[0]);
          if (ks === undefined) throw bad(source, shape, `${shape[0]} kernel offsets is not a square`);
          out = { source, name: k, shape: [shape[2], shape[1], ks, ks], transform: 'conv', kernel: ks };
        } else if (shape.length === 2) {
          const ks = isqrt(shape[0]);
          if (ks === undefined) throw bad(source, shape, `${shape[0]} kernel offsets is not a square`);
          out = { source, name: k, shape: [shape[1], 1, ks, ks], transform: 'dwconv', kernel: ks };
        } else {
          // The official code drops such a kernel silently; we refuse it.
          throw bad(source, shape, 'a sparse kernel must be [K*K, C] or [K*K, Cin, Cout]');
        }
      } else {
        if (k.includes('ln') || k.includes('linear')) {
          const parts = k.split('.');
          if (parts.length >= 2) parts.splice(parts.length - 2, 1);
          k = parts.join('.');
        }
        out = { source, name: k, shape: [...shape], transform: 'none' };
      }
      // Step 2: biases to [C], GRN affine parameters to [1, 1, 1, C].
      if (out.name.endsWith('bias') && out.shape.length !== 1) {
        out.shape = [out.shape.reduce((a, b) => a * b, 1)];
      } else if (out.name.includes('grn')) {
        out.shape = [1, 1, ...out.shape];
      }
      encoder.push(out);
    } else if (/^(decoder\.\d+\.|proj\.|pred\.)/.test(k0) || k0 === 'mask_token') {
      let sh = [...shape];
      if (/^decoder\.\d+\.grn\.(gamma|beta)$/.test(k0) && sh.length > 1 && sh.slice(0, -1).every((d) => d === 1)) sh = [sh[sh.length - 1]];
      decoder.push({ source, name: `${FCMAE_PREFIX}${k0}`, shape: sh, transform: 'none' });
    } else {
      unused.push(source);
    }
  }
  return { prefix, encoder, decoder, unused };
}

/**
 * Reorders a sparse kernel into the dense PyTorch layout (`remap_checkpoint_keys`):
 * `dwconv`: [K*K, C] -> [C, 1, K, K]; `conv`: [K*K, Cin, Cout] -> [Cout, Cin, K, K]; with
 * `W[.., row, col] = kernel[col*K + row, ..]`. `none` returns the values unchanged.
 */
export function applyFcmaeTransform(e: Pick<FcmaeMapEntry, 'transform' | 'shape' | 'kernel'>, src: Float32Array): Float32Array {
  if (e.transform === 'none') return src;
  const K = e.kernel as number;
  const KK = K * K;
  if (e.transform === 'dwconv') {
    const C = e.shape[0];
    if (src.length !== KK * C) throw new ConvNextError(`sparse depthwise kernel has ${src.length} values, expected ${KK * C}`);
    const out = new Float32Array(C * KK);
    for (let c = 0; c < C; c++) {
      for (let r = 0; r < K; r++) {
        for (let q = 0; q < K; q++) out[c * KK + r * K + q] = src[(q * K + r) * C + c];
      }
    }
    return out;
  }
  const [Cout, Cin] = e.shape;
  if (src.length !== KK * Cin * Cout) throw new ConvNextError(`sparse kernel has ${src.length} values, expected ${KK * Cin * Cout}`);
  const out = new Float32Array(Cout * Cin * KK);
  for (let o = 0; o < Cout; o++) {
    for (let i = 0; i < Cin; i++) {
      const base = (o * Cin + i) * KK;
      for (let r = 0; r < K; r++) {
        for (let q = 0; q < K; q++) out[base + r * K + q] = src[((q * K + r) * Cin + i) * Cout + o];
      }
    }
  }
  return out;
}

/**
 * The inverse of {@link applyFcmaeTransform}: a dense weight [C, 1, K, K] or [Cout, Cin, K, K]
 * into the MinkowskiEngine kernel layout [K*K, C] or [K*K, Cin, Cout] that the official FCMAE
 * encoder stores (as the official `dedense_checkpoint_keys` does).
 */
export function toSparseKernel(weight: TensorData, depthwise: boolean): TensorData {
  const [Cout, Cin, K, K2] = weight.shape;
  if (weight.shape.length !== 4 || K !== K2 || (depthwise && Cin !== 1)) {
    throw new ConvNextError(`cannot make a sparse kernel of a tensor of shape [${weight.shape.join(',')}]`);
  }
  const KK = K * K;
  const src = weight.data;
  if (depthwise) {
    const out = new Float32Array(KK * Cout);
    for (let c = 0; c < Cout; c++) for (let r = 0; r < K; r++) for (let q = 0; q < K; q++) out[(q * K + r) * Cout + c] = src[c * KK + r * K + q];
    return { shape: [KK, Cout], data: out };
  }
  const out = new Float32Array(KK * Cin * Cout);
  for (let o = 0; o < Cout; o++) {
    for (let i = 0; i < Cin; i++) {
      for (let r = 0; r < K; r++) for (let q = 0; q < K; q++) out[((q * K + r) * Cin + i) * Cout + o] = src[(o * Cin + i) * KK + r * K + q];
    }
  }
  return { shape: [KK, Cin, Cout], data: out };
}

/** Expected `fcmae.` tensors (names and shapes) for a decoder setup. */
export function fcmaeParamSpecs(info: FcmaeInfo, encoderDim: number, inChans: number): Array<{ name: string; shape: number[] }> {
  const D = info.decoderDim;
  const k = info.decoderKernelSize;
  const out: Array<{ name: string; shape: number[] }> = [];
  const p = (name: string, shape: number[]) => out.push({ name: `${FCMAE_PREFIX}${name}`, shape });
  p('mask_token', [1, D, 1, 1]);
  p('proj.weight', [D, encoderDim, 1, 1]);
  p('proj.bias', [D]);
  for (let b = 0; b < info.decoderDepth; b++) {
    p(`decoder.${b}.dwconv.weight`, [D, 1, k, k]);
    p(`decoder.${b}.dwconv.bias`, [D]);
    p(`decoder.${b}.norm.weight`, [D]);
    p(`decoder.${b}.norm.bias`, [D]);
    p(`decoder.${b}.pwconv1.weight`, [4 * D, D]);
    p(`decoder.${b}.pwconv1.bias`, [4 * D]);
    p(`decoder.${b}.grn.gamma`, [4 * D]);
    p(`decoder.${b}.grn.beta`, [4 * D]);
    p(`decoder.${b}.pwconv2.weight`, [D, 4 * D]);
    p(`decoder.${b}.pwconv2.bias`, [D]);
  }
  const P = info.patchSize * info.patchSize * inChans;
  p('pred.weight', [P, D, 1, 1]);
  p('pred.bias', [P]);
  return out;
}

/** Optional fields of {@link FcmaeInfo} read from an args record or string metadata. */
export interface FcmaeHints {
  maskRatio?: number;
  normPixLoss?: boolean;
  inputSize?: number;
  decoderDim?: number;
  decoderDepth?: number;
  patchSize?: number;
}

/** Reads FCMAE hints from key/value pairs (argparse Namespace fields or safetensors metadata). */
export function fcmaeHints(get: (key: string) => unknown): FcmaeHints {
  const num = (k: string): number | undefined => {
    const v = get(k);
    const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
    return Number.isFinite(n) ? n : undefined;
  };
  const bool = (k: string): boolean | undefined => {
    const v = get(k);
    if (typeof v === 'boolean') return v;
    if (v === 'true' || v === 'True') return true;
    if (v === 'false' || v === 'False') return false;
    return undefined;
  };
  const h: FcmaeHints = {};
  const mr = num('mask_ratio');
  if (mr !== undefined && mr >= 0 && mr < 1) h.maskRatio = mr;
  const npl = bool('norm_pix_loss');
  if (npl !== undefined) h.normPixLoss = npl;
  const ints: Array<[keyof FcmaeHints, string]> = [['inputSize', 'input_size'], ['decoderDim', 'decoder_embed_dim'], ['decoderDepth', 'decoder_depth'], ['patchSize', 'patch_size']];
  for (const [field, key] of ints) {
    const v = num(key);
    if (v !== undefined && Number.isSafeInteger(v) && v > 0) (h as Record<string, number>)[field] = v;
  }
  return h;
}

/**
 * Infers the decoder setup from the `fcmae.` tensors (shapes only) and checks them strictly
 * against {@link fcmaeParamSpecs}; `hints` fill what shapes cannot tell and must agree.
 */
export function inferFcmaeInfo(shapes: ReadonlyMap<string, readonly number[]>, encoderDim: number, inChans: number, hints: FcmaeHints, label: string): FcmaeInfo {
  const sh = (n: string) => shapes.get(`${FCMAE_PREFIX}${n}`);
  const mask = sh('mask_token');
  const pred = sh('pred.weight');
  if (!mask || !pred) throw new ConvNextError(`${label}: FCMAE checkpoint without ${mask ? 'pred.weight' : 'mask_token'}`);
  const D = mask.length === 4 ? mask[1] : mask[mask.length - 1];
  let depth = 0;
  for (const n of shapes.keys()) {
    const m = /^fcmae\.decoder\.(\d+)\./.exec(n);
    if (m && Number(m[1]) < 1000) depth = Math.max(depth, Number(m[1]) + 1);
  }
  const dw = sh('decoder.0.dwconv.weight');
  const kernel = dw && dw.length === 4 ? dw[2] : 7;
  const patch = isqrt(Math.floor(pred[0] / inChans));
  if (patch === undefined || patch * patch * inChans !== pred[0]) {
    throw new ConvNextError(`${label}: FCMAE pred.weight has ${pred[0]} outputs, not patch*patch*${inChans}`);
  }
  const info: FcmaeInfo = { decoderDim: D, decoderDepth: depth, patchSize: patch, decoderKernelSize: kernel };
  for (const [key, got] of [['decoderDim', D], ['decoderDepth', depth], ['patchSize', patch]] as const) {
    const want = hints[key];
    if (want !== undefined && want !== got) throw new ConvNextError(`${label}: its args say ${key} ${want} but the FCMAE tensors say ${got}`);
  }
  if (hints.maskRatio !== undefined) info.maskRatio = hints.maskRatio;
  if (hints.normPixLoss !== undefined) info.normPixLoss = hints.normPixLoss;
  if (hints.inputSize !== undefined) info.inputSize = hints.inputSize;
  const specs = fcmaeParamSpecs(info, encoderDim, inChans);
  const missing: string[] = [];
  for (const s of specs) {
    const got = shapes.get(s.name);
    if (!got) { missing.push(s.name); continue; }
    if (got.length !== s.shape.length || got.some((d, i) => d !== s.shape[i])) {
      throw new ConvNextError(`${label}: FCMAE tensor ${s.name} has shape [${got.join(',')}], expected [${s.shape.join(',')}]`);
    }
  }
  if (missing.length) throw new ConvNextError(`${label}: FCMAE checkpoint lacks ${missing.slice(0, 6).join(', ')}${missing.length > 6 ? ` and ${missing.length - 6} more` : ''}`);
  const known = new Set(specs.map((s) => s.name));
  const extra = [...shapes.keys()].filter((n) => !known.has(n));
  if (extra.length) throw new ConvNextError(`${label}: unexpected FCMAE tensor${extra.length > 1 ? 's' : ''} ${extra.slice(0, 6).join(', ')}`);
  return info;
}

/** Parses our metadata `fcmae` (JSON of an {@link FcmaeInfo}); undefined when malformed. */
export function parseFcmaeInfo(text: string | undefined): FcmaeInfo | undefined {
  if (text === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  const int = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x > 0;
  if (!int(o.decoderDim) || !int(o.patchSize) || typeof o.decoderDepth !== 'number' || !Number.isSafeInteger(o.decoderDepth) || o.decoderDepth < 0) return undefined;
  const info: FcmaeInfo = {
    decoderDim: o.decoderDim, decoderDepth: o.decoderDepth, patchSize: o.patchSize,
    decoderKernelSize: int(o.decoderKernelSize) ? o.decoderKernelSize : 7,
  };
  if (typeof o.maskRatio === 'number') info.maskRatio = o.maskRatio;
  if (typeof o.normPixLoss === 'boolean') info.normPixLoss = o.normPixLoss;
  if (int(o.inputSize)) info.inputSize = o.inputSize;
  return info;
}
