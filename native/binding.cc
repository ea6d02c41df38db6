// N-API binding: the only file that includes N-API headers. Validates every argument and
// passes typed arrays zero-copy to the active kernel table.
#include <napi.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "cpu.h"
#include "kernels.h"
#include "threadpool.h"

using cnx::i64;

namespace {

const cnx::KernelTable* g_table = nullptr;
cnx::Isa g_isa = cnx::ISA_PORTABLE;

// Argument reading with validation. Each getter records the first error; callers check ok().
class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* fn) : info_(info), fn_(fn) {}
  bool ok() const { return err_.empty(); }
  Napi::Value fail() {
    Napi::Error::New(info_.Env(), std::string(fn_) + ": " + err_).ThrowAsJavaScriptException();
    return info_.Env().Undefined();
  }
  void error(const std::string& m) {
    if (err_.empty()) err_ = m;
  }
  i64 dim(size_t i, const char* name, i64 minv = 0) {
    if (!ok()) return 0;
    if (i >= info_.Length() || !info_[i].IsNumber()) {
      error(std::string(name) + " must be a number");
      return 0;
    }
    const double d = info_[i].As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || d != std::floor(d) || d < (double)minv || d > 9007199254740991.0) {
      error(std::string(name) + " must be an integer >= " + std::to_string(minv) + " (got " +
            std::to_string(d) + ")");
      return 0;
    }
    if (d > 4.0e12) {
      error(std::string(name) + " is too large");
      return 0;
    }
    return (i64)d;
  }
  double num(size_t i, const char* name) {
    if (!ok()) return 0;
    if (i >= info_.Length() || !info_[i].IsNumber()) {
      error(std::string(name) + " must be a number");
      return 0;
    }
    const double d = info_[i].As<Napi::Number>().DoubleValue();
    if (std::isnan(d)) error(std::string(name) + " must not be NaN");
    return d;
  }
  bool flag(size_t i, const char* name) {
    if (!ok()) return false;
    if (i >= info_.Length() || !info_[i].IsBoolean()) {
      error(std::string(name) + " must be a boolean");
      return false;
    }
    return info_[i].As<Napi::Boolean>().Value();
  }
  // A Float32Array holding at least `need` elements (or null when nullable).
  float* f32(size_t i, const char* name, double need, bool nullable = false) {
    if (!ok()) return nullptr;
    if (i >= info_.Length()) {
      error(std::string(name) + " is missing");
      return nullptr;
    }
    Napi::Value v = info_[i];
    if (nullable && (v.IsNull() || v.IsUndefined())) return nullptr;
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      error(std::string(name) + " must be a Float32Array" + (nullable ? " or null" : ""));
      return nullptr;
    }
    Napi::Float32Array a = v.As<Napi::Float32Array>();
    if ((double)a.ElementLength() < need) {
      error(std::string(name) + " is too short: needs " + std::to_string((long long)need) +
            " elements, has " + std::to_string((long long)a.ElementLength()));
      return nullptr;
    }
    return a.Data();
  }
  const int32_t* i32(size_t i, const char* name, size_t* len) {
    if (!ok()) return nullptr;
    if (i >= info_.Length() || !info_[i].IsTypedArray() ||
        info_[i].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      error(std::string(name) + " must be an Int32Array");
      return nullptr;
    }
    Napi::Int32Array a = info_[i].As<Napi::Int32Array>();
    *len = a.ElementLength();
    return a.Data();
  }
  int act(size_t i) {
    const i64 a = dim(i, "act");
    if (ok() && a > 1) error("act must be 0 (none) or 1 (gelu)");
    return (int)a;
  }

 private:
  const Napi::CallbackInfo& info_;
  const char* fn_;
  std::string err_;
};

// Elements spanned by a rows x cols matrix with row stride ld.
double extent(i64 rows, i64 cols, i64 ld) {
  if (rows <= 0 || cols <= 0) return 0;
  return (double)(rows - 1) * (double)ld + (double)cols;
}
double prod(std::initializer_list<i64> xs) {
  double p = 1;
  for (i64 x : xs) p *= (double)x;
  return p;
}
// Elements are addressed with 64-bit integers: refuse sizes whose products might overflow.
void check_size(Args& a, double elems) {
  if (elems > 9.0e15) a.error("tensor too large");
}

Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Args a(info, "gemm");
  cnx::DenormalGuard denormals;
  cnx::GemmCall g;
  g.transA = a.flag(0, "transA");
  g.transB = a.flag(1, "transB");
  g.M = a.dim(2, "M");
  g.N = a.dim(3, "N");
  g.K = a.dim(4, "K");
  g.lda = a.dim(6, "lda");
  g.ldb = a.dim(8, "ldb");
  g.ldc = a.dim(10, "ldc");
  if (!a.ok()) return a.fail();
  const i64 aRows = g.transA ? g.K : g.M, aCols = g.transA ? g.M : g.K;
  const i64 bRows = g.transB ? g.N : g.K, bCols = g.transB ? g.K : g.N;
  if (aRows > 0 && aCols > 0 && g.lda < aCols) a.error("lda must be >= " + std::to_string(aCols));
  if (bRows > 0 && bCols > 0 && g.ldb < bCols) a.error("ldb must be >= " + std::to_string(bCols));
  if (g.M > 0 && g.N > 0 && g.ldc < g.N) a.error("ldc must be >= N");
  check_size(a, extent(aRows, aCols, g.lda));
  check_size(a, extent(bRows, bCols, g.ldb));
  check_size(a, extent(g.M, g.N, g.ldc));
  g.A = a.f32(5, "A", extent(aRows, aCols, g.lda));
  g.B = a.f32(7, "B", extent(bRows, bCols, g.ldb));
  g.C = a.f32(9, "C", extent(g.M, g.N, g.ldc));
  g.accumulate = a.flag(11, "accumulate");
  g.bias = a.f32(12, "bias", (double)g.N, true);
  g.act = a.act(13);
  g.preact = a.f32(14, "preact", extent(g.M, g.N, g.ldc), true);
  g.ascale = nullptr;
  g.ascale_rows = 1;
  g.ashift = nullptr;
  if (info.Length() > 15 && !info[15].IsNull() && !info[15].IsUndefined()) {
    g.ascale_rows = a.dim(16, "aScaleRows", 1);
    if (a.ok() && g.transA) a.error("aScale needs A not transposed");
    const double groups = g.M > 0 ? (double)((g.M + g.ascale_rows - 1) / g.ascale_rows) : 0.0;
    g.ascale = a.f32(15, "aScale", groups * (double)g.K);
    g.ashift = info.Length() > 17 ? a.f32(17, "aShift", (double)g.K, true) : nullptr;
  }
  g.resid = info.Length() > 18 ? a.f32(18, "residual", extent(g.M, g.N, g.ldc), true) : nullptr;
  g.sqsum = nullptr;
  g.sq_rows = 1;
  g.sqpart = nullptr;
  if (info.Length() > 19 && !info[19].IsNull() && !info[19].IsUndefined()) {
    g.sq_rows = a.dim(20, "sqGroupRows", 1);
    if (a.ok() && g.M % g.sq_rows != 0) a.error("sqGroupRows must divide M");
    g.sqsum = a.f32(19, "sqSums", a.ok() ? (double)(g.M / g.sq_rows) * (double)g.N : 0.0);
  }
  if (info.Length() > 21 && !info[21].IsNull() && !info[21].IsUndefined()) {
    // op(B) packed by packWeights for this N and K (B itself is still checked above).
    g.bpacked = a.f32(21, "packedB", (double)g_table->gemm_packed_size(g.N, g.K));
  }
  if (a.ok() && g.resid && g.accumulate) a.error("residual and accumulate cannot be combined");
  if (a.ok() && g.accumulate && g.act == 1) a.error("accumulate and GELU cannot be combined");
  if (!a.ok()) return a.fail();
  if (g.act != 1) g.preact = nullptr;
  g_table->gemm(g);
  return info.Env().Undefined();
}

// packedSize(N, K): floats of an N x K operand packed for gemm's packedB on this path.
Napi::Value PackedSize(const Napi::CallbackInfo& info) {
  Args a(info, "packedSize");
  const i64 N = a.dim(0, "N"), K = a.dim(1, "K");
  check_size(a, prod({N, K}));
  if (!a.ok()) return a.fail();
  return Napi::Number::New(info.Env(), (double)g_table->gemm_packed_size(N, K));
}

// packWeights(B, ldb, transB, N, K, out): op(B) (K x N; B is N x K when transB) packed into out.
Napi::Value PackWeights(const Napi::CallbackInfo& info) {
  Args a(info, "packWeights");
  const i64 ldb = a.dim(1, "ldb");
  const bool transB = a.flag(2, "transB");
  const i64 N = a.dim(3, "N"), K = a.dim(4, "K");
  if (!a.ok()) return a.fail();
  const i64 rows = transB ? N : K, cols = transB ? K : N;
  if (rows > 0 && cols > 0 && ldb < cols) a.error("ldb must be >= " + std::to_string(cols));
  check_size(a, extent(rows, cols, ldb));
  const float* B = a.f32(0, "B", extent(rows, cols, ldb));
  float* out = a.f32(5, "out", a.ok() ? (double)g_table->gemm_packed_size(N, K) : 0.0);
  if (!a.ok()) return a.fail();
  g_table->gemm_pack_b(B, ldb, transB, N, K, out);
  return info.Env().Undefined();
}

Napi::Value ColSum(const Napi::CallbackInfo& info) {
  Args a(info, "colSum");
  cnx::DenormalGuard denormals;
  const i64 M = a.dim(1, "M"), N = a.dim(2, "N");
  check_size(a, prod({M, N}));
  const float* x = a.f32(0, "x", prod({M, N}));
  float* out = a.f32(3, "out", (double)N);
  const bool acc = a.flag(4, "accumulate");
  if (!a.ok()) return a.fail();
  g_table->colsum(x, M, N, out, acc);
  return info.Env().Undefined();
}

void check_k(Args& a, i64 K) {
  if (a.ok() && (K < 1 || K % 2 == 0)) a.error("K must be a positive odd integer");
}

Napi::Value DwconvForward(const Napi::CallbackInfo& info) {
  Args a(info, "dwconvForward");
  cnx::DenormalGuard denormals;
  const i64 N = a.dim(1, "N"), H = a.dim(2, "H"), W = a.dim(3, "W"), C = a.dim(4, "C");
  const i64 K = a.dim(5, "K");
  check_k(a, K);
  const double sz = prod({N, H, W, C});
  check_size(a, sz);
  const float* x = a.f32(0, "x", sz);
  const float* w = a.f32(6, "weight", prod({K, K, C}));
  const float* b = a.f32(7, "bias", (double)C, true);
  float* y = a.f32(8, "y", sz);
  if (!a.ok()) return a.fail();
  g_table->dwconv_fwd(x, N, H, W, C, (int)K, w, b, y);
  return info.Env().Undefined();
}

Napi::Value DwconvBackwardInput(const Napi::CallbackInfo& info) {
  Args a(info, "dwconvBackwardInput");
  cnx::DenormalGuard denormals;
  const i64 N = a.dim(1, "N"), H = a.dim(2, "H"), W = a.dim(3, "W"), C = a.dim(4, "C");
  const i64 K = a.dim(5, "K");
  check_k(a, K);
  const double sz = prod({N, H, W, C});
  check_size(a, sz);
  const float* dy = a.f32(0, "dy", sz);
  const float* w = a.f32(6, "weight", prod({K, K, C}));
  float* dx = a.f32(7, "dx", sz);
  const bool acc = a.flag(8, "accumulate");
  if (!a.ok()) return a.fail();
  g_table->dwconv_bwd_in(dy, N, H, W, C, (int)K, w, dx, acc);
  return info.Env().Undefined();
}

Napi::Value DwconvBackwardWeight(const Napi::CallbackInfo& info) {
  Args a(info, "dwconvBackwardWeight");
  cnx::DenormalGuard denormals;
  const i64 N = a.dim(2, "N"), H = a.dim(3, "H"), W = a.dim(4, "W"), C = a.dim(5, "C");
  const i64 K = a.dim(6, "K");
  check_k(a, K);
  const double sz = prod({N, H, W, C});
  check_size(a, sz);
  const float* dy = a.f32(0, "dy", sz);
  const float* x = a.f32(1, "x", sz);
  float* dw = a.f32(7, "dweight", prod({K, K, C}));
  float* db = a.f32(8, "dbias", (double)C, true);
  if (!a.ok()) return a.fail();
  g_table->dwconv_bwd_w(dy, x, N, H, W, C, (int)K, dw, db);
  return info.Env().Undefined();
}

// The row maps of the compacted (submanifold) depthwise kernels: rowOf with at least
// N*H*W entries (values are not checked: the kernels treat any value outside [0, R) as a
// masked position) and idx with at least R entries, each a dense position in [0, N*H*W)
// (checked: one pass over R integers).
void rows_maps(Args& a, size_t iRowOf, size_t iIdx, i64 R, double dense, const int32_t** rowOf,
               const int32_t** idx) {
  size_t nRowOf = 0, nIdx = 0;
  *rowOf = a.i32(iRowOf, "rowOf", &nRowOf);
  *idx = a.i32(iIdx, "idx", &nIdx);
  if (!a.ok()) return;
  if ((double)nRowOf < dense)
    a.error("rowOf is too short: needs " + std::to_string((long long)dense) + " elements, has " +
            std::to_string((long long)nRowOf));
  else if ((i64)nIdx < R)
    a.error("idx is too short: needs " + std::to_string((long long)R) + " elements, has " +
            std::to_string((long long)nIdx));
  for (i64 r = 0; r < R && a.ok(); ++r)
    if ((*idx)[r] < 0 || (double)(*idx)[r] >= dense)
      a.error("idx[" + std::to_string((long long)r) + "] = " + std::to_string((*idx)[r]) +
              " is outside [0, N*H*W)");
}

// The shape arguments of the row (submanifold) depthwise kernels: S, N, H, W, C, K from
// argument `dims` on, the maps at `maps` and `maps + 1`, all checked.
struct RowsShape {
  i64 R, N, H, W, C, K;
  double sz;  // R * C
  const int32_t* rowOf = nullptr;
  const int32_t* idx = nullptr;
};
RowsShape rows_shape(Args& a, size_t maps, size_t dims) {
  RowsShape r;
  r.R = a.dim(dims, "S");
  r.N = a.dim(dims + 1, "N");
  r.H = a.dim(dims + 2, "H");
  r.W = a.dim(dims + 3, "W");
  r.C = a.dim(dims + 4, "C");
  r.K = a.dim(dims + 5, "K");
  check_k(a, r.K);
  r.sz = prod({r.R, r.C});
  check_size(a, r.sz);
  check_size(a, prod({r.N, r.H, r.W, r.C}));
  rows_maps(a, maps, maps + 1, r.R, prod({r.N, r.H, r.W}), &r.rowOf, &r.idx);
  return r;
}

Napi::Value DwconvForwardRows(const Napi::CallbackInfo& info) {
  Args a(info, "dwconvForwardRows");
  cnx::DenormalGuard denormals;
  const RowsShape r = rows_shape(a, 1, 3);
  const float* x = a.f32(0, "x", r.sz);
  const float* w = a.f32(9, "weight", prod({r.K, r.K, r.C}));
  const float* b = a.f32(10, "bias", (double)r.C, true);
  float* y = a.f32(11, "y", r.sz);
  if (!a.ok()) return a.fail();
  g_table->dwconv_rows_fwd(x, r.rowOf, r.idx, r.R, r.N, r.H, r.W, r.C, (int)r.K, w, b, y);
  return info.Env().Undefined();
}

Napi::Value DwconvBackwardInputRows(const Napi::CallbackInfo& info) {
  Args a(info, "dwconvBackwardInputRows");
  cnx::DenormalGuard denormals;
  const RowsShape r = rows_shape(a, 1, 3);
  const float* dy = a.f32(0, "dy", r.sz);
  const float* w = a.f32(9, "weight", prod({r.K, r.K, r.C}));
  float* dx = a.f32(10, "dx", r.sz);
  const bool acc = a.flag(11, "accumulate");
  if (!a.ok()) return a.fail();
  g_table->dwconv_rows_bwd_in(dy, r.rowOf, r.idx, r.R, r.N, r.H, r.W, r.C, (int)r.K, w, dx, acc);
  return info.Env().Undefined();
}

Napi::Value DwconvBackwardWeightRows(const Napi::CallbackInfo& info) {
  Args a(info, "dwconvBackwardWeightRows");
  cnx::DenormalGuard denormals;
  const RowsShape r = rows_shape(a, 2, 4);
  const float* dy = a.f32(0, "dy", r.sz);
  const float* x = a.f32(1, "x", r.sz);
  float* dw = a.f32(10, "dweight", prod({r.K, r.K, r.C}));
  float* db = a.f32(11, "dbias", (double)r.C, true);
  if (!a.ok()) return a.fail();
  g_table->dwconv_rows_bwd_w(dy, x, r.rowOf, r.idx, r.R, r.N, r.H, r.W, r.C, (int)r.K, dw, db);
  return info.Env().Undefined();
}

Napi::Value LayerNormForward(const Napi::CallbackInfo& info) {
  Args a(info, "layerNormForward");
  cnx::DenormalGuard denormals;
  const i64 M = a.dim(1, "M"), C = a.dim(2, "C");
  const double sz = prod({M, C});
  check_size(a, sz);
  const float* x = a.f32(0, "x", sz);
  const float* gamma = a.f32(3, "gamma", (double)C);
  const float* beta = a.f32(4, "beta", (double)C);
  const double eps = a.num(5, "eps");
  float* y = a.f32(6, "y", sz);
  float* mean = a.f32(7, "mean", (double)M);
  float* rstd = a.f32(8, "rstd", (double)M);
  if (!a.ok()) return a.fail();
  g_table->ln_fwd(x, M, C, gamma, beta, (float)eps, y, mean, rstd);
  return info.Env().Undefined();
}

Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  Args a(info, "layerNormBackward");
  cnx::DenormalGuard denormals;
  const i64 M = a.dim(5, "M"), C = a.dim(6, "C");
  const double sz = prod({M, C});
  check_size(a, sz);
  const float* dy = a.f32(0, "dy", sz);
  const float* x = a.f32(1, "x", sz);
  const float* mean = a.f32(2, "mean", (double)M);
  const float* rstd = a.f32(3, "rstd", (double)M);
  const float* gamma = a.f32(4, "gamma", (double)C);
  float* dx = a.f32(7, "dx", sz);
  const bool acc = a.flag(8, "accumulate");
  float* dg = a.f32(9, "dgamma", (double)C);
  float* db = a.f32(10, "dbeta", (double)C);
  if (!a.ok()) return a.fail();
  g_table->ln_bwd(dy, x, mean, rstd, gamma, M, C, dx, acc, dg, db);
  return info.Env().Undefined();
}

// Validates GRN offsets: S + 1 non-decreasing, non-negative entries; returns S and rows end.
i64 grn_offsets(Args& a, const int32_t* off, size_t len, i64* end) {
  if (!a.ok()) return 0;
  if (len < 1) {
    a.error("offsets must have at least one entry");
    return 0;
  }
  if (off[0] < 0) a.error("offsets[0] must be >= 0");
  for (size_t s = 1; s < len && a.ok(); ++s)
    if (off[s] < off[s - 1]) a.error("offsets must be non-decreasing");
  *end = off[len - 1];
  return (i64)len - 1;
}

Napi::Value GrnForward(const Napi::CallbackInfo& info) {
  Args a(info, "grnForward");
  cnx::DenormalGuard denormals;
  size_t olen = 0;
  const int32_t* off = a.i32(1, "offsets", &olen);
  i64 end = 0;
  const i64 S = grn_offsets(a, off, olen, &end);
  const i64 C = a.dim(2, "C");
  const double sz = prod({end, C});
  check_size(a, sz);
  const float* x = a.f32(0, "x", sz);
  const float* gamma = a.f32(3, "gamma", (double)C);
  const float* beta = a.f32(4, "beta", (double)C);
  const double eps = a.num(5, "eps");
  float* y = a.f32(6, "y", sz, true);
  float* gx = a.f32(7, "gx", prod({S, C}));
  float* nx = a.f32(8, "nx", prod({S, C}));
  const float* sqsum = info.Length() > 9 ? a.f32(9, "sqSums", prod({S, C}), true) : nullptr;
  if (!a.ok()) return a.fail();
  g_table->grn_fwd(x, off, S, C, gamma, beta, (float)eps, y, gx, nx, sqsum);
  return info.Env().Undefined();
}

Napi::Value GrnBackward(const Napi::CallbackInfo& info) {
  Args a(info, "grnBackward");
  cnx::DenormalGuard denormals;
  size_t olen = 0;
  const int32_t* off = a.i32(2, "offsets", &olen);
  i64 end = 0;
  const i64 S = grn_offsets(a, off, olen, &end);
  const i64 C = a.dim(3, "C");
  const double sz = prod({end, C});
  check_size(a, sz);
  const float* dy = a.f32(0, "dy", sz);
  const float* x = a.f32(1, "x", sz);
  const float* gamma = a.f32(4, "gamma", (double)C);
  const double eps = a.num(5, "eps");
  const float* gx = a.f32(6, "gx", prod({S, C}));
  const float* nx = a.f32(7, "nx", prod({S, C}));
  float* dx = a.f32(8, "dx", sz);
  float* dg = a.f32(9, "dgamma", (double)C);
  float* db = a.f32(10, "dbeta", (double)C);
  const float* pre = info.Length() > 11 ? a.f32(11, "geluPre", sz, true) : nullptr;
  float* dbias = info.Length() > 12 ? a.f32(12, "dbias", (double)C, true) : nullptr;
  if (!a.ok()) return a.fail();
  g_table->grn_bwd(dy, x, off, S, C, gamma, (float)eps, gx, nx, dx, dg, db, pre, dbias);
  return info.Env().Undefined();
}

Napi::Value Gelu(const Napi::CallbackInfo& info) {
  Args a(info, "gelu");
  cnx::DenormalGuard denormals;
  const i64 n = a.dim(2, "n");
  const float* x = a.f32(0, "x", (double)n);
  float* y = a.f32(1, "y", (double)n);
  if (!a.ok()) return a.fail();
  g_table->gelu(x, y, n);
  return info.Env().Undefined();
}

Napi::Value GeluBackward(const Napi::CallbackInfo& info) {
  Args a(info, "geluBackward");
  cnx::DenormalGuard denormals;
  const i64 n = a.dim(3, "n");
  const float* dy = a.f32(0, "dy", (double)n);
  const float* x = a.f32(1, "x", (double)n);
  float* dx = a.f32(2, "dx", (double)n);
  if (!a.ok()) return a.fail();
  g_table->gelu_bwd(dy, x, dx, n);
  return info.Env().Undefined();
}

Napi::Value AvgPoolForward(const Napi::CallbackInfo& info) {
  Args a(info, "avgPoolForward");
  cnx::DenormalGuard denormals;
  const i64 N = a.dim(1, "N"), HW = a.dim(2, "HW"), C = a.dim(3, "C");
  check_size(a, prod({N, HW, C}));
  const float* x = a.f32(0, "x", prod({N, HW, C}));
  float* y = a.f32(4, "y", prod({N, C}));
  if (!a.ok()) return a.fail();
  g_table->avgpool_fwd(x, N, HW, C, y);
  return info.Env().Undefined();
}

Napi::Value AvgPoolBackward(const Napi::CallbackInfo& info) {
  Args a(info, "avgPoolBackward");
  cnx::DenormalGuard denormals;
  const i64 N = a.dim(1, "N"), HW = a.dim(2, "HW"), C = a.dim(3, "C");
  check_size(a, prod({N, HW, C}));
  const float* dy = a.f32(0, "dy", prod({N, C}));
  float* dx = a.f32(4, "dx", prod({N, HW, C}));
  if (!a.ok()) return a.fail();
  g_table->avgpool_bwd(dy, N, HW, C, dx);
  return info.Env().Undefined();
}

Napi::Value SoftmaxCrossEntropy(const Napi::CallbackInfo& info) {
  Args a(info, "softmaxCrossEntropy");
  cnx::DenormalGuard denormals;
  const i64 N = a.dim(2, "N"), K = a.dim(3, "K");
  check_size(a, prod({N, K}));
  const float* l = a.f32(0, "logits", prod({N, K}));
  const float* t = a.f32(1, "targets", prod({N, K}));
  float* d = a.f32(4, "dlogits", prod({N, K}), true);
  if (!a.ok()) return a.fail();
  return Napi::Number::New(info.Env(), g_table->softmax_ce(l, t, N, K, d));
}

Napi::Value Patchify(const Napi::CallbackInfo& info) {
  Args a(info, "patchify");
  cnx::DenormalGuard denormals;
  const i64 N = a.dim(1, "N"), H = a.dim(2, "H"), W = a.dim(3, "W"), C = a.dim(4, "C");
  const i64 P = a.dim(5, "P", 1);
  if (!a.ok()) return a.fail();
  check_size(a, prod({N, H, W, C}));
  const float* x = a.f32(0, "x", prod({N, H, W, C}));
  float* cols = a.f32(6, "cols", prod({N, H / P, W / P, C, P, P}));
  if (!a.ok()) return a.fail();
  g_table->patchify(x, N, H, W, C, P, cols);
  return info.Env().Undefined();
}

Napi::Value Unpatchify(const Napi::CallbackInfo& info) {
  Args a(info, "unpatchify");
  cnx::DenormalGuard denormals;
  const i64 N = a.dim(1, "N"), H = a.dim(2, "H"), W = a.dim(3, "W"), C = a.dim(4, "C");
  const i64 P = a.dim(5, "P", 1);
  if (!a.ok()) return a.fail();
  check_size(a, prod({N, H, W, C}));
  const float* dcols = a.f32(0, "dcols", prod({N, H / P, W / P, C, P, P}));
  float* dx = a.f32(6, "dx", prod({N, H, W, C}));
  if (!a.ok()) return a.fail();
  g_table->unpatchify(dcols, N, H, W, C, P, dx);
  return info.Env().Undefined();
}

Napi::Value NchwToNhwc(const Napi::CallbackInfo& info) {
  Args a(info, "nchwToNhwc");
  cnx::DenormalGuard denormals;
  const i64 N = a.dim(1, "N"), C = a.dim(2, "C"), H = a.dim(3, "H"), W = a.dim(4, "W");
  check_size(a, prod({N, C, H, W}));
  const float* s = a.f32(0, "src", prod({N, C, H, W}));
  float* d = a.f32(5, "dst", prod({N, C, H, W}));
  if (!a.ok()) return a.fail();
  g_table->nchw_to_nhwc(s, N, C, H, W, d);
  return info.Env().Undefined();
}

Napi::Value NhwcToNchw(const Napi::CallbackInfo& info) {
  Args a(info, "nhwcToNchw");
  cnx::DenormalGuard denormals;
  const i64 N = a.dim(1, "N"), H = a.dim(2, "H"), W = a.dim(3, "W"), C = a.dim(4, "C");
  check_size(a, prod({N, C, H, W}));
  const float* s = a.f32(0, "src", prod({N, C, H, W}));
  float* d = a.f32(5, "dst", prod({N, C, H, W}));
  if (!a.ok()) return a.fail();
  g_table->nhwc_to_nchw(s, N, H, W, C, d);
  return info.Env().Undefined();
}

Napi::Value AddScaled(const Napi::CallbackInfo& info) {
  Args a(info, "addScaled");
  cnx::DenormalGuard denormals;
  const i64 N = a.dim(3, "N"), R = a.dim(4, "rowsPerSample"), C = a.dim(5, "C");
  const double sz = prod({N, R, C});
  check_size(a, sz);
  const float* x = a.f32(0, "x", sz);
  const float* b = a.f32(1, "branch", sz);
  const float* s = a.f32(2, "scale", (double)N);
  float* out = a.f32(6, "out", sz);
  if (!a.ok()) return a.fail();
  g_table->add_scaled(x, b, s, N, R, C, out);
  return info.Env().Undefined();
}

Napi::Value AdamW(const Napi::CallbackInfo& info) {
  Args a(info, "adamw");
  cnx::DenormalGuard denormals;
  const i64 n = a.dim(4, "n");
  float* p = a.f32(0, "p", (double)n);
  const float* g = a.f32(1, "g", (double)n);
  float* m = a.f32(2, "m", (double)n);
  float* v = a.f32(3, "v", (double)n);
  const double lr = a.num(5, "lr"), b1 = a.num(6, "beta1"), b2 = a.num(7, "beta2");
  const double eps = a.num(8, "eps"), wd = a.num(9, "weightDecay");
  const double bc1 = a.num(10, "bc1"), bc2 = a.num(11, "bc2");
  if (a.ok() && (!(bc1 > 0) || !(bc2 > 0))) a.error("bc1 and bc2 must be > 0");
  if (!a.ok()) return a.fail();
  g_table->adamw(p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2);
  return info.Env().Undefined();
}

// ---- configuration ----

// The paths usable here, best first, as "avx2, portable".
std::string supported_list() {
  std::string out;
  for (cnx::Isa isa : {cnx::ISA_AVX512, cnx::ISA_AVX2, cnx::ISA_PORTABLE})
    if (cnx::kernel_table(isa)) out += std::string(out.empty() ? "" : ", ") + cnx::isa_name(isa);
  return out;
}

// Switches the active path; returns why it cannot (empty on success: the path is entered only then).
std::string set_isa(const std::string& name) {
  cnx::Isa isa;
  if (!cnx::isa_from_name(name.c_str(), &isa))
    return "unknown ISA '" + name + "' (expected avx512, avx2 or portable)";
  if (!cnx::isa_compiled(isa))
    return "ISA '" + name + "' is not compiled into this build (supported: " + supported_list() + ")";
  const cnx::KernelTable* t = cnx::kernel_table(isa);
  if (!t) {
    const char* brand = cnx::cpu_id().brand;
    return "ISA '" + name + "' is not supported by this CPU (" + (*brand ? brand : "unknown CPU") +
           "; supported: " + supported_list() + ")";
  }
  g_table = t;
  g_isa = isa;
  return "";
}

Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(info.Env(), "setIsa: name must be a string").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  const std::string why = set_isa(info[0].As<Napi::String>().Utf8Value());
  if (!why.empty()) Napi::Error::New(info.Env(), "setIsa: " + why).ThrowAsJavaScriptException();
  return info.Env().Undefined();
}

Napi::Value GetIsa(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), cnx::isa_name(g_isa));
}

Napi::Value SupportedIsas(const Napi::CallbackInfo& info) {
  Napi::Array arr = Napi::Array::New(info.Env());
  uint32_t k = 0;
  for (cnx::Isa isa : {cnx::ISA_AVX512, cnx::ISA_AVX2, cnx::ISA_PORTABLE})
    if (cnx::kernel_table(isa)) arr.Set(k++, Napi::String::New(info.Env(), cnx::isa_name(isa)));
  return arr;
}

// cpuInfo(): { vendor, brand, family, model } from cpuid (empty / 0 where there is none).
Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  const cnx::CpuId& id = cnx::cpu_id();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("vendor", Napi::String::New(info.Env(), id.vendor));
  o.Set("brand", Napi::String::New(info.Env(), id.brand));
  o.Set("family", Napi::Number::New(info.Env(), id.family));
  o.Set("model", Napi::Number::New(info.Env(), id.model));
  return o;
}

// measureClock(seconds): the calling thread's core clock in GHz (0 where it cannot be measured).
Napi::Value MeasureClock(const Napi::CallbackInfo& info) {
  Args a(info, "measureClock");
  const double secs = a.num(0, "seconds");
  if (a.ok() && !(secs > 0 && secs <= 60)) a.error("seconds must be in (0, 60]");
  if (!a.ok()) return a.fail();
  return Napi::Number::New(info.Env(), cnx::measure_clock_ghz(secs));
}

// measurePeak(seconds): GFLOP/s of independent vector FMAs on all pool threads (the
// machine's fp32 peak for the active ISA, as far as this process gets it right now).
Napi::Value MeasurePeak(const Napi::CallbackInfo& info) {
  Args a(info, "measurePeak");
  const double secs = a.num(0, "seconds");
  if (a.ok() && !(secs > 0 && secs <= 60)) a.error("seconds must be in (0, 60]");
  if (!a.ok()) return a.fail();
  const int nth = cnx::pool_threads();
  const i64 ntask = 16 * (i64)nth;
  std::vector<float> sinks((size_t)ntask * 16);  // a cache line per task
  std::vector<double> flops((size_t)ntask);
  const cnx::KernelTable* t = g_table;
  i64 iters = 1 << 12;
  auto run = [&]() {
    cnx::parallel_for(ntask, [&](i64 k) { flops[k] = t->fma_burn(iters, &sinks[k * 16]); });
    double f = 0;
    for (i64 k = 0; k < ntask; ++k) f += flops[k];
    return f;
  };
  // Grow the per-task loop until one round takes ~20 ms, then time rounds for `secs`.
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt > 0.02 || iters > ((i64)1 << 30)) break;
    iters *= 2;
  }
  double best = 0, spent = 0;
  while (spent < secs) {
    const auto t0 = std::chrono::steady_clock::now();
    const double f = run();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    spent += dt;
    if (f / dt > best) best = f / dt;
  }
  return Napi::Number::New(info.Env(), best / 1e9);
}

// copy(src, dst, n): dst[0:n] = src[0:n] on the pool (for bandwidth measurements).
Napi::Value Copy(const Napi::CallbackInfo& info) {
  Args a(info, "copy");
  const i64 n = a.dim(2, "n");
  const float* src = a.f32(0, "src", (double)n);
  float* dst = a.f32(1, "dst", (double)n);
  if (!a.ok()) return a.fail();
  g_table->copy(src, dst, n);
  return info.Env().Undefined();
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  Args a(info, "setThreads");
  cnx::DenormalGuard denormals;
  const i64 n = a.dim(0, "n", 0);
  if (a.ok() && n > 1024) a.error("n must be <= 1024");
  if (!a.ok()) return a.fail();
  cnx::pool_set_threads(n == 0 ? cnx::pool_default_threads() : (int)n);
  return info.Env().Undefined();
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), cnx::pool_threads());
}

}  // namespace

namespace cnx {
void register_mpi(Napi::Env env, Napi::Object exports);  // mpi.cc
}

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Once per process (worker threads load the addon again): the best path, or CONVNEXTV2_ISA's;
  // a CONVNEXTV2_ISA that cannot be used fails every load, never falls back silently.
  static bool initialised = false;
  static std::string init_error;
  if (!initialised) {
    initialised = true;
    g_isa = cnx::cpu_best_isa();
    g_table = cnx::kernel_table(g_isa);
    if (const char* e = std::getenv("CONVNEXTV2_ISA"); e && *e) {
      const std::string why = set_isa(e);
      if (!why.empty()) init_error = "CONVNEXTV2_ISA: " + why;
    }
  }
  if (!init_error.empty()) {
    Napi::Error::New(env, init_error).ThrowAsJavaScriptException();
    return exports;
  }
  exports.Set("gemm", Napi::Function::New(env, Gemm));
  exports.Set("packedSize", Napi::Function::New(env, PackedSize));
  exports.Set("packWeights", Napi::Function::New(env, PackWeights));
  exports.Set("colSum", Napi::Function::New(env, ColSum));
  exports.Set("dwconvForward", Napi::Function::New(env, DwconvForward));
  exports.Set("dwconvBackwardInput", Napi::Function::New(env, DwconvBackwardInput));
  exports.Set("dwconvBackwardWeight", Napi::Function::New(env, DwconvBackwardWeight));
  exports.Set("dwconvForwardRows", Napi::Function::New(env, DwconvForwardRows));
  exports.Set("dwconvBackwardInputRows", Napi::Function::New(env, DwconvBackwardInputRows));
  exports.Set("dwconvBackwardWeightRows", Napi::Function::New(env, DwconvBackwardWeightRows));
  exports.Set("layerNormForward", Napi::Function::New(env, LayerNormForward));
  exports.Set("layerNormBackward", Napi::Function::New(env, LayerNormBackward));
  exports.Set("grnForward", Napi::Function::New(env, GrnForward));
  exports.Set("grnBackward", Napi::Function::New(env, GrnBackward));
  exports.Set("gelu", Napi::Function::New(env, Gelu));
  exports.Set("geluBackward", Napi::Function::New(env, GeluBackward));
  exports.Set("avgPoolForward", Napi::Function::New(env, AvgPoolForward));
  exports.Set("avgPoolBackward", Napi::Function::New(env, AvgPoolBackward));
  exports.Set("softmaxCrossEntropy", Napi::Function::New(env, SoftmaxCrossEntropy));
  exports.Set("patchify", Napi::Function::New(env, Patchify));
  exports.Set("unpatchify", Napi::Function::New(env, Unpatchify));
  exports.Set("nchwToNhwc", Napi::Function::New(env, NchwToNhwc));
  exports.Set("nhwcToNchw", Napi::Function::New(env, NhwcToNchw));
  exports.Set("addScaled", Napi::Function::New(env, AddScaled));
  exports.Set("adamw", Napi::Function::New(env, AdamW));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa));
  exports.Set("getIsa", Napi::Function::New(env, GetIsa));
  exports.Set("supportedIsas", Napi::Function::New(env, SupportedIsas));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("measurePeak", Napi::Function::New(env, MeasurePeak));
  exports.Set("measureClock", Napi::Function::New(env, MeasureClock));
  exports.Set("cpuInfo", Napi::Function::New(env, CpuInfo));
  exports.Set("copy", Napi::Function::New(env, Copy));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
  cnx::register_mpi(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(convnextv2, Init)
