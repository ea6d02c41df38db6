/**
 * Exponential moving average of the weights (timm's ModelEma, as the official fine-tuning
 * uses it): after every optimizer step, ema = decay * ema + (1 - decay) * weights, for every
 * tensor of the state dict.
 */
import type { Param } from '../nn/param.js';

export class ModelEma {
  readonly shadow = new Map<string, Float32Array>();

  constructor(readonly params: readonly Param[], readonly decay: number) {
    for (const p of params) this.shadow.set(p.name, Float32Array.from(p.data));
  }

  update(): void {
    const d = this.decay;
    for (const p of this.params) {
      const e = this.shadow.get(p.name)!;
      const w = p.data;
      for (let i = 0; i < e.length; i++) e[i] = d * e[i] + (1 - d) * w[i];
    }
  }

  /** Swaps the EMA weights into the parameters (call again to swap back). */
  swap(): void {
    for (const p of this.params) {
      const e = this.shadow.get(p.name)!;
      const tmp = Float32Array.from(p.data);
      p.data.set(e);
      e.set(tmp);
    }
  }
}
