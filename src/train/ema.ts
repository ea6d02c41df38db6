/**
 * Exponential moving average of the weights (timm's ModelEma, as the official fine-tuning
 * uses it): after every optimizer step, ema = decay * ema + (1 - decay) * weights, for every
 * tensor of the state dict.
 */
import { ConvNextError } from '../errors.js';
import { hostKernels } from '../kernels/reference.js';
import type { Buf, Kernels } from '../kernels/types.js';
import type { Param } from '../nn/param.js';

export class ModelEma {
  /** The averaged weights by name, in the parameters' memory. */
  readonly shadow = new Map<string, Buf>();
  private readonly k: Kernels;

  /** `kernels`: the model's (default: host kernels, for parameters in host memory). */
  constructor(readonly params: readonly Param[], readonly decay: number, kernels?: Kernels) {
    const device = params.find((p) => !(p.data instanceof Float32Array));
    if (!kernels && device) throw new ConvNextError(`ModelEma: ${device.name} is a device tensor: pass the model's kernels (new ModelEma(params, decay, model.kernels))`);
    this.k = kernels ?? hostKernels;
    for (const p of params) {
      const e = p.memory.alloc(p.size);
      this.k.copy(p.data, e);
      this.shadow.set(p.name, e);
    }
  }

  update(): void {
    for (const p of this.params) this.k.ema(this.shadow.get(p.name)!, p.data, p.size, this.decay);
  }

  /** Swaps the EMA weights into the parameters (call again to swap back). */
  swap(): void {
    for (const p of this.params) {
      const e = this.shadow.get(p.name)!;
      const tmp = p.memory.alloc(p.size);
      this.k.copy(p.data, tmp);
      this.k.copy(e, p.data);
      this.k.copy(tmp, e);
      p.memory.free(tmp);
      p.touch();
    }
  }

  /** Returns the averaged weights to the parameters' memory. */
  dispose(): void {
    for (const p of this.params) p.memory.free(this.shadow.get(p.name)!);
    this.shadow.clear();
  }
}
