/**
 * Plain TypeScript implementation of every kernel: the oracle the native kernels are tested
 * against, and a fallback where the addon cannot load. Written for clarity, not speed; sums
 * are accumulated in float64. `new ReferenceKernels({ float64: true })` stores every tensor in
 * float64 too (the gradient checks' oracle, see ReferenceOptions).
 */
import { HostKernels } from './host.js';
import { Act, type Capabilities, type GemmExtras, type Kernels, type TensorMemory } from './types.js';

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/**
 * erf(x) to double precision: erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n x (2x^2)^n / (2n+1)!!,
 * a series of positive terms (no cancellation) that converges for every x; |x| >= 6 gives +-1
 * (erfc(6) < 3e-17).
 */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax >= 6) return x > 0 ? 1 : -1;
  const t = 2 * ax * ax;
  let term = ax;
  let sum = ax;
  for (let n = 1; n < 200; n++) {
    term *= t / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  const r = (2 / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * sum;
  return x < 0 ? -r : r;
}

export function geluScalar(x: number): number {
  return 0.5 * x * (1 + erf(x * SQRT1_2));
}

export function geluGradScalar(x: number): number {
  return 0.5 * (1 + erf(x * SQRT1_2)) + x * INV_SQRT_2PI * Math.exp(-0.5 * x * x);
}

export interface ReferenceOptions {
  /**
   * Tensors in float64 and no rounding to float32 anywhere: the memory allocates Float64Arrays
   * (typed as Float32Array, like every host Buf, so the layers and the model run on them
   * unchanged) and the kernels' few explicit float32 roundings are skipped. For tests that
   * need gradients exact to ~1e-10 (finite differences in float64, test/gradcheck.test.ts).
   * Inputs must be this memory's arrays (Float64Array) or host Float32Arrays; `read` returns
   * Float64Array copies; code that insists on a Float32Array (hostArray: Param.host,
   * model.forward's results) refuses them, use forwardNHWC and the buffers themselves.
   */
  float64?: boolean;
}

/** Float64Arrays behind the Float32Array type: the memory of the float64 reference kernels. */
const float64Memory: TensorMemory = {
  kind: 'host-float64',
  alloc: (n) => new Float64Array(n) as unknown as Float32Array,
  free: () => {},
};

const identity = (x: number): number => x;

export class ReferenceKernels extends HostKernels implements Kernels {
  readonly name = 'reference';
  readonly isa = 'reference' as const;
  readonly threads = 1;
  /** Float64 tensors, nothing rounded to float32 (see ReferenceOptions). */
  readonly float64: boolean;
  declare readonly memory?: TensorMemory;
  /** Math.fround, or the identity in float64. */
  private readonly f32: (x: number) => number;

  constructor(opts: ReferenceOptions = {}) {
    super();
    this.float64 = opts.float64 ?? false;
    // Float32: no memory of its own (host arrays, exactly as before the option existed).
    if (this.float64) this.memory = float64Memory;
    this.f32 = this.float64 ? identity : Math.fround;
  }

  override read(t: Float32Array): Promise<Float32Array> {
    return this.float64 ? Promise.resolve(t.slice()) : super.read(t);
  }

  override capabilities(): Capabilities {
    const c = super.capabilities();
    return this.float64 ? { ...c, description: `${c.description}, float64` } : c;
  }

  gemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number,
    A: Float32Array, lda: number, B: Float32Array, ldb: number, C: Float32Array, ldc: number,
    accumulate: boolean, bias: Float32Array | null, act: Act, preact: Float32Array | null,
    extras: GemmExtras<Float32Array> = {},
  ): void {
    const { aScale = null, aScaleRows = 1, aShift = null, residual = null, sqSums = null, sqGroupRows = 1 } = extras;
    if (sqSums && M % sqGroupRows !== 0) throw new Error('gemm: sqGroupRows must divide M');
    if (aScale && transA) throw new Error('gemm: aScale needs A not transposed');
    if (residual && accumulate) throw new Error('gemm: residual and accumulate cannot be combined');
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const a0 = transA ? A[k * lda + i] : A[i * lda + k];
          const a = aScale ? this.f32(a0 * aScale[Math.floor(i / aScaleRows) * K + k] + (aShift ? aShift[k] : 0)) : a0;
          const b = transB ? B[j * ldb + k] : B[k * ldb + j];
          s += a * b;
        }
        if (accumulate) s += C[i * ldc + j];
        if (residual) s += residual[i * ldc + j];
        if (bias) s += bias[j];
        if (act === Act.Gelu) {
          if (preact) preact[i * ldc + j] = s;
          C[i * ldc + j] = geluScalar(this.f32(s));
        } else {
          C[i * ldc + j] = s;
        }
      }
    }
    if (sqSums) {
      for (let gi = 0; gi < M / sqGroupRows; gi++)
        for (let j = 0; j < N; j++) {
          let t = 0;
          for (let i = gi * sqGroupRows; i < (gi + 1) * sqGroupRows; i++) t += C[i * ldc + j] ** 2;
          sqSums[gi * N + j] = t;
        }
    }
  }

  colSum(x: Float32Array, M: number, N: number, out: Float32Array, accumulate: boolean): void {
    for (let j = 0; j < N; j++) {
      let s = accumulate ? out[j] : 0;
      for (let i = 0; i < M; i++) s += x[i * N + j];
      out[j] = s;
    }
  }

  dwconvForward(
    x: Float32Array, N: number, H: number, W: number, C: number, K: number,
    weight: Float32Array, bias: Float32Array | null, y: Float32Array,
  ): void {
    const P = K >> 1;
    for (let n = 0; n < N; n++) {
      for (let h = 0; h < H; h++) {
        for (let w = 0; w < W; w++) {
          const o = ((n * H + h) * W + w) * C;
          for (let c = 0; c < C; c++) {
            let s = bias ? bias[c] : 0;
            for (let ky = 0; ky < K; ky++) {
              const hh = h + ky - P;
              if (hh < 0 || hh >= H) continue;
              for (let kx = 0; kx < K; kx++) {
                const ww = w + kx - P;
                if (ww < 0 || ww >= W) continue;
                s += x[((n * H + hh) * W + ww) * C + c] * weight[(ky * K + kx) * C + c];
              }
            }
            y[o + c] = s;
          }
        }
      }
    }
  }

  dwconvBackwardInput(
    dy: Float32Array, N: number, H: number, W: number, C: number, K: number,
    weight: Float32Array, dx: Float32Array, accumulate: boolean,
  ): void {
    const P = K >> 1;
    for (let n = 0; n < N; n++) {
      for (let h = 0; h < H; h++) {
        for (let w = 0; w < W; w++) {
          const o = ((n * H + h) * W + w) * C;
          for (let c = 0; c < C; c++) {
            // x[h,w] contributed to y[h - ky + P, w - kx + P] with weight w[ky,kx].
            let s = accumulate ? dx[o + c] : 0;
            for (let ky = 0; ky < K; ky++) {
              const hh = h - ky + P;
              if (hh < 0 || hh >= H) continue;
              for (let kx = 0; kx < K; kx++) {
                const ww = w - kx + P;
                if (ww < 0 || ww >= W) continue;
                s += dy[((n * H + hh) * W + ww) * C + c] * weight[(ky * K + kx) * C + c];
              }
            }
            dx[o + c] = s;
          }
        }
      }
    }
  }

  dwconvBackwardWeight(
    dy: Float32Array, x: Float32Array, N: number, H: number, W: number, C: number, K: number,
    dweight: Float32Array, dbias: Float32Array | null,
  ): void {
    const P = K >> 1;
    for (let c = 0; c < C; c++) {
      if (dbias) {
        let s = 0;
        for (let i = 0; i < N * H * W; i++) s += dy[i * C + c];
        dbias[c] += s;
      }
      for (let ky = 0; ky < K; ky++) {
        for (let kx = 0; kx < K; kx++) {
          let s = 0;
          for (let n = 0; n < N; n++) {
            for (let h = 0; h < H; h++) {
              const hh = h + ky - P;
              if (hh < 0 || hh >= H) continue;
              for (let w = 0; w < W; w++) {
                const ww = w + kx - P;
                if (ww < 0 || ww >= W) continue;
                s += dy[((n * H + h) * W + w) * C + c] * x[((n * H + hh) * W + ww) * C + c];
              }
            }
          }
          dweight[(ky * K + kx) * C + c] += s;
        }
      }
    }
  }

  dwconvForwardRows(
    x: Float32Array, rowOf: Int32Array, idx: Int32Array,
    S: number, N: number, H: number, W: number, C: number, K: number,
    weight: Float32Array, bias: Float32Array | null, y: Float32Array,
  ): void {
    const P = K >> 1;
    const HW = H * W;
    for (let r = 0; r < S; r++) {
      const p = idx[r];
      const n = Math.floor(p / HW);
      const h = Math.floor((p - n * HW) / W);
      const w = p - n * HW - h * W;
      for (let c = 0; c < C; c++) {
        let s = bias ? bias[c] : 0;
        for (let ky = 0; ky < K; ky++) {
          const hh = h + ky - P;
          if (hh < 0 || hh >= H) continue;
          for (let kx = 0; kx < K; kx++) {
            const ww = w + kx - P;
            if (ww < 0 || ww >= W) continue;
            const j = rowOf[(n * H + hh) * W + ww];
            if (j < 0 || j >= S) continue;
            s += x[j * C + c] * weight[(ky * K + kx) * C + c];
          }
        }
        y[r * C + c] = s;
      }
    }
  }

  dwconvBackwardInputRows(
    dy: Float32Array, rowOf: Int32Array, idx: Int32Array,
    S: number, N: number, H: number, W: number, C: number, K: number,
    weight: Float32Array, dx: Float32Array, accumulate: boolean,
  ): void {
    const P = K >> 1;
    const HW = H * W;
    for (let r = 0; r < S; r++) {
      const p = idx[r];
      const n = Math.floor(p / HW);
      const h = Math.floor((p - n * HW) / W);
      const w = p - n * HW - h * W;
      for (let c = 0; c < C; c++) {
        // x[h,w] contributed to the visible outputs y[h - ky + P, w - kx + P] with weight w[ky,kx].
        let s = accumulate ? dx[r * C + c] : 0;
        for (let ky = 0; ky < K; ky++) {
          const hh = h - ky + P;
          if (hh < 0 || hh >= H) continue;
          for (let kx = 0; kx < K; kx++) {
            const ww = w - kx + P;
            if (ww < 0 || ww >= W) continue;
            const j = rowOf[(n * H + hh) * W + ww];
            if (j < 0 || j >= S) continue;
            s += dy[j * C + c] * weight[(ky * K + kx) * C + c];
          }
        }
        dx[r * C + c] = s;
      }
    }
  }

  dwconvBackwardWeightRows(
    dy: Float32Array, x: Float32Array, rowOf: Int32Array, idx: Int32Array,
    S: number, N: number, H: number, W: number, C: number, K: number,
    dweight: Float32Array, dbias: Float32Array | null,
  ): void {
    const P = K >> 1;
    const HW = H * W;
    const dw = new Float64Array(K * K * C);
    const db = new Float64Array(C);
    for (let r = 0; r < S; r++) {
      const p = idx[r];
      const n = Math.floor(p / HW);
      const h = Math.floor((p - n * HW) / W);
      const w = p - n * HW - h * W;
      for (let c = 0; c < C; c++) db[c] += dy[r * C + c];
      for (let ky = 0; ky < K; ky++) {
        const hh = h + ky - P;
        if (hh < 0 || hh >= H) continue;
        for (let kx = 0; kx < K; kx++) {
          const ww = w + kx - P;
          if (ww < 0 || ww >= W) continue;
          const j = rowOf[(n * H + hh) * W + ww];
          if (j < 0 || j >= S) continue;
          const t = (ky * K + kx) * C;
          for (let c = 0; c < C; c++) dw[t + c] += dy[r * C + c] * x[j * C + c];
        }
      }
    }
    for (let i = 0; i < K * K * C; i++) dweight[i] += dw[i];
    if (dbias) for (let c = 0; c < C; c++) dbias[c] += db[c];
  }

  layerNormForward(
    x: Float32Array, M: number, C: number, gamma: Float32Array, beta: Float32Array, eps: number,
    y: Float32Array, mean: Float32Array, rstd: Float32Array,
  ): void {
    for (let i = 0; i < M; i++) {
      const o = i * C;
      let s = 0;
      for (let c = 0; c < C; c++) s += x[o + c];
      const mu = s / C;
      let v = 0;
      for (let c = 0; c < C; c++) v += (x[o + c] - mu) ** 2;
      const r = 1 / Math.sqrt(v / C + eps);
      mean[i] = mu;
      rstd[i] = r;
      for (let c = 0; c < C; c++) y[o + c] = (x[o + c] - mu) * r * gamma[c] + beta[c];
    }
  }

  layerNormBackward(
    dy: Float32Array, x: Float32Array, mean: Float32Array, rstd: Float32Array,
    gamma: Float32Array, M: number, C: number,
    dx: Float32Array, accumulate: boolean, dgamma: Float32Array, dbeta: Float32Array,
  ): void {
    const dg = new Float64Array(C);
    const db = new Float64Array(C);
    for (let i = 0; i < M; i++) {
      const o = i * C;
      const mu = mean[i];
      const r = rstd[i];
      let sg = 0;
      let sgx = 0;
      for (let c = 0; c < C; c++) {
        const xh = (x[o + c] - mu) * r;
        const g = dy[o + c] * gamma[c];
        sg += g;
        sgx += g * xh;
        dg[c] += dy[o + c] * xh;
        db[c] += dy[o + c];
      }
      sg /= C;
      sgx /= C;
      for (let c = 0; c < C; c++) {
        const xh = (x[o + c] - mu) * r;
        const v = r * (dy[o + c] * gamma[c] - sg - xh * sgx);
        dx[o + c] = accumulate ? dx[o + c] + v : v;
      }
    }
    for (let c = 0; c < C; c++) {
      dgamma[c] += dg[c];
      dbeta[c] += db[c];
    }
  }

  grnForward(
    x: Float32Array, offsets: Int32Array, C: number, gamma: Float32Array, beta: Float32Array,
    eps: number, y: Float32Array | null, gx: Float32Array, nx: Float32Array,
    sqSums: Float32Array | null = null,
  ): void {
    const S = offsets.length - 1;
    for (let s = 0; s < S; s++) {
      let mean = 0;
      for (let c = 0; c < C; c++) {
        let ss = 0;
        if (sqSums) ss = sqSums[s * C + c];
        else for (let i = offsets[s]; i < offsets[s + 1]; i++) ss += x[i * C + c] ** 2;
        gx[s * C + c] = Math.sqrt(ss);
        mean += Math.sqrt(ss);
      }
      const d = mean / C + eps;
      for (let c = 0; c < C; c++) nx[s * C + c] = gx[s * C + c] / d;
      if (!y) continue;
      for (let i = offsets[s]; i < offsets[s + 1]; i++) {
        for (let c = 0; c < C; c++) {
          const v = x[i * C + c];
          y[i * C + c] = gamma[c] * (v * nx[s * C + c]) + beta[c] + v;
        }
      }
    }
  }

  grnBackward(
    dy: Float32Array, x: Float32Array, offsets: Int32Array, C: number, gamma: Float32Array,
    eps: number, gx: Float32Array, nx: Float32Array,
    dx: Float32Array, dgamma: Float32Array, dbeta: Float32Array,
    geluPre: Float32Array | null = null, dbias: Float32Array | null = null,
  ): void {
    const S = offsets.length - 1;
    const a = new Float64Array(C);
    const dG = new Float64Array(C);
    const dgAcc = new Float64Array(C);
    const dbAcc = new Float64Array(C);
    for (let s = 0; s < S; s++) {
      let mean = 0;
      for (let c = 0; c < C; c++) mean += gx[s * C + c];
      const D = mean / C + eps;
      for (let c = 0; c < C; c++) {
        let sdx = 0;
        let sd = 0;
        for (let i = offsets[s]; i < offsets[s + 1]; i++) {
          sdx += dy[i * C + c] * x[i * C + c];
          sd += dy[i * C + c];
        }
        a[c] = gamma[c] * sdx;
        dgAcc[c] += sdx * nx[s * C + c];
        dbAcc[c] += sd;
      }
      let t = 0;
      for (let c = 0; c < C; c++) t += a[c] * gx[s * C + c];
      t /= C * D * D;
      for (let c = 0; c < C; c++) dG[c] = a[c] / D - t;
      for (let i = offsets[s]; i < offsets[s + 1]; i++) {
        for (let c = 0; c < C; c++) {
          const g = gx[s * C + c];
          const v = x[i * C + c];
          dx[i * C + c] = dy[i * C + c] * (1 + gamma[c] * nx[s * C + c]) + (g > 0 ? dG[c] * v / g : 0);
          if (geluPre) dx[i * C + c] *= geluGradScalar(geluPre[i * C + c]);
        }
      }
    }
    if (dbias) {
      const rows = offsets[S] - offsets[0];
      const sums = new Float64Array(C);
      for (let i = offsets[0]; i < offsets[0] + rows; i++) for (let c = 0; c < C; c++) sums[c] += dx[i * C + c];
      for (let c = 0; c < C; c++) dbias[c] += sums[c];
    }
    for (let c = 0; c < C; c++) {
      dgamma[c] += dgAcc[c];
      dbeta[c] += dbAcc[c];
    }
  }

  gelu(x: Float32Array, y: Float32Array, n: number): void {
    for (let i = 0; i < n; i++) y[i] = geluScalar(x[i]);
  }

  geluBackward(dy: Float32Array, x: Float32Array, dx: Float32Array, n: number): void {
    for (let i = 0; i < n; i++) dx[i] = dy[i] * geluGradScalar(x[i]);
  }

  avgPoolForward(x: Float32Array, N: number, HW: number, C: number, y: Float32Array): void {
    for (let n = 0; n < N; n++) {
      for (let c = 0; c < C; c++) {
        let s = 0;
        for (let i = 0; i < HW; i++) s += x[(n * HW + i) * C + c];
        y[n * C + c] = s / HW;
      }
    }
  }

  avgPoolBackward(dy: Float32Array, N: number, HW: number, C: number, dx: Float32Array): void {
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < HW; i++) {
        for (let c = 0; c < C; c++) dx[(n * HW + i) * C + c] = dy[n * C + c] / HW;
      }
    }
  }

  protected crossEntropy(
    logits: Float32Array, targets: Float32Array, N: number, K: number, dlogits: Float32Array | null,
  ): number {
    let loss = 0;
    for (let n = 0; n < N; n++) {
      const o = n * K;
      let mx = -Infinity;
      for (let k = 0; k < K; k++) mx = Math.max(mx, logits[o + k]);
      let se = 0;
      for (let k = 0; k < K; k++) se += Math.exp(logits[o + k] - mx);
      const lse = mx + Math.log(se);
      for (let k = 0; k < K; k++) {
        const t = targets[o + k];
        if (t !== 0) loss -= t * (logits[o + k] - lse);
        if (dlogits) dlogits[o + k] = (Math.exp(logits[o + k] - lse) - t) / N;
      }
    }
    return loss / N;
  }

  patchify(x: Float32Array, N: number, H: number, W: number, C: number, P: number, cols: Float32Array): void {
    const Ho = Math.floor(H / P);
    const Wo = Math.floor(W / P);
    const L = C * P * P;
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < Ho; i++) {
        for (let j = 0; j < Wo; j++) {
          const r = ((n * Ho + i) * Wo + j) * L;
          for (let c = 0; c < C; c++) {
            for (let ky = 0; ky < P; ky++) {
              for (let kx = 0; kx < P; kx++) {
                cols[r + (c * P + ky) * P + kx] = x[((n * H + i * P + ky) * W + j * P + kx) * C + c];
              }
            }
          }
        }
      }
    }
  }

  unpatchify(dcols: Float32Array, N: number, H: number, W: number, C: number, P: number, dx: Float32Array): void {
    const Ho = Math.floor(H / P);
    const Wo = Math.floor(W / P);
    const L = C * P * P;
    dx.fill(0, 0, N * H * W * C);
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < Ho; i++) {
        for (let j = 0; j < Wo; j++) {
          const r = ((n * Ho + i) * Wo + j) * L;
          for (let c = 0; c < C; c++) {
            for (let ky = 0; ky < P; ky++) {
              for (let kx = 0; kx < P; kx++) {
                dx[((n * H + i * P + ky) * W + j * P + kx) * C + c] = dcols[r + (c * P + ky) * P + kx];
              }
            }
          }
        }
      }
    }
  }

  nchwToNhwc(src: Float32Array, N: number, C: number, H: number, W: number, dst: Float32Array): void {
    for (let n = 0; n < N; n++) {
      for (let c = 0; c < C; c++) {
        for (let i = 0; i < H * W; i++) dst[(n * H * W + i) * C + c] = src[(n * C + c) * H * W + i];
      }
    }
  }

  nhwcToNchw(src: Float32Array, N: number, H: number, W: number, C: number, dst: Float32Array): void {
    for (let n = 0; n < N; n++) {
      for (let c = 0; c < C; c++) {
        for (let i = 0; i < H * W; i++) dst[(n * C + c) * H * W + i] = src[(n * H * W + i) * C + c];
      }
    }
  }

  addScaled(
    x: Float32Array, branch: Float32Array, scale: Float32Array, N: number, rowsPerSample: number,
    C: number, out: Float32Array,
  ): void {
    const per = rowsPerSample * C;
    for (let n = 0; n < N; n++) {
      const s = scale[n];
      for (let i = n * per; i < (n + 1) * per; i++) out[i] = x[i] + s * branch[i];
    }
  }

  adamw(
    p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, n: number,
    lr: number, beta1: number, beta2: number, eps: number, weightDecay: number,
    bc1: number, bc2: number,
  ): void {
    const decay = 1 - lr * weightDecay;
    for (let i = 0; i < n; i++) {
      const gi = g[i];
      const mi = beta1 * m[i] + (1 - beta1) * gi;
      const vi = beta2 * v[i] + (1 - beta2) * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] = p[i] * decay - lr * (mi / bc1) / (Math.sqrt(vi / bc2) + eps);
    }
  }
}

/** Kernels for host arrays, whichever host backend made them (the small kernels are shared): EMA, clipping, targets of host parameters. */
export const hostKernels: Kernels = new ReferenceKernels();
