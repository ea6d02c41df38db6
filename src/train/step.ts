/**
 * One supervised training step: forward in training mode, softmax cross-entropy on (soft)
 * targets, backward, AdamW update, gradients cleared.
 */
import { ConvNextError } from '../errors.js';
import type { ConvNeXtV2 } from '../model/convnextv2.js';
import type { Tensor } from '../tensor.js';
import type { AdamW } from './adamw.js';
import type { Param } from '../nn/param.js';
import type { Rng } from '../rng.js';

/**
 * Scales all gradients so their total L2 norm is at most maxNorm (torch's
 * clip_grad_norm_: factor maxNorm / (norm + 1e-6) when norm exceeds maxNorm). Returns the norm.
 */
export function clipGradNorm(params: readonly Param[], maxNorm: number): number {
  let ss = 0;
  for (const p of params) for (let i = 0; i < p.grad.length; i++) ss += p.grad[i] * p.grad[i];
  const norm = Math.sqrt(ss);
  const f = maxNorm / (norm + 1e-6);
  if (f < 1) for (const p of params) for (let i = 0; i < p.grad.length; i++) p.grad[i] *= f;
  return norm;
}

/** One-hot targets with label smoothing: (1 - s) on the label plus s / K everywhere (timm). */
export function smoothTargets(labels: ArrayLike<number>, numClasses: number, smoothing = 0): Float32Array {
  const t = new Float32Array(labels.length * numClasses);
  const off = smoothing / numClasses;
  for (let n = 0; n < labels.length; n++) {
    const y = labels[n];
    if (!Number.isInteger(y) || y < 0 || y >= numClasses) {
      throw new ConvNextError(`label ${y} out of range for ${numClasses} classes`);
    }
    t.fill(off, n * numClasses, (n + 1) * numClasses);
    t[n * numClasses + y] += 1 - smoothing;
  }
  return t;
}

export interface StepResult {
  loss: number;
  /** [N, numClasses], the model's own buffer (overwritten by the next forward). */
  logits: Tensor;
}

/**
 * Forward + backward on one batch, accumulating gradients (no update). `targets` are class
 * indices or soft targets [N, K]. `lossScale` divides the gradient (gradient accumulation).
 */
export function forwardBackward(model: ConvNeXtV2, pixels: Tensor, targets: ArrayLike<number> | Float32Array,
  opts: { smoothing?: number; lossScale?: number; rng?: Rng } = {}): StepResult {
  const K = model.config.numClasses;
  if (K === 0) throw new ConvNextError('training a classifier needs numClasses > 0');
  const N = pixels.shape[0];
  const soft = targets instanceof Float32Array && targets.length === N * K
    ? targets
    : smoothTargets(targets, K, opts.smoothing ?? 0);
  const out = model.forward(pixels, { train: true, rng: opts.rng });
  const logits = out.logits!;
  const dlogits = new Float32Array(N * K);
  const loss = model.kernels.softmaxCrossEntropy(logits.data, soft, N, K, dlogits);
  const scale = opts.lossScale ?? 1;
  if (scale !== 1) for (let i = 0; i < dlogits.length; i++) dlogits[i] /= scale;
  model.backward(dlogits, false);
  return { loss, logits };
}

/** forwardBackward, then one AdamW update at `lr`, then zeroed gradients. */
export function trainStep(model: ConvNeXtV2, opt: AdamW, pixels: Tensor, targets: ArrayLike<number> | Float32Array,
  opts: { lr?: number; smoothing?: number; rng?: Rng; clipGrad?: number } = {}): StepResult {
  const r = forwardBackward(model, pixels, targets, opts);
  if (opts.clipGrad !== undefined) clipGradNorm(model.params, opts.clipGrad);
  opt.update(model.kernels, opts.lr);
  model.zeroGrad();
  return r;
}
