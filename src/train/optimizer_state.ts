/**
 * AdamW state in checkpoints: the moments as `optimizer.m.<param>` / `optimizer.v.<param>`
 * tensors beside the weights, the step count in the metadata, so a resumed run continues
 * bit-identically.
 */
import { ConvNextError } from '../errors.js';
import type { TensorData } from '../io/safetensors.js';
import { hostArray } from '../kernels/host.js';
import type { AdamW } from './adamw.js';

export function optimizerTensors(opt: AdamW): Map<string, TensorData> {
  const out = new Map<string, TensorData>();
  for (const g of opt.groups) {
    for (const p of g.params) {
      out.set(`optimizer.m.${p.name}`, { shape: [...p.shape], data: hostArray(opt.m.get(p)!, 'optimizer state') });
      out.set(`optimizer.v.${p.name}`, { shape: [...p.shape], data: hostArray(opt.v.get(p)!, 'optimizer state') });
    }
  }
  return out;
}

export function loadOptimizerTensors(opt: AdamW, tensors: ReadonlyMap<string, TensorData>, step: number, source: string): void {
  for (const g of opt.groups) {
    for (const p of g.params) {
      for (const [which, dst] of [['m', opt.m.get(p)!], ['v', opt.v.get(p)!]] as const) {
        const t = tensors.get(`optimizer.${which}.${p.name}`);
        if (!t || t.data.length !== dst.length) throw new ConvNextError(`${source}: optimizer state for ${p.name} is missing or has the wrong size`);
        hostArray(dst, 'optimizer state').set(t.data);
      }
    }
  }
  opt.step = step;
}
