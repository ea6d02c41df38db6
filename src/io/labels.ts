/**
 * Class names of a classifier: the checkpoint's own (HF id2label, our metadata; transformers'
 * LABEL_N placeholders count as none), a --labels file, or, for a 1000-class head with none,
 * the ImageNet-1k names every ImageNet classifier's logits follow.
 */
import { IMAGENET_1K_CLASSES } from '../data/imagenet.js';
import { ConvNextError } from '../errors.js';

export interface ClassNames {
  names: readonly string[];
  /** Where they came from: 'checkpoint', 'imagenet-1k' or the --labels file. */
  source: string;
}

/**
 * Class names from a file's text: a JSON array of strings, a JSON object of index -> name (HF
 * id2label, or a whole config.json holding one), or one name a line. Must give `n` names;
 * `path` names errors. (The file reader is ./labels_file.ts.)
 */
export function parseLabelsText(text: string, n: number, path: string): string[] {
  let names: string[] | null = null;
  const t = text.trim();
  if (t.startsWith('[') || t.startsWith('{')) {
    let v: unknown;
    try {
      v = JSON.parse(t);
    } catch {
      throw new ConvNextError(`--labels ${path}: not valid JSON`);
    }
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && 'id2label' in v) v = (v as { id2label: unknown }).id2label;
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) names = v as string[];
    else if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const m = v as Record<string, unknown>;
      const list = Array.from({ length: Object.keys(m).length }, (_, i) => m[String(i)]);
      if (list.every((x) => typeof x === 'string')) names = list as string[];
    }
    if (!names) throw new ConvNextError(`--labels ${path}: expected a JSON array of names or an object of index -> name`);
  } else {
    names = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '');
  }
  if (names.length !== n) throw new ConvNextError(`--labels ${path}: ${names.length} names for a model with ${n} classes`);
  return names;
}

/**
 * The names to show for a head of `numClasses` outputs: `given` (e.g. a --labels file), the
 * checkpoint's, or ImageNet-1k's for 1000 classes; undefined when there are none to be had.
 */
export function classNames(ck: { labels?: readonly string[]; config: { numClasses: number } }, given?: ClassNames): ClassNames | undefined {
  const n = ck.config.numClasses;
  if (given !== undefined) return given;
  if (ck.labels && ck.labels.length === n) return { names: ck.labels, source: 'checkpoint' };
  if (n === IMAGENET_1K_CLASSES.length) return { names: IMAGENET_1K_CLASSES, source: 'imagenet-1k' };
  return undefined;
}
