// Packed, cache-blocked SGEMM with fused epilogue. Included inside an ISA namespace after
// S (simd_*.h) and vmath.h. Requires threadpool.h and kernels.h.
//
// Tiles: MR rows x NR = NV*W columns held in registers (AVX-512: 12 x 32, 24 accumulators).
// A row-major is read in place (broadcasts from MR row pointers); A transposed (K x M) is
// copied per k-block into a contiguous k-major panel. B is packed into zero-padded NR-wide
// panels per k-block: once per call and shared by all tasks (or per task when it would be
// too large). The epilogue (accumulate, bias, GELU + pre-activation) runs on the registers of
// the last k-block; outputs much larger than the caches are written with streaming stores,
// the column tiles shifted (masked leading lanes) so that vectors land on aligned addresses.
// The arithmetic of every output element is the same whatever the tiling or the thread that
// computes it, so results do not depend on the number of threads; when K is split for
// parallelism (weight gradients: small M x N, large K), the chunking is a function of the
// shape only and partial sums are added in chunk order.

static constexpr int MR = CNX_GEMM_MR;
static constexpr int NV = CNX_GEMM_NV;
static constexpr int NR = NV * S::W;
static constexpr i64 KC = CNX_GEMM_KC;
static constexpr i64 NC = 512;  // columns per packed B block (multiple of NR)

struct Tile {
  i64 kc;
  const float* a;
  i64 lda;
  const float* bp;  // packed panel, kc x NR
  float* c;
  const float* cin;  // where loadc reads the running sum (c, or the residual on the first k-block)
  i64 ldc;
  int nlast;  // valid lanes in the last vector (1..W)
  int skip;   // invalid leading lanes of the first vector (aligned streaming layout), else 0
  bool loadc, final;
  bool stream;  // final stores bypass the caches (large outputs; c, pre and ldc aligned)
  const float* bias;  // at the tile's first column (final only), or null
  float* pre;         // at the tile's origin (final, gelu only), or null
  int act;
  float* sq;    // final only: column sums of squares of rows [0, sqsplit) here, of the rest at
  i64 sqoff;    // sq + sqoff (the tile's rows in two groups); null when not wanted
  int sqsplit;
};

typedef void (*UkrFn)(const Tile& t);

template <int R, int V, bool TA>
static void ukr(const Tile& t) {
  typedef S::v v;
  v acc[R][V];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < V; ++j) acc[r][j] = S::zero();
  const float* bp = t.bp;
  const i64 kc = t.kc;
  if (TA) {
    const float* ap = t.a;
    const i64 lda = t.lda;
    for (i64 k = 0; k < kc; ++k) {
      v b[V];
#pragma GCC unroll 4
      for (int j = 0; j < V; ++j) b[j] = S::load(bp + j * S::W);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const v a = S::set1(ap[r]);
#pragma GCC unroll 4
        for (int j = 0; j < V; ++j) acc[r][j] = S::fma(a, b[j], acc[r][j]);
      }
      ap += lda;
      bp += NR;
    }
  } else {
    const float* ar[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) ar[r] = t.a + r * t.lda;
#pragma GCC unroll 2
    for (i64 k = 0; k < kc; ++k) {
      v b[V];
#pragma GCC unroll 4
      for (int j = 0; j < V; ++j) b[j] = S::load(bp + j * S::W);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const v a = S::set1(ar[r][k]);
#pragma GCC unroll 4
        for (int j = 0; j < V; ++j) acc[r][j] = S::fma(a, b[j], acc[r][j]);
      }
      bp += NR;
    }
  }
  // Epilogue. Vector j holds lanes [lo(j), hi(j)).
  const int nl = t.nlast, sk = t.skip;
  const bool full = nl == S::W && sk == 0;
#define CNX_LO(j) ((j) == 0 ? sk : 0)
#define CNX_HI(j) ((j) == V - 1 ? nl : S::W)
#define CNX_FULL(j) (full || ((j) != 0 && (j) != V - 1) || (CNX_LO(j) == 0 && CNX_HI(j) == S::W))
  if (t.loadc) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const float* cp = t.cin + r * t.ldc;
#pragma GCC unroll 4
      for (int j = 0; j < V; ++j)
        acc[r][j] = S::add(acc[r][j], CNX_FULL(j) ? S::load(cp + j * S::W)
                                                  : S::load_range(cp + j * S::W, CNX_LO(j), CNX_HI(j)));
    }
  }
  if (t.final && t.bias) {
    v bb[V];
#pragma GCC unroll 4
    for (int j = 0; j < V; ++j)
      bb[j] = CNX_FULL(j) ? S::load(t.bias + j * S::W)
                          : S::load_range(t.bias + j * S::W, CNX_LO(j), CNX_HI(j));
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < V; ++j) acc[r][j] = S::add(acc[r][j], bb[j]);
  }
  if (t.final && t.act == 1) {
    if (t.pre) {
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        float* pp = t.pre + r * t.ldc;
#pragma GCC unroll 4
        for (int j = 0; j < V; ++j) {
          if (CNX_FULL(j)) {
            if (t.stream)
              S::stream(pp + j * S::W, acc[r][j]);
            else
              S::store(pp + j * S::W, acc[r][j]);
          } else {
            S::store_range(pp + j * S::W, acc[r][j], CNX_LO(j), CNX_HI(j));
          }
        }
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < V; ++j) acc[r][j] = v_gelu(acc[r][j]);
  }
  if (t.final && t.sq) {
#pragma GCC unroll 4
    for (int j = 0; j < V; ++j) {
      typename S::v s0 = S::zero(), s1 = S::zero();
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        if (r < t.sqsplit)
          s0 = S::fma(acc[r][j], acc[r][j], s0);
        else
          s1 = S::fma(acc[r][j], acc[r][j], s1);
      }
      S::store_range(t.sq + j * S::W, s0, CNX_LO(j), CNX_HI(j));
      S::store_range(t.sq + t.sqoff + j * S::W, s1, CNX_LO(j), CNX_HI(j));
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    float* cp = t.c + r * t.ldc;
#pragma GCC unroll 4
    for (int j = 0; j < V; ++j) {
      if (CNX_FULL(j)) {
        if (t.stream)
          S::stream(cp + j * S::W, acc[r][j]);
        else
          S::store(cp + j * S::W, acc[r][j]);
      } else {
        S::store_range(cp + j * S::W, acc[r][j], CNX_LO(j), CNX_HI(j));
      }
    }
  }
#undef CNX_LO
#undef CNX_HI
#undef CNX_FULL
}

template <bool TA, int R, int V>
struct UkrFill {
  static void fill(UkrFn (*t)[NV]) {
    t[R - 1][V - 1] = &ukr<R, V, TA>;
    UkrFill<TA, R, V - 1>::fill(t);
  }
};
template <bool TA, int R>
struct UkrFill<TA, R, 0> {
  static void fill(UkrFn (*t)[NV]) { UkrFill<TA, R - 1, NV>::fill(t); }
};
template <bool TA>
struct UkrFill<TA, 0, NV> {
  static void fill(UkrFn (*)[NV]) {}
};

struct UkrTable {
  UkrFn f[2][MR][NV];
  UkrTable() {
    UkrFill<false, MR, NV>::fill(f[0]);
    UkrFill<true, MR, NV>::fill(f[1]);
  }
};
static const UkrTable& ukr_table() {
  static const UkrTable t;
  return t;
}

// dst[k * NR + j] = src[j * ldb + k] for j < NR, k < kc: a full panel of a transposed B,
// transposed W x W blocks at a time in registers (the weights of every Linear layer are
// stored [out, in] and packed this way on each call).
static inline void pack_tb_full(const float* src, i64 ldb, i64 kc, float* dst) {
  i64 k = 0;
  for (; k + S::W <= kc; k += S::W) {
#pragma GCC unroll 4
    for (int jb = 0; jb < NR; jb += S::W) {
      S::v r[S::W];
#pragma GCC unroll 16
      for (int i = 0; i < S::W; ++i) r[i] = S::load(src + (jb + i) * ldb + k);
      S::transpose(r);
#pragma GCC unroll 16
      for (int i = 0; i < S::W; ++i) S::store(dst + (k + i) * NR + jb, r[i]);
    }
  }
  for (; k < kc; ++k)
    for (int j = 0; j < NR; ++j) dst[k * NR + j] = src[j * ldb + k];
}

// Packs op(B)[k0:k0+kc, n0:n0+nc] into NR-wide panels (kc x NR each, zero padded), after
// `lead` zero columns (the aligned streaming layout).
static void pack_b(const GemmCall& g, i64 k0, i64 kc, i64 n0, i64 nc, float* bp, int lead = 0) {
  if (lead > 0) {
    // First panel: lead zero columns, then up to NR - lead real ones.
    const i64 nr = nc < NR - lead ? nc : NR - lead;
    for (i64 k = 0; k < kc; ++k) {
      float* d = bp + k * NR;
      for (int j = 0; j < lead; ++j) d[j] = 0.0f;
      for (i64 j = 0; j < nr; ++j)
        d[lead + j] = g.transB ? g.B[(n0 + j) * g.ldb + k0 + k] : g.B[(k0 + k) * g.ldb + n0 + j];
      for (i64 j = lead + nr; j < NR; ++j) d[j] = 0.0f;
    }
    if (nc > nr) pack_b(g, k0, kc, n0 + nr, nc - nr, bp + kc * NR, 0);
    return;
  }
  if (!g.transB) {
    // Row k of B once, in order, into every panel (panel by panel, each pass would read a
    // strided slice of every row: a weight gradient's B is a large activation from memory).
    const i64 nfull = nc / NR, rest = nc - nfull * NR;
    for (i64 k = 0; k < kc; ++k) {
      const float* src = g.B + (k0 + k) * g.ldb + n0;
      for (i64 p = 0; p < nfull; ++p) {
        float* dst = bp + p * kc * NR + k * NR;
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) S::store(dst + j * S::W, S::load(src + p * NR + j * S::W));
      }
      if (rest > 0) {
        float* dst = bp + nfull * kc * NR + k * NR;
        const float* sr = src + nfull * NR;
        i64 j = 0;
        for (; j < rest; ++j) dst[j] = sr[j];
        for (; j < NR; ++j) dst[j] = 0.0f;
      }
    }
    return;
  }
  for (i64 jp = 0; jp < nc; jp += NR) {
    const i64 nr = nc - jp < NR ? nc - jp : NR;
    float* dst = bp + (jp / NR) * kc * NR;
    {
      const float* src = g.B + (n0 + jp) * g.ldb + k0;
      if (nr == NR) {
        pack_tb_full(src, g.ldb, kc, dst);
        continue;
      }
      for (i64 j = 0; j < nr; ++j) {
        const float* s = src + j * g.ldb;
        for (i64 k = 0; k < kc; ++k) dst[k * NR + j] = s[k];
      }
      for (i64 j = nr; j < NR; ++j)
        for (i64 k = 0; k < kc; ++k) dst[k * NR + j] = 0.0f;
    }
  }
}

// Where the tile at rows [ir, ir + mr), column col writes its sums of squares (g.sqpart:
// per MR-row tile, two rows of N: the rows in the group of the tile's first row, then the
// rest), or null.
static inline void sq_tile(const GemmCall& g, Tile& t, i64 ir, int mr, i64 col) {
  if (!g.sqpart || !t.final) {
    t.sq = nullptr;
    return;
  }
  const i64 first = ir / g.sq_rows;
  const i64 split = (first + 1) * g.sq_rows - ir;
  t.sq = g.sqpart + (ir / MR) * 2 * g.N + col;
  t.sqoff = g.N;
  t.sqsplit = (int)(split < mr ? split : mr);
}

// The same partials from C itself (for the paths whose epilogue does not run in the tiles).
static void sq_partials_from_c(const GemmCall& g) {
  const i64 nt = (g.M + MR - 1) / MR;
  parallel_for(nt, [&](i64 ti) {
    const i64 ir = ti * MR;
    const int mr = (int)(g.M - ir < MR ? g.M - ir : MR);
    const i64 split = ((ir / g.sq_rows) + 1) * g.sq_rows - ir;
    float* p0 = g.sqpart + ti * 2 * g.N;
    float* p1 = p0 + g.N;
    for (i64 j = 0; j < g.N; j += S::W) {
      const int n = (int)(g.N - j < S::W ? g.N - j : S::W);
      S::v s0 = S::zero(), s1 = S::zero();
      for (int r = 0; r < mr; ++r) {
        const S::v v = S::load_n(g.C + (ir + r) * g.ldc + j, n);
        if (r < split)
          s0 = S::fma(v, v, s0);
        else
          s1 = S::fma(v, v, s1);
      }
      S::store_n(p0 + j, s0, n);
      S::store_n(p1 + j, s1, n);
    }
  });
}

// sums[group] = the sum of the partials of the tiles holding the group's rows, in tile order.
static void sq_reduce(const GemmCall& g, float* sums) {
  const i64 G = g.M / g.sq_rows;
  parallel_for(G, [&](i64 gi) {
    const i64 t0 = gi * g.sq_rows / MR, t1 = ((gi + 1) * g.sq_rows - 1) / MR;
    float* out = sums + gi * g.N;
    for (i64 j = 0; j < g.N; j += S::W) {
      const int n = (int)(g.N - j < S::W ? g.N - j : S::W);
      S::v s = S::zero();
      for (i64 ti = t0; ti <= t1; ++ti) {
        const bool own = (ti * MR) / g.sq_rows == gi;
        s = S::add(s, S::load_n(g.sqpart + ti * 2 * g.N + (own ? 0 : g.N) + j, n));
      }
      S::store_n(out + j, s, n);
    }
  });
}

// Copies rows [ir, ir + mr) of A, columns [pc, pc + kc), into apack (mr x kc, row-major),
// each row multiplied elementwise by its group's scales (g.ascale), plus g.ashift.
static void pack_a_scaled(const GemmCall& g, i64 ir, int mr, i64 pc, i64 kc, float* apack) {
  for (int r = 0; r < mr; ++r) {
    const float* src = g.A + (ir + r) * g.lda + pc;
    const float* sc = g.ascale + ((ir + r) / g.ascale_rows) * g.K + pc;
    float* d = apack + r * kc;
    i64 k = 0;
    if (g.ashift) {
      const float* sh = g.ashift + pc;
      for (; k + S::W <= kc; k += S::W) S::store(d + k, S::fma(S::load(src + k), S::load(sc + k), S::load(sh + k)));
      if (k < kc) {
        const int n = (int)(kc - k);
        S::store_n(d + k, S::fma(S::load_n(src + k, n), S::load_n(sc + k, n), S::load_n(sh + k, n)), n);
      }
      continue;
    }
    for (; k + S::W <= kc; k += S::W) S::store(d + k, S::mul(S::load(src + k), S::load(sc + k)));
    if (k < kc) {
      const int n = (int)(kc - k);
      S::store_n(d + k, S::mul(S::load_n(src + k, n), S::load_n(sc + k, n)), n);
    }
  }
}

// Points the tile at rows [ir, ir + mr), columns [pc, pc + kc) of op(A): in place, or packed
// into apack (MR x kc) when A is transposed (k-major: rows stored K x M with a large, often
// power-of-two-like stride would fight over few L1 sets) or scaled per row group.
static inline void tile_a(const GemmCall& g, i64 ir, int mr, i64 pc, i64 kc, float* apack, Tile& t) {
  if (g.transA) {
    const float* src = g.A + pc * g.lda + ir;
    for (i64 k = 0; k < kc; ++k)
      for (int r = 0; r < mr; r += S::W) {
        const int n = mr - r < S::W ? mr - r : S::W;
        S::store_n(apack + k * MR + r, S::load_n(src + k * g.lda + r, n), n);
      }
    t.a = apack;
    t.lda = MR;
  } else if (g.ascale) {
    pack_a_scaled(g, ir, mr, pc, kc, apack);
    t.a = apack;
    t.lda = kc;
  } else {
    t.a = g.A + ir * g.lda + pc;
    t.lda = g.lda;
  }
}

// A transposed: rows [m0, m1) of op(A), columns [pc, pc + kc), as consecutive tiles of MR
// rows, each k-major (MR x kc, as tile_a packs one), k outer.
static void pack_a_tiles(const GemmCall& g, i64 m0, i64 m1, i64 pc, i64 kc, float* apack) {
  for (i64 k = 0; k < kc; ++k) {
    const float* src = g.A + (pc + k) * g.lda;
    for (i64 ir = m0; ir < m1; ir += MR) {
      const int mr = (int)(m1 - ir < MR ? m1 - ir : MR);
      float* d = apack + ((ir - m0) / MR) * MR * kc + k * MR;
      for (int r = 0; r < mr; r += S::W) {
        const int n = mr - r < S::W ? mr - r : S::W;
        S::store_n(d + r, S::load_n(src + ir + r, n), n);
      }
    }
  }
}

// Computes out[m0:m1, n0:n1] (stride ldo) = op(A)[m0:m1, k0:k1] . op(B)[k0:k1, n0:n1]
// (+ out if accum), with the GEMM's epilogue when epi. Single-threaded.
static void gemm_block(const GemmCall& g, i64 m0, i64 m1, i64 n0, i64 n1, i64 k0, i64 k1,
                       float* out, i64 ldo, bool accum, bool epi) {
  const i64 K = k1 - k0;
  const i64 nkb = K <= KC ? 1 : (K + KC - 1) / KC;
  const i64 kcb = nkb == 1 ? K : (K + nkb - 1) / nkb;
  const i64 ncmax = (n1 - n0) < NC ? (n1 - n0) : NC;
  float* bp = scratch(0, (size_t)(kcb > 0 ? kcb : 1) * (size_t)((ncmax + S::W + NR - 1) / NR * NR));
  // A transposed (stored K x M): the k-block of all the row tiles packed at once, reading each
  // row of A once and in order (tile by tile, each tile read a strided slice of every row).
  const i64 ntiles = (m1 - m0 + MR - 1) / MR;
  const bool allA = g.transA && (double)ntiles * MR * (double)(kcb > 0 ? kcb : 1) <= (double)(1 << 18);
  float* apack = (g.transA || g.ascale)
                     ? scratch(3, (size_t)(kcb > 0 ? kcb : 1) * MR * (size_t)(allA ? ntiles : 1))
                     : nullptr;
  const UkrTable& tab = ukr_table();
  Tile t;
  t.lda = g.lda;
  t.ldc = ldo;
  t.act = g.act;
  // Streaming stores for outputs much larger than the caches, when rows stay aligned.
  const bool big = epi && (double)g.M * (double)g.N * 4.0 >= 8.0 * 1024 * 1024;
  const bool canStream = big && ldo % S::W == 0 &&
                         (g.act != 1 || !g.preact || (uintptr_t)g.preact % (S::W * 4) ==
                                                         (uintptr_t)out % (S::W * 4));
  bool streamed = false;
  // Leading lanes to skip so that vectors of C (and preact) start on aligned addresses.
  const int lead = canStream && S::W >= 8 ? (int)(((uintptr_t)(out + n0) / 4) % S::W) : 0;
  for (i64 jc = n0; jc < n1;) {
    // The first block is NC - lead wide, so the later ones start aligned (NC % W == 0).
    const int ld = jc == n0 ? lead : 0;
    const i64 nc = n1 - jc < NC - ld ? n1 - jc : NC - ld;
    for (i64 kb = 0; kb < nkb; ++kb) {
      const i64 pc = k0 + kb * kcb;
      i64 kc = k1 - pc < kcb ? k1 - pc : kcb;
      if (kc < 0) kc = 0;
      pack_b(g, pc, kc, jc, nc, bp, ld);
      if (allA) pack_a_tiles(g, m0, m1, pc, kc, apack);
      t.kc = kc;
      const bool fromResid = epi && g.resid && kb == 0;  // out is C here
      t.loadc = accum || kb > 0 || fromResid;
      t.final = epi && kb == nkb - 1;
      for (i64 ir = m0; ir < m1; ir += MR) {
        const int mr = (int)(m1 - ir < MR ? m1 - ir : MR);
        if (allA) {
          t.a = apack + ((ir - m0) / MR) * MR * kc;
          t.lda = MR;
        } else {
          tile_a(g, ir, mr, pc, kc, apack, t);
        }
        // Virtual columns [jc - ld, jc + nc): the first ld are masked off.
        for (i64 jr = 0; jr < nc + ld; jr += NR) {
          const i64 nr = nc + ld - jr < NR ? nc + ld - jr : NR;
          const int nv = (int)((nr + S::W - 1) / S::W);
          t.nlast = (int)(nr - (nv - 1) * S::W);
          t.skip = jr == 0 ? ld : 0;
          const i64 col = jc - ld + jr;
          t.bp = bp + (jr / NR) * kc * NR;
          t.c = out + ir * ldo + col;
          t.cin = fromResid ? g.resid + ir * g.ldc + col : t.c;
          t.bias = (t.final && g.bias) ? g.bias + col : nullptr;
          t.pre = (t.final && g.act == 1 && g.preact) ? g.preact + ir * g.ldc + col : nullptr;
          t.stream = canStream && t.final && (uintptr_t)t.c % (S::W * 4) == 0;
          sq_tile(g, t, ir, mr, col);
          streamed |= t.stream;
          tab.f[g.transA ? 1 : 0][mr - 1][nv - 1](t);
        }
      }
    }
    jc += nc;
  }
  if (streamed) S::fence();
}

// K in nkb k-blocks of kcb (at most KC; the last may be shorter; kcb >= 1 even for K = 0): the
// blocking of B's shared packing, prepacked weights included (their layout follows from it).
struct KBlocks {
  i64 nkb, kcb;
};
static inline KBlocks kblocks(i64 K) {
  const i64 nkb = K <= KC ? 1 : (K + KC - 1) / KC;
  return {nkb, nkb == 1 ? (K > 0 ? K : 1) : (K + nkb - 1) / nkb};
}

// Packs one NR-wide panel of op(B)[k0:k0+kc, c0:c0+NR) (kc x NR); columns outside [0, N)
// (c0 may be negative: the aligned streaming layout) are zero.
static void pack_panel(const GemmCall& g, i64 k0, i64 kc, i64 c0, float* dst) {
  const i64 jlo = c0 < 0 ? -c0 : 0;
  const i64 jhi = g.N - c0 < NR ? g.N - c0 : NR;
  if (!g.transB) {
    const float* src = g.B + k0 * g.ldb + c0;
    if (jlo == 0 && jhi == NR) {
      for (i64 k = 0; k < kc; ++k)
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) S::store(dst + k * NR + j * S::W, S::load(src + k * g.ldb + j * S::W));
      return;
    }
    for (i64 k = 0; k < kc; ++k) {
      float* d = dst + k * NR;
      for (i64 j = 0; j < NR; ++j) d[j] = (j >= jlo && j < jhi) ? src[k * g.ldb + j] : 0.0f;
    }
    return;
  }
  if (jlo == 0 && jhi == NR) {
    pack_tb_full(g.B + c0 * g.ldb + k0, g.ldb, kc, dst);
    return;
  }
  for (i64 j = 0; j < NR; ++j) {
    if (j >= jlo && j < jhi) {
      const float* sj = g.B + (c0 + j) * g.ldb + k0;
      for (i64 k = 0; k < kc; ++k) dst[k * NR + j] = sj[k];
    } else {
      for (i64 k = 0; k < kc; ++k) dst[k * NR + j] = 0.0f;
    }
  }
}

// B packed once for the whole call: k-block kb, panel p at bpk + (kb * npan + p) * kcb * NR;
// panel p covers columns [p * NR - lead, (p + 1) * NR - lead).
struct PackedB {
  const float* bpk;
  i64 nkb, kcb, npan;
  int lead;
  bool canStream;
};

// C[m0:m1, panels p0..p1) with the full epilogue, from the shared packed B. Single-threaded.
static void gemm_block_packed(const GemmCall& g, const PackedB& pb, i64 m0, i64 m1, i64 p0,
                              i64 p1) {
  const i64 K = g.K;
  const i64 PG = NC / NR;  // panels per L2 block
  // A transposed and more than one panel group: all of the rows' tiles packed once, for every
  // k-block (else each group would pack them again), when that fits in 1 MiB.
  const i64 ntiles = (m1 - m0 + MR - 1) / MR;
  const bool allA = g.transA && p1 - p0 > PG && (double)ntiles * MR * (double)(K > 0 ? K : 1) <= (double)(1 << 18);
  float* apack = (g.transA || g.ascale)
                     ? scratch(3, allA ? (size_t)(ntiles * MR * (K > 0 ? K : 1)) : (size_t)(pb.kcb > 0 ? pb.kcb : 1) * MR)
                     : nullptr;
  if (allA) {
    for (i64 kb = 0; kb < pb.nkb; ++kb) {
      const i64 pc = kb * pb.kcb;
      const i64 kc = K - pc < pb.kcb ? K - pc : pb.kcb;
      if (kc > 0) pack_a_tiles(g, m0, m1, pc, kc, apack + ntiles * MR * pc);
    }
  }
  const UkrTable& tab = ukr_table();
  Tile t;
  t.lda = g.lda;
  t.ldc = g.ldc;
  t.act = g.act;
  bool streamed = false;
  for (i64 pg = p0; pg < p1; pg += PG) {
    const i64 pe = pg + PG < p1 ? pg + PG : p1;
    for (i64 kb = 0; kb < pb.nkb; ++kb) {
      const i64 pc = kb * pb.kcb;
      i64 kc = K - pc < pb.kcb ? K - pc : pb.kcb;
      if (kc < 0) kc = 0;
      t.kc = kc;
      const bool fromResid = g.resid && kb == 0;
      t.loadc = g.accumulate || kb > 0 || fromResid;
      t.final = kb == pb.nkb - 1;
      for (i64 ir = m0; ir < m1; ir += MR) {
        const int mr = (int)(m1 - ir < MR ? m1 - ir : MR);
        if (allA) {
          t.a = apack + ntiles * MR * pc + ((ir - m0) / MR) * MR * kc;
          t.lda = MR;
        } else {
          tile_a(g, ir, mr, pc, kc, apack, t);
        }
        for (i64 p = pg; p < pe; ++p) {
          const i64 col = p * NR - pb.lead;
          const int skip = col < 0 ? (int)-col : 0;
          const i64 end = g.N - col < NR ? g.N - col : NR;  // valid lanes end within the panel
          const int nv = (int)((end + S::W - 1) / S::W);
          t.nlast = (int)(end - (nv - 1) * S::W);
          t.skip = skip;
          t.bp = pb.bpk + (kb * pb.npan + p) * pb.kcb * NR;
          t.c = g.C + ir * g.ldc + col;
          t.cin = fromResid ? g.resid + ir * g.ldc + col : t.c;
          t.bias = (t.final && g.bias) ? g.bias + col : nullptr;
          t.pre = (t.final && g.act == 1 && g.preact) ? g.preact + ir * g.ldc + col : nullptr;
          t.stream = pb.canStream && t.final && (uintptr_t)t.c % (S::W * 4) == 0;
          sq_tile(g, t, ir, mr, col);
          streamed |= t.stream;
          tab.f[g.transA ? 1 : 0][mr - 1][nv - 1](t);
        }
      }
    }
  }
  if (streamed) S::fence();
}

// Epilogue for the split-K path on rows [r0, r1): C = sum_c P_c (+ C) (+ bias), GELU.
// Partials are M x N, or N x M when trans.
static void gemm_reduce_rows(const GemmCall& g, const float* parts, i64 nch, i64 r0, i64 r1,
                             bool trans) {
  const i64 M = g.M, N = g.N;
  const i64 stride = M * N;
  float* row = trans ? scratch(2, (size_t)N) : nullptr;
  for (i64 i = r0; i < r1; ++i) {
    float* c = g.C + i * g.ldc;
    float* pre = (g.act == 1 && g.preact) ? g.preact + i * g.ldc : nullptr;
    if (trans) {
      for (i64 j = 0; j < N; ++j) {
        float t = parts[j * M + i];
        for (i64 ch = 1; ch < nch; ++ch) t += parts[ch * stride + j * M + i];
        row[j] = t;
      }
    }
    for (i64 j = 0; j < N; j += S::W) {
      const int n = (int)(N - j < S::W ? N - j : S::W);
      S::v t;
      if (trans) {
        t = S::load_n(row + j, n);
      } else {
        const float* p = parts + i * N + j;
        t = S::load_n(p, n);
        for (i64 ch = 1; ch < nch; ++ch) t = S::add(t, S::load_n(p + ch * stride, n));
      }
      if (g.accumulate) t = S::add(t, S::load_n(c + j, n));
      if (g.resid) t = S::add(t, S::load_n(g.resid + i * g.ldc + j, n));
      if (g.bias) t = S::add(t, S::load_n(g.bias + j, n));
      if (g.act == 1) {
        if (pre) S::store_n(pre + j, t, n);
        t = v_gelu(t);
      }
      S::store_n(c + j, t, n);
    }
  }
}

// The product transposed: C^T = op(B)^T op(A)^T (the caller sets C, ldc and the epilogue).
static GemmCall transposed(const GemmCall& g) {
  GemmCall h = g;
  h.transA = !g.transB;
  h.transB = !g.transA;
  h.M = g.N;
  h.N = g.M;
  h.A = g.B;
  h.lda = g.ldb;
  h.B = g.A;
  h.ldb = g.lda;
  return h;
}

// C with the full epilogue from a packed B (shared by all tasks): tasks over row ranges x panel
// ranges, or one task when the work is small.
static void run_packed(const GemmCall& g, const PackedB& pb, int nth, double work) {
  const i64 PG = NC / NR;  // panels per L2 block (gemm_block_packed)
  const i64 M = g.M, npan = pb.npan;
  if (nth <= 1 || work < 2.0e5) {
    gemm_block_packed(g, pb, 0, M, 0, npan);
    return;
  }
  const i64 mt = (M + MR - 1) / MR;
  i64 target = 4 * nth;
  i64 maxTasks = (i64)(work / 1.0e6);
  if (maxTasks < 1) maxTasks = 1;
  if (target > maxTasks) target = maxTasks < nth ? nth : maxTasks;
  i64 nmb = target < mt ? target : mt;
  i64 npb = 1;
  if (nmb < target) {  // few rows: split panels too
    npb = (target + nmb - 1) / nmb;
    if (npb > npan) npb = npan;
  }
  // Row tasks of whole tiles, spread evenly (sizes differ by one tile at most: 66 tiles in
  // tasks of 9 left a task of 3, and two threads ran 36 and 30); when their count does not
  // divide among the threads, the panels are split too until the tasks do.
  // Outputs of two L2 panel groups or more: tasks of half the panels at most (measured on
  // atto's 1280-wide stage-4 GEMMs: +1-4 points forward and dX, +5-8 for pwconv2's weight
  // gradient; a third split, or splitting the 640-wide stage 3, lost as much).
  if (npan >= 2 * PG && npb < 2) npb = 2;
  for (i64 q = npb; q <= npan && q <= npb + nth; ++q) {
    if ((nmb * q) % nth == 0) {
      npb = q;
      break;
    }
  }
  const i64 ppPer = (npan + npb - 1) / npb;
  parallel_for(nmb * npb, [&](i64 task) {
    const i64 bm = task / npb, bn = task % npb;
    const i64 m0 = (bm * mt / nmb) * MR, m1e = ((bm + 1) * mt / nmb) * MR, m1 = m1e < M ? m1e : M;
    const i64 p0 = bn * ppPer, p1 = p0 + ppPer < npan ? p0 + ppPer : npan;
    if (m0 >= m1 || p0 >= p1) return;
    gemm_block_packed(g, pb, m0, m1, p0, p1);
  });
}

static bool gemm_core(const GemmCall& g);
static void gemm(const GemmCall& g);

// Returns whether the tiles' epilogues wrote g.sqpart (else it is computed from C).
static bool gemm_core(const GemmCall& g) {
  const i64 M = g.M, N = g.N, K = g.K;
  if (M <= 0 || N <= 0) return true;
  const int nth = pool_threads();
  const double work = (double)M * (double)N * (double)(K > 0 ? K : 1);

  // Few rows and many more columns (batch-1 inference, the classifier head): compute
  // C^T = op(B)^T op(A)^T into scratch, so that the large operand (the weights) is read in
  // place and only the few rows of A are packed; the epilogue then writes C transposed back,
  // as in split-K. A function of the shape only.
  // With A scales (GRN folded into the next layer), the few rows are scaled once into scratch
  // first. Only on the 4-wide build (wasm, portable), where it was measured: batch-1 atto's
  // stage-4 fc2 (M = 49, N = 320, K = 1280) went from ~12 to ~21 GFLOP/s under wasm.
  if (g.ascale && S::W == 4 && !g.transA && M <= 64 && N >= 4 * M && K > 0) {
    float* a = scratch(6, (size_t)(M * K));
    pack_a_scaled(g, 0, (int)M, 0, K, a);
    GemmCall h = g;
    h.A = a;
    h.lda = K;
    h.ascale = nullptr;
    h.ashift = nullptr;
    return gemm_core(h);
  }
  if (!g.ascale && !g.bpacked && M <= 64 && N >= 4 * M && K > 0) {
    float* parts = scratch(4, (size_t)(N * M));
    GemmCall h = transposed(g);
    h.C = parts;
    h.ldc = M;
    h.accumulate = false;
    h.bias = nullptr;
    h.act = 0;
    h.preact = nullptr;
    h.resid = nullptr;
    h.sqsum = nullptr;
    h.sqpart = nullptr;
    gemm(h);
    const i64 rowsPer = M < 8 ? M : (M + 2 * nth - 1) / (2 * nth);
    parallel_for((M + rowsPer - 1) / rowsPer, [&](i64 task) {
      const i64 r0 = task * rowsPer, r1 = r0 + rowsPer < M ? r0 + rowsPer : M;
      gemm_reduce_rows(g, parts, 1, r0, r1, true);
    });
    return false;
  }

  // Split K into fixed chunks (a function of the shape only) when M*N is small.
  const i64 KSPLIT = 1024;
  if (K >= 2 * KSPLIT && M * N <= ((i64)1 << 21)) {
    // At most 256 chunks and at most 2^24 floats of partial sums.
    i64 maxch = ((i64)1 << 24) / (M * N);
    if (maxch > 256) maxch = 256;
    if (maxch < 2) maxch = 2;
    i64 chunk = (K + maxch - 1) / maxch;
    if (chunk < KSPLIT) chunk = KSPLIT;
    // Equal chunks (K = 3136 gives 4 x 784, not 3 x 1024 + 64: the threads finish together).
    const i64 nch0 = (K + chunk - 1) / chunk;
    chunk = (K + nch0 - 1) / nch0;
    chunk = (chunk + 15) / 16 * 16;
    const i64 nch = (K + chunk - 1) / chunk;
    float* parts = scratch(1, (size_t)(nch * M * N));
    // Orientation: compute the partials as C^T = op(B)^T op(A)^T when that fills the
    // register tiles better (e.g. N = 40 with 32-wide tiles). A function of the shape only.
    auto eff = [](i64 m, i64 n) {
      return ((double)m / (double)((m + MR - 1) / MR * MR)) *
             ((double)n / (double)((n + NR - 1) / NR * NR));
    };
    // (Not with A scales: they are applied while packing A's rows.)
    const bool swap = !g.ascale && eff(N, M) > eff(M, N) * 1.05;
    GemmCall h = swap ? transposed(g) : g;
    h.bpacked = nullptr;  // packs its own chunks of K
    const i64 hM = h.M, hN = h.N;
    // Tasks: chunk x column block.
    const i64 ntile = (hN + NR - 1) / NR;
    i64 nb = 1;
    if (nch < 2 * nth) {
      nb = (2 * nth + nch - 1) / nch;
      if (nb > ntile) nb = ntile;
    }
    const i64 tilesPer = (ntile + nb - 1) / nb;
    parallel_for(nch * nb, [&](i64 task) {
      const i64 ch = task / nb, b = task % nb;
      const i64 k0 = ch * chunk, k1 = k0 + chunk < K ? k0 + chunk : K;
      const i64 n0 = b * tilesPer * NR;
      const i64 n1 = n0 + tilesPer * NR < hN ? n0 + tilesPer * NR : hN;
      if (n0 >= n1) return;
      gemm_block(h, 0, hM, n0, n1, k0, k1, parts + ch * M * N, hN, false, false);
    });
    const i64 rowsPer = M < 64 ? M : (M + 4 * nth - 1) / (4 * nth);
    const i64 nrt = (M + rowsPer - 1) / rowsPer;
    parallel_for(nrt, [&](i64 task) {
      const i64 r0 = task * rowsPer, r1 = r0 + rowsPer < M ? r0 + rowsPer : M;
      gemm_reduce_rows(g, parts, nch, r0, r1, swap);
    });
    return false;
  }

  if (g.bpacked) {
    const KBlocks blk = kblocks(K);
    const i64 nkb = blk.nkb, kcb = blk.kcb;
    const bool big = (double)M * (double)N * 4.0 >= 8.0 * 1024 * 1024;
    // The packing has no leading zero columns: stream only where C's rows start aligned.
    const bool canStream = big && S::W >= 8 && g.ldc % S::W == 0 && (uintptr_t)g.C % (S::W * 4) == 0 &&
                           (g.act != 1 || !g.preact || (uintptr_t)g.preact % (S::W * 4) == 0);
    const PackedB pb{g.bpacked, nkb, kcb, (N + NR - 1) / NR, 0, canStream};
    run_packed(g, pb, nth, work);
    return true;
  }
  if (nth <= 1 || work < 2.0e5) {
    gemm_block(g, 0, M, 0, N, 0, K, g.C, g.ldc, g.accumulate, true);
    return true;
  }
  {
    // B packed once, shared by all tasks (when it fits): tasks over rows x panel ranges.
    const KBlocks blk = kblocks(K);
    const i64 nkb = blk.nkb, kcb = blk.kcb;
    const bool big = (double)M * (double)N * 4.0 >= 8.0 * 1024 * 1024;
    const bool canStream = big && S::W >= 8 && g.ldc % S::W == 0 &&
                           (g.act != 1 || !g.preact || (uintptr_t)g.preact % (S::W * 4) ==
                                                           (uintptr_t)g.C % (S::W * 4));
    const int lead = canStream ? (int)(((uintptr_t)g.C / 4) % S::W) : 0;
    const i64 npan = (N + lead + NR - 1) / NR;
    const double psize = (double)nkb * (double)npan * (double)kcb * NR;
    if (psize <= (double)((i64)1 << 24)) {  // up to 64 MiB
      float* bpk = scratch(2, (size_t)psize);
      parallel_for(nkb * npan, [&](i64 task) {
        const i64 kb = task / npan, p = task % npan;
        const i64 pc = kb * kcb;
        i64 kc = K - pc < kcb ? K - pc : kcb;
        if (kc < 0) kc = 0;
        pack_panel(g, pc, kc, p * NR - lead, bpk + (kb * npan + p) * kcb * NR);
      });
      const PackedB pb{bpk, nkb, kcb, npan, lead, canStream};
      run_packed(g, pb, nth, work);
      return true;
    }
  }
  // 2-D task grid: column ranges of up to NC columns, row ranges of MR multiples.
  const i64 ntile = (N + NR - 1) / NR;
  const i64 tilesPerNb = NC / NR;
  i64 nnb = (ntile + tilesPerNb - 1) / tilesPerNb;
  const i64 mt = (M + MR - 1) / MR;
  i64 target = 4 * nth;
  // Keep each task large enough that packing B and dispatch stay small.
  const double minWork = 4.0e6;
  i64 maxTasks = (i64)(work / minWork);
  if (maxTasks < 1) maxTasks = 1;
  if (target > maxTasks) target = maxTasks < nth ? nth : maxTasks;
  i64 nmb = (target + nnb - 1) / nnb;
  if (nmb > mt) nmb = mt;
  if (nmb < 1) nmb = 1;
  if (nmb * nnb < nth && ntile > nnb) {  // few rows: split columns further
    nnb = nth * 2 < ntile ? nth * 2 : ntile;
  }
  const i64 mtPer = (mt + nmb - 1) / nmb;
  const i64 ntPer = (ntile + nnb - 1) / nnb;
  parallel_for(nmb * nnb, [&](i64 task) {
    const i64 bm = task / nnb, bn = task % nnb;
    const i64 m0 = bm * mtPer * MR, m1 = m0 + mtPer * MR < M ? m0 + mtPer * MR : M;
    const i64 n0 = bn * ntPer * NR, n1 = n0 + ntPer * NR < N ? n0 + ntPer * NR : N;
    if (m0 >= m1 || n0 >= n1) return;
    gemm_block(g, m0, m1, n0, n1, 0, K, g.C, g.ldc, g.accumulate, true);
  });
  return true;
}

static void gemm(const GemmCall& g) {
  if (!g.sqsum) {
    gemm_core(g);
    return;
  }
  // Column sums of squares per group of sq_rows rows: per-tile partials (the epilogue's, or
  // from C), then each group's tiles added in order (a function of the shape only).
  GemmCall h = g;
  h.sqsum = nullptr;
  h.sqpart = g.sq_rows >= MR ? scratch(5, (size_t)(((g.M + MR - 1) / MR) * 2 * g.N)) : nullptr;
  const bool wrote = gemm_core(h);
  if (g.M <= 0 || g.N <= 0) return;
  if (h.sqpart) {
    if (!wrote) sq_partials_from_c(h);
    sq_reduce(h, g.sqsum);
    return;
  }
  // Groups smaller than a tile: directly from C.
  const i64 G = g.M / g.sq_rows;
  parallel_for(G, [&](i64 gi) {
    for (i64 j = 0; j < g.N; j += S::W) {
      const int n = (int)(g.N - j < S::W ? g.N - j : S::W);
      S::v s = S::zero();
      for (i64 r = gi * g.sq_rows; r < (gi + 1) * g.sq_rows; ++r) {
        const S::v v = S::load_n(g.C + r * g.ldc + j, n);
        s = S::fma(v, v, s);
      }
      S::store_n(g.sqsum + gi * g.N + j, s, n);
    }
  });
}

static void colsum(const float* x, i64 M, i64 N, float* out, bool accumulate) {
  if (N <= 0) return;
  // Fixed row chunks (shape-only), partial sums added in chunk order.
  const i64 RCH = 256;
  const i64 nch = M <= 0 ? 0 : (M + RCH - 1) / RCH;
  if (nch <= 1) {
    for (i64 j = 0; j < N; j += S::W) {
      const int n = (int)(N - j < S::W ? N - j : S::W);
      S::v s = accumulate ? S::load_n(out + j, n) : S::zero();
      S::v t = S::zero();
      for (i64 i = 0; i < M; ++i) t = S::add(t, S::load_n(x + i * N + j, n));
      S::store_n(out + j, S::add(s, t), n);
    }
    return;
  }
  float* parts = scratch(1, (size_t)(nch * N));
  parallel_for(nch, [&](i64 ch) {
    const i64 r0 = ch * RCH, r1 = r0 + RCH < M ? r0 + RCH : M;
    float* p = parts + ch * N;
    i64 j = 0;
    for (; j + 4 * S::W <= N; j += 4 * S::W) {
      S::v a0 = S::zero(), a1 = S::zero(), a2 = S::zero(), a3 = S::zero();
      for (i64 i = r0; i < r1; ++i) {
        const float* xr = x + i * N + j;
        a0 = S::add(a0, S::load(xr));
        a1 = S::add(a1, S::load(xr + S::W));
        a2 = S::add(a2, S::load(xr + 2 * S::W));
        a3 = S::add(a3, S::load(xr + 3 * S::W));
      }
      S::store(p + j, a0);
      S::store(p + j + S::W, a1);
      S::store(p + j + 2 * S::W, a2);
      S::store(p + j + 3 * S::W, a3);
    }
    for (; j < N; j += S::W) {
      const int n = (int)(N - j < S::W ? N - j : S::W);
      S::v a = S::zero();
      for (i64 i = r0; i < r1; ++i) a = S::add(a, S::load_n(x + i * N + j, n));
      S::store_n(p + j, a, n);
    }
  });
  for (i64 j = 0; j < N; j += S::W) {
    const int n = (int)(N - j < S::W ? N - j : S::W);
    S::v t = S::load_n(parts + j, n);
    for (i64 ch = 1; ch < nch; ++ch) t = S::add(t, S::load_n(parts + ch * N + j, n));
    if (accumulate) t = S::add(S::load_n(out + j, n), t);
    S::store_n(out + j, t, n);
  }
}

// op(B) (N x K) packed as the shared path of gemm_core packs it (k-blocks of panels, no
// leading zero columns), for GemmCall::bpacked.
static i64 gemm_packed_size(i64 N, i64 K) {
  const KBlocks blk = kblocks(K);
  const i64 nkb = blk.nkb, kcb = blk.kcb;
  return nkb * ((N + NR - 1) / NR) * kcb * NR;
}

static void gemm_pack_b(const float* B, i64 ldb, bool transB, i64 N, i64 K, float* out) {
  GemmCall g{};
  g.transB = transB;
  g.B = B;
  g.ldb = ldb;
  g.N = N;
  g.K = K;
  const KBlocks blk = kblocks(K);
  const i64 nkb = blk.nkb, kcb = blk.kcb;
  const i64 npan = (N + NR - 1) / NR;
  parallel_for(nkb * npan, [&](i64 task) {
    const i64 kb = task / npan, p = task % npan;
    const i64 pc = kb * kcb;
    i64 kc = K - pc < kcb ? K - pc : kcb;
    if (kc < 0) kc = 0;
    float* dst = out + (kb * npan + p) * kcb * NR;
    pack_panel(g, pc, kc, p * NR, dst);
    // The rest of a short last k-block's panel is never read; keep it defined.
    for (i64 i = kc * NR; i < kcb * NR; ++i) dst[i] = 0.0f;
  });
}

void fill_gemm(KernelTable& t) {
  t.gemm = &gemm;
  t.gemm_packed_size = &gemm_packed_size;
  t.gemm_pack_b = &gemm_pack_b;
  t.colsum = &colsum;
}
