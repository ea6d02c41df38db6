/**
 * AdamW state in checkpoints: the moments as `optimizer.m.<param>` / `optimizer.v.<param>`
 * tensors beside the weights, the step count in the metadata, so a resumed run continues
 * bit-identically.
 */
import { ConvNextError } from '../errors.js';
import type { TensorData } from '../io/safetensors.js';
import { hostArray } from '../kernels/host.js';
import type { Kernels } from '../kernels/types.js';
import type { AdamW } from './adamw.js';

/** The moments as checkpoint tensors (views; host backends: see readOptimizerTensors). */
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

/** optimizerTensors read from any backend (copies). */
export async function readOptimizerTensors(k: Kernels, opt: AdamW): Promise<Map<string, TensorData>> {
  const out = new Map<string, TensorData>();
  for (const g of opt.groups) {
    for (const p of g.params) {
      out.set(`optimizer.m.${p.name}`, { shape: [...p.shape], data: await k.read(opt.m.get(p)!) });
      out.set(`optimizer.v.${p.name}`, { shape: [...p.shape], data: await k.read(opt.v.get(p)!) });
    }
  }
  return out;
}

/** Loads the moments (through `k`, the parameters' kernels, when they are not host arrays) and the step count. */
export function loadOptimizerTensors(opt: AdamW, tensors: ReadonlyMap<string, TensorData>, step: number, source: string, k?: Kernels): void {
  for (const g of opt.groups) {
    for (const p of g.params) {
      for (const [which, dst] of [['m', opt.m.get(p)!], ['v', opt.v.get(p)!]] as const) {
        const t = tensors.get(`optimizer.${which}.${p.name}`);
        if (!t || t.data.length !== dst.length) throw new ConvNextError(`${source}: optimizer state for ${p.name} is missing or has the wrong size`);
        if (k) k.write(dst, t.data);
        else hostArray(dst, 'optimizer state').set(t.data);
      }
    }
  }
  opt.step = step;
}
