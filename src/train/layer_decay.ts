/**
 * Layer-wise learning-rate decay as the official fine-tuning (optim_factory.py), mapped from
 * the official names to ours: `downsample_layers.0` = `stem`, `downsample_layers.I` =
 * `stages.I.downsample`, `stages.S.B` = `stages.S.blocks.B`, everything else (`norm`,
 * `head`) = our `head.*`.
 *
 * - `single`: every block its own layer: stem -> 1, stages.S.downsample -> sum(depths[:S]) + 1,
 *   block B of stage S -> sum(depths[:S]) + B + 1, head -> sum(depths) + 1; num_layers =
 *   sum(depths).
 * - `group` (Base/Large/Huge): 12 groups of three consecutive blocks: stem -> 0, downsample 1/2
 *   -> 2/3, downsample 3 -> 12, stages 0/1 -> 1/2, stage 2 block B -> 3 + floor(B / 3),
 *   stage 3 -> 12, head -> 13; num_layers = 12.
 * The scale of layer i is decay^(num_layers + 1 - i).
 */
import { ConvNextError } from '../errors.js';

export type LayerDecayType = 'single' | 'group';

export function layerId(name: string, depths: readonly number[], type: LayerDecayType): number {
  const sum = (n: number) => depths.slice(0, n).reduce((a, b) => a + b, 0);
  let m: RegExpMatchArray | null;
  if (type === 'single') {
    if (name.startsWith('stem.')) return 1;
    if ((m = name.match(/^stages\.(\d+)\.downsample\./))) return sum(Number(m[1])) + 1;
    if ((m = name.match(/^stages\.(\d+)\.blocks\.(\d+)\./))) return sum(Number(m[1])) + Number(m[2]) + 1;
    return sum(depths.length) + 1;
  }
  if (name.startsWith('stem.')) return 0;
  if ((m = name.match(/^stages\.(\d+)\.downsample\./))) {
    const s = Number(m[1]);
    return s === 3 ? 12 : s + 1;
  }
  if ((m = name.match(/^stages\.(\d+)\.blocks\.(\d+)\./))) {
    const s = Number(m[1]);
    const b = Number(m[2]);
    if (s <= 1) return s + 1;
    if (s === 2) return 3 + Math.floor(b / 3);
    return 12;
  }
  return 13;
}

export function numLayers(depths: readonly number[], type: LayerDecayType): number {
  return type === 'group' ? 12 : depths.reduce((a, b) => a + b, 0);
}

/** lr scale of a parameter: decay^(num_layers + 1 - layer_id). */
export function layerScale(name: string, depths: readonly number[], type: LayerDecayType, decay: number): number {
  if (type !== 'single' && type !== 'group') throw new ConvNextError(`layer decay type must be single or group, got '${String(type)}'`, 2);
  return decay ** (numLayers(depths, type) + 1 - layerId(name, depths, type));
}
