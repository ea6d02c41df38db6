// The compiled ops: each op of the table in src/kernels/ops.ts that the C++ kernels implement,
// as one function taking the active kernel table and then the op's arguments in the table's
// order. Both bindings are driven by this one list: binding.cc makes an N-API function of each
// (reading JavaScript values by the parameter types), wasm/exports.cc a case of cnx_call
// (reading 8-byte slots). Neither is written per op.
//
// The parameter types say how a value is read, and give the signature the tests compare with
// the table (src/kernels/ops.ts: COMPILED_OPS): 'i' const float* (an `in` tensor), 'o' float*
// (`out` / `inout`), 'x' const int32_t* or Idx (`idx`), 'n' an integer (`int`), 'f' a float or
// double (`num`), 'b' bool. Sizes, nullability and the rules of each op are checked once, in
// TypeScript, by the table's validator, which NativeKernels and WasmKernels put in front of
// every call; the bindings check only the kinds of the values.
#pragma once

#include <cstdint>
#include <type_traits>

#include "kernels.h"

namespace cnx {
namespace ops {

// An Int32Array with its length (GRN's segment offsets: S = n - 1 segments).
struct Idx {
  const int32_t* p;
  i64 n;
};

// The kernel table's member `M` called with the table's arguments unchanged.
template <typename F, F KernelTable::*M>
struct Member;
template <typename R, typename... A, R (*KernelTable::*M)(A...)>
struct Member<R (*)(A...), M> {
  static R call(const KernelTable& t, A... a) { return (t.*M)(a...); }
};
#define CNX_MEMBER(m) (&::cnx::ops::Member<decltype(::cnx::KernelTable::m), &::cnx::KernelTable::m>::call)

// GRN takes its segments as offsets (the table's order); the kernels take (offsets, S).
inline void grn_forward(const KernelTable& t, const float* x, Idx offsets, i64 C, const float* gamma,
                        const float* beta, float eps, float* y, float* gx, float* nx, const float* sqsum) {
  t.grn_fwd(x, offsets.p, offsets.n - 1, C, gamma, beta, eps, y, gx, nx, sqsum);
}
inline void grn_backward(const KernelTable& t, const float* dy, const float* x, Idx offsets, i64 C,
                         const float* gamma, float eps, const float* gx, const float* nx, float* dx,
                         float* dgamma, float* dbeta, const float* gelu_pre, float* dbias) {
  t.grn_bwd(dy, x, offsets.p, offsets.n - 1, C, gamma, eps, gx, nx, dx, dgamma, dbeta, gelu_pre, dbias);
}

// X(name, function): the table's name, the function. gemm (a GemmCall with optional extras and
// packed operands) is bound by hand in each binding. `crossEntropy` is no table op: it is the
// inner call of softmaxCrossEntropy (src/kernels/host.ts), which returns the mean loss.
#define CNX_OPS(X)                                                    \
  X(colSum, CNX_MEMBER(colsum))                                       \
  X(dwconvForward, CNX_MEMBER(dwconv_fwd))                            \
  X(dwconvBackwardInput, CNX_MEMBER(dwconv_bwd_in))                   \
  X(dwconvBackwardWeight, CNX_MEMBER(dwconv_bwd_w))                   \
  X(dwconvForwardRows, CNX_MEMBER(dwconv_rows_fwd))                   \
  X(dwconvBackwardInputRows, CNX_MEMBER(dwconv_rows_bwd_in))          \
  X(dwconvBackwardWeightRows, CNX_MEMBER(dwconv_rows_bwd_w))          \
  X(layerNormForward, CNX_MEMBER(ln_fwd))                             \
  X(layerNormBackward, CNX_MEMBER(ln_bwd))                            \
  X(grnForward, &::cnx::ops::grn_forward)                             \
  X(grnBackward, &::cnx::ops::grn_backward)                           \
  X(gelu, CNX_MEMBER(gelu))                                           \
  X(geluBackward, CNX_MEMBER(gelu_bwd))                               \
  X(avgPoolForward, CNX_MEMBER(avgpool_fwd))                          \
  X(avgPoolBackward, CNX_MEMBER(avgpool_bwd))                         \
  X(patchify, CNX_MEMBER(patchify))                                   \
  X(unpatchify, CNX_MEMBER(unpatchify))                               \
  X(nchwToNhwc, CNX_MEMBER(nchw_to_nhwc))                             \
  X(nhwcToNchw, CNX_MEMBER(nhwc_to_nchw))                             \
  X(addScaled, CNX_MEMBER(add_scaled))                                \
  X(adamw, CNX_MEMBER(adamw))                                         \
  X(crossEntropy, CNX_MEMBER(softmax_ce))

// The signature character of a parameter type (see the top of this file).
template <typename T>
constexpr char kind_of() {
  if constexpr (std::is_same_v<T, const float*>) return 'i';
  else if constexpr (std::is_same_v<T, float*>) return 'o';
  else if constexpr (std::is_same_v<T, const int32_t*> || std::is_same_v<T, Idx>) return 'x';
  else if constexpr (std::is_same_v<T, bool>) return 'b';
  else if constexpr (std::is_integral_v<T>) return 'n';
  else if constexpr (std::is_floating_point_v<T>) return 'f';
  else static_assert(sizeof(T) == 0, "a compiled op has a parameter type the bindings cannot read");
}

// The signature of an op function, one character per argument after the table ("ionnnnoib").
template <typename F>
struct Signature;
template <typename R, typename... A>
struct Signature<R (*)(const KernelTable&, A...)> {
  static constexpr char text[] = {kind_of<A>()..., '\0'};
};

}  // namespace ops
}  // namespace cnx
