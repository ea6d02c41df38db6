/**
 * The Kernels interface: every numeric primitive ConvNeXt V2 needs, forward and backward.
 *
 * Conventions shared by every kernel:
 * - All tensors are row-major float32 `Float32Array`s. Activations are channels-last: a map
 *   of N images, H x W positions and C channels is M = N*H*W rows of C contiguous floats.
 * - Outputs are overwritten unless the argument is documented as "accumulated" (`+=`).
 * - Arrays may be views (subarrays) of larger buffers; kernels touch only the documented
 *   extent. Inputs and outputs never alias unless documented.
 * - Every reduction that spans rows (weight/bias/affine gradients, GRN statistics, pooling)
 *   uses a fixed chunking that does not depend on the thread count, so results are
 *   bit-identical for any number of threads.
 * - `reference.ts` is the oracle; `native.ts` binds the C++ addon. Both implement this.
 */
import { ConvNextError } from '../errors.js';

/** The native kernels' instruction-set paths. */
export type NativeIsa = 'avx512' | 'avx2' | 'portable';

/** Instruction set (or device) a backend's kernels run with. */
export type Isa = NativeIsa | 'reference' | 'wasm' | 'webgpu';

/** Activation fused into a GEMM epilogue: None, or exact GELU 0.5 * x * (1 + erf(x / sqrt(2))). */
export const Act = { None: 0, Gelu: 1 } as const;
export type Act = (typeof Act)[keyof typeof Act];

/** Optional inputs of Kernels.gemm. */
export interface GemmExtras<T = Buf> {
  /**
   * A not transposed: A[i, k] is taken as A[i, k] * aScale[floor(i / aScaleRows) * K + k]
   * (+ aShift[k] when given) as A is packed: per-image channel scales and a shift (GRN's
   * calibration folded into the next layer in inference) at no extra pass over memory.
   */
  aScale?: T | null;
  aScaleRows?: number;
  aShift?: T | null;
  /**
   * M x N with row stride ldc: T += residual, like `accumulate` but read from here rather than
   * from C, which is only written (a block's residual without copying it into the output).
   * Not combined with `accumulate`.
   */
  residual?: T | null;
  /**
   * G x N, G = M / sqGroupRows: written with the column sums of squares of the final C over
   * each group of sqGroupRows rows (GRN's statistics of the layer's output, per image, from
   * its epilogue instead of another pass over memory).
   */
  sqSums?: T | null;
  sqGroupRows?: number;
  /**
   * op(B) packed beforehand by {@link Kernels.packWeights} (transB, this N and K) from the same
   * values as B: the GEMM reads the pack instead of packing B itself. A layer's weights at
   * inference are packed once and reused while they do not change (see InferencePack); at
   * batch 1 the per-call packing of the weights was about a tenth of the forward.
   */
  packedB?: PackedWeights | null;
}

/** An operand packed by {@link Kernels.packWeights}: opaque, valid with the backend that made it. */
export interface PackedWeights {
  readonly N: number;
  readonly K: number;
  readonly transB: boolean;
  /** Bytes held (the pack is a copy beside the weight). */
  readonly bytes: number;
}

/**
 * A float32 tensor that lives on a device (WebGPU: a range of a GPUBuffer), allocated by its
 * backend's TensorMemory. The host cannot index it: it writes it with `Kernels.write` and reads
 * it with `await Kernels.read` (which waits for the kernels enqueued before). `subarray` is a
 * view of a range, as Float32Array's is; views never outlive the allocation they came from.
 */
export interface DeviceTensor {
  /** The backend that owns it ('webgpu'). */
  readonly device: string;
  readonly length: number;
  subarray(begin?: number, end?: number): DeviceTensor;
}

/**
 * A float32 tensor as kernels take it: a host Float32Array for the CPU backends (native,
 * reference, wasm), a DeviceTensor for a GPU backend. Model code touches a Buf only through
 * kernels and `length` / `subarray`; every value it computes is a kernel's.
 */
export type Buf = Float32Array | DeviceTensor;

/**
 * An index table on a device backend (a mask's row maps, a gather's rows, GRN's segment
 * offsets): uploaded once by `Kernels.indexTable` and passed to many calls, instead of a host
 * Int32Array sent again with each. `values` is the host copy the op table's checks read.
 */
export interface DeviceIndex {
  readonly device: string;
  readonly length: number;
  readonly values: Int32Array;
}

/** An index argument: a host Int32Array (any backend), or a table a device backend made. */
export type Idx = Int32Array | DeviceIndex;

/** The values of an index argument, on the host. */
export function idxValues(i: Idx): Int32Array {
  return i instanceof Int32Array ? i : i.values;
}

/** True for host arrays (any Float32Array, whichever memory it views). */
export function isHost(b: Buf): b is Float32Array {
  return b instanceof Float32Array;
}

/**
 * Where a backend wants the tensors it computes on. Host backends (native, reference) take any
 * Float32Array; the WebAssembly backend gives views of its linear memory (the kernels then run
 * on them in place, with no copy per call); a GPU backend gives DeviceTensors. Parameters,
 * their gradients and optimizer moments (Param.memory) and the layers' arena buffers come from
 * here. Host Float32Arrays are accepted as kernel *inputs* by every backend (a device backend
 * uploads them, wasm copies them in); outputs must be the backend's own.
 */
export interface TensorMemory {
  /** 'host', or the backend's memory ('wasm', 'webgpu'). */
  readonly kind: string;
  /** n zeroed floats. */
  alloc(n: number): Buf;
  /** Returns a tensor `alloc` gave to the backend (views of it become invalid); a no-op for host arrays. */
  free(a: Buf): void;
}

/** Plain arrays, collected by the garbage collector. */
export const hostMemory: TensorMemory = {
  kind: 'host',
  alloc: (n) => new Float32Array(n),
  free: () => {},
};

/** `k` when it is a backend, else one clear error naming who wanted one (JavaScript callers, old code). */
export function requireBackend(who: string, k: Kernels | undefined): Kernels {
  if (!k || typeof (k as Partial<Kernels>).gemm !== 'function') {
    throw new ConvNextError(`${who}: no backend given: pass { kernels: await createBackend('cpu') } (or 'wasm', 'webgpu', 'reference')`, 2);
  }
  return k;
}

/** The memory a backend allocates from (host for backends that do not say). */
export function memoryOf(k: Kernels): TensorMemory {
  return k.memory ?? hostMemory;
}

/** What a backend can do (ggml's supports_op, in the large). */
export interface Capabilities {
  /** Runs on a device, not the host: reads are asynchronous, Bufs are DeviceTensors. */
  device: boolean;
  /** The sparse FCMAE encoder's row kernels (dwconv*Rows). */
  sparseRows: boolean;
  /** fp16 storage (WebGPU `shader-f16`). */
  f16: boolean;
  /** A software GPU adapter (Mesa's llvmpipe, SwiftShader): correct, but slower than the CPU kernels. */
  software: boolean;
  /** Adapter or CPU, in words ('llvmpipe (mesa)', 'AMD EPYC ... avx512'). */
  description: string;
}

export interface Kernels {
  /** 'native', 'reference' or 'wasm'. */
  readonly name: string;
  /** The instruction set in use. */
  readonly isa: Isa;
  /** Number of threads used by parallel kernels. */
  readonly threads: number;
  /** Sets the threads of the parallel kernels (native: process-wide; wasm: up to the threads it started); absent where there are none. */
  setThreads?(n: number): void;
  /** Releases what the backend holds (a GPU device it created); absent where the garbage collector does it all. */
  destroy?(): void;
  /** Where this backend wants its arrays; host arrays when absent. */
  readonly memory?: TensorMemory;

  /**
   * `values` as an index table of this backend, for calls that take the same indices many
   * times (a batch's mask in every block): host backends return `values` itself, a device
   * backend uploads a copy once. Later changes to `values` are not seen by a device table.
   */
  indexTable(values: Int32Array): Idx;
  /** Releases a table indexTable made (nothing on host backends). */
  freeIndexTable(t: Idx): void;

  /**
   * General matrix multiply with a fused epilogue:
   *   T = op(A) · op(B)                          (T is M x N)
   *   T += C            if accumulate
   *   T += bias[j]      if bias (length N, broadcast over rows)
   *   if act == Gelu:   preact (when given) = T; C = gelu(T)   else C = T
   * op(A) is A (M x K, row stride lda) or, if transA, the transpose of A stored K x M (row
   * stride lda). op(B) is B (K x N, stride ldb) or, if transB, the transpose of B stored N x K
   * (stride ldb). C and preact are M x N with row stride ldc. `accumulate` and `Gelu` are not
   * combined. When K is large and M*N small (weight gradients), the K dimension is split into
   * fixed chunks whose partial sums are added in a fixed order. `extras` (see GemmExtras)
   * adds per-image scales of A and a residual input.
   */
  gemm(
    transA: boolean, transB: boolean,
    M: number, N: number, K: number,
    A: Buf, lda: number,
    B: Buf, ldb: number,
    C: Buf, ldc: number,
    accumulate: boolean,
    bias: Buf | null,
    act: Act,
    preact: Buf | null,
    extras?: GemmExtras,
  ): void;

  /**
   * Optional (the native backend): op(B) packed for gemm's `extras.packedB`, B as gemm takes it
   * (N x K with row stride ldb when transB, else K x N). A copy: later changes to B are not in it.
   */
  packWeights?(B: Buf, ldb: number, transB: boolean, N: number, K: number): PackedWeights;

  /** out[j] (+)= sum over rows i of x[i*N + j]; x is M x N. Accumulates into out if `accumulate`. */
  colSum(x: Buf, M: number, N: number, out: Buf, accumulate: boolean): void;

  /**
   * Depthwise KxK convolution, stride 1, zero padding K>>1 (K odd), channels-last.
   * x, y: [N, H, W, C]; weight: [K*K, C] (tap-major: w[(ky*K + kx)*C + c]); bias: [C] or null.
   *   y[n,h,w,c] = bias[c] + sum_{ky,kx} x[n, h+ky-P, w+kx-P, c] * w[ky*K+kx, c]
   */
  dwconvForward(
    x: Buf, N: number, H: number, W: number, C: number, K: number,
    weight: Buf, bias: Buf | null, y: Buf,
  ): void;

  /** dx (+)= gradient of dwconvForward w.r.t. x (a correlation with the flipped kernel). */
  dwconvBackwardInput(
    dy: Buf, N: number, H: number, W: number, C: number, K: number,
    weight: Buf, dx: Buf, accumulate: boolean,
  ): void;

  /**
   * Accumulates weight and bias gradients: dweight[K*K, C] += sum x-shifted * dy,
   * dbias[C] += sum dy (dbias may be null).
   */
  dwconvBackwardWeight(
    dy: Buf, x: Buf, N: number, H: number, W: number, C: number, K: number,
    dweight: Buf, dbias: Buf | null,
  ): void;

  /**
   * Submanifold depthwise convolution on compacted rows (the sparse FCMAE encoder): the
   * dwconvForward of an [N, H, W, C] map whose masked positions are zero, evaluated at the
   * visible positions only. The S visible positions are rows x, y: [S, C];
   * rowOf [N*H*W] is the row of each dense position n*H*W + h*W + w, or -1 where masked (any
   * value outside [0, S) counts as masked); idx [S] is the dense position of each row (each in
   * [0, N*H*W), checked; rowOf[idx[r]] == r is the caller's contract). With p = idx[r]:
   *   y[r, c] = bias[c] + sum_{ky,kx} w[ky*K+kx, c] * x[rowOf[n, h+ky-P, w+kx-P], c]
   * over in-bounds, visible neighbours (masked or outside ones count as zero); so
   * y = gather(dwconvForward(scatter(x))) exactly as defined.
   */
  dwconvForwardRows(
    x: Buf, rowOf: Idx, idx: Idx,
    S: number, N: number, H: number, W: number, C: number, K: number,
    weight: Buf, bias: Buf | null, y: Buf,
  ): void;

  /**
   * dx [S, C] (+)= gradient of dwconvForwardRows w.r.t. its rows x (the flipped kernel over
   * visible outputs only): gather(dwconvBackwardInput(scatter(dy))).
   */
  dwconvBackwardInputRows(
    dy: Buf, rowOf: Idx, idx: Idx,
    S: number, N: number, H: number, W: number, C: number, K: number,
    weight: Buf, dx: Buf, accumulate: boolean,
  ): void;

  /**
   * Accumulates the weight and bias gradients of dwconvForwardRows: dweight[K*K, C] +=
   * sum over rows r and visible neighbours of dy[r] * x[neighbour]; dbias[C] += sum dy
   * (dbias may be null). Rows are reduced in fixed chunks (a function of S only).
   */
  dwconvBackwardWeightRows(
    dy: Buf, x: Buf, rowOf: Idx, idx: Idx,
    S: number, N: number, H: number, W: number, C: number, K: number,
    dweight: Buf, dbias: Buf | null,
  ): void;

  /**
   * LayerNorm over the last dimension (C) of M rows, biased variance:
   *   mean[i] = avg_c x; rstd[i] = 1/sqrt(var + eps); y = (x - mean) * rstd * gamma + beta.
   * mean and rstd (length M) are written for the backward pass.
   */
  layerNormForward(
    x: Buf, M: number, C: number, gamma: Buf, beta: Buf, eps: number,
    y: Buf, mean: Buf, rstd: Buf,
  ): void;

  /**
   * LayerNorm backward. With xhat = (x - mean) * rstd and g = dy * gamma:
   *   dx (+)= rstd * (g - mean_c(g) - xhat * mean_c(g * xhat))
   *   dgamma += sum_rows dy * xhat; dbeta += sum_rows dy.
   */
  layerNormBackward(
    dy: Buf, x: Buf, mean: Buf, rstd: Buf,
    gamma: Buf, M: number, C: number,
    dx: Buf, accumulate: boolean, dgamma: Buf, dbeta: Buf,
  ): void;

  /**
   * Global Response Normalization over row segments. Segment s covers rows
   * [offsets[s], offsets[s+1]) (for dense maps: one segment per image of H*W rows; for the
   * sparse FCMAE encoder: one segment for all visible rows of the batch).
   *   gx[s,c] = sqrt(sum_{rows in s} x^2); nx[s,c] = gx[s,c] / (mean_c gx[s,:] + eps)
   *   y = gamma[c] * (x * nx[s,c]) + beta[c] + x
   * gx and nx ([S, C], S = offsets.length - 1) are written for the backward pass. With y
   * null only the statistics are computed (inference folds the rest into the next GEMM); with
   * sqSums ([S, C], the segments' sums of squares of x, e.g. from the GEMM that wrote x)
   * that pass over x is skipped.
   */
  grnForward(
    x: Buf, offsets: Idx, C: number, gamma: Buf, beta: Buf,
    eps: number, y: Buf | null, gx: Buf, nx: Buf,
    sqSums?: Buf | null,
  ): void;

  /**
   * GRN backward: dx (overwritten) and accumulated dgamma, dbeta. With
   * a[s,c] = gamma[c] * sum_rows(dy*x), D = mean_c gx + eps,
   * dG[s,k] = a[s,k]/D - (1/C) * sum_c a[s,c]*gx[s,c] / D^2, and
   * dx = dy * (1 + gamma*nx) + dG * x / gx (the last term 0 where gx == 0).
   * dgamma[c] += sum dy * x * nx; dbeta[c] += sum dy.
   * Fused with the layer before GRN (its GELU and bias): with geluPre (the GELU's input,
   * rows x C), dx is multiplied by gelu'(geluPre); with dbias (C), the column sums of that
   * final dx are added to it.
   */
  grnBackward(
    dy: Buf, x: Buf, offsets: Idx, C: number, gamma: Buf,
    eps: number, gx: Buf, nx: Buf,
    dx: Buf, dgamma: Buf, dbeta: Buf,
    geluPre?: Buf | null, dbias?: Buf | null,
  ): void;

  /** y = gelu(x), exact erf form, n elements. */
  gelu(x: Buf, y: Buf, n: number): void;

  /** dx = dy * gelu'(x) where x is the pre-activation; n elements. */
  geluBackward(dy: Buf, x: Buf, dx: Buf, n: number): void;

  /** y[n, c] = mean over HW rows of x[n, hw, c]. x: [N, HW, C], y: [N, C]. */
  avgPoolForward(x: Buf, N: number, HW: number, C: number, y: Buf): void;

  /** dx[n, hw, c] = dy[n, c] / HW (overwrites dx). */
  avgPoolBackward(dy: Buf, N: number, HW: number, C: number, dx: Buf): void;

  /**
   * Softmax cross-entropy with soft targets (one-hot, smoothed or mixed labels), N rows of K
   * logits. Writes loss[0] = mean over rows of -sum_k target*log_softmax(logits), and
   * dlogits = (softmax - target) * gradScale when dlogits is given (gradScale 1/N: the mean's
   * gradient; 1/(N * accumulation steps) for gradient accumulation).
   */
  softmaxCrossEntropy(
    logits: Buf, targets: Buf, N: number, K: number,
    dlogits: Buf | null, loss: Buf, gradScale: number,
  ): void;

  /**
   * Non-overlapping patch gather (a stride-P, PxP convolution as a GEMM): x [N, H, W, C]
   * channels-last; Ho = floor(H/P), Wo = floor(W/P); cols [N*Ho*Wo, C*P*P] with each row
   * ordered (c, ky, kx) to match PyTorch's conv weight [out, C, P, P] flattened.
   */
  patchify(
    x: Buf, N: number, H: number, W: number, C: number, P: number, cols: Buf,
  ): void;

  /**
   * Inverse of patchify for gradients: dx [N, H, W, C] = scatter of dcols; positions not
   * covered (the floored border) get 0. Overwrites dx.
   */
  unpatchify(
    dcols: Buf, N: number, H: number, W: number, C: number, P: number, dx: Buf,
  ): void;

  /** NCHW -> NHWC (src [N, C, H, W] to dst [N, H, W, C]). */
  nchwToNhwc(src: Buf, N: number, C: number, H: number, W: number, dst: Buf): void;

  /** NHWC -> NCHW (src [N, H, W, C] to dst [N, C, H, W]). */
  nhwcToNchw(src: Buf, N: number, H: number, W: number, C: number, dst: Buf): void;

  /**
   * out[i] = x[i] + scale[n] * branch[i] for rows of sample n (rowsPerSample rows of C each):
   * the residual add with per-sample drop-path scaling. out may alias x.
   */
  addScaled(
    x: Buf, branch: Buf, scale: Buf, N: number, rowsPerSample: number,
    C: number, out: Buf,
  ): void;

  /**
   * One AdamW step on n elements (decoupled weight decay, PyTorch semantics):
   *   p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
   *   p -= lr * (m / bc1) / (sqrt(v / bc2) + eps)
   * where bc1 = 1 - b1^t, bc2 = 1 - b2^t are passed in.
   */
  adamw(
    p: Buf, g: Buf, m: Buf, v: Buf, n: number,
    lr: number, beta1: number, beta2: number, eps: number, weightDecay: number,
    bc1: number, bc2: number,
  ): void;

  // Memory: the host's only way into and out of a backend's tensors.

  /** dst[offset + i] = src[i] (offset 0 by default), ordered with the kernels enqueued before. */
  write(dst: Buf, src: Float32Array, offset?: number): void;

  /** A host copy of t's values once every kernel enqueued before it has run. */
  read(t: Buf): Promise<Float32Array>;

  /** t[i] = value for all of t. */
  fill(t: Buf, value: number): void;

  /** dst[i] = src[i] for i < src.length. */
  copy(src: Buf, dst: Buf): void;

  // Small elementwise kernels: what the layers used to compute on the host between kernels.

  /**
   * dst [B, C, R] (+)= src [B, R, C] with each of the B matrices transposed: the depthwise
   * weight between PyTorch's [C, K*K] and the kernels' [K*K, C] (B = 1), the sparse
   * downsampling's weight between [out, C, 2*2] and [out, 2*2, C] (B = out).
   */
  transpose(src: Buf, B: number, R: number, C: number, dst: Buf, accumulate: boolean): void;

  /**
   * out[r, c] (+)= x[r, c] * s[r] (R rows of C): LayerScale folded into a Linear's weight rows,
   * a 0/1 keep mask applied to rows. out may alias x.
   */
  scaleRows(x: Buf, R: number, C: number, s: Buf, out: Buf, accumulate: boolean): void;

  /** out[r] (+)= sum_c a[r, c] * b[r, c] (R rows of C): LayerScale's gradient. */
  rowDot(a: Buf, b: Buf, R: number, C: number, out: Buf, accumulate: boolean): void;

  /** x[i] *= s for i < n. */
  scale(x: Buf, n: number, s: number): void;

  /** out[0] (+)= sum of x[i]^2, i < n, in a fixed order (clip_grad_norm_). */
  sumSquares(x: Buf, n: number, out: Buf, accumulate: boolean): void;

  /** x[i] *= min(1, maxNorm / (sqrt(sumSq[0]) + 1e-6)) for i < n (torch's clip_grad_norm_ factor). */
  clipByNorm(x: Buf, n: number, sumSq: Buf, maxNorm: number): void;

  /** out[s, c] = 1 + gamma[c] * nx[s, c] (S x C): GRN's per-image scale when folded into the next GEMM. */
  grnScale(nx: Buf, S: number, C: number, gamma: Buf, out: Buf): void;

  /**
   * dst row i = src row idx[i] (rows of C), or zeros where idx[i] < 0 (idx values checked below
   * the rows of src): compaction of the visible rows, the 2x2 blocks of the sparse downsampling.
   */
  gatherRows(src: Buf, idx: Idx, C: number, dst: Buf): void;

  /** dst row idx[i] = src row i (rows of C), skipping idx[i] < 0; other rows of dst are left as they are. */
  scatterRows(src: Buf, idx: Idx, C: number, dst: Buf): void;

  /**
   * The FCMAE reconstruction loss (official `forward_loss`), see src/kernels/fcmae_loss.ts: target
   * [N*L, P] = the p x p patches of x (NHWC [N, H, W, C], P = p*p*C, each in (row, col,
   * channel) order), normalised per patch when `norm` (mean, unbiased variance + 1e-6; the
   * [mean, std] of each written to patchStats [N*L, 2] when given); loss[0] = mean over
   * removed patches (mask [N*L], 1 = removed) of mean_P (pred - target)^2; dpred = its gradient
   * (zero rows at visible patches).
   */
  fcmaeLoss(
    x: Buf, N: number, H: number, W: number, C: number, p: number, norm: boolean,
    pred: Buf, mask: Float32Array, target: Buf, dpred: Buf, loss: Buf, patchStats: Buf | null,
  ): void;

  /**
   * One-hot targets with label smoothing (timm's): out [N, K] = smoothing / K everywhere, plus
   * (1 - smoothing) at labels[n] (each checked in [0, K)), so the step needs no host-built
   * targets.
   */
  smoothTargets(labels: Int32Array, N: number, K: number, smoothing: number, out: Buf): void;

  /** shadow = decay * shadow + (1 - decay) * w, n elements (timm's ModelEma). */
  ema(shadow: Buf, w: Buf, n: number, decay: number): void;

  /** What this backend supports. */
  capabilities(): Capabilities;
}
