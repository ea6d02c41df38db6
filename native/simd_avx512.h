// AVX-512 vector abstraction. Included inside namespace cnx::avx512 (needs <immintrin.h>).
struct S {
  typedef __m512 v;
  typedef __mmask16 m;
  static constexpr int W = 16;
  static constexpr int REGS = 32;  // vector registers: zmm0-31
  static inline v load(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, v x) { _mm512_storeu_ps(p, x); }
  static inline __mmask16 nmask(int n) { return (__mmask16)((1u << n) - 1u); }
  static inline v load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(nmask(n), p); }
  static inline void store_n(float* p, v x, int n) { _mm512_mask_storeu_ps(p, nmask(n), x); }
  static inline void stream(float* p, v x) { _mm512_stream_ps(p, x); }  // p 64-byte aligned
  static inline void fence() { _mm_sfence(); }
  // Lanes [lo, hi) only; masked-off lanes are neither read nor written (no faults).
  static inline v load_range(const float* p, int lo, int hi) {
    return _mm512_maskz_loadu_ps((__mmask16)(nmask(hi) & ~nmask(lo)), p);
  }
  static inline void store_range(float* p, v x, int lo, int hi) {
    _mm512_mask_storeu_ps(p, (__mmask16)(nmask(hi) & ~nmask(lo)), x);
  }
  static inline v set1(float x) { return _mm512_set1_ps(x); }
  static inline v zero() { return _mm512_setzero_ps(); }
  static inline v fma(v a, v b, v c) { return _mm512_fmadd_ps(a, b, c); }
  static inline v fnma(v a, v b, v c) { return _mm512_fnmadd_ps(a, b, c); }
  static inline v add(v a, v b) { return _mm512_add_ps(a, b); }
  static inline v sub(v a, v b) { return _mm512_sub_ps(a, b); }
  static inline v mul(v a, v b) { return _mm512_mul_ps(a, b); }
  static inline v div(v a, v b) { return _mm512_div_ps(a, b); }
  static inline v min(v a, v b) { return _mm512_min_ps(a, b); }
  static inline v max(v a, v b) { return _mm512_max_ps(a, b); }
  static inline v abs(v a) { return _mm512_abs_ps(a); }
  static inline v sqrt(v a) { return _mm512_sqrt_ps(a); }
  static inline m lt(v a, v b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static inline m eq(v a, v b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
  static inline v select(m k, v a, v b) { return _mm512_mask_blend_ps(k, b, a); }  // k ? a : b
  static inline v round(v a) {
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  // p * 2^n for integral n in [-126, 127].
  static inline v scale2(v p, v n) { return _mm512_scalef_ps(p, n); }
  // p * 2^n where m = n + 1.5 * 2^23 (n integral, in the low mantissa bits of m).
  static inline v mul_pow2_magic(v p, v m) {
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p),
                                                _mm512_slli_epi32(_mm512_castps_si512(m), 23)));
  }
  static inline v rcp(v a) {  // ~1e-8 relative
    v r = _mm512_rcp14_ps(a);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(a, r, _mm512_set1_ps(2.0f)));
  }
  // In-register transpose of a W x W block: r[i] holds row i on entry, column i on exit.
  static inline void transpose(v* r) {
    v t[16];
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    v s4[16];  // s4[4g + c], lane L: column 4L + c of rows 4g..4g+3
    for (int g = 0; g < 4; ++g) {
      const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
      const __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
      s4[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
      s4[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
      s4[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
      s4[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int c = 0; c < 4; ++c) {
      const v x0 = _mm512_shuffle_f32x4(s4[c], s4[4 + c], 0x44), x1 = _mm512_shuffle_f32x4(s4[c], s4[4 + c], 0xEE);
      const v y0 = _mm512_shuffle_f32x4(s4[8 + c], s4[12 + c], 0x44), y1 = _mm512_shuffle_f32x4(s4[8 + c], s4[12 + c], 0xEE);
      r[c] = _mm512_shuffle_f32x4(x0, y0, 0x88);
      r[4 + c] = _mm512_shuffle_f32x4(x0, y0, 0xDD);
      r[8 + c] = _mm512_shuffle_f32x4(x1, y1, 0x88);
      r[12 + c] = _mm512_shuffle_f32x4(x1, y1, 0xDD);
    }
  }
  static inline float hsum(v a) {
    __m256 lo = _mm512_castps512_ps256(a);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
    __m256 s = _mm256_add_ps(lo, hi);
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
  }
};
#define CNX_GEMM_MR 12
#define CNX_GEMM_NV 2
#define CNX_GEMM_KC 384
