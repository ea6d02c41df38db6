// Elementwise and data-movement kernels: GELU, pooling, softmax cross-entropy, patchify,
// layout conversion, residual add, AdamW. Included inside an ISA namespace after S, vmath.h.

static constexpr i64 EW_BLOCK = 16384;  // elements per task for elementwise kernels

static inline int mlanes(i64 n, i64 i) { return (int)(n - i < S::W ? n - i : S::W); }

static void gelu(const float* x, float* y, i64 n) {
  parallel_for((n + EW_BLOCK - 1) / EW_BLOCK, [&](i64 t) {
    const i64 i0 = t * EW_BLOCK, i1 = i0 + EW_BLOCK < n ? i0 + EW_BLOCK : n;
    i64 i = i0;
    for (; i + S::W <= i1; i += S::W) S::store(y + i, v_gelu(S::load(x + i)));
    if (i < i1) S::store_n(y + i, v_gelu(S::load_n(x + i, (int)(i1 - i))), (int)(i1 - i));
  });
}

static void gelu_bwd(const float* dy, const float* x, float* dx, i64 n) {
  parallel_for((n + EW_BLOCK - 1) / EW_BLOCK, [&](i64 t) {
    const i64 i0 = t * EW_BLOCK, i1 = i0 + EW_BLOCK < n ? i0 + EW_BLOCK : n;
    i64 i = i0;
    for (; i + S::W <= i1; i += S::W) S::store(dx + i, S::mul(S::load(dy + i), v_gelu_grad(S::load(x + i))));
    if (i < i1) {
      const int k = (int)(i1 - i);
      S::store_n(dx + i, S::mul(S::load_n(dy + i, k), v_gelu_grad(S::load_n(x + i, k))), k);
    }
  });
}

static void avgpool_fwd(const float* x, i64 N, i64 HW, i64 C, float* y) {
  if (N <= 0 || C <= 0) return;
  const float inv = HW > 0 ? 1.0f / (float)HW : 0.0f;
  (void)inv;
  const i64 CB = 64;  // channels per task
  const i64 ncb = (C + CB - 1) / CB;
  parallel_for(N * ncb, [&](i64 t) {
    const i64 n = t / ncb, c0 = (t % ncb) * CB, c1 = c0 + CB < C ? c0 + CB : C;
    const float* xn = x + n * HW * C;
    for (i64 c = c0; c < c1; c += S::W) {
      const int k = mlanes(c1, c);
      S::v a = S::zero();
      for (i64 r = 0; r < HW; ++r) a = S::add(a, S::load_n(xn + r * C + c, k));
      S::store_n(y + n * C + c, HW > 0 ? S::div(a, S::set1((float)HW)) : S::zero(), k);
    }
  });
}

static void avgpool_bwd(const float* dy, i64 N, i64 HW, i64 C, float* dx) {
  if (N <= 0 || C <= 0 || HW <= 0) return;
  const S::v hw = S::set1((float)HW);
  parallel_for(N, [&](i64 n) {
    float* dn = dx + n * HW * C;
    for (i64 c = 0; c < C; c += S::W) {
      const int k = mlanes(C, c);
      const S::v g = S::div(S::load_n(dy + n * C + c, k), hw);
      if (k == S::W)
        for (i64 r = 0; r < HW; ++r) S::store(dn + r * C + c, g);
      else
        for (i64 r = 0; r < HW; ++r) S::store_n(dn + r * C + c, g, k);
    }
  });
}

static double softmax_ce(const float* logits, const float* targets, i64 N, i64 K,
                         float* dlogits) {
  if (N <= 0) return 0.0;
  // Per-row losses in double (rows in parallel), summed in row order.
  double* rowLoss = reinterpret_cast<double*>(scratch(1, (size_t)(2 * N + 16)));
  const i64 RB = 16;
  parallel_for((N + RB - 1) / RB, [&](i64 task) {
    const i64 i0 = task * RB, i1 = i0 + RB < N ? i0 + RB : N;
    for (i64 i = i0; i < i1; ++i) {
      const float* l = logits + i * K;
      const float* t = targets + i * K;
      double mx = -HUGE_VAL;
      for (i64 k = 0; k < K; ++k) mx = l[k] > mx ? l[k] : mx;
      double se = 0.0;
      for (i64 k = 0; k < K; ++k) se += std::exp((double)l[k] - mx);
      const double lse = mx + std::log(se);
      double row = 0.0;
      for (i64 k = 0; k < K; ++k)
        if (t[k] != 0.0f) row -= (double)t[k] * ((double)l[k] - lse);
      rowLoss[i] = row;
      if (dlogits) {
        float* d = dlogits + i * K;
        const double inv = 1.0 / se;
        for (i64 k = 0; k < K; ++k)
          d[k] = (float)((std::exp((double)l[k] - mx) * inv - (double)t[k]) / (double)N);
      }
    }
  });
  double total = 0.0;
  for (i64 i = 0; i < N; ++i) total += rowLoss[i];
  return total / (double)N;
}

static void patchify(const float* x, i64 N, i64 H, i64 W, i64 C, i64 P, float* cols) {
  const i64 Ho = H / P, Wo = W / P;
  const i64 rowLen = C * P * P;
  if (N <= 0 || Ho <= 0 || Wo <= 0 || C <= 0) return;
  parallel_for(N * Ho, [&](i64 t) {
    const i64 n = t / Ho, ho = t % Ho;
    for (i64 wo = 0; wo < Wo; ++wo) {
      float* row = cols + ((n * Ho + ho) * Wo + wo) * rowLen;
      for (i64 ky = 0; ky < P; ++ky)
        for (i64 kx = 0; kx < P; ++kx) {
          const float* src = x + ((n * H + ho * P + ky) * W + wo * P + kx) * C;
          float* dst = row + ky * P + kx;
          for (i64 c = 0; c < C; ++c) dst[c * P * P] = src[c];
        }
    }
  });
}

static void unpatchify(const float* dcols, i64 N, i64 H, i64 W, i64 C, i64 P, float* dx) {
  const i64 Ho = H / P, Wo = W / P;
  const i64 rowLen = C * P * P;
  if (N <= 0 || H <= 0 || W <= 0 || C <= 0) return;
  parallel_for(N * H, [&](i64 t) {
    const i64 n = t / H, h = t % H;
    const i64 ho = h / P, ky = h % P;
    for (i64 w = 0; w < W; ++w) {
      float* dst = dx + ((n * H + h) * W + w) * C;
      const i64 wo = w / P, kx = w % P;
      if (ho >= Ho || wo >= Wo) {
        for (i64 c = 0; c < C; ++c) dst[c] = 0.0f;
        continue;
      }
      const float* src = dcols + ((n * Ho + ho) * Wo + wo) * rowLen + ky * P + kx;
      for (i64 c = 0; c < C; ++c) dst[c] = src[c * P * P];
    }
  });
}

// [N, A, B] -> [N, B, A] (a plane transpose), in 32 x 32 tiles.
static void transpose_planes(const float* src, i64 N, i64 A, i64 B, float* dst) {
  if (N <= 0 || A <= 0 || B <= 0) return;
  const i64 T = 32;
  const i64 ta = (A + T - 1) / T;
  parallel_for(N * ta, [&](i64 t) {
    const i64 n = t / ta, a0 = (t % ta) * T, a1 = a0 + T < A ? a0 + T : A;
    const float* s = src + n * A * B;
    float* d = dst + n * A * B;
    for (i64 b0 = 0; b0 < B; b0 += T) {
      const i64 b1 = b0 + T < B ? b0 + T : B;
      for (i64 b = b0; b < b1; ++b)
        for (i64 a = a0; a < a1; ++a) d[b * A + a] = s[a * B + b];
    }
  });
}

static void nchw_to_nhwc(const float* src, i64 N, i64 C, i64 H, i64 W, float* dst) {
  transpose_planes(src, N, C, H * W, dst);
}
static void nhwc_to_nchw(const float* src, i64 N, i64 H, i64 W, i64 C, float* dst) {
  transpose_planes(src, N, H * W, C, dst);
}

static void add_scaled(const float* x, const float* branch, const float* scale, i64 N,
                       i64 rowsPerSample, i64 C, float* out) {
  const i64 per = rowsPerSample * C;
  if (N <= 0 || per <= 0) return;
  const i64 nb = (per + EW_BLOCK - 1) / EW_BLOCK;
  parallel_for(N * nb, [&](i64 t) {
    const i64 n = t / nb, i0 = n * per + (t % nb) * EW_BLOCK;
    const i64 i1 = i0 + EW_BLOCK < (n + 1) * per ? i0 + EW_BLOCK : (n + 1) * per;
    const S::v sc = S::set1(scale[n]);
    i64 i = i0;
    for (; i + S::W <= i1; i += S::W) S::store(out + i, S::fma(sc, S::load(branch + i), S::load(x + i)));
    if (i < i1) {
      const int k = (int)(i1 - i);
      S::store_n(out + i, S::fma(sc, S::load_n(branch + i, k), S::load_n(x + i, k)), k);
    }
  });
}

static void adamw(float* p, const float* g, float* m, float* v, i64 n, double lr, double beta1,
                  double beta2, double eps, double wd, double bc1, double bc2) {
  const S::v decay = S::set1((float)(1.0 - lr * wd));
  const S::v b1 = S::set1((float)beta1), c1 = S::set1((float)(1.0 - beta1));
  const S::v b2 = S::set1((float)beta2), c2 = S::set1((float)(1.0 - beta2));
  const S::v step = S::set1((float)(lr / bc1));
  const S::v isb2 = S::set1((float)(1.0 / std::sqrt(bc2)));
  const S::v ve = S::set1((float)eps);
  parallel_for((n + EW_BLOCK - 1) / EW_BLOCK, [&](i64 t) {
    const i64 i0 = t * EW_BLOCK, i1 = i0 + EW_BLOCK < n ? i0 + EW_BLOCK : n;
    for (i64 i = i0; i < i1; i += S::W) {
      const int k = mlanes(i1, i);
      const S::v gv = S::load_n(g + i, k);
      const S::v mv = S::fma(b1, S::load_n(m + i, k), S::mul(c1, gv));
      const S::v vv = S::fma(b2, S::load_n(v + i, k), S::mul(c2, S::mul(gv, gv)));
      const S::v den = S::add(S::mul(S::sqrt(vv), isb2), ve);
      S::v pv = S::mul(S::load_n(p + i, k), decay);
      pv = S::sub(pv, S::div(S::mul(step, mv), den));
      S::store_n(m + i, mv, k);
      S::store_n(v + i, vv, k);
      S::store_n(p + i, pv, k);
    }
  });
}

// The FMA peak: independent accumulator chains, as many as the register file holds beside the
// two constants (3/4 of it: 24 on AVX-512's 32 registers, 12 on AVX2's 16). Two FMA pipes of
// 4-5 cycles latency need 8-10 chains to stay busy; more chains than registers would spill
// every chain to memory each iteration and measure loads and stores instead.
static constexpr int BURN_CHAINS = S::REGS * 3 / 4;
static double fma_burn(i64 iters, float* sink) {
  S::v a[BURN_CHAINS];
  const S::v m = S::set1(0.999999f), c = S::set1(1e-7f);
#pragma GCC unroll 32
  for (int i = 0; i < BURN_CHAINS; ++i) a[i] = S::set1((float)i);
  for (i64 it = 0; it < iters; ++it) {
#pragma GCC unroll 32
    for (int i = 0; i < BURN_CHAINS; ++i) a[i] = S::fma(a[i], m, c);
  }
  S::v s = a[0];
#pragma GCC unroll 32
  for (int i = 1; i < BURN_CHAINS; ++i) s = S::add(s, a[i]);
  *sink = S::hsum(s);
  return 2.0 * BURN_CHAINS * S::W * (double)iters;
}

static void copy(const float* src, float* dst, i64 n) {
  parallel_for((n + EW_BLOCK - 1) / EW_BLOCK, [&](i64 t) {
    const i64 i0 = t * EW_BLOCK, i1 = i0 + EW_BLOCK < n ? i0 + EW_BLOCK : n;
    i64 i = i0;
    for (; i + S::W <= i1; i += S::W) S::store(dst + i, S::load(src + i));
    if (i < i1) S::store_n(dst + i, S::load_n(src + i, (int)(i1 - i)), (int)(i1 - i));
  });
}

void fill_misc(KernelTable& t) {
  t.fma_burn = &fma_burn;
  t.copy = &copy;
  t.gelu = &gelu;
  t.gelu_bwd = &gelu_bwd;
  t.avgpool_fwd = &avgpool_fwd;
  t.avgpool_bwd = &avgpool_bwd;
  t.softmax_ce = &softmax_ce;
  t.patchify = &patchify;
  t.unpatchify = &unpatchify;
  t.nchw_to_nhwc = &nchw_to_nhwc;
  t.nhwc_to_nchw = &nhwc_to_nchw;
  t.add_scaled = &add_scaled;
  t.adamw = &adamw;
}
