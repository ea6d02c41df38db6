/**
 * The optimizer's parameter groups, as the official scripts build them (the CLI's and the
 * library's one builder for each; test/recipe.test.ts checks them name by name against the
 * official rules applied to the official names and shapes of the reference checkpoints).
 *
 * Fine-tuning (main_finetune.py -> optim_factory.get_parameter_groups): no weight decay for a
 * tensor that is 1-D or whose official name ends in `.bias`, `.gamma` or `.beta` (GRN's gamma
 * and beta, [1, 1, 1, C] there; V1's LayerScale `gamma`); in our layouts every such tensor is
 * 1-D. With a layer decay other than 1, each parameter's lr is scaled by
 * decay^(num_layers + 1 - layer_id) (layer_decay.ts).
 *
 * Pre-training (main_pretrain.py -> timm's optim_factory.add_weight_decay): no weight decay for
 * a tensor that is 1-D or whose name ends in `.bias`, in the official FCMAE shapes. There GRN's
 * gamma and beta are [1, C] (the sparse encoder's MinkowskiGRN) and [1, 1, 1, C] (the decoder's
 * GRN), and the mask token [1, D, 1, 1]: all of them ARE decayed, although GRN's are 1-D (and
 * the encoder's beta is named `mlp.grn.bias`) in our layouts. LayerNorm affines and biases are not.
 */
import type { Param } from '../nn/param.js';
import type { ParamGroup } from './adamw.js';
import { layerScale, type LayerDecayType } from './layer_decay.js';

export interface FinetuneGroupOptions {
  weightDecay: number;
  /** Layer-wise lr decay (1: none). */
  layerDecay: number;
  layerDecayType: LayerDecayType;
}

/** Whether fine-tuning leaves `p` undecayed (1-D in our layouts: biases, norms, GRN, LayerScale). */
export function finetuneNoDecay(p: Pick<Param, 'shape'>): boolean {
  return p.shape.length === 1;
}

/** Whether pre-training leaves `p` undecayed: 1-D or a bias in the official FCMAE shapes (GRN is 2-D or 4-D there). */
export function pretrainNoDecay(p: Pick<Param, 'name' | 'shape'>): boolean {
  if (/\.grn\.(weight|bias|gamma|beta)$/.test(p.name)) return false;
  return p.shape.length === 1 || p.name.endsWith('.bias');
}

/** The fine-tuning groups of a classifier's parameters: one per (lr scale, decay) pair, in first-use order. */
export function finetuneParamGroups(params: readonly Param[], depths: readonly number[], o: FinetuneGroupOptions): ParamGroup[] {
  const groups = new Map<string, ParamGroup>();
  for (const p of params) {
    const scale = o.layerDecay === 1 ? 1 : layerScale(p.name, depths, o.layerDecayType, o.layerDecay);
    const noDecay = finetuneNoDecay(p);
    const key = `${scale}:${noDecay}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { params: [], weightDecay: noDecay ? 0 : o.weightDecay, lrScale: scale }));
    g.params.push(p);
  }
  return [...groups.values()];
}

/** The pre-training groups of an FCMAE's parameters (encoder and decoder): decayed, then not. */
export function pretrainParamGroups(params: readonly Param[], weightDecay: number): ParamGroup[] {
  return [
    { params: params.filter((p) => !pretrainNoDecay(p)), weightDecay, lrScale: 1 },
    { params: params.filter((p) => pretrainNoDecay(p)), weightDecay: 0, lrScale: 1 },
  ];
}
