// Depthwise KxK convolution (stride 1, zero padding K/2), channels-last, vectorised over
// channels (the last vector of a row masked when C is not a multiple of the width).
// Included inside an ISA namespace after S. Requires threadpool.h and kernels.h.

static constexpr int DWS = S::W >= 16 ? 8 : 4;  // output positions per register strip

// y[x0..x0+WS) (+)= sum_ky,kx src[h+ky-P, x+kx-P] * w(ky, kx) (+ bias), one channel vector.
// flip: use w(K-1-ky, K-1-kx) (the input gradient).
template <int KK, int WS, bool IN, bool FULL>
static inline void dw_strip(const float* src, i64 H, i64 Wd, i64 C, const float* w,
                            const float* bias, bool flip, bool acc, i64 h, i64 x0, i64 cb,
                            int nl, float* y) {
  constexpr int K = KK, P = KK / 2;
  S::v a[WS];
  const S::v b0 = bias ? (FULL ? S::load(bias + cb) : S::load_n(bias + cb, nl)) : S::zero();
#pragma GCC unroll 8
  for (int s = 0; s < WS; ++s) a[s] = b0;
  for (int ky = 0; ky < K; ++ky) {
    const i64 hy = h + ky - P;
    if (hy < 0 || hy >= H) continue;
    const float* xr = src + hy * Wd * C + cb;
    const int wky = flip ? K - 1 - ky : ky;
    S::v xs[WS + K - 1];
#pragma GCC unroll 16
    for (int i = 0; i < WS + K - 1; ++i) {
      const i64 xi = x0 - P + i;
      if (IN || (xi >= 0 && xi < Wd))
        xs[i] = FULL ? S::load(xr + xi * C) : S::load_n(xr + xi * C, nl);
      else
        xs[i] = S::zero();
    }
#pragma GCC unroll 8
    for (int kx = 0; kx < K; ++kx) {
      const float* wp = w + (i64)(wky * K + (flip ? K - 1 - kx : kx)) * C + cb;
      const S::v wk = FULL ? S::load(wp) : S::load_n(wp, nl);
#pragma GCC unroll 8
      for (int s = 0; s < WS; ++s) a[s] = S::fma(xs[s + kx], wk, a[s]);
    }
  }
#pragma GCC unroll 8
  for (int s = 0; s < WS; ++s) {
    float* yp = y + (x0 + s) * C + cb;
    if (acc) a[s] = S::add(a[s], FULL ? S::load(yp) : S::load_n(yp, nl));
    if (FULL)
      S::store(yp, a[s]);
    else
      S::store_n(yp, a[s], nl);
  }
}

template <int KK, bool FULL>
static void dw_row_cb(const float* src, i64 H, i64 Wd, i64 C, const float* w, const float* bias,
                      bool flip, bool acc, i64 h, i64 cb, int nl, float* y) {
  constexpr int P = KK / 2;
  i64 x = 0;
  for (; x < Wd && x < P; ++x) dw_strip<KK, 1, false, FULL>(src, H, Wd, C, w, bias, flip, acc, h, x, cb, nl, y);
  for (; x + DWS + P <= Wd; x += DWS)
    dw_strip<KK, DWS, true, FULL>(src, H, Wd, C, w, bias, flip, acc, h, x, cb, nl, y);
  for (; x < Wd; ++x) dw_strip<KK, 1, false, FULL>(src, H, Wd, C, w, bias, flip, acc, h, x, cb, nl, y);
}

// Any odd K: plain loops.
static void dw_row_generic(const float* src, i64 H, i64 Wd, i64 C, int K, const float* w,
                           const float* bias, bool flip, bool acc, i64 h, float* y) {
  const int P = K / 2;
  for (i64 x = 0; x < Wd; ++x)
    for (i64 cb = 0; cb < C; cb += S::W) {
      const int nl = (int)(C - cb < S::W ? C - cb : S::W);
      S::v a = bias ? S::load_n(bias + cb, nl) : S::zero();
      for (int ky = 0; ky < K; ++ky) {
        const i64 hy = h + ky - P;
        if (hy < 0 || hy >= H) continue;
        const int wky = flip ? K - 1 - ky : ky;
        for (int kx = 0; kx < K; ++kx) {
          const i64 xi = x + kx - P;
          if (xi < 0 || xi >= Wd) continue;
          const int wkx = flip ? K - 1 - kx : kx;
          a = S::fma(S::load_n(src + (hy * Wd + xi) * C + cb, nl),
                     S::load_n(w + (i64)(wky * K + wkx) * C + cb, nl), a);
        }
      }
      float* yp = y + x * C + cb;
      if (acc) a = S::add(a, S::load_n(yp, nl));
      S::store_n(yp, a, nl);
    }
}

static void dw_rows(const float* src, i64 N, i64 H, i64 Wd, i64 C, int K, const float* w,
                    const float* bias, bool flip, bool acc, float* dst) {
  if (N <= 0 || H <= 0 || Wd <= 0 || C <= 0) return;
  const i64 img = H * Wd * C;
  parallel_for(N * H, [&](i64 r) {
    const i64 n = r / H, h = r % H;
    const float* s = src + n * img;
    float* y = dst + n * img + h * Wd * C;
    if (K == 7) {
      for (i64 cb = 0; cb < C; cb += S::W) {
        const int nl = (int)(C - cb < S::W ? C - cb : S::W);
        if (nl == S::W)
          dw_row_cb<7, true>(s, H, Wd, C, w, bias, flip, acc, h, cb, nl, y);
        else
          dw_row_cb<7, false>(s, H, Wd, C, w, bias, flip, acc, h, cb, nl, y);
      }
    } else if (K == 3) {
      for (i64 cb = 0; cb < C; cb += S::W) {
        const int nl = (int)(C - cb < S::W ? C - cb : S::W);
        if (nl == S::W)
          dw_row_cb<3, true>(s, H, Wd, C, w, bias, flip, acc, h, cb, nl, y);
        else
          dw_row_cb<3, false>(s, H, Wd, C, w, bias, flip, acc, h, cb, nl, y);
      }
    } else {
      dw_row_generic(s, H, Wd, C, K, w, bias, flip, acc, h, y);
    }
  });
}

static void dwconv_fwd(const float* x, i64 N, i64 H, i64 W, i64 C, int K, const float* w,
                       const float* bias, float* y) {
  dw_rows(x, N, H, W, C, K, w, bias, false, false, y);
}

static void dwconv_bwd_in(const float* dy, i64 N, i64 H, i64 W, i64 C, int K, const float* w,
                          float* dx, bool accumulate) {
  dw_rows(dy, N, H, W, C, K, w, nullptr, true, accumulate, dx);
}

// Weight gradient for one output row (n, h) and one channel vector, taps of row ky:
// acc[kx] += sum_x src[hy, x+kx-P] * dy[h, x].
template <int KK, int WS, bool IN, bool FULL>
static inline void dww_strip(const float* xr, const float* dyr, i64 Wd, i64 C, i64 x0, int nl,
                             S::v* acc) {
  constexpr int K = KK, P = KK / 2;
  S::v xs[WS + K - 1], d[WS];
#pragma GCC unroll 16
  for (int i = 0; i < WS + K - 1; ++i) {
    const i64 xi = x0 - P + i;
    if (IN || (xi >= 0 && xi < Wd))
      xs[i] = FULL ? S::load(xr + xi * C) : S::load_n(xr + xi * C, nl);
    else
      xs[i] = S::zero();
  }
#pragma GCC unroll 8
  for (int s = 0; s < WS; ++s) d[s] = FULL ? S::load(dyr + (x0 + s) * C) : S::load_n(dyr + (x0 + s) * C, nl);
#pragma GCC unroll 8
  for (int kx = 0; kx < K; ++kx)
#pragma GCC unroll 8
    for (int s = 0; s < WS; ++s) acc[kx] = S::fma(xs[s + kx], d[s], acc[kx]);
}

template <int KK, bool FULL>
static void dww_row(const float* xi, const float* dyi, i64 H, i64 Wd, i64 C, i64 h, i64 cb,
                    int nl, float* part /* [(K*K+1) x C] */) {
  constexpr int K = KK, P = KK / 2;
  const float* dyr = dyi + h * Wd * C + cb;
  for (int ky = 0; ky < K; ++ky) {
    const i64 hy = h + ky - P;
    if (hy < 0 || hy >= H) continue;
    const float* xr = xi + hy * Wd * C + cb;
    S::v acc[K];
    float* pp = part + (i64)ky * K * C + cb;
#pragma GCC unroll 8
    for (int kx = 0; kx < K; ++kx) acc[kx] = FULL ? S::load(pp + kx * C) : S::load_n(pp + kx * C, nl);
    i64 x = 0;
    for (; x < Wd && x < P; ++x) dww_strip<KK, 1, false, FULL>(xr, dyr, Wd, C, x, nl, acc);
    for (; x + DWS + P <= Wd; x += DWS) dww_strip<KK, DWS, true, FULL>(xr, dyr, Wd, C, x, nl, acc);
    for (; x < Wd; ++x) dww_strip<KK, 1, false, FULL>(xr, dyr, Wd, C, x, nl, acc);
#pragma GCC unroll 8
    for (int kx = 0; kx < K; ++kx) {
      if (FULL)
        S::store(pp + kx * C, acc[kx]);
      else
        S::store_n(pp + kx * C, acc[kx], nl);
    }
  }
  // bias: sum of dy over the row
  S::v b = FULL ? S::load(part + (i64)K * K * C + cb) : S::load_n(part + (i64)K * K * C + cb, nl);
  for (i64 x = 0; x < Wd; ++x) b = S::add(b, FULL ? S::load(dyr + x * C) : S::load_n(dyr + x * C, nl));
  if (FULL)
    S::store(part + (i64)K * K * C + cb, b);
  else
    S::store_n(part + (i64)K * K * C + cb, b, nl);
}

static void dww_row_generic(const float* xi, const float* dyi, i64 H, i64 Wd, i64 C, int K,
                            i64 h, float* part) {
  const int P = K / 2;
  for (i64 x = 0; x < Wd; ++x) {
    const float* d = dyi + (h * Wd + x) * C;
    for (int ky = 0; ky < K; ++ky) {
      const i64 hy = h + ky - P;
      if (hy < 0 || hy >= H) continue;
      for (int kx = 0; kx < K; ++kx) {
        const i64 xx = x + kx - P;
        if (xx < 0 || xx >= Wd) continue;
        const float* xs = xi + (hy * Wd + xx) * C;
        float* pp = part + (i64)(ky * K + kx) * C;
        for (i64 cb = 0; cb < C; cb += S::W) {
          const int nl = (int)(C - cb < S::W ? C - cb : S::W);
          S::store_n(pp + cb, S::fma(S::load_n(xs + cb, nl), S::load_n(d + cb, nl), S::load_n(pp + cb, nl)), nl);
        }
      }
    }
    float* pb = part + (i64)K * K * C;
    for (i64 cb = 0; cb < C; cb += S::W) {
      const int nl = (int)(C - cb < S::W ? C - cb : S::W);
      S::store_n(pb + cb, S::add(S::load_n(pb + cb, nl), S::load_n(d + cb, nl)), nl);
    }
  }
}

static void dwconv_bwd_w(const float* dy, const float* x, i64 N, i64 H, i64 Wd, i64 C, int K,
                         float* dw, float* dbias) {
  if (N <= 0 || H <= 0 || Wd <= 0 || C <= 0) return;
  const i64 rows = N * H;
  // Fixed chunks of output rows (a function of the shape only), summed in chunk order.
  const i64 nch = rows < 64 ? rows : 64;
  const i64 per = (rows + nch - 1) / nch;
  const i64 psz = (i64)(K * K + 1) * C;
  float* parts = scratch(1, (size_t)(nch * psz));
  const i64 img = H * Wd * C;
  parallel_for(nch, [&](i64 ch) {
    float* part = parts + ch * psz;
    for (i64 i = 0; i < psz; ++i) part[i] = 0.0f;
    const i64 r0 = ch * per, r1 = r0 + per < rows ? r0 + per : rows;
    for (i64 r = r0; r < r1; ++r) {
      const i64 n = r / H, h = r % H;
      const float* xi = x + n * img;
      const float* dyi = dy + n * img;
      if (K == 7 || K == 3) {
        for (i64 cb = 0; cb < C; cb += S::W) {
          const int nl = (int)(C - cb < S::W ? C - cb : S::W);
          if (K == 7) {
            if (nl == S::W) dww_row<7, true>(xi, dyi, H, Wd, C, h, cb, nl, part);
            else dww_row<7, false>(xi, dyi, H, Wd, C, h, cb, nl, part);
          } else {
            if (nl == S::W) dww_row<3, true>(xi, dyi, H, Wd, C, h, cb, nl, part);
            else dww_row<3, false>(xi, dyi, H, Wd, C, h, cb, nl, part);
          }
        }
      } else {
        dww_row_generic(xi, dyi, H, Wd, C, K, h, part);
      }
    }
  });
  const i64 nw = (i64)K * K * C;
  for (i64 i = 0; i < psz; i += S::W) {
    const int nl = (int)(psz - i < S::W ? psz - i : S::W);
    S::v t = S::load_n(parts + i, nl);
    for (i64 ch = 1; ch < nch; ++ch) t = S::add(t, S::load_n(parts + ch * psz + i, nl));
    // split the vector between dw and dbias
    float tmp[S::W];
    S::store(tmp, t);
    for (int l = 0; l < nl; ++l) {
      const i64 idx = i + l;
      if (idx < nw)
        dw[idx] += tmp[l];
      else if (dbias)
        dbias[idx - nw] += tmp[l];
    }
  }
}

void fill_dwconv(KernelTable& t) {
  t.dwconv_fwd = &dwconv_fwd;
  t.dwconv_bwd_in = &dwconv_bwd_in;
  t.dwconv_bwd_w = &dwconv_bwd_w;
}
