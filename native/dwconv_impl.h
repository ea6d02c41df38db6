// Depthwise KxK convolution (stride 1, zero padding K/2), channels-last, vectorised over
// channels (the last vector of a row masked when C is not a multiple of the width).
// Included inside an ISA namespace after S. Requires threadpool.h and kernels.h.

#ifndef CNX_DWS
#define CNX_DWS 8
#endif
static constexpr int DWS = S::W >= 16 ? CNX_DWS : 4;
// Weight-gradient strip: K accumulators + strip + K - 1 inputs + strip dy must fit the registers.
static constexpr int DWWS = S::W >= 16 ? CNX_DWS : (S::W >= 8 ? 4 : 2);  // output positions per register strip

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

// Any odd K: one task per output row.
static void dw_rows(const float* src, i64 N, i64 H, i64 Wd, i64 C, int K, const float* w,
                    const float* bias, bool flip, bool acc, float* dst) {
  const i64 img = H * Wd * C;
  parallel_for(N * H, [&](i64 r) {
    const i64 n = r / H, h = r % H;
    dw_row_generic(src + n * img, H, Wd, C, K, w, bias, flip, acc, h, dst + n * img + h * Wd * C);
  });
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

// ---- Fast path for K = 3 and 7: per task (row band, channel vector), the input rows are
// packed into a ring of KK zero-padded rows of W-float vectors, so the inner loops use fixed
// offsets, no bounds checks and full vectors (lanes past C are zero).

struct DwRing {
  float* buf;  // KK rows of RW vectors
  i64 RW;      // padded row width: Wd + KK - 1
  int KK;
  float* row(i64 hy) const { return buf + ((hy % KK + KK) % KK) * RW * S::W; }
};

static inline void dw_pack_row(const float* img, i64 H, i64 Wd, i64 C, i64 cb, int nl, int P,
                               i64 hy, float* dst) {
  const i64 RW = Wd + 2 * P;
  if (hy < 0 || hy >= H) {
    for (i64 i = 0; i < RW; ++i) S::store(dst + i * S::W, S::zero());
    return;
  }
  for (int i = 0; i < P; ++i) {
    S::store(dst + i * S::W, S::zero());
    S::store(dst + (RW - 1 - i) * S::W, S::zero());
  }
  const float* s = img + hy * Wd * C + cb;
  float* d = dst + P * S::W;
  if (nl == S::W)
    for (i64 x = 0; x < Wd; ++x) S::store(d + x * S::W, S::load(s + x * C));
  else
    for (i64 x = 0; x < Wd; ++x) S::store(d + x * S::W, S::load_n(s + x * C, nl));
}

// out[s] = b0 + sum_ky,kx rows[ky][x0+s+kx] * wb[ky*K+kx], s < WS.
template <int KK, int WS>
static inline __attribute__((always_inline)) void dw_ring_strip(const float* const* rows, const float* wb, S::v b0, i64 x0,
                                 S::v* out) {
  constexpr int K = KK;
  S::v a[WS];
#pragma GCC unroll 16
  for (int s = 0; s < WS; ++s) a[s] = b0;
#pragma GCC unroll 1
  for (int ky = 0; ky < K; ++ky) {
    const float* r = rows[ky] + x0 * S::W;
    S::v xs[WS + K - 1];
#pragma GCC unroll 24
    for (int i = 0; i < WS + K - 1; ++i) xs[i] = S::load(r + i * S::W);
#pragma GCC unroll 8
    for (int kx = 0; kx < K; ++kx) {
      const S::v wk = S::load(wb + (ky * K + kx) * S::W);
#pragma GCC unroll 16
      for (int s = 0; s < WS; ++s) a[s] = S::fma(xs[s + kx], wk, a[s]);
    }
  }
#pragma GCC unroll 16
  for (int s = 0; s < WS; ++s) out[s] = a[s];
}

template <int KK>
static void dw_fast_task(const float* src, i64 H, i64 Wd, i64 C, const float* w,
                         const float* bias, bool flip, bool acc, i64 r0, i64 r1, i64 cb,
                         float* dst) {
  constexpr int K = KK, P = KK / 2;
  const int nl = (int)(C - cb < S::W ? C - cb : S::W);
  const i64 RW = Wd + 2 * P;
  float* mem = scratch(0, (size_t)(K * RW * S::W + K * K * S::W));
  const DwRing ring{mem, RW, K};
  float* wb = mem + K * RW * S::W;
  for (int t = 0; t < K * K; ++t)
    S::store(wb + t * S::W, S::load_n(w + (i64)(flip ? K * K - 1 - t : t) * C + cb, nl));
  const S::v b0 = bias ? S::load_n(bias + cb, nl) : S::zero();
  const i64 img = H * Wd * C;
  i64 cur_n = -1;
  for (i64 r = r0; r < r1; ++r) {
    const i64 n = r / H, h = r % H;
    const float* im = src + n * img;
    if (n != cur_n) {
      for (i64 hy = h - P; hy < h + P; ++hy) dw_pack_row(im, H, Wd, C, cb, nl, P, hy, ring.row(hy));
      cur_n = n;
    }
    dw_pack_row(im, H, Wd, C, cb, nl, P, h + P, ring.row(h + P));
    const float* rows[KK];
    for (int ky = 0; ky < K; ++ky) rows[ky] = ring.row(h - P + ky);
    float* y = dst + n * img + h * Wd * C + cb;
    i64 x = 0;
    S::v out[DWS];
    for (; x + DWS <= Wd; x += DWS) {
      dw_ring_strip<KK, DWS>(rows, wb, b0, x, out);
#pragma GCC unroll 16
      for (int s = 0; s < DWS; ++s) {
        float* yp = y + (x + s) * C;
        S::v v = out[s];
        if (nl == S::W) {
          if (acc) v = S::add(v, S::load(yp));
          S::store(yp, v);
        } else {
          if (acc) v = S::add(v, S::load_n(yp, nl));
          S::store_n(yp, v, nl);
        }
      }
    }
    const int tail = (int)(Wd - x);
    if (tail > 0) {
      switch (tail) {
        case 1: dw_ring_strip<KK, 1>(rows, wb, b0, x, out); break;
        case 2: dw_ring_strip<KK, 2>(rows, wb, b0, x, out); break;
        case 3: dw_ring_strip<KK, 3>(rows, wb, b0, x, out); break;
        case 4: dw_ring_strip<KK, (DWS > 4 ? 4 : 1)>(rows, wb, b0, x, out); break;
        case 5: dw_ring_strip<KK, (DWS > 5 ? 5 : 1)>(rows, wb, b0, x, out); break;
        case 6: dw_ring_strip<KK, (DWS > 6 ? 6 : 1)>(rows, wb, b0, x, out); break;
        case 7: dw_ring_strip<KK, (DWS > 7 ? 7 : 1)>(rows, wb, b0, x, out); break;
        case 8: dw_ring_strip<KK, (DWS > 8 ? 8 : 1)>(rows, wb, b0, x, out); break;
        case 9: dw_ring_strip<KK, (DWS > 9 ? 9 : 1)>(rows, wb, b0, x, out); break;
        case 10: dw_ring_strip<KK, (DWS > 10 ? 10 : 1)>(rows, wb, b0, x, out); break;
        default: dw_ring_strip<KK, (DWS > 11 ? 11 : 1)>(rows, wb, b0, x, out); break;
      }
      for (int s = 0; s < tail; ++s) {
        float* yp = y + (x + s) * C;
        S::v v = out[s];
        if (acc) v = S::add(v, S::load_n(yp, nl));
        S::store_n(yp, v, nl);
      }
    }
  }
}

static void dw_conv(const float* src, i64 N, i64 H, i64 Wd, i64 C, int K, const float* w,
                    const float* bias, bool flip, bool acc, float* dst) {
  if (N <= 0 || H <= 0 || Wd <= 0 || C <= 0) return;
  if (K != 7 && K != 3) return dw_rows(src, N, H, Wd, C, K, w, bias, flip, acc, dst);
  const i64 rows = N * H;
  const i64 ncb = (C + S::W - 1) / S::W;
  const i64 band = 16;
  const i64 nb = (rows + band - 1) / band;
  parallel_for(nb * ncb, [&](i64 t) {
    const i64 b = t / ncb, cb = (t % ncb) * S::W;
    const i64 r0 = b * band, r1 = r0 + band < rows ? r0 + band : rows;
    if (K == 7)
      dw_fast_task<7>(src, H, Wd, C, w, bias, flip, acc, r0, r1, cb, dst);
    else
      dw_fast_task<3>(src, H, Wd, C, w, bias, flip, acc, r0, r1, cb, dst);
  });
}

static void dwconv_fwd(const float* x, i64 N, i64 H, i64 W, i64 C, int K, const float* w,
                       const float* bias, float* y) {
  dw_conv(x, N, H, W, C, K, w, bias, false, false, y);
}

static void dwconv_bwd_in(const float* dy, i64 N, i64 H, i64 W, i64 C, int K, const float* w,
                          float* dx, bool accumulate) {
  dw_conv(dy, N, H, W, C, K, w, nullptr, true, accumulate, dx);
}

static inline S::v dw_ld(const float* p, int nl) { return nl == S::W ? S::load(p) : S::load_n(p, nl); }
static inline void dw_st(float* p, S::v v, int nl) {
  if (nl == S::W)
    S::store(p, v);
  else
    S::store_n(p, v, nl);
}

// acc[kx] += sum_s r[x0+s+kx] * dyb[x0+s], s < WS.
template <int KK, int WS>
static inline __attribute__((always_inline)) void dww_ring_strip(const float* r, const float* dyb, i64 x0, S::v* acc) {
  constexpr int K = KK;
  S::v xs[WS + K - 1], d[WS];
  const float* rp = r + x0 * S::W;
#pragma GCC unroll 24
  for (int i = 0; i < WS + K - 1; ++i) xs[i] = S::load(rp + i * S::W);
#pragma GCC unroll 16
  for (int s = 0; s < WS; ++s) d[s] = S::load(dyb + (x0 + s) * S::W);
#pragma GCC unroll 8
  for (int kx = 0; kx < K; ++kx)
#pragma GCC unroll 16
    for (int s = 0; s < WS; ++s) acc[kx] = S::fma(xs[s + kx], d[s], acc[kx]);
}

template <int KK>
static void dww_fast_chunk(const float* dy, const float* x, i64 H, i64 Wd, i64 C, i64 r0,
                           i64 r1, float* part /* [(K*K+1) x C] */) {
  constexpr int K = KK, P = KK / 2;
  const i64 RW = Wd + 2 * P;
  float* mem = scratch(0, (size_t)(K * RW * S::W + Wd * S::W));
  const DwRing ring{mem, RW, K};
  float* dyb = mem + K * RW * S::W;
  const i64 img = H * Wd * C;
  for (i64 cb = 0; cb < C; cb += S::W) {
    const int nl = (int)(C - cb < S::W ? C - cb : S::W);
    S::v bacc = S::zero();
    i64 cur_n = -1;
    for (i64 r = r0; r < r1; ++r) {
      const i64 n = r / H, h = r % H;
      const float* im = x + n * img;
      if (n != cur_n) {
        for (i64 hy = h - P; hy < h + P; ++hy) dw_pack_row(im, H, Wd, C, cb, nl, P, hy, ring.row(hy));
        cur_n = n;
      }
      dw_pack_row(im, H, Wd, C, cb, nl, P, h + P, ring.row(h + P));
      const float* dr = dy + n * img + h * Wd * C + cb;
      S::v rowsum = S::zero();
      for (i64 xx = 0; xx < Wd; ++xx) {
        const S::v d = dw_ld(dr + xx * C, nl);
        S::store(dyb + xx * S::W, d);
        rowsum = S::add(rowsum, d);
      }
      bacc = S::add(bacc, rowsum);
      for (int ky = 0; ky < K; ++ky) {
        const i64 hy = h - P + ky;
        if (hy < 0 || hy >= H) continue;
        const float* rr = ring.row(hy);
        S::v acc[K];
        float* pp = part + (i64)ky * K * C + cb;
#pragma GCC unroll 8
        for (int kx = 0; kx < K; ++kx) acc[kx] = dw_ld(pp + kx * C, nl);
        i64 x0 = 0;
        for (; x0 + DWWS <= Wd; x0 += DWWS) dww_ring_strip<KK, DWWS>(rr, dyb, x0, acc);
        switch ((int)(Wd - x0)) {
          case 0: break;
          case 1: dww_ring_strip<KK, 1>(rr, dyb, x0, acc); break;
          case 2: dww_ring_strip<KK, 2>(rr, dyb, x0, acc); break;
          case 3: dww_ring_strip<KK, 3>(rr, dyb, x0, acc); break;
          case 4: dww_ring_strip<KK, (DWWS > 4 ? 4 : 1)>(rr, dyb, x0, acc); break;
          case 5: dww_ring_strip<KK, (DWWS > 5 ? 5 : 1)>(rr, dyb, x0, acc); break;
          case 6: dww_ring_strip<KK, (DWWS > 6 ? 6 : 1)>(rr, dyb, x0, acc); break;
          case 7: dww_ring_strip<KK, (DWWS > 7 ? 7 : 1)>(rr, dyb, x0, acc); break;
          case 8: dww_ring_strip<KK, (DWWS > 8 ? 8 : 1)>(rr, dyb, x0, acc); break;
          case 9: dww_ring_strip<KK, (DWWS > 9 ? 9 : 1)>(rr, dyb, x0, acc); break;
          case 10: dww_ring_strip<KK, (DWWS > 10 ? 10 : 1)>(rr, dyb, x0, acc); break;
          default: dww_ring_strip<KK, (DWWS > 11 ? 11 : 1)>(rr, dyb, x0, acc); break;
        }
#pragma GCC unroll 8
        for (int kx = 0; kx < K; ++kx) dw_st(pp + kx * C, acc[kx], nl);
      }
    }
    float* pb = part + (i64)K * K * C + cb;
    dw_st(pb, S::add(dw_ld(pb, nl), bacc), nl);
  }
}

static void dwconv_bwd_w(const float* dy, const float* x, i64 N, i64 H, i64 Wd, i64 C, int K,
                         float* dw, float* dbias) {
  if (N <= 0 || H <= 0 || Wd <= 0 || C <= 0) return;
  const i64 rows = N * H;
  // Fixed chunks of output rows (a function of the shape only), summed in chunk order.
  i64 per = (rows + 63) / 64;
  if (per < 8) per = 8;
  const i64 nch = (rows + per - 1) / per;
  const i64 psz = (i64)(K * K + 1) * C;
  float* parts = scratch(1, (size_t)(nch * psz));
  const i64 img = H * Wd * C;
  parallel_for(nch, [&](i64 ch) {
    float* part = parts + ch * psz;
    for (i64 i = 0; i < psz; ++i) part[i] = 0.0f;
    const i64 r0 = ch * per, r1 = r0 + per < rows ? r0 + per : rows;
    if (K == 7) return dww_fast_chunk<7>(dy, x, H, Wd, C, r0, r1, part);
    if (K == 3) return dww_fast_chunk<3>(dy, x, H, Wd, C, r0, r1, part);
    for (i64 r = r0; r < r1; ++r) {
      const i64 n = r / H, h = r % H;
      dww_row_generic(x + n * img, dy + n * img, H, Wd, C, K, h, part);
    }
  });
  const i64 nw = (i64)K * K * C;
  for (i64 i = 0; i < psz; i += S::W) {
    const int nl = (int)(psz - i < S::W ? psz - i : S::W);
    S::v t = S::load_n(parts + i, nl);
    for (i64 ch = 1; ch < nch; ++ch) t = S::add(t, S::load_n(parts + ch * psz + i, nl));
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
