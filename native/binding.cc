// N-API binding: the only file that includes N-API headers. Typed arrays go zero-copy to the
// active kernel table. The compiled ops (ops.h) are bound by one template that reads each
// argument by its parameter type; their sizes and rules are checked by the op table's validator
// (src/kernels/ops.ts), which NativeKernels runs before every call. gemm and the packing are
// bound by hand and check their own sizes (GemmExtras and packed operands are theirs alone).
#include <napi.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <tuple>
#include <type_traits>
#include <utility>
#include <string>
#include <vector>

#include "cpu.h"
#include "kernels.h"
#include "ops.h"
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

// ---- the compiled ops (ops.h): one N-API function each, read by the parameter types ----

// The arguments of one compiled-op call; the first wrong one is reported.
struct Reader {
  const Napi::CallbackInfo& info;
  std::string err;
  Napi::Value at(size_t i) const { return i < info.Length() ? info[i] : info.Env().Undefined(); }
  void fail(size_t i, const char* what) {
    if (err.empty()) err = "argument " + std::to_string(i) + " must be " + what;
  }
};

template <typename T>
T read(Reader& r, size_t i) {
  using cnx::ops::Idx;
  const Napi::Value v = r.at(i);
  if constexpr (std::is_same_v<T, const float*> || std::is_same_v<T, float*>) {
    if (v.IsNull() || v.IsUndefined()) return nullptr;  // the table says which may be null
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      r.fail(i, "a Float32Array");
      return nullptr;
    }
    return v.As<Napi::Float32Array>().Data();
  } else if constexpr (std::is_same_v<T, const int32_t*> || std::is_same_v<T, Idx>) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      r.fail(i, "an Int32Array");
      return T{};
    }
    Napi::Int32Array a = v.As<Napi::Int32Array>();
    if constexpr (std::is_same_v<T, Idx>) return Idx{a.Data(), (i64)a.ElementLength()};
    else return a.Data();
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!v.IsBoolean()) {
      r.fail(i, "a boolean");
      return false;
    }
    return v.As<Napi::Boolean>().Value();
  } else {
    if (!v.IsNumber()) {
      r.fail(i, "a number");
      return T{};
    }
    const double d = v.As<Napi::Number>().DoubleValue();
    if constexpr (std::is_integral_v<T>) {
      if (!(d >= 0 && d <= (double)std::numeric_limits<T>::max() && d <= 4.0e12 && d == std::floor(d))) {
        r.fail(i, "an integer in [0, 4e12]");
        return T{};
      }
      return (T)d;
    } else {
      return (T)d;
    }
  }
}

template <auto F>
struct NapiOp;
template <typename R, typename... A, R (*F)(const cnx::KernelTable&, A...)>
struct NapiOp<F> {
  static Napi::Value call(const Napi::CallbackInfo& info) { return run(info, std::index_sequence_for<A...>{}); }

  template <size_t... I>
  static Napi::Value run(const Napi::CallbackInfo& info, std::index_sequence<I...>) {
    const char* name = static_cast<const char*>(info.Data());
    Reader r{info, {}};
    if (info.Length() > sizeof...(A)) r.err = "takes " + std::to_string(sizeof...(A)) + " arguments, got " + std::to_string(info.Length());
    std::tuple<A...> args{read<A>(r, I)...};  // braced: read left to right
    if (!r.err.empty()) {
      Napi::TypeError::New(info.Env(), std::string(name) + ": " + r.err).ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    cnx::DenormalGuard denormals;
    if constexpr (std::is_void_v<R>) {
      F(*g_table, std::get<I>(args)...);
      return info.Env().Undefined();
    } else {
      return Napi::Number::New(info.Env(), (double)F(*g_table, std::get<I>(args)...));
    }
  }
};
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
  // The compiled ops, and their signatures for the tests that hold them to the op table.
  Napi::Object signatures = Napi::Object::New(env);
#define CNX_EXPORT_OP(name, fn)                                                                   \
  exports.Set(#name, Napi::Function::New(env, NapiOp<fn>::call, #name, const_cast<char*>(#name))); \
  signatures.Set(#name, Napi::String::New(env, cnx::ops::Signature<decltype(fn)>::text));
  CNX_OPS(CNX_EXPORT_OP)
#undef CNX_EXPORT_OP
  exports.Set("opSignatures", signatures);
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
