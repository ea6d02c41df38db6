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
import { parseName } from '../model/names.js';

export type LayerDecayType = 'single' | 'group';

export function layerId(name: string, depths: readonly number[], type: LayerDecayType): number {
  const sum = (n: number) => depths.slice(0, n).reduce((a, b) => a + b, 0);
  const at = parseName(name);
  if (type === 'single') {
    switch (at.part) {
      case 'stem': return 1;
      case 'downsample': return sum(at.stage) + 1;
      case 'block': return sum(at.stage) + at.block + 1;
      default: return sum(depths.length) + 1;
    }
  }
  switch (at.part) {
    case 'stem': return 0;
    case 'downsample': return at.stage === 3 ? 12 : at.stage + 1;
    case 'block':
      if (at.stage <= 1) return at.stage + 1;
      if (at.stage === 2) return 3 + Math.floor(at.block / 3);
      return 12;
    default: return 13;
  }
}

export function numLayers(depths: readonly number[], type: LayerDecayType): number {
  return type === 'group' ? 12 : depths.reduce((a, b) => a + b, 0);
}

/** lr scale of a parameter: decay^(num_layers + 1 - layer_id). */
export function layerScale(name: string, depths: readonly number[], type: LayerDecayType, decay: number): number {
  if (type !== 'single' && type !== 'group') throw new ConvNextError(`layer decay type must be single or group, got '${String(type)}'`, 2);
  return decay ** (numLayers(depths, type) + 1 - layerId(name, depths, type));
}
