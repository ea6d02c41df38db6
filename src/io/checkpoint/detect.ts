/**
 * Detection of a state dict's naming (timm, official, Hugging Face) and key prefix from its
 * keys alone.
 */
import { ConvNextError } from '../../errors.js';
import { listNames, type Naming } from './names.js';

/** Name of the stem convolution weight in each naming (the marker used for detection). */
const MARKERS: ReadonlyArray<readonly [Naming, string]> = [
  ['timm', 'stem.0.weight'],
  ['official', 'downsample_layers.0.0.weight'],
  ['hf', 'embeddings.patch_embeddings.weight'],
];

/** Prefixes that hold something other than the model's weights; used only as a last resort. */
const NON_MODEL_PREFIX = /^(grad|grads|optimizer|optim|ema|model_ema|state_ema|fcmae|teacher|momentum)[._]/;

export interface DetectedNaming {
  naming: Naming;
  /** Prefix stripped from every key (e.g. `module.`); for `hf`, the prefix outside `convnextv2.`. */
  prefix: string;
  /** For `hf`: true when the keys lack the `convnextv2.` level (a bare ConvNextV2Model). */
  bare?: boolean;
}

/**
 * Detects the naming and key prefix of a state dict from its keys. Throws a ConvNextError when
 * no stem weight is found, or for an official FCMAE pre-training checkpoint (sparse encoder).
 */
export function detectNaming(keys: Iterable<string>, label = 'checkpoint'): DetectedNaming {
  const all = [...keys];
  const found: Array<DetectedNaming & { score: [number, number] }> = [];
  for (const key of all) {
    for (const [naming, marker] of MARKERS) {
      if (!key.endsWith(marker)) continue;
      let prefix = key.slice(0, key.length - marker.length);
      if (prefix !== '' && !prefix.endsWith('.')) continue;
      let bare: boolean | undefined;
      if (naming === 'hf') {
        bare = !(prefix === 'convnextv2.' || prefix.endsWith('.convnextv2.'));
        if (!bare) prefix = prefix.slice(0, prefix.length - 'convnextv2.'.length);
      }
      found.push({ naming, prefix, bare, score: [NON_MODEL_PREFIX.test(prefix) ? 1 : 0, prefix.length] });
    }
  }
  const sparse = all.find((k) => /(^|\.)(dwconv|downsample_layers\.\d+\.1)\.kernel$/.test(k));
  if (sparse) {
    throw new ConvNextError(`${label}: is an official FCMAE pre-training checkpoint (sparse encoder tensors such as ${sparse}); read it with loadCheckpoint, which remaps its kernels`);
  }
  if (found.length === 0) {
    throw new ConvNextError(`${label}: cannot recognise the parameter names (no stem weight stem.0.weight, downsample_layers.0.0.weight or embeddings.patch_embeddings.weight); first names: ${listNames(all, 5) || 'none'}`);
  }
  found.sort((a, b) => a.score[0] - b.score[0] || a.score[1] - b.score[1]);
  const best = found[0];
  const tie = found.find((f, i) => i > 0 && f.score[0] === best.score[0] && f.score[1] === best.score[1] && (f.prefix !== best.prefix || f.naming !== best.naming));
  if (tie) {
    throw new ConvNextError(`${label}: holds several models (key prefixes '${best.prefix}' and '${tie.prefix}'); choose one with the prefix option`);
  }
  const out: DetectedNaming = { naming: best.naming, prefix: best.prefix };
  if (best.naming === 'hf') out.bare = best.bare;
  return out;
}
