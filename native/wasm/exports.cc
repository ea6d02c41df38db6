// The WebAssembly build of the kernels: the portable path's sources (gemm.cc, dwconv.cc,
// norm.cc, misc.cc, compiled here with -msimd128) behind a flat C ABI for src/kernels/wasm.ts.
// Pointers are offsets into the module's linear memory; sizes are 32-bit (a wasm32 memory is at
// most 4 GiB). The JavaScript side validates every argument before calling. One thread: the
// pool runs tasks in order on the caller (the kernels' fixed-order reductions make results
// independent of that). scripts/build-wasm.ts builds it.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "../kernels.h"
#include "../threadpool.h"

namespace cnx {
namespace portable {
void fill_gemm(KernelTable&);
void fill_dwconv(KernelTable&);
void fill_norm(KernelTable&);
void fill_misc(KernelTable&);
}  // namespace portable

void pool_run(int64_t ntasks, TaskFn fn, void* ctx) {
  for (int64_t i = 0; i < ntasks; ++i) fn(ctx, i);
}
int pool_threads() { return 1; }
void pool_set_threads(int) {}
int pool_default_threads() { return 1; }

float* scratch(int slot, size_t nfloats) {
  static float* bufs[6];
  static size_t caps[6];
  if (nfloats > caps[slot]) {
    std::free(bufs[slot]);
    const size_t bytes = ((nfloats * sizeof(float) + 63) / 64) * 64;
    bufs[slot] = static_cast<float*>(std::aligned_alloc(64, bytes));
    caps[slot] = bufs[slot] ? nfloats : 0;
  }
  return bufs[slot];
}
}  // namespace cnx

namespace {
cnx::KernelTable T;
bool ready = false;
const cnx::KernelTable& t() {
  if (!ready) {
    std::memset(&T, 0, sizeof T);
    T.name = "wasm";
    cnx::portable::fill_gemm(T);
    cnx::portable::fill_dwconv(T);
    cnx::portable::fill_norm(T);
    cnx::portable::fill_misc(T);
    ready = true;
  }
  return T;
}
template <class P>
P* ptr(uint32_t p) { return p ? reinterpret_cast<P*>(static_cast<uintptr_t>(p)) : nullptr; }
}  // namespace

#define EXPORT(name) extern "C" __attribute__((export_name(#name)))

EXPORT(cnx_malloc) uint32_t cnx_malloc(uint32_t bytes) {
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(std::aligned_alloc(64, ((bytes + 63) / 64) * 64 + 64)));
}
EXPORT(cnx_free) void cnx_free(uint32_t p) { std::free(ptr<void>(p)); }

EXPORT(gemm) void gemm(int transA, int transB, int M, int N, int K, uint32_t A, int lda, uint32_t B, int ldb, uint32_t C,
                       int ldc, int accumulate, uint32_t bias, int act, uint32_t preact, uint32_t ascale, int ascaleRows,
                       uint32_t ashift, uint32_t resid, uint32_t sqsum, int sqRows) {
  cnx::GemmCall g;
  std::memset(&g, 0, sizeof g);
  g.transA = transA; g.transB = transB; g.M = M; g.N = N; g.K = K;
  g.A = ptr<const float>(A); g.lda = lda; g.B = ptr<const float>(B); g.ldb = ldb; g.C = ptr<float>(C); g.ldc = ldc;
  g.accumulate = accumulate; g.bias = ptr<const float>(bias); g.act = act; g.preact = ptr<float>(preact);
  g.ascale = ptr<const float>(ascale); g.ascale_rows = ascaleRows; g.ashift = ptr<const float>(ashift);
  g.resid = ptr<const float>(resid); g.sqsum = ptr<float>(sqsum); g.sq_rows = sqRows;
  t().gemm(g);
}
EXPORT(col_sum) void col_sum(uint32_t x, int M, int N, uint32_t out, int acc) { t().colsum(ptr<const float>(x), M, N, ptr<float>(out), acc); }
EXPORT(dwconv_fwd) void dwconv_fwd(uint32_t x, int N, int H, int W, int C, int K, uint32_t w, uint32_t b, uint32_t y) {
  t().dwconv_fwd(ptr<const float>(x), N, H, W, C, K, ptr<const float>(w), ptr<const float>(b), ptr<float>(y));
}
EXPORT(dwconv_bwd_in) void dwconv_bwd_in(uint32_t dy, int N, int H, int W, int C, int K, uint32_t w, uint32_t dx, int acc) {
  t().dwconv_bwd_in(ptr<const float>(dy), N, H, W, C, K, ptr<const float>(w), ptr<float>(dx), acc);
}
EXPORT(dwconv_bwd_w) void dwconv_bwd_w(uint32_t dy, uint32_t x, int N, int H, int W, int C, int K, uint32_t dw, uint32_t db) {
  t().dwconv_bwd_w(ptr<const float>(dy), ptr<const float>(x), N, H, W, C, K, ptr<float>(dw), ptr<float>(db));
}
EXPORT(dwconv_rows_fwd) void dwconv_rows_fwd(uint32_t x, uint32_t rowOf, uint32_t idx, int R, int N, int H, int W, int C, int K,
                                             uint32_t w, uint32_t b, uint32_t y) {
  t().dwconv_rows_fwd(ptr<const float>(x), ptr<const int32_t>(rowOf), ptr<const int32_t>(idx), R, N, H, W, C, K, ptr<const float>(w),
                      ptr<const float>(b), ptr<float>(y));
}
EXPORT(dwconv_rows_bwd_in) void dwconv_rows_bwd_in(uint32_t dy, uint32_t rowOf, uint32_t idx, int R, int N, int H, int W, int C, int K,
                                                   uint32_t w, uint32_t dx, int acc) {
  t().dwconv_rows_bwd_in(ptr<const float>(dy), ptr<const int32_t>(rowOf), ptr<const int32_t>(idx), R, N, H, W, C, K, ptr<const float>(w),
                         ptr<float>(dx), acc);
}
EXPORT(dwconv_rows_bwd_w) void dwconv_rows_bwd_w(uint32_t dy, uint32_t x, uint32_t rowOf, uint32_t idx, int R, int N, int H, int W, int C,
                                                 int K, uint32_t dw, uint32_t db) {
  t().dwconv_rows_bwd_w(ptr<const float>(dy), ptr<const float>(x), ptr<const int32_t>(rowOf), ptr<const int32_t>(idx), R, N, H, W, C, K,
                        ptr<float>(dw), ptr<float>(db));
}
EXPORT(ln_fwd) void ln_fwd(uint32_t x, int M, int C, uint32_t g, uint32_t b, float eps, uint32_t y, uint32_t mean, uint32_t rstd) {
  t().ln_fwd(ptr<const float>(x), M, C, ptr<const float>(g), ptr<const float>(b), eps, ptr<float>(y), ptr<float>(mean), ptr<float>(rstd));
}
EXPORT(ln_bwd) void ln_bwd(uint32_t dy, uint32_t x, uint32_t mean, uint32_t rstd, uint32_t g, int M, int C, uint32_t dx, int acc,
                           uint32_t dg, uint32_t db) {
  t().ln_bwd(ptr<const float>(dy), ptr<const float>(x), ptr<const float>(mean), ptr<const float>(rstd), ptr<const float>(g), M, C,
             ptr<float>(dx), acc, ptr<float>(dg), ptr<float>(db));
}
EXPORT(grn_fwd) void grn_fwd(uint32_t x, uint32_t off, int S, int C, uint32_t g, uint32_t b, float eps, uint32_t y, uint32_t gx,
                             uint32_t nx, uint32_t sq) {
  t().grn_fwd(ptr<const float>(x), ptr<const int32_t>(off), S, C, ptr<const float>(g), ptr<const float>(b), eps, ptr<float>(y),
              ptr<float>(gx), ptr<float>(nx), ptr<const float>(sq));
}
EXPORT(grn_bwd) void grn_bwd(uint32_t dy, uint32_t x, uint32_t off, int S, int C, uint32_t g, float eps, uint32_t gx, uint32_t nx,
                             uint32_t dx, uint32_t dg, uint32_t db, uint32_t pre, uint32_t dbias) {
  t().grn_bwd(ptr<const float>(dy), ptr<const float>(x), ptr<const int32_t>(off), S, C, ptr<const float>(g), eps, ptr<const float>(gx),
              ptr<const float>(nx), ptr<float>(dx), ptr<float>(dg), ptr<float>(db), ptr<const float>(pre), ptr<float>(dbias));
}
EXPORT(gelu) void gelu(uint32_t x, uint32_t y, int n) { t().gelu(ptr<const float>(x), ptr<float>(y), n); }
EXPORT(gelu_bwd) void gelu_bwd(uint32_t dy, uint32_t x, uint32_t dx, int n) {
  t().gelu_bwd(ptr<const float>(dy), ptr<const float>(x), ptr<float>(dx), n);
}
EXPORT(avgpool_fwd) void avgpool_fwd(uint32_t x, int N, int HW, int C, uint32_t y) { t().avgpool_fwd(ptr<const float>(x), N, HW, C, ptr<float>(y)); }
EXPORT(avgpool_bwd) void avgpool_bwd(uint32_t dy, int N, int HW, int C, uint32_t dx) { t().avgpool_bwd(ptr<const float>(dy), N, HW, C, ptr<float>(dx)); }
EXPORT(softmax_ce) double softmax_ce(uint32_t l, uint32_t tg, int N, int K, uint32_t d) {
  return t().softmax_ce(ptr<const float>(l), ptr<const float>(tg), N, K, ptr<float>(d));
}
EXPORT(patchify) void patchify(uint32_t x, int N, int H, int W, int C, int P, uint32_t cols) { t().patchify(ptr<const float>(x), N, H, W, C, P, ptr<float>(cols)); }
EXPORT(unpatchify) void unpatchify(uint32_t d, int N, int H, int W, int C, int P, uint32_t dx) { t().unpatchify(ptr<const float>(d), N, H, W, C, P, ptr<float>(dx)); }
EXPORT(nchw_to_nhwc) void nchw_to_nhwc(uint32_t s, int N, int C, int H, int W, uint32_t d) { t().nchw_to_nhwc(ptr<const float>(s), N, C, H, W, ptr<float>(d)); }
EXPORT(nhwc_to_nchw) void nhwc_to_nchw(uint32_t s, int N, int H, int W, int C, uint32_t d) { t().nhwc_to_nchw(ptr<const float>(s), N, H, W, C, ptr<float>(d)); }
EXPORT(add_scaled) void add_scaled(uint32_t x, uint32_t br, uint32_t sc, int N, int R, int C, uint32_t out) {
  t().add_scaled(ptr<const float>(x), ptr<const float>(br), ptr<const float>(sc), N, R, C, ptr<float>(out));
}
EXPORT(adamw) void adamw(uint32_t p, uint32_t g, uint32_t m, uint32_t v, int n, double lr, double b1, double b2, double eps, double wd,
                         double bc1, double bc2) {
  t().adamw(ptr<float>(p), ptr<const float>(g), ptr<float>(m), ptr<float>(v), n, lr, b1, b2, eps, wd, bc1, bc2);
}
