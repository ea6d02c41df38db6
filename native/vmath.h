// Vector math on the S abstraction: exp, and the normal CDF / GELU built on an erfc
// approximation erfc(z) = exp(-z^2) * R(t), t = 1/(1 + p z), z >= 0, with R a degree-9
// polynomial fitted for this project (model error < 1e-9; ~2e-7 absolute in float).
// Included inside an ISA namespace after S.

// exp(x), x clamped to [-87.3, 88.7]; relative error ~2e-7.
static inline S::v v_exp(S::v x) {
  x = S::min(S::max(x, S::set1(-87.3f)), S::set1(88.7f));
  S::v n = S::round(S::mul(x, S::set1(1.44269504088896341f)));
  S::v r = S::fnma(n, S::set1(0.693145751953125f), x);  // ln2 split: hi + lo
  r = S::fnma(n, S::set1(1.428606765330187e-06f), r);
  S::v p = S::set1(1.0f / 5040.0f);
  p = S::fma(p, r, S::set1(1.0f / 720.0f));
  p = S::fma(p, r, S::set1(1.0f / 120.0f));
  p = S::fma(p, r, S::set1(1.0f / 24.0f));
  p = S::fma(p, r, S::set1(1.0f / 6.0f));
  p = S::fma(p, r, S::set1(0.5f));
  p = S::fma(p, r, S::set1(1.0f));
  p = S::fma(p, r, S::set1(1.0f));
  return S::scale2(p, n);
}

// For x: phi = Phi(x) (standard normal CDF) and e = exp(-x^2/2) (for |x| <= 13; beyond,
// e is tiny and only used in products that vanish).
static inline void v_ncdf(S::v x, S::v& phi, S::v& e) {
  const S::v z = S::min(S::mul(S::abs(x), S::set1(0.70710678118654752f)), S::set1(9.3f));
  const S::v t = S::rcp(S::fma(z, S::set1(0.363f), S::set1(1.0f)));
  // r = 0.5 * erfc(z) * exp(z^2)
  S::v r = S::set1(3.109962066e-02f);
  r = S::fma(r, t, S::set1(-1.615992442e-01f));
  r = S::fma(r, t, S::set1(2.788198794e-01f));
  r = S::fma(r, t, S::set1(-1.764312137e-01f));
  r = S::fma(r, t, S::set1(1.743485989e-01f));
  r = S::fma(r, t, S::set1(4.761616893e-02f));
  r = S::fma(r, t, S::set1(1.019083391e-01f));
  r = S::fma(r, t, S::set1(1.018161494e-01f));
  r = S::fma(r, t, S::set1(1.024218320e-01f));
  r = S::fma(r, t, S::set1(-1.303795226e-07f));
  // e = exp(-z^2) = 2^n exp(-s), n = round(-z^2 log2 e), s = z^2 + n ln 2 in [-0.35, 0.35];
  // z <= 9.3 keeps n in [-125, 0] (no clamping needed).
  const S::v z2 = S::mul(z, z);
  const S::v magic = S::set1(12582912.0f);  // 1.5 * 2^23: rounds to an integer in the add
  const S::v m = S::fma(z2, S::set1(-1.44269504088896341f), magic);
  const S::v n = S::sub(m, magic);
  S::v s = S::fma(n, S::set1(0.693145751953125f), z2);
  s = S::fma(n, S::set1(1.428606765330187e-06f), s);
  S::v p = S::set1(-1.0f / 5040.0f);
  p = S::fma(p, s, S::set1(1.0f / 720.0f));
  p = S::fma(p, s, S::set1(-1.0f / 120.0f));
  p = S::fma(p, s, S::set1(1.0f / 24.0f));
  p = S::fma(p, s, S::set1(-1.0f / 6.0f));
  p = S::fma(p, s, S::set1(0.5f));
  p = S::fma(p, s, S::set1(-1.0f));
  p = S::fma(p, s, S::set1(1.0f));
  e = S::mul_pow2_magic(p, m);
  const S::v q = S::mul(e, r);  // Phi(-|x|)
  phi = S::select(S::lt(x, S::zero()), q, S::sub(S::set1(1.0f), q));
}

// gelu(x) = x * Phi(x), the forward (GEMM epilogue and elementwise): Phi(x) - 1/2 =
// u P(u^2) / Q(u^2) with u = x clamped to +-5.5437 (erf(3.92) = 1 - 2.6e-8), P of degree 6 and
// Q of degree 4, a rational fit made for this project (model error 4.3e-8 in erf; ~2e-7
// absolute in Phi in float, like the erfc form below). 19 vector operations instead of the
// erfc form's ~35: the epilogue of the K = 40 GEMMs costs as much as their FMAs otherwise.
static inline S::v v_gelu(S::v x) {
  const S::v u = S::min(S::max(x, S::set1(-5.5437f)), S::set1(5.5437f));
  const S::v t = S::mul(u, u);
  S::v p = S::set1(1.100458845e-10f);
  p = S::fma(p, t, S::set1(-2.203307920e-08f));
  p = S::fma(p, t, S::set1(3.291999243e-06f));
  p = S::fma(p, t, S::set1(1.755695008e-04f));
  p = S::fma(p, t, S::set1(4.542868934e-03f));
  p = S::fma(p, t, S::set1(3.643548813e-02f));
  p = S::fma(p, t, S::set1(3.989421427e-01f));
  S::v q = S::set1(6.400399646e-05f);
  q = S::fma(q, t, S::set1(1.861103967e-03f));
  q = S::fma(q, t, S::set1(2.939071468e-02f));
  q = S::fma(q, t, S::set1(2.579946088e-01f));
  q = S::fma(q, t, S::set1(1.0f));
  return S::mul(x, S::fma(S::mul(u, p), S::rcp(q), S::set1(0.5f)));
}

// gelu'(x) = Phi(x) + x * exp(-x^2/2) / sqrt(2 pi)
static inline S::v v_gelu_grad(S::v x) {
  S::v phi, e;
  v_ncdf(x, phi, e);
  return S::fma(S::mul(x, S::set1(0.398942280401432678f)), e, phi);
}
