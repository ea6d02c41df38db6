/**
 * One supervised training step: forward in training mode, softmax cross-entropy on (soft)
 * targets, backward, AdamW update, gradients cleared.
 */
import { ConvNextError } from '../errors.js';
import type { ConvNeXtV2 } from '../model/convnextv2.js';
import { hostKernels } from '../kernels/reference.js';
import { type Buf, type Kernels, memoryOf } from '../kernels/types.js';
import type { Tensor } from '../tensor.js';
import type { AdamW } from './adamw.js';
import type { Param } from '../nn/param.js';
import { paramRuns } from '../nn/store.js';
import type { Rng } from '../rng.js';

/**
 * Scales all gradients so their total L2 norm is at most maxNorm (torch's clip_grad_norm_:
 * factor maxNorm / (norm + 1e-6) when norm exceeds maxNorm), in kernels, so it runs where the
 * gradients live. `sumSq` (one value in the kernels' memory) receives the sum of squares
 * (norm^2), for a caller that wants to log the norm.
 */
export function clipGradients(k: Kernels, params: readonly Param[], maxNorm: number, sumSq: Buf): void {
  k.fill(sumSq, 0);
  // The norm tensor by tensor, in the parameters' order (the sum's order is the result's bits);
  // the scaling, one call per run of neighbours in their store.
  for (const p of params) k.sumSquares(p.grad, p.size, sumSq, true);
  for (const { store, run } of paramRuns(params)) {
    const g = store ? store.grad.subarray(run.offset, run.offset + run.n) : run.params[0].grad;
    k.clipByNorm(g, run.n, sumSq, maxNorm);
  }
}

/** clipGradients on any backend; returns the norm before clipping (one read). */
export async function clipGradNorm(k: Kernels, params: readonly Param[], maxNorm: number): Promise<number> {
  const mem = memoryOf(k);
  const ss = mem.alloc(1);
  try {
    clipGradients(k, params, maxNorm, ss);
    return Math.sqrt((await k.read(ss))[0]);
  } finally {
    mem.free(ss);
  }
}

/** Class indices as an Int32Array, each an integer in [0, numClasses). */
function classIndices(labels: ArrayLike<number>, numClasses: number): Int32Array {
  for (let n = 0; n < labels.length; n++) {
    const y = labels[n];
    if (!Number.isInteger(y) || y < 0 || y >= numClasses) throw new ConvNextError(`label ${y} out of range for ${numClasses} classes`);
  }
  return labels instanceof Int32Array ? labels : Int32Array.from(labels);
}

/** One-hot targets with label smoothing: (1 - s) on the label plus s / K everywhere (timm), on the host (the smoothTargets kernel). */
export function smoothTargets(labels: ArrayLike<number>, numClasses: number, smoothing = 0): Float32Array {
  const t = new Float32Array(labels.length * numClasses);
  hostKernels.smoothTargets(classIndices(labels, numClasses), labels.length, numClasses, smoothing, t);
  return t;
}

/** What trainStep returns, read back to the host. */
export interface StepResult {
  loss: number;
  /** [N, numClasses] (a copy). */
  logits: Tensor;
}

/** What forwardBackward leaves in the backend's memory: nothing is read back to the host. */
export interface StepTensors {
  /** One value: the mean loss of the batch (read it with `await model.kernels.read(loss)`). */
  loss: Buf;
  /** [N, numClasses], the model's own buffer (overwritten by the next forward). */
  logits: Buf;
}

/**
 * Forward + backward on one batch, accumulating gradients (no update), with nothing read back:
 * what a GPU backend needs (the loss is read once per log interval). `targets` are class
 * indices (one-hot, smoothed by `smoothing`) or soft targets [N, K]. `lossScale` divides the
 * gradient (gradient accumulation).
 */
export function forwardBackward(model: ConvNeXtV2, pixels: Tensor, targets: ArrayLike<number> | Float32Array,
  opts: { smoothing?: number; lossScale?: number; rng?: Rng } = {}): StepTensors {
  const k = model.kernels;
  const K = model.config.numClasses;
  if (K === 0) throw new ConvNextError('training a classifier needs numClasses > 0');
  const N = pixels.shape[0];
  let soft: Buf;
  if (targets instanceof Float32Array && targets.length === N * K) {
    soft = targets;
  } else {
    if (targets.length !== N) throw new ConvNextError(`${targets.length} labels for a batch of ${N}`);
    // The targets are made where the logits are (a kernel), from the class indices.
    soft = model.buffer('loss.targets', N * K);
    k.smoothTargets(classIndices(targets, K), N, K, opts.smoothing ?? 0, soft);
  }
  const logits = model.forwardTensors(pixels, { train: true, rng: opts.rng }).logits!;
  const dlogits = model.buffer('loss.dlogits', N * K);
  const loss = model.buffer('loss.value', 1);
  k.softmaxCrossEntropy(logits, soft, N, K, dlogits, loss, 1 / (N * (opts.lossScale ?? 1)));
  model.backward(dlogits, false);
  return { loss, logits };
}

/** forwardBackward, then one AdamW update at `lr`, then zeroed gradients; the loss and logits are read back. */
export async function trainStep(model: ConvNeXtV2, opt: AdamW, pixels: Tensor, targets: ArrayLike<number> | Float32Array,
  opts: { lr?: number; smoothing?: number; rng?: Rng; clipGrad?: number } = {}): Promise<StepResult> {
  const k = model.kernels;
  const r = forwardBackward(model, pixels, targets, opts);
  if (opts.clipGrad !== undefined) clipGradients(k, model.params, opts.clipGrad, model.buffer('clip.sumsq', 1));
  opt.update(k, opts.lr);
  model.zeroGrad();
  // Read once the whole step is queued (a device backend waits here only); the update leaves the loss and logits as they were.
  return { loss: (await k.read(r.loss))[0], logits: { shape: [pixels.shape[0], model.config.numClasses], data: await k.read(r.logits) } };
}
