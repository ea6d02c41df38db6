// Portable 4-lane vector abstraction on GCC/Clang vector extensions (SSE2, NEON, wasm simd128).
// Included inside namespace cnx::portable.
typedef float cnx_v4f __attribute__((vector_size(16)));
typedef int32_t cnx_v4i __attribute__((vector_size(16)));
struct S {
  typedef cnx_v4f v;
  typedef cnx_v4i m;
  static constexpr int W = 4;
  static constexpr int REGS = 16;  // vector registers: the fewest of the targets: xmm0-15 on x86-64 (NEON has 32, wasm locals more)
  static inline v load(const float* p) {
    v r;
    std::memcpy(&r, p, sizeof r);
    return r;
  }
  static inline void store(float* p, v x) { std::memcpy(p, &x, sizeof x); }
  static inline v load_n(const float* p, int n) {
    v r = {0, 0, 0, 0};
    for (int i = 0; i < n; ++i) r[i] = p[i];
    return r;
  }
  static inline void store_n(float* p, v x, int n) {
    for (int i = 0; i < n; ++i) p[i] = x[i];
  }
  static inline void stream(float* p, v x) { store(p, x); }
  static inline void fence() {}
  static inline v load_range(const float* p, int lo, int hi) {
    v r = {0, 0, 0, 0};
    for (int i = lo; i < hi; ++i) r[i] = p[i];
    return r;
  }
  static inline void store_range(float* p, v x, int lo, int hi) {
    for (int i = lo; i < hi; ++i) p[i] = x[i];
  }
  static inline v set1(float x) { return v{x, x, x, x}; }
  static inline v zero() { return v{0, 0, 0, 0}; }
  static inline v fma(v a, v b, v c) { return a * b + c; }
  static inline v fnma(v a, v b, v c) { return c - a * b; }
  static inline v add(v a, v b) { return a + b; }
  static inline v sub(v a, v b) { return a - b; }
  static inline v mul(v a, v b) { return a * b; }
  static inline v div(v a, v b) { return a / b; }
  static inline v min(v a, v b) { return select(b < a, b, a); }
  static inline v max(v a, v b) { return select(a < b, b, a); }
  static inline v abs(v a) {
    cnx_v4i i;
    std::memcpy(&i, &a, sizeof i);
    i &= 0x7fffffff;
    std::memcpy(&a, &i, sizeof i);
    return a;
  }
  static inline v sqrt(v a) {
    for (int i = 0; i < 4; ++i) a[i] = std::sqrt(a[i]);
    return a;
  }
  static inline m lt(v a, v b) { return a < b; }
  static inline m eq(v a, v b) { return a == b; }
  static inline v select(m k, v a, v b) {
    cnx_v4i ia, ib;
    std::memcpy(&ia, &a, sizeof ia);
    std::memcpy(&ib, &b, sizeof ib);
    cnx_v4i r = (k & ia) | (~k & ib);
    v out;
    std::memcpy(&out, &r, sizeof out);
    return out;
  }
  static inline v round(v a) {  // |a| < 2^22
    const v magic = set1(12582912.0f);
    return (a + magic) - magic;
  }
  static inline v scale2(v p, v n) {
    cnx_v4i e = (__builtin_convertvector(n, cnx_v4i) + 127) << 23;
    v f;
    std::memcpy(&f, &e, sizeof f);
    return p * f;
  }
  static inline v mul_pow2_magic(v p, v m) {
    cnx_v4i ip, im;
    std::memcpy(&ip, &p, sizeof ip);
    std::memcpy(&im, &m, sizeof im);
    ip += im << 23;
    v r;
    std::memcpy(&r, &ip, sizeof r);
    return r;
  }
  static inline v rcp(v a) { return set1(1.0f) / a; }
  // In-register transpose of a W x W block: r[i] holds row i on entry, column i on exit.
  static inline void transpose(v* r) {
#if defined(__clang__) || __GNUC__ >= 12
    // Unpack low/high pairs, then 64-bit halves: shuffles V8 maps to unpcklps/unpckhps/movlhps/
    // movhlps (lane-by-lane copies became 32 extract/replace-lane instructions in wasm).
    const v t0 = __builtin_shufflevector(r[0], r[1], 0, 4, 1, 5), t1 = __builtin_shufflevector(r[0], r[1], 2, 6, 3, 7);
    const v t2 = __builtin_shufflevector(r[2], r[3], 0, 4, 1, 5), t3 = __builtin_shufflevector(r[2], r[3], 2, 6, 3, 7);
    r[0] = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
    r[1] = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
    r[2] = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
    r[3] = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
#else
    v t[4];
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) t[j][i] = r[i][j];
    for (int i = 0; i < 4; ++i) r[i] = t[i];
#endif
  }
  static inline float hsum(v a) { return (a[0] + a[2]) + (a[1] + a[3]); }
};
#ifndef CNX_GEMM_MR
#define CNX_GEMM_MR 6
#endif
#ifndef CNX_GEMM_NV
#define CNX_GEMM_NV 2
#endif
#ifndef CNX_GEMM_KC
#define CNX_GEMM_KC 256
#endif
