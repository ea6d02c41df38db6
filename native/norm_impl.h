// LayerNorm (channels-last) and GRN, forward and backward. Included inside an ISA namespace
// after S. Cross-row reductions use fixed row chunks summed in chunk order.

static constexpr i64 NORM_RCH = 256;  // rows per reduction chunk

static inline int lanes(i64 C, i64 c) { return (int)(C - c < S::W ? C - c : S::W); }
static inline S::v ld(const float* p, int n) { return n == S::W ? S::load(p) : S::load_n(p, n); }
static inline void st(float* p, S::v x, int n) {
  if (n == S::W)
    S::store(p, x);
  else
    S::store_n(p, x, n);
}
// A vector of value v in the first n lanes and 0 elsewhere.
static inline S::v splat_n(float v, int n) {
  if (n == S::W) return S::set1(v);
  float tmp[S::W];
  for (int i = 0; i < S::W; ++i) tmp[i] = v;
  return S::load_n(tmp, n);
}

static void ln_fwd(const float* x, i64 M, i64 C, const float* gamma, const float* beta, float eps,
                   float* y, float* mean, float* rstd) {
  if (M <= 0) return;
  const i64 RB = 64;
  parallel_for((M + RB - 1) / RB, [&](i64 task) {
    const i64 r0 = task * RB, r1 = r0 + RB < M ? r0 + RB : M;
    for (i64 i = r0; i < r1; ++i) {
      const float* xr = x + i * C;
      float* yr = y + i * C;
      S::v s = S::zero();
      for (i64 c = 0; c < C; c += S::W) s = S::add(s, ld(xr + c, lanes(C, c)));
      const float mu = C > 0 ? S::hsum(s) / (float)C : 0.0f;
      const S::v vm = S::set1(mu);
      S::v q = S::zero();
      for (i64 c = 0; c < C; c += S::W) {
        const int n = lanes(C, c);
        const S::v d = S::sub(ld(xr + c, n), n == S::W ? vm : splat_n(mu, n));
        q = S::fma(d, d, q);
      }
      const float var = C > 0 ? S::hsum(q) / (float)C : 0.0f;
      const float rs = 1.0f / std::sqrt(var + eps);
      mean[i] = mu;
      rstd[i] = rs;
      const S::v vr = S::set1(rs);
      for (i64 c = 0; c < C; c += S::W) {
        const int n = lanes(C, c);
        const S::v xh = S::mul(S::sub(ld(xr + c, n), vm), vr);
        st(yr + c, S::fma(xh, ld(gamma + c, n), ld(beta + c, n)), n);
      }
    }
  });
}

static void ln_bwd(const float* dy, const float* x, const float* mean, const float* rstd,
                   const float* gamma, i64 M, i64 C, float* dx, bool accumulate, float* dgamma,
                   float* dbeta) {
  if (C <= 0) return;
  const i64 nch = M <= 0 ? 0 : (M + NORM_RCH - 1) / NORM_RCH;
  float* parts = scratch(1, (size_t)((nch > 0 ? nch : 1) * 2 * C));
  parallel_for(nch, [&](i64 ch) {
    const i64 r0 = ch * NORM_RCH, r1 = r0 + NORM_RCH < M ? r0 + NORM_RCH : M;
    float* pg = parts + ch * 2 * C;
    float* pb = pg + C;
    for (i64 c = 0; c < 2 * C; ++c) pg[c] = 0.0f;
    for (i64 i = r0; i < r1; ++i) {
      const float* xr = x + i * C;
      const float* dr = dy + i * C;
      float* dxr = dx + i * C;
      const S::v vm = S::set1(mean[i]);
      const S::v vr = S::set1(rstd[i]);
      S::v s1 = S::zero(), s2 = S::zero();
      for (i64 c = 0; c < C; c += S::W) {
        const int n = lanes(C, c);
        const S::v d = ld(dr + c, n);
        const S::v xh = S::mul(S::sub(ld(xr + c, n), vm), vr);
        const S::v g = S::mul(d, ld(gamma + c, n));
        s1 = S::add(s1, g);
        s2 = S::fma(g, xh, s2);  // masked lanes: g == 0
        st(pg + c, S::fma(d, xh, ld(pg + c, n)), n);
        st(pb + c, S::add(ld(pb + c, n), d), n);
      }
      const S::v mg = S::set1(S::hsum(s1) / (float)C);
      const S::v mgx = S::set1(S::hsum(s2) / (float)C);
      for (i64 c = 0; c < C; c += S::W) {
        const int n = lanes(C, c);
        const S::v xh = S::mul(S::sub(ld(xr + c, n), vm), vr);
        const S::v g = S::mul(ld(dr + c, n), ld(gamma + c, n));
        S::v r = S::mul(vr, S::fnma(xh, mgx, S::sub(g, mg)));
        if (accumulate) r = S::add(r, ld(dxr + c, n));
        st(dxr + c, r, n);
      }
    }
  });
  for (i64 c = 0; c < 2 * C; c += S::W) {
    const int n = lanes(2 * C, c);
    S::v t = nch > 0 ? ld(parts + c, n) : S::zero();
    for (i64 ch = 1; ch < nch; ++ch) t = S::add(t, ld(parts + ch * 2 * C + c, n));
    float tmp[S::W];
    S::store(tmp, t);
    for (int l = 0; l < n; ++l) {
      const i64 idx = c + l;
      if (idx < C)
        dgamma[idx] += tmp[l];
      else
        dbeta[idx - C] += tmp[l];
    }
  }
}

// Per (segment, chunk) tasks for GRN reductions.
struct SegChunks {
  i64 ntasks;
  i64* seg;    // segment of task
  i64* start;  // first row of task
  i64* first;  // first task of segment s (S + 1 entries)
};

static SegChunks seg_chunks(const int32_t* off, i64 S_, int slot) {
  i64 nt = 0;
  for (i64 s = 0; s < S_; ++s) {
    const i64 L = (i64)off[s + 1] - off[s];
    nt += L <= 0 ? 0 : (L + NORM_RCH - 1) / NORM_RCH;
  }
  // Stored as floats-sized scratch reinterpretation of i64 triples.
  i64* mem = reinterpret_cast<i64*>(scratch(slot, (size_t)(2 * (2 * nt + S_ + 1) + 16)));
  SegChunks sc;
  sc.ntasks = nt;
  sc.seg = mem;
  sc.start = mem + nt;
  sc.first = mem + 2 * nt;
  i64 t = 0;
  for (i64 s = 0; s < S_; ++s) {
    sc.first[s] = t;
    for (i64 r = off[s]; r < off[s + 1]; r += NORM_RCH) {
      sc.seg[t] = s;
      sc.start[t] = r;
      ++t;
    }
  }
  sc.first[S_] = t;
  return sc;
}

// ---- GRN. Statistics per (segment, 256-row chunk) task, summed per segment in chunk order.
// When there are several segments of moderate size (dense maps: one per image), each task
// handles a whole segment (statistics, then the output while the segment is still in cache);
// otherwise the statistics and the rows are parallelised separately. Both orders give the
// same arithmetic.

// Sums of squares of rows [r0, r1) per channel, for NB channel vectors from c (the last one
// with n lanes): NB independent accumulator chains, each channel summing its rows in order.
template <int NB>
static inline void grn_sumsq_block(const float* x, i64 r0, i64 r1, i64 C, i64 c, int n, float* p) {
  S::v a[NB];
#pragma GCC unroll 8
  for (int j = 0; j < NB; ++j) a[j] = S::zero();
  for (i64 i = r0; i < r1; ++i) {
    const float* xr = x + i * C + c;
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) {
      const S::v v = j == NB - 1 ? ld(xr + j * S::W, n) : S::load(xr + j * S::W);
      a[j] = S::fma(v, v, a[j]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NB; ++j) {
    if (j == NB - 1)
      st(p + c + j * S::W, a[j], n);
    else
      S::store(p + c + j * S::W, a[j]);
  }
}

// Calls f(ChannelBlock<NB>(), c, n) over the C channels in blocks of 8, 4, 2 or 1 vectors from c (the
// block's last vector with n lanes): the register-blocked column sums over rows.
template <int NB>
struct ChannelBlock {
  static constexpr int value = NB;
};
template <class F>
static inline void for_channel_blocks(i64 C, F&& f) {
  for (i64 c = 0; c < C;) {
    const i64 nv = (C - c + S::W - 1) / S::W;
    const int nb = nv >= 8 ? 8 : nv >= 4 ? 4 : nv >= 2 ? 2 : 1;
    const i64 end = c + nb * S::W < C ? c + nb * S::W : C;
    const int n = (int)(end - (c + (nb - 1) * S::W));
    switch (nb) {
      case 8: f(ChannelBlock<8>(), c, n); break;
      case 4: f(ChannelBlock<4>(), c, n); break;
      case 2: f(ChannelBlock<2>(), c, n); break;
      default: f(ChannelBlock<1>(), c, n); break;
    }
    c = end;
  }
}

static void grn_chunk_sumsq(const float* x, i64 r0, i64 r1, i64 C, float* p) {
  for_channel_blocks(C, [&](auto nb, i64 c, int n) { grn_sumsq_block<decltype(nb)::value>(x, r0, r1, C, c, n, p); });
}

static void grn_seg_stats(const SegChunks& sc, const float* parts, i64 s, i64 C, float eps,
                          float* gx, float* nx) {
  float* g = gx + s * C;
  const i64 t0 = sc.first[s], t1 = sc.first[s + 1];
  for (i64 c = 0; c < C; c += S::W) {
    const int n = lanes(C, c);
    S::v a = S::zero();
    for (i64 t = t0; t < t1; ++t) a = S::add(a, ld(parts + t * C + c, n));
    st(g + c, S::sqrt(a), n);
  }
  float m = 0.0f;
  for (i64 c = 0; c < C; ++c) m += g[c];
  const float den = m / (float)C + eps;
  for (i64 c = 0; c < C; ++c) nx[s * C + c] = g[c] / den;
}

static void grn_rows_y(const float* x, i64 r0, i64 r1, i64 C, const float* gamma,
                       const float* beta, const float* nr, float* y) {
  for (i64 i = r0; i < r1; ++i) {
    const float* xr = x + i * C;
    float* yr = y + i * C;
    for (i64 c = 0; c < C; c += S::W) {
      const int n = lanes(C, c);
      const S::v xv = ld(xr + c, n);
      st(yr + c, S::add(S::fma(ld(gamma + c, n), S::mul(xv, ld(nr + c, n)), ld(beta + c, n)), xv), n);
    }
  }
}

// Segment of row r (binary search over the offsets).
static i64 grn_segment_of(const int32_t* off, i64 S_, i64 r) {
  i64 lo = 0, hi = S_ - 1;
  while (lo < hi) {
    const i64 mid = (lo + hi + 1) / 2;
    if (off[mid] <= r) lo = mid; else hi = mid - 1;
  }
  return lo;
}

static bool grn_per_segment(const int32_t* off, i64 S_, i64 C) {
  // Enough segments to balance the threads (the choice does not change any result).
  if (S_ < 2 || S_ < 2 * pool_threads()) return false;
  i64 mx = 0;
  for (i64 s = 0; s < S_; ++s) mx = off[s + 1] - off[s] > mx ? off[s + 1] - off[s] : mx;
  return mx * C <= ((i64)1 << 20);
}

static void grn_fwd(const float* x, const int32_t* off, i64 S_, i64 C, const float* gamma,
                    const float* beta, float eps, float* y, float* gx, float* nx, const float* sqsum) {
  if (S_ <= 0 || C <= 0) return;
  if (sqsum) {
    // Statistics from the given sums of squares, then the rows.
    for (i64 s = 0; s < S_; ++s) {
      float* g = gx + s * C;
      for (i64 c = 0; c < C; c += S::W) {
        const int n = lanes(C, c);
        st(g + c, S::sqrt(ld(sqsum + s * C + c, n)), n);
      }
      float m = 0.0f;
      for (i64 c = 0; c < C; ++c) m += g[c];
      const float den = m / (float)C + eps;
      for (i64 c = 0; c < C; ++c) nx[s * C + c] = g[c] / den;
    }
  }
  const SegChunks sc = seg_chunks(off, S_, 2);
  float* parts = scratch(1, (size_t)((sc.ntasks > 0 ? sc.ntasks : 1) * C));
  auto chunk = [&](i64 t) {
    const i64 s = sc.seg[t], r0 = sc.start[t];
    const i64 r1 = r0 + NORM_RCH < off[s + 1] ? r0 + NORM_RCH : off[s + 1];
    grn_chunk_sumsq(x, r0, r1, C, parts + t * C);
  };
  if (!sqsum && grn_per_segment(off, S_, C)) {
    parallel_for(S_, [&](i64 s) {
      for (i64 t = sc.first[s]; t < sc.first[s + 1]; ++t) chunk(t);
      grn_seg_stats(sc, parts, s, C, eps, gx, nx);
      if (y) grn_rows_y(x, off[s], off[s + 1], C, gamma, beta, nx + s * C, y);
    });
    return;
  }
  if (!sqsum) {
    parallel_for(sc.ntasks, chunk);
    for (i64 s = 0; s < S_; ++s) grn_seg_stats(sc, parts, s, C, eps, gx, nx);
  }
  if (!y) return;
  const i64 RB = 64;
  const i64 M = off[S_] - off[0];
  if (M <= 0) return;
  const i64 base = off[0];
  parallel_for((M + RB - 1) / RB, [&](i64 task) {
    const i64 r0 = base + task * RB, r1 = r0 + RB < base + M ? r0 + RB : base + M;
    i64 s = grn_segment_of(off, S_, r0);
    for (i64 i = r0; i < r1;) {
      while (i >= off[s + 1]) ++s;
      const i64 e = off[s + 1] < r1 ? off[s + 1] : r1;
      grn_rows_y(x, i, e, C, gamma, beta, nx + s * C, y);
      i = e;
    }
  });
}

// sum dy*x and sum dy over rows [r0, r1) per channel, for NB channel vectors from c (the
// last one with n lanes) at once: 2 NB independent chains over contiguous row segments (one
// vector at a time, the two chains waited on the FMA latency and read rows C floats apart).
// Each channel sums its rows in order, as one vector at a time did: the same bits.
template <int NB>
static inline void grn_bwd_block(const float* dy, const float* x, i64 r0, i64 r1, i64 C, i64 c, int n, float* p) {
  S::v a[NB], b[NB];
#pragma GCC unroll 8
  for (int j = 0; j < NB; ++j) a[j] = b[j] = S::zero();
  for (i64 i = r0; i < r1; ++i) {
    const float* dr = dy + i * C + c;
    const float* xr = x + i * C + c;
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) {
      const bool last = j == NB - 1;
      const S::v d = last ? ld(dr + j * S::W, n) : S::load(dr + j * S::W);
      a[j] = S::fma(d, last ? ld(xr + j * S::W, n) : S::load(xr + j * S::W), a[j]);
      b[j] = S::add(b[j], d);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NB; ++j) {
    const int m = j == NB - 1 ? n : S::W;
    st(p + c + j * S::W, a[j], m);
    st(p + C + c + j * S::W, b[j], m);
  }
}

static void grn_chunk_bwd(const float* dy, const float* x, i64 r0, i64 r1, i64 C, float* p) {
  for_channel_blocks(C, [&](auto nb, i64 c, int n) { grn_bwd_block<decltype(nb)::value>(dy, x, r0, r1, C, c, n, p); });
}

// Segment coefficients A1 = 1 + gamma*nx, A2 = dG / gx (0 where gx == 0) into coef[s] (2C),
// and the segment's dgamma / dbeta contributions into contrib[s] (2C).
static void grn_seg_bwd(const SegChunks& sc, const float* parts, i64 s, i64 C,
                        const float* gamma, float eps, const float* gx, const float* nx,
                        float* coef, float* contrib) {
  const float* g = gx + s * C;
  const float* nn = nx + s * C;
  float* A1 = coef + s * 2 * C;
  float* A2 = A1 + C;
  float* cg = contrib + s * 2 * C;
  float* cb = cg + C;
  const i64 t0 = sc.first[s], t1 = sc.first[s + 1];
  // S1 = sum dy*x into A2, S2 = sum dy into A1 (temporarily).
  for (i64 c = 0; c < C; c += S::W) {
    const int n = lanes(C, c);
    S::v a = S::zero(), b = S::zero();
    for (i64 t = t0; t < t1; ++t) {
      a = S::add(a, ld(parts + t * 2 * C + c, n));
      b = S::add(b, ld(parts + t * 2 * C + C + c, n));
    }
    st(A2 + c, a, n);
    st(A1 + c, b, n);
  }
  float m = 0.0f;
  for (i64 c = 0; c < C; ++c) m += g[c];
  const float D = m / (float)C + eps;
  float dot = 0.0f;
  for (i64 c = 0; c < C; ++c) dot += gamma[c] * A2[c] * g[c];
  const float corr = dot / (float)C / (D * D);
  for (i64 c = 0; c < C; ++c) {
    const float s1 = A2[c], s2 = A1[c];
    cg[c] = s1 * nn[c];
    cb[c] = s2;
    const float dG = gamma[c] * s1 / D - corr;
    A2[c] = g[c] == 0.0f ? 0.0f : dG / g[c];
    A1[c] = 1.0f + gamma[c] * nn[c];
  }
}

// dx rows [r0, r1) = dy * A1 + x * A2 (then * gelu'(pre) when pre); their column sums are
// added to bsum (C floats) when not null.
static void grn_rows_dx(const float* dy, const float* x, const float* pre, i64 r0, i64 r1, i64 C,
                        const float* A1, float* dx, float* bsum) {
  const float* A2 = A1 + C;
  for (i64 i = r0; i < r1; ++i)
    for (i64 c = 0; c < C; c += S::W) {
      const int n = lanes(C, c);
      S::v d = S::fma(ld(dy + i * C + c, n), ld(A1 + c, n), S::mul(ld(x + i * C + c, n), ld(A2 + c, n)));
      if (pre) d = S::mul(d, v_gelu_grad(ld(pre + i * C + c, n)));
      st(dx + i * C + c, d, n);
      if (bsum) st(bsum + c, S::add(ld(bsum + c, n), d), n);
    }
}

static void grn_bwd(const float* dy, const float* x, const int32_t* off, i64 S_, i64 C,
                    const float* gamma, float eps, const float* gx, const float* nx, float* dx,
                    float* dgamma, float* dbeta, const float* pre, float* dbias) {
  if (S_ <= 0 || C <= 0) return;
  const SegChunks sc = seg_chunks(off, S_, 2);
  float* parts = scratch(1, (size_t)((sc.ntasks > 0 ? sc.ntasks : 1) * 2 * C));
  float* coef = scratch(3, (size_t)(S_ * 4 * C));
  float* contrib = coef + S_ * 2 * C;
  auto chunk = [&](i64 t) {
    const i64 s = sc.seg[t], r0 = sc.start[t];
    const i64 r1 = r0 + NORM_RCH < off[s + 1] ? r0 + NORM_RCH : off[s + 1];
    grn_chunk_bwd(dy, x, r0, r1, C, parts + t * 2 * C);
  };
  // dx by the same (segment, 256-row chunk) tasks as the statistics, so that the bias-gradient
  // partial sums (one row of C per chunk, added in chunk order) do not depend on the threads.
  float* bparts = dbias ? scratch(4, (size_t)((sc.ntasks > 0 ? sc.ntasks : 1) * C)) : nullptr;
  if (bparts)
    for (i64 i = 0; i < sc.ntasks * C; ++i) bparts[i] = 0.0f;
  auto rows_dx = [&](i64 t) {
    const i64 s = sc.seg[t], r0 = sc.start[t];
    const i64 r1 = r0 + NORM_RCH < off[s + 1] ? r0 + NORM_RCH : off[s + 1];
    grn_rows_dx(dy, x, pre, r0, r1, C, coef + s * 2 * C, dx, bparts ? bparts + t * C : nullptr);
  };
  const bool perSeg = grn_per_segment(off, S_, C);
  if (perSeg) {
    parallel_for(S_, [&](i64 s) {
      for (i64 t = sc.first[s]; t < sc.first[s + 1]; ++t) chunk(t);
      grn_seg_bwd(sc, parts, s, C, gamma, eps, gx, nx, coef, contrib);
      for (i64 t = sc.first[s]; t < sc.first[s + 1]; ++t) rows_dx(t);
    });
  } else {
    parallel_for(sc.ntasks, chunk);
    for (i64 s = 0; s < S_; ++s) grn_seg_bwd(sc, parts, s, C, gamma, eps, gx, nx, coef, contrib);
    parallel_for(sc.ntasks, rows_dx);
  }
  // dgamma, dbeta: segment contributions added in segment order.
  for (i64 c = 0; c < C; ++c) {
    float sg = 0.0f, sb = 0.0f;
    for (i64 s = 0; s < S_; ++s) {
      sg += contrib[s * 2 * C + c];
      sb += contrib[s * 2 * C + C + c];
    }
    dgamma[c] += sg;
    dbeta[c] += sb;
  }
  if (bparts)
    for (i64 c = 0; c < C; c += S::W) {
      const int n = lanes(C, c);
      S::v t = S::zero();
      for (i64 b = 0; b < sc.ntasks; ++b) t = S::add(t, ld(bparts + b * C + c, n));
      st(dbias + c, S::add(ld(dbias + c, n), t), n);
    }
}

void fill_norm(KernelTable& t) {
  t.ln_fwd = &ln_fwd;
  t.ln_bwd = &ln_bwd;
  t.grn_fwd = &grn_fwd;
  t.grn_bwd = &grn_bwd;
}
