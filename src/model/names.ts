/**
 * The one name scope of the model's parameters (timm's names, which the checkpoints carry):
 * made here for the model, the sparse FCMAE encoder and the parameter list, and read back here
 * for layer-wise lr decay, so the template `stages.S.blocks.B` is written once.
 *
 *   stem.0 (4x4 patch conv), stem.1 (LayerNorm)
 *   stages.S.downsample.0 (LayerNorm), stages.S.downsample.1 (2x2 conv), S = 1..3
 *   stages.S.blocks.B.{conv_dw, norm, mlp.fc1, mlp.grn, mlp.fc2, gamma}
 *   head.norm, head.fc
 */

export const STEM_CONV = 'stem.0';
export const STEM_NORM = 'stem.1';
export const HEAD_NORM = 'head.norm';
export const HEAD_FC = 'head.fc';

/** The downsampling layers before stage s (s = 1..3): its LayerNorm and its 2x2 convolution. */
export function downsample(s: number): { norm: string; conv: string } {
  return { norm: `stages.${s}.downsample.0`, conv: `stages.${s}.downsample.1` };
}

/** Block b of stage s. */
export function block(s: number, b: number): string {
  return `stages.${s}.blocks.${b}`;
}

/** Where a parameter lives, read from its name. */
export type NamePart =
  | { part: 'stem' }
  | { part: 'downsample'; stage: number }
  | { part: 'block'; stage: number; block: number }
  | { part: 'head' };

export function parseName(name: string): NamePart {
  if (name.startsWith('stem.')) return { part: 'stem' };
  let m: RegExpMatchArray | null;
  if ((m = name.match(/^stages\.(\d+)\.downsample\./))) return { part: 'downsample', stage: Number(m[1]) };
  if ((m = name.match(/^stages\.(\d+)\.blocks\.(\d+)\./))) return { part: 'block', stage: Number(m[1]), block: Number(m[2]) };
  return { part: 'head' };
}
