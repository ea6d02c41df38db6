// AVX2 + FMA vector abstraction. Included inside namespace cnx::avx2 (needs <immintrin.h>).
struct S {
  typedef __m256 v;
  typedef __m256 m;
  static constexpr int W = 8;
  static constexpr int REGS = 16;  // vector registers: ymm0-15
  static inline __m256i nmask(int n) {
    alignas(32) static const int32_t tbl[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                0,  0,  0,  0,  0,  0,  0,  0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tbl + 8 - n));
  }
  static inline v load(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store(float* p, v x) { _mm256_storeu_ps(p, x); }
  static inline v load_n(const float* p, int n) { return _mm256_maskload_ps(p, nmask(n)); }
  static inline void store_n(float* p, v x, int n) { _mm256_maskstore_ps(p, nmask(n), x); }
  static inline void stream(float* p, v x) { _mm256_stream_ps(p, x); }  // p 32-byte aligned
  static inline void fence() { _mm_sfence(); }
  static inline v load_range(const float* p, int lo, int hi) {
    return _mm256_maskload_ps(p, _mm256_andnot_si256(nmask(lo), nmask(hi)));
  }
  static inline void store_range(float* p, v x, int lo, int hi) {
    _mm256_maskstore_ps(p, _mm256_andnot_si256(nmask(lo), nmask(hi)), x);
  }
  static inline v set1(float x) { return _mm256_set1_ps(x); }
  static inline v zero() { return _mm256_setzero_ps(); }
  static inline v fma(v a, v b, v c) { return _mm256_fmadd_ps(a, b, c); }
  static inline v fnma(v a, v b, v c) { return _mm256_fnmadd_ps(a, b, c); }
  static inline v add(v a, v b) { return _mm256_add_ps(a, b); }
  static inline v sub(v a, v b) { return _mm256_sub_ps(a, b); }
  static inline v mul(v a, v b) { return _mm256_mul_ps(a, b); }
  static inline v div(v a, v b) { return _mm256_div_ps(a, b); }
  static inline v min(v a, v b) { return _mm256_min_ps(a, b); }
  static inline v max(v a, v b) { return _mm256_max_ps(a, b); }
  static inline v abs(v a) {
    return _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
  }
  static inline v sqrt(v a) { return _mm256_sqrt_ps(a); }
  static inline m lt(v a, v b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static inline m eq(v a, v b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
  static inline v select(m k, v a, v b) { return _mm256_blendv_ps(b, a, k); }
  static inline v round(v a) {
    return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static inline v scale2(v p, v n) {
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  }
  static inline v mul_pow2_magic(v p, v m) {
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p),
                                                _mm256_slli_epi32(_mm256_castps_si256(m), 23)));
  }
  static inline v rcp(v a) { return _mm256_div_ps(_mm256_set1_ps(1.0f), a); }
  // In-register transpose of a W x W block: r[i] holds row i on entry, column i on exit.
  static inline void transpose(v* r) {
    v t[8], s4[8];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 2; ++g) {
      const __m256d a = _mm256_castps_pd(t[4 * g]), b = _mm256_castps_pd(t[4 * g + 1]);
      const __m256d c = _mm256_castps_pd(t[4 * g + 2]), d = _mm256_castps_pd(t[4 * g + 3]);
      s4[4 * g] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, c));
      s4[4 * g + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, c));
      s4[4 * g + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(b, d));
      s4[4 * g + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(b, d));
    }
    for (int c = 0; c < 4; ++c) {
      r[c] = _mm256_permute2f128_ps(s4[c], s4[4 + c], 0x20);
      r[4 + c] = _mm256_permute2f128_ps(s4[c], s4[4 + c], 0x31);
    }
  }
  static inline float hsum(v a) {
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
  }
};
#define CNX_GEMM_MR 6
#define CNX_GEMM_NV 2
#define CNX_GEMM_KC 256
