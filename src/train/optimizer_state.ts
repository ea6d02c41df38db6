/**
 * AdamW state in checkpoints: the moments as `optimizer.m.<param>` / `optimizer.v.<param>`
 * tensors beside the weights, the step count in the metadata, so a resumed run continues
 * bit-identically.
 */
import { ConvNextError } from '../errors.js';
import type { TensorData } from '../io/safetensors.js';
import type { Kernels } from '../kernels/types.js';
import { readPerParam } from '../nn/store.js';
import type { AdamW } from './adamw.js';

/** The moments as checkpoint tensors, read from any backend (copies; one read per store and moment). */
export async function optimizerTensors(k: Kernels, opt: AdamW): Promise<Map<string, TensorData>> {
  const params = opt.groups.flatMap((g) => g.params);
  const m = await readPerParam(k, params, (s) => opt.storeMoments.get(s)?.m, (p) => opt.m.get(p)!);
  const v = await readPerParam(k, params, (s) => opt.storeMoments.get(s)?.v, (p) => opt.v.get(p)!);
  const out = new Map<string, TensorData>();
  for (const p of params) {
    out.set(`optimizer.m.${p.name}`, { shape: [...p.shape], data: m.get(p)! });
    out.set(`optimizer.v.${p.name}`, { shape: [...p.shape], data: v.get(p)! });
  }
  return out;
}

/** Loads the moments (written through `k`, the parameters' backend) and the step count. */
export function loadOptimizerTensors(k: Kernels, opt: AdamW, tensors: ReadonlyMap<string, TensorData>, step: number, source: string): void {
  for (const g of opt.groups) {
    for (const p of g.params) {
      for (const [which, dst] of [['m', opt.m.get(p)!], ['v', opt.v.get(p)!]] as const) {
        const t = tensors.get(`optimizer.${which}.${p.name}`);
        if (!t || t.data.length !== dst.length) throw new ConvNextError(`${source}: optimizer state for ${p.name} is missing or has the wrong size`);
        k.write(dst, t.data);
      }
    }
  }
  opt.step = step;
}
