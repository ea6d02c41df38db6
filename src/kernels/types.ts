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

/** Instruction set the native kernels run with. */
export type Isa = 'avx512' | 'avx2' | 'portable' | 'reference' | 'wasm';

/** Activation fused into a GEMM epilogue: None, or exact GELU 0.5 * x * (1 + erf(x / sqrt(2))). */
export const Act = { None: 0, Gelu: 1 } as const;
export type Act = (typeof Act)[keyof typeof Act];

/** Optional inputs of Kernels.gemm. */
export interface GemmExtras {
  /**
   * A not transposed: A[i, k] is taken as A[i, k] * aScale[floor(i / aScaleRows) * K + k]
   * (+ aShift[k] when given) as A is packed: per-image channel scales and a shift (GRN's
   * calibration folded into the next layer in inference) at no extra pass over memory.
   */
  aScale?: Float32Array | null;
  aScaleRows?: number;
  aShift?: Float32Array | null;
  /**
   * M x N with row stride ldc: T += residual, like `accumulate` but read from here rather than
   * from C, which is only written (a block's residual without copying it into the output).
   * Not combined with `accumulate`.
   */
  residual?: Float32Array | null;
  /**
   * G x N, G = M / sqGroupRows: written with the column sums of squares of the final C over
   * each group of sqGroupRows rows (GRN's statistics of the layer's output, per image, from
   * its epilogue instead of another pass over memory).
   */
  sqSums?: Float32Array | null;
  sqGroupRows?: number;
}

/**
 * Where a backend wants the arrays it computes on. Host backends (native, reference) take any
 * Float32Array; the WebAssembly backend gives views of its linear memory (the kernels then run
 * on them in place, with no copy per call), and a GPU backend will give device-resident
 * tensors the same way. Parameters, their gradients and optimizer moments (Param.memory) and
 * the layers' arena buffers come from here; anything else still works, copied per call.
 */
export interface TensorMemory {
  /** 'host', or the backend's memory ('wasm'). */
  readonly kind: string;
  /** n zeroed floats. */
  alloc(n: number): Float32Array;
  /** Returns an array `alloc` gave to the backend (views of it become invalid); a no-op for host arrays. */
  free(a: Float32Array): void;
}

/** Plain arrays, collected by the garbage collector. */
export const hostMemory: TensorMemory = {
  kind: 'host',
  alloc: (n) => new Float32Array(n),
  free: () => {},
};

/** The memory a backend allocates from (host for backends that do not say). */
export function memoryOf(k: Kernels): TensorMemory {
  return k.memory ?? hostMemory;
}

export interface Kernels {
  /** 'native', 'reference' or 'wasm'. */
  readonly name: string;
  /** The instruction set in use. */
  readonly isa: Isa;
  /** Number of threads used by parallel kernels. */
  readonly threads: number;
  /** Where this backend wants its arrays; host arrays when absent. */
  readonly memory?: TensorMemory;

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
    A: Float32Array, lda: number,
    B: Float32Array, ldb: number,
    C: Float32Array, ldc: number,
    accumulate: boolean,
    bias: Float32Array | null,
    act: Act,
    preact: Float32Array | null,
    extras?: GemmExtras,
  ): void;

  /** out[j] (+)= sum over rows i of x[i*N + j]; x is M x N. Accumulates into out if `accumulate`. */
  colSum(x: Float32Array, M: number, N: number, out: Float32Array, accumulate: boolean): void;

  /**
   * Depthwise KxK convolution, stride 1, zero padding K>>1 (K odd), channels-last.
   * x, y: [N, H, W, C]; weight: [K*K, C] (tap-major: w[(ky*K + kx)*C + c]); bias: [C] or null.
   *   y[n,h,w,c] = bias[c] + sum_{ky,kx} x[n, h+ky-P, w+kx-P, c] * w[ky*K+kx, c]
   */
  dwconvForward(
    x: Float32Array, N: number, H: number, W: number, C: number, K: number,
    weight: Float32Array, bias: Float32Array | null, y: Float32Array,
  ): void;

  /** dx (+)= gradient of dwconvForward w.r.t. x (a correlation with the flipped kernel). */
  dwconvBackwardInput(
    dy: Float32Array, N: number, H: number, W: number, C: number, K: number,
    weight: Float32Array, dx: Float32Array, accumulate: boolean,
  ): void;

  /**
   * Accumulates weight and bias gradients: dweight[K*K, C] += sum x-shifted * dy,
   * dbias[C] += sum dy (dbias may be null).
   */
  dwconvBackwardWeight(
    dy: Float32Array, x: Float32Array, N: number, H: number, W: number, C: number, K: number,
    dweight: Float32Array, dbias: Float32Array | null,
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
    x: Float32Array, rowOf: Int32Array, idx: Int32Array,
    S: number, N: number, H: number, W: number, C: number, K: number,
    weight: Float32Array, bias: Float32Array | null, y: Float32Array,
  ): void;

  /**
   * dx [S, C] (+)= gradient of dwconvForwardRows w.r.t. its rows x (the flipped kernel over
   * visible outputs only): gather(dwconvBackwardInput(scatter(dy))).
   */
  dwconvBackwardInputRows(
    dy: Float32Array, rowOf: Int32Array, idx: Int32Array,
    S: number, N: number, H: number, W: number, C: number, K: number,
    weight: Float32Array, dx: Float32Array, accumulate: boolean,
  ): void;

  /**
   * Accumulates the weight and bias gradients of dwconvForwardRows: dweight[K*K, C] +=
   * sum over rows r and visible neighbours of dy[r] * x[neighbour]; dbias[C] += sum dy
   * (dbias may be null). Rows are reduced in fixed chunks (a function of S only).
   */
  dwconvBackwardWeightRows(
    dy: Float32Array, x: Float32Array, rowOf: Int32Array, idx: Int32Array,
    S: number, N: number, H: number, W: number, C: number, K: number,
    dweight: Float32Array, dbias: Float32Array | null,
  ): void;

  /**
   * LayerNorm over the last dimension (C) of M rows, biased variance:
   *   mean[i] = avg_c x; rstd[i] = 1/sqrt(var + eps); y = (x - mean) * rstd * gamma + beta.
   * mean and rstd (length M) are written for the backward pass.
   */
  layerNormForward(
    x: Float32Array, M: number, C: number, gamma: Float32Array, beta: Float32Array, eps: number,
    y: Float32Array, mean: Float32Array, rstd: Float32Array,
  ): void;

  /**
   * LayerNorm backward. With xhat = (x - mean) * rstd and g = dy * gamma:
   *   dx (+)= rstd * (g - mean_c(g) - xhat * mean_c(g * xhat))
   *   dgamma += sum_rows dy * xhat; dbeta += sum_rows dy.
   */
  layerNormBackward(
    dy: Float32Array, x: Float32Array, mean: Float32Array, rstd: Float32Array,
    gamma: Float32Array, M: number, C: number,
    dx: Float32Array, accumulate: boolean, dgamma: Float32Array, dbeta: Float32Array,
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
    x: Float32Array, offsets: Int32Array, C: number, gamma: Float32Array, beta: Float32Array,
    eps: number, y: Float32Array | null, gx: Float32Array, nx: Float32Array,
    sqSums?: Float32Array | null,
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
    dy: Float32Array, x: Float32Array, offsets: Int32Array, C: number, gamma: Float32Array,
    eps: number, gx: Float32Array, nx: Float32Array,
    dx: Float32Array, dgamma: Float32Array, dbeta: Float32Array,
    geluPre?: Float32Array | null, dbias?: Float32Array | null,
  ): void;

  /** y = gelu(x), exact erf form, n elements. */
  gelu(x: Float32Array, y: Float32Array, n: number): void;

  /** dx = dy * gelu'(x) where x is the pre-activation; n elements. */
  geluBackward(dy: Float32Array, x: Float32Array, dx: Float32Array, n: number): void;

  /** y[n, c] = mean over HW rows of x[n, hw, c]. x: [N, HW, C], y: [N, C]. */
  avgPoolForward(x: Float32Array, N: number, HW: number, C: number, y: Float32Array): void;

  /** dx[n, hw, c] = dy[n, c] / HW (overwrites dx). */
  avgPoolBackward(dy: Float32Array, N: number, HW: number, C: number, dx: Float32Array): void;

  /**
   * Softmax cross-entropy with soft targets (one-hot, smoothed or mixed labels), N rows of K
   * logits. Returns mean over rows of -sum_k target*log_softmax(logits);
   * writes dlogits = (softmax - target) / N when dlogits is given.
   */
  softmaxCrossEntropy(
    logits: Float32Array, targets: Float32Array, N: number, K: number,
    dlogits: Float32Array | null,
  ): number;

  /**
   * Non-overlapping patch gather (a stride-P, PxP convolution as a GEMM): x [N, H, W, C]
   * channels-last; Ho = floor(H/P), Wo = floor(W/P); cols [N*Ho*Wo, C*P*P] with each row
   * ordered (c, ky, kx) to match PyTorch's conv weight [out, C, P, P] flattened.
   */
  patchify(
    x: Float32Array, N: number, H: number, W: number, C: number, P: number, cols: Float32Array,
  ): void;

  /**
   * Inverse of patchify for gradients: dx [N, H, W, C] = scatter of dcols; positions not
   * covered (the floored border) get 0. Overwrites dx.
   */
  unpatchify(
    dcols: Float32Array, N: number, H: number, W: number, C: number, P: number, dx: Float32Array,
  ): void;

  /** NCHW -> NHWC (src [N, C, H, W] to dst [N, H, W, C]). */
  nchwToNhwc(src: Float32Array, N: number, C: number, H: number, W: number, dst: Float32Array): void;

  /** NHWC -> NCHW (src [N, H, W, C] to dst [N, C, H, W]). */
  nhwcToNchw(src: Float32Array, N: number, H: number, W: number, C: number, dst: Float32Array): void;

  /**
   * out[i] = x[i] + scale[n] * branch[i] for rows of sample n (rowsPerSample rows of C each):
   * the residual add with per-sample drop-path scaling. out may alias x.
   */
  addScaled(
    x: Float32Array, branch: Float32Array, scale: Float32Array, N: number, rowsPerSample: number,
    C: number, out: Float32Array,
  ): void;

  /**
   * One AdamW step on n elements (decoupled weight decay, PyTorch semantics):
   *   p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
   *   p -= lr * (m / bc1) / (sqrt(v / bc2) + eps)
   * where bc1 = 1 - b1^t, bc2 = 1 - b2^t are passed in.
   */
  adamw(
    p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, n: number,
    lr: number, beta1: number, beta2: number, eps: number, weightDecay: number,
    bc1: number, bc2: number,
  ): void;
}
