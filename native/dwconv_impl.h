// Depthwise KxK convolution (stride 1, zero padding K/2), channels-last, vectorised over
// channels (the last vector of a row masked when C is not a multiple of the width): on dense
// maps, and on the compacted visible rows of a masked map (submanifold, at the end).
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

// One kernel row's taps: a[s] += sum over kx of xs[s + kx] * w[kx] (w: K channel vectors).
template <int K, int WS>
static inline __attribute__((always_inline)) void dw_taps(const S::v* xs, const float* w, S::v* a) {
#pragma GCC unroll 8
  for (int kx = 0; kx < K; ++kx) {
    const S::v wk = S::load(w + kx * S::W);
#pragma GCC unroll 16
    for (int s = 0; s < WS; ++s) a[s] = S::fma(xs[s + kx], wk, a[s]);
  }
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
    dw_taps<K, WS>(xs, wb + ky * K * S::W, a);
  }
#pragma GCC unroll 16
  for (int s = 0; s < WS; ++s) out[s] = a[s];
}

// Two output rows at once (rows h and h + 1 share K - 1 input rows): out0/out1[s] over the
// K + 1 input rows rows[0..K] (input rows h - P .. h + 1 + P). Twice the accumulator chains
// of a one-row strip for the same registers' worth of inputs (the one-row strip's chains are
// as long as the FMA latency allows, so it stalls); WS = 6 fits AVX-512's 32 registers.
template <int KK, int WS>
static inline __attribute__((always_inline)) void dw_ring_strip2(const float* const* rows, const float* wb, S::v b0,
                                                                 i64 x0, S::v* out0, S::v* out1) {
  constexpr int K = KK;
  S::v a0[WS], a1[WS];
#pragma GCC unroll 16
  for (int s = 0; s < WS; ++s) a0[s] = a1[s] = b0;
#pragma GCC unroll 8
  for (int iy = 0; iy <= K; ++iy) {
    const float* r = rows[iy] + x0 * S::W;
    S::v xs[WS + K - 1];
#pragma GCC unroll 24
    for (int i = 0; i < WS + K - 1; ++i) xs[i] = S::load(r + i * S::W);
    // Both output rows' taps interleaved per kx: 2 x WS independent accumulator chains.
#pragma GCC unroll 8
    for (int kx = 0; kx < K; ++kx) {
      if (iy < K) {
        const S::v w0 = S::load(wb + (iy * K + kx) * S::W);
#pragma GCC unroll 16
        for (int s = 0; s < WS; ++s) a0[s] = S::fma(xs[s + kx], w0, a0[s]);
      }
      if (iy >= 1) {
        const S::v w1 = S::load(wb + ((iy - 1) * K + kx) * S::W);
#pragma GCC unroll 16
        for (int s = 0; s < WS; ++s) a1[s] = S::fma(xs[s + kx], w1, a1[s]);
      }
    }
  }
#pragma GCC unroll 16
  for (int s = 0; s < WS; ++s) {
    out0[s] = a0[s];
    out1[s] = a1[s];
  }
}

// Stores n outputs of a strip (one channel vector, nl valid lanes) at y, y + C, ..., adding
// what is there when acc.
static inline __attribute__((always_inline)) void dw_store_strip(float* y, i64 C, int nl, bool acc, const S::v* out, int n) {
  for (int s = 0; s < n; ++s) {
    float* yp = y + s * C;
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

// Output rows h, h + 1 of one channel vector, from the ring holding input rows h - P .. h + 1 + P.
template <int KK>
static void dw_row_pair(const DwRing& ring, i64 h, i64 Wd, i64 C, const float* wb, S::v b0, int nl,
                        bool acc, float* y0, float* y1) {
  constexpr int P = KK / 2, WS2 = 6;
  const float* rows[KK + 1];
  for (int i = 0; i <= KK; ++i) rows[i] = ring.row(h - P + i);
  S::v o0[WS2], o1[WS2];
  i64 x = 0;
  for (; x + WS2 <= Wd; x += WS2) {
    dw_ring_strip2<KK, WS2>(rows, wb, b0, x, o0, o1);
    dw_store_strip(y0 + x * C, C, nl, acc, o0, WS2);
    dw_store_strip(y1 + x * C, C, nl, acc, o1, WS2);
  }
  const int tail = (int)(Wd - x);
  switch (tail) {
    case 0: return;
    case 1: dw_ring_strip2<KK, 1>(rows, wb, b0, x, o0, o1); break;
    case 2: dw_ring_strip2<KK, 2>(rows, wb, b0, x, o0, o1); break;
    case 3: dw_ring_strip2<KK, 3>(rows, wb, b0, x, o0, o1); break;
    case 4: dw_ring_strip2<KK, 4>(rows, wb, b0, x, o0, o1); break;
    default: dw_ring_strip2<KK, 5>(rows, wb, b0, x, o0, o1); break;
  }
  dw_store_strip(y0 + x * C, C, nl, acc, o0, tail);
  dw_store_strip(y1 + x * C, C, nl, acc, o1, tail);
}

template <int KK>
static void dw_fast_task(const float* src, i64 H, i64 Wd, i64 C, const float* w,
                         const float* bias, bool flip, bool acc, i64 r0, i64 r1, i64 cb,
                         float* dst) {
  constexpr int K = KK, P = KK / 2;
  const int nl = (int)(C - cb < S::W ? C - cb : S::W);
  const i64 RW = Wd + 2 * P;
  // Row pairs (two output rows per pass over K + 1 input rows) where the registers allow.
  constexpr bool pairs = S::W >= 16 && KK == 7;
  constexpr int RING = pairs ? K + 1 : K;
  float* mem = scratch(0, (size_t)(RING * RW * S::W + K * K * S::W));
  const DwRing ring{mem, RW, RING};
  float* wb = mem + RING * RW * S::W;
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
    float* y = dst + n * img + h * Wd * C + cb;
    if (pairs && r + 1 < r1 && h + 1 < H) {
      dw_pack_row(im, H, Wd, C, cb, nl, P, h + P, ring.row(h + P));
      dw_pack_row(im, H, Wd, C, cb, nl, P, h + P + 1, ring.row(h + P + 1));
      dw_row_pair<KK>(ring, h, Wd, C, wb, b0, nl, acc, y, y + Wd * C);
      ++r;
      continue;
    }
    dw_pack_row(im, H, Wd, C, cb, nl, P, h + P, ring.row(h + P));
    const float* rows[KK];
    for (int ky = 0; ky < K; ++ky) rows[ky] = ring.row(h - P + ky);
    i64 x = 0;
    S::v out[DWS];
    for (; x + DWS <= Wd; x += DWS) {
      dw_ring_strip<KK, DWS>(rows, wb, b0, x, out);
      dw_store_strip(y + x * C, C, nl, acc, out, DWS);
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
      dw_store_strip(y + x * C, C, nl, acc, out, tail);
    }
  }
}

static void dw_conv(const float* src, i64 N, i64 H, i64 Wd, i64 C, int K, const float* w,
                    const float* bias, bool flip, bool acc, float* dst) {
  if (N <= 0 || H <= 0 || Wd <= 0 || C <= 0) return;
  if (K != 7 && K != 3) return dw_rows(src, N, H, Wd, C, K, w, bias, flip, acc, dst);
  const i64 rows = N * H;
  // One task per band of output rows, all channel vectors in turn (the band's input rows stay
  // in cache from one vector to the next), bands small enough for a few per thread. Tasks that
  // split the channels of the same rows ran two threads no faster than one: where a row's
  // vectors are not line-aligned, neighbouring vectors share cache lines. Each output's sum
  // is the same whatever the band, so results do not depend on the threads.
  const int nth = pool_threads();
  i64 band = rows / (4 * (i64)nth);
  band = band < 2 ? 2 : band > 16 ? 16 : band & ~(i64)1;
  const i64 nb = (rows + band - 1) / band;
  parallel_for(nb, [&](i64 b) {
    const i64 r0 = b * band, r1 = r0 + band < rows ? r0 + band : rows;
    for (i64 cb = 0; cb < C; cb += S::W) {
      if (K == 7)
        dw_fast_task<7>(src, H, Wd, C, w, bias, flip, acc, r0, r1, cb, dst);
      else
        dw_fast_task<3>(src, H, Wd, C, w, bias, flip, acc, r0, r1, cb, dst);
    }
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

// Adds the chunk partials parts[nch][psz] (the weight gradient's nw values, then the bias's),
// summed in chunk order, into dw and dbias (when not null).
static void dw_sum_parts(const float* parts, i64 nch, i64 psz, i64 nw, float* dw, float* dbias) {
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
  dw_sum_parts(parts, nch, psz, (i64)K * K * C, dw, dbias);
}

// ---- Submanifold depthwise convolution on compacted rows (the sparse FCMAE encoder) ----
// The visible positions of an [N, H, W] map are rows [R, C]: rowOf[N*H*W] gives each dense
// position's row (any value outside [0, R) counts as masked, so a bad map cannot read out of
// bounds) and idx[R] each row's dense position n*H*W + y*W + x (checked by the binding).
// Outputs exist at visible sites only; masked and outside inputs count as zero. Consecutive
// rows that are adjacent in one image row form strips of up to DWS outputs, computed like the
// dense kernel's register strips from a table of input-row pointers (a zero row standing in
// for masked or outside positions); a kernel row with no visible input is skipped. Each
// output's arithmetic is the dense kernel's (bias, then the taps in (ky, kx) order; skipped
// taps would have added exact zeros).

static constexpr int DWR_RW = DWS + 6;  // pointer-table row: a strip plus K - 1, K <= 7
static constexpr i64 DWR_CHUNK = 16;    // rows per task (forward and input gradient)

static inline int dwr_strip_len(const int32_t* idx, i64 r, i64 r1, i64 Wd, int maxlen) {
  const i64 p0 = idx[r];
  const i64 x0 = p0 % Wd;
  int len = 1;
  while (len < maxlen && r + len < r1 && (i64)idx[r + len] == p0 + len && x0 + len < Wd) ++len;
  return len;
}

// ptrs[ky * DWR_RW + i] = the row of input position (y + ky - P, x0 - P + i) for the strip
// starting at dense position p0, i < len + K - 1, or `zeros`; live[ky]: some entry visible.
template <int KK>
static inline void dwr_ptrs(const float* src, const int32_t* rowOf, i64 nr, i64 H, i64 Wd, i64 C,
                            i64 p0, int len, const float* zeros, const float** ptrs, bool* live) {
  constexpr int P = KK / 2;
  const i64 HW = H * Wd;
  const i64 n = p0 / HW, rem = p0 - n * HW, y = rem / Wd, x0 = rem - y * Wd;
  for (int ky = 0; ky < KK; ++ky) {
    const i64 yy = y + ky - P;
    live[ky] = false;
    if (yy < 0 || yy >= H) continue;
    const int32_t* ro = rowOf + (n * H + yy) * Wd;
    const float** pr = ptrs + ky * DWR_RW;
    bool any = false;
    for (int i = 0; i < len + KK - 1; ++i) {
      const i64 xx = x0 - P + i;
      const float* q = zeros;
      if (xx >= 0 && xx < Wd) {
        const i64 j = ro[xx];
        if (j >= 0 && j < nr) {
          q = src + j * C;
          any = true;
        }
      }
      pr[i] = q;
    }
    live[ky] = any;
  }
}

// out[s] = b0 + sum over live ky, kx of row(ky, s + kx) * wp[ky*K+kx], s < WS.
template <int KK, int WS, bool FULL>
static inline __attribute__((always_inline)) void dwr_fwd_strip(const float* const* ptrs, const bool* live,
                                                                const float* wp, S::v b0, i64 cb, int nl,
                                                                S::v* out) {
  constexpr int K = KK;
  S::v a[WS];
#pragma GCC unroll 16
  for (int s = 0; s < WS; ++s) a[s] = b0;
#pragma GCC unroll 1
  for (int ky = 0; ky < K; ++ky) {
    if (!live[ky]) continue;
    const float* const* pr = ptrs + ky * DWR_RW;
    S::v xs[WS + K - 1];
#pragma GCC unroll 24
    for (int i = 0; i < WS + K - 1; ++i) xs[i] = FULL ? S::load(pr[i] + cb) : S::load_n(pr[i] + cb, nl);
    dw_taps<K, WS>(xs, wp + ky * K * S::W, a);
  }
#pragma GCC unroll 16
  for (int s = 0; s < WS; ++s) out[s] = a[s];
}

template <int KK, bool FULL>
static inline void dwr_fwd_len(int len, const float* const* ptrs, const bool* live, const float* wp,
                               S::v b0, i64 cb, int nl, S::v* out) {
#define CNX_DWR_CASE(L) \
  case L: return dwr_fwd_strip<KK, (DWS >= L ? L : 1), FULL>(ptrs, live, wp, b0, cb, nl, out);
  switch (len) {
    CNX_DWR_CASE(1) CNX_DWR_CASE(2) CNX_DWR_CASE(3) CNX_DWR_CASE(4) CNX_DWR_CASE(5)
    CNX_DWR_CASE(6) CNX_DWR_CASE(7) CNX_DWR_CASE(8) CNX_DWR_CASE(9) CNX_DWR_CASE(10)
    CNX_DWR_CASE(11)
    default: return dwr_fwd_strip<KK, DWS, FULL>(ptrs, live, wp, b0, cb, nl, out);
  }
#undef CNX_DWR_CASE
}

// The weights as ncb blocks of K*K full vectors (flipped for the input gradient; lanes past C
// zero), followed by one zero row of ncb vectors. Main thread's scratch slot 2.
static float* dwr_pack(const float* w, i64 C, int K, bool flip, bool weights, const float** zeros) {
  const i64 ncb = (C + S::W - 1) / S::W, KK2 = (i64)K * K;
  const i64 nw = weights ? ncb * KK2 * S::W : 0;
  float* mem = scratch(2, (size_t)(nw + ncb * S::W));
  for (i64 ci = 0; ci < ncb && weights; ++ci) {
    const i64 cb = ci * S::W;
    const int nl = (int)(C - cb < S::W ? C - cb : S::W);
    for (i64 t = 0; t < KK2; ++t)
      S::store(mem + (ci * KK2 + t) * S::W, S::load_n(w + (flip ? KK2 - 1 - t : t) * C + cb, nl));
  }
  for (i64 i = 0; i < ncb; ++i) S::store(mem + nw + i * S::W, S::zero());
  *zeros = mem + nw;
  return mem;
}

template <int KK>
static void dwr_conv_fast(const float* src, const int32_t* rowOf, const int32_t* idx, i64 nr, i64 H,
                          i64 Wd, i64 C, const float* wpack, const float* zeros, const float* bias,
                          bool acc, float* dst) {
  const i64 ncb = (C + S::W - 1) / S::W;
  parallel_for((nr + DWR_CHUNK - 1) / DWR_CHUNK, [&](i64 t) {
    const i64 r0 = t * DWR_CHUNK, r1 = r0 + DWR_CHUNK < nr ? r0 + DWR_CHUNK : nr;
    const float* ptrs[KK * DWR_RW];
    bool live[KK];
    S::v out[DWS];
    for (i64 r = r0; r < r1;) {
      const int len = dwr_strip_len(idx, r, r1, Wd, DWS);
      dwr_ptrs<KK>(src, rowOf, nr, H, Wd, C, idx[r], len, zeros, ptrs, live);
      for (i64 ci = 0; ci < ncb; ++ci) {
        const i64 cb = ci * S::W;
        const int nl = (int)(C - cb < S::W ? C - cb : S::W);
        const float* wp = wpack + ci * KK * KK * S::W;
        const S::v b0 = bias ? S::load_n(bias + cb, nl) : S::zero();
        if (nl == S::W)
          dwr_fwd_len<KK, true>(len, ptrs, live, wp, b0, cb, nl, out);
        else
          dwr_fwd_len<KK, false>(len, ptrs, live, wp, b0, cb, nl, out);
        for (int s = 0; s < len; ++s) {
          float* yp = dst + (r + s) * C + cb;
          S::v v = out[s];
          if (acc) v = S::add(v, dw_ld(yp, nl));
          dw_st(yp, v, nl);
        }
      }
      r += len;
    }
  });
}

// Any odd K: one output at a time, taps looked up one by one.
static void dwr_conv_generic(const float* src, const int32_t* rowOf, const int32_t* idx, i64 nr,
                             i64 H, i64 Wd, i64 C, int K, const float* wpack, const float* bias,
                             bool acc, float* dst) {
  const i64 ncb = (C + S::W - 1) / S::W, HW = H * Wd;
  const int P = K / 2;
  parallel_for((nr + DWR_CHUNK - 1) / DWR_CHUNK, [&](i64 t) {
    const i64 r0 = t * DWR_CHUNK, r1 = r0 + DWR_CHUNK < nr ? r0 + DWR_CHUNK : nr;
    for (i64 r = r0; r < r1; ++r) {
      const i64 p0 = idx[r], n = p0 / HW, y = (p0 - n * HW) / Wd, x0 = p0 - n * HW - y * Wd;
      for (i64 ci = 0; ci < ncb; ++ci) {
        const i64 cb = ci * S::W;
        const int nl = (int)(C - cb < S::W ? C - cb : S::W);
        const float* wp = wpack + ci * K * K * S::W;
        S::v a = bias ? S::load_n(bias + cb, nl) : S::zero();
        for (int ky = 0; ky < K; ++ky) {
          const i64 yy = y + ky - P;
          if (yy < 0 || yy >= H) continue;
          for (int kx = 0; kx < K; ++kx) {
            const i64 xx = x0 + kx - P;
            if (xx < 0 || xx >= Wd) continue;
            const i64 j = rowOf[(n * H + yy) * Wd + xx];
            if (j < 0 || j >= nr) continue;
            a = S::fma(S::load_n(src + j * C + cb, nl), S::load(wp + (ky * K + kx) * S::W), a);
          }
        }
        float* yp = dst + r * C + cb;
        if (acc) a = S::add(a, S::load_n(yp, nl));
        S::store_n(yp, a, nl);
      }
    }
  });
}

static void dwr_conv(const float* src, const int32_t* rowOf, const int32_t* idx, i64 nr, i64 H,
                     i64 Wd, i64 C, int K, const float* w, const float* bias, bool flip, bool acc,
                     float* dst) {
  if (nr <= 0 || H <= 0 || Wd <= 0 || C <= 0) return;
  const float* zeros = nullptr;
  const float* wpack = dwr_pack(w, C, K, flip, true, &zeros);
  if (K == 7)
    dwr_conv_fast<7>(src, rowOf, idx, nr, H, Wd, C, wpack, zeros, bias, acc, dst);
  else if (K == 3)
    dwr_conv_fast<3>(src, rowOf, idx, nr, H, Wd, C, wpack, zeros, bias, acc, dst);
  else
    dwr_conv_generic(src, rowOf, idx, nr, H, Wd, C, K, wpack, bias, acc, dst);
}

static void dwconv_rows_fwd(const float* x, const int32_t* rowOf, const int32_t* idx, i64 nr,
                            i64 N, i64 H, i64 W, i64 C, int K, const float* w, const float* bias,
                            float* y) {
  (void)N;
  dwr_conv(x, rowOf, idx, nr, H, W, C, K, w, bias, false, false, y);
}

static void dwconv_rows_bwd_in(const float* dy, const int32_t* rowOf, const int32_t* idx, i64 nr,
                               i64 N, i64 H, i64 W, i64 C, int K, const float* w, float* dx,
                               bool accumulate) {
  (void)N;
  dwr_conv(dy, rowOf, idx, nr, H, W, C, K, w, nullptr, true, accumulate, dx);
}

// acc[kx] += sum_s row(s + kx) * d[s], s < WS (the order of dww_ring_strip).
template <int KK, int WS, bool FULL>
static inline __attribute__((always_inline)) void dwr_w_strip(const float* const* pr, const S::v* d,
                                                              i64 cb, int nl, S::v* acc) {
  constexpr int K = KK;
  S::v xs[WS + K - 1];
#pragma GCC unroll 24
  for (int i = 0; i < WS + K - 1; ++i) xs[i] = FULL ? S::load(pr[i] + cb) : S::load_n(pr[i] + cb, nl);
#pragma GCC unroll 8
  for (int kx = 0; kx < K; ++kx)
#pragma GCC unroll 16
    for (int s = 0; s < WS; ++s) acc[kx] = S::fma(xs[s + kx], d[s], acc[kx]);
}

template <int KK, bool FULL>
static inline void dwr_w_len(int len, const float* const* pr, const S::v* d, i64 cb, int nl, S::v* acc) {
#define CNX_DWR_CASE(L) \
  case L: return dwr_w_strip<KK, (DWS >= L ? L : 1), FULL>(pr, d, cb, nl, acc);
  switch (len) {
    CNX_DWR_CASE(1) CNX_DWR_CASE(2) CNX_DWR_CASE(3) CNX_DWR_CASE(4) CNX_DWR_CASE(5)
    CNX_DWR_CASE(6) CNX_DWR_CASE(7) CNX_DWR_CASE(8) CNX_DWR_CASE(9) CNX_DWR_CASE(10)
    CNX_DWR_CASE(11)
    default: return dwr_w_strip<KK, DWS, FULL>(pr, d, cb, nl, acc);
  }
#undef CNX_DWR_CASE
}

// Weight and bias gradient partial sums of rows [r0, r1) into part [(K*K + 1) x C].
template <int KK>
static void dwr_w_chunk_fast(const float* dy, const float* x, const int32_t* rowOf, const int32_t* idx,
                             i64 nr, i64 H, i64 Wd, i64 C, const float* zeros, i64 r0, i64 r1,
                             float* part) {
  constexpr int K = KK;
  const float* ptrs[KK * DWR_RW];
  bool live[KK];
  S::v d[DWS];
  for (i64 r = r0; r < r1;) {
    const int len = dwr_strip_len(idx, r, r1, Wd, DWS);
    dwr_ptrs<KK>(x, rowOf, nr, H, Wd, C, idx[r], len, zeros, ptrs, live);
    for (i64 cb = 0; cb < C; cb += S::W) {
      const int nl = (int)(C - cb < S::W ? C - cb : S::W);
      for (int s = 0; s < len; ++s) d[s] = dw_ld(dy + (r + s) * C + cb, nl);
      float* pb = part + (i64)K * K * C + cb;
      S::v bs = dw_ld(pb, nl);
      for (int s = 0; s < len; ++s) bs = S::add(bs, d[s]);
      dw_st(pb, bs, nl);
      for (int ky = 0; ky < K; ++ky) {
        if (!live[ky]) continue;
        float* pp = part + (i64)ky * K * C + cb;
        S::v acc[K];
#pragma GCC unroll 8
        for (int kx = 0; kx < K; ++kx) acc[kx] = dw_ld(pp + kx * C, nl);
        if (nl == S::W)
          dwr_w_len<KK, true>(len, ptrs + ky * DWR_RW, d, cb, nl, acc);
        else
          dwr_w_len<KK, false>(len, ptrs + ky * DWR_RW, d, cb, nl, acc);
#pragma GCC unroll 8
        for (int kx = 0; kx < K; ++kx) dw_st(pp + kx * C, acc[kx], nl);
      }
    }
    r += len;
  }
}

static void dwr_w_chunk_generic(const float* dy, const float* x, const int32_t* rowOf,
                                const int32_t* idx, i64 nr, i64 H, i64 Wd, i64 C, int K, i64 r0,
                                i64 r1, float* part) {
  const i64 HW = H * Wd;
  const int P = K / 2;
  for (i64 r = r0; r < r1; ++r) {
    const i64 p0 = idx[r], n = p0 / HW, y = (p0 - n * HW) / Wd, x0 = p0 - n * HW - y * Wd;
    const float* d = dy + r * C;
    for (int ky = 0; ky < K; ++ky) {
      const i64 yy = y + ky - P;
      if (yy < 0 || yy >= H) continue;
      for (int kx = 0; kx < K; ++kx) {
        const i64 xx = x0 + kx - P;
        if (xx < 0 || xx >= Wd) continue;
        const i64 j = rowOf[(n * H + yy) * Wd + xx];
        if (j < 0 || j >= nr) continue;
        const float* xs = x + j * C;
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

static void dwconv_rows_bwd_w(const float* dy, const float* x, const int32_t* rowOf,
                              const int32_t* idx, i64 nr, i64 N, i64 H, i64 Wd, i64 C, int K,
                              float* dw, float* dbias) {
  (void)N;
  if (nr <= 0 || H <= 0 || Wd <= 0 || C <= 0) return;
  // Fixed chunks of rows (a function of the row count only), summed in chunk order.
  i64 per = (nr + 63) / 64;
  if (per < 8) per = 8;
  const i64 nch = (nr + per - 1) / per;
  const i64 psz = (i64)(K * K + 1) * C;
  const float* zeros = nullptr;
  dwr_pack(nullptr, C, K, false, false, &zeros);
  float* parts = scratch(1, (size_t)(nch * psz));
  parallel_for(nch, [&](i64 ch) {
    float* part = parts + ch * psz;
    for (i64 i = 0; i < psz; ++i) part[i] = 0.0f;
    const i64 r0 = ch * per, r1 = r0 + per < nr ? r0 + per : nr;
    if (K == 7) return dwr_w_chunk_fast<7>(dy, x, rowOf, idx, nr, H, Wd, C, zeros, r0, r1, part);
    if (K == 3) return dwr_w_chunk_fast<3>(dy, x, rowOf, idx, nr, H, Wd, C, zeros, r0, r1, part);
    dwr_w_chunk_generic(dy, x, rowOf, idx, nr, H, Wd, C, K, r0, r1, part);
  });
  dw_sum_parts(parts, nch, psz, (i64)K * K * C, dw, dbias);
}

void fill_dwconv(KernelTable& t) {
  t.dwconv_fwd = &dwconv_fwd;
  t.dwconv_bwd_in = &dwconv_bwd_in;
  t.dwconv_bwd_w = &dwconv_bwd_w;
  t.dwconv_rows_fwd = &dwconv_rows_fwd;
  t.dwconv_rows_bwd_in = &dwconv_rows_bwd_in;
  t.dwconv_rows_bwd_w = &dwconv_rows_bwd_w;
}
