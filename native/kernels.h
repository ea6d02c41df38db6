// The kernel table: one set of function pointers per instruction-set path. Plain C++ (no
// N-API, no OS calls), so the kernels can also be compiled for WebAssembly.
#pragma once
#include <cstddef>
#include <cstdint>

namespace cnx {

typedef int64_t i64;

enum Isa { ISA_PORTABLE = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };

struct GemmCall {
  bool transA, transB;
  i64 M, N, K;
  const float* A; i64 lda;
  const float* B; i64 ldb;
  float* C; i64 ldc;
  bool accumulate;
  const float* bias;  // length N or null
  int act;            // 0 none, 1 gelu
  float* preact;      // null or M x N with stride ldc (only used with gelu)
  // Null, or (A not transposed) A[i, k] is replaced by A[i, k] * ascale[(i / ascale_rows) * K
  // + k] (+ ashift[k] when not null) while A is packed (per-image channel scales and a shift).
  const float* ascale;
  i64 ascale_rows;
  const float* ashift;
  // Null, or M x N with stride ldc added to the product like `accumulate` but read from here
  // instead of C (C is then only written): the residual of a block, without a copy.
  const float* resid;
  // Null, or G x N (G = M / sq_rows groups of sq_rows rows): the column sums of squares of the
  // final C over each group's rows (GRN's statistics of a layer's output, for free in its
  // epilogue). sqpart is internal (per-tile partials), null on entry.
  float* sqsum;
  i64 sq_rows;
  float* sqpart;
  // Null, or op(B) packed beforehand by gemm_pack_b for this N and K (a layer's weights, packed
  // once and reused batch after batch at inference): the GEMM reads it instead of packing B.
  const float* bpacked = nullptr;
};

struct KernelTable {
  const char* name;
  void (*gemm)(const GemmCall& g);
  // Floats of op(B) (N x K) packed for gemm's GemmCall::bpacked, and the packing itself.
  i64 (*gemm_packed_size)(i64 N, i64 K);
  void (*gemm_pack_b)(const float* B, i64 ldb, bool transB, i64 N, i64 K, float* out);
  void (*colsum)(const float* x, i64 M, i64 N, float* out, bool accumulate);
  void (*dwconv_fwd)(const float* x, i64 N, i64 H, i64 W, i64 C, int K, const float* w,
                     const float* bias, float* y);
  void (*dwconv_bwd_in)(const float* dy, i64 N, i64 H, i64 W, i64 C, int K, const float* w,
                        float* dx, bool accumulate);
  void (*dwconv_bwd_w)(const float* dy, const float* x, i64 N, i64 H, i64 W, i64 C, int K,
                       float* dw, float* dbias);
  // Submanifold depthwise convolution on compacted rows: x, y, dy, dx [R, C]; rowOf [N*H*W]
  // (the row of each dense position; outside [0, R) = masked); idx [R] (dense position of each
  // row, in [0, N*H*W)).
  void (*dwconv_rows_fwd)(const float* x, const int32_t* rowOf, const int32_t* idx, i64 R, i64 N,
                          i64 H, i64 W, i64 C, int K, const float* w, const float* bias, float* y);
  void (*dwconv_rows_bwd_in)(const float* dy, const int32_t* rowOf, const int32_t* idx, i64 R,
                             i64 N, i64 H, i64 W, i64 C, int K, const float* w, float* dx,
                             bool accumulate);
  void (*dwconv_rows_bwd_w)(const float* dy, const float* x, const int32_t* rowOf,
                            const int32_t* idx, i64 R, i64 N, i64 H, i64 W, i64 C, int K,
                            float* dw, float* dbias);
  void (*ln_fwd)(const float* x, i64 M, i64 C, const float* gamma, const float* beta, float eps,
                 float* y, float* mean, float* rstd);
  void (*ln_bwd)(const float* dy, const float* x, const float* mean, const float* rstd,
                 const float* gamma, i64 M, i64 C, float* dx, bool accumulate, float* dgamma,
                 float* dbeta);
  // sqsum (null or S x C): the segments' sums of squares, already computed (skips that pass).
  void (*grn_fwd)(const float* x, const int32_t* offsets, i64 S, i64 C, const float* gamma,
                  const float* beta, float eps, float* y, float* gx, float* nx,
                  const float* sqsum);
  // gelu_pre (null or rows x C): dx is multiplied by gelu'(gelu_pre) (the GELU before GRN);
  // dbias (null or C): += the column sums of the final dx (that layer's bias gradient).
  void (*grn_bwd)(const float* dy, const float* x, const int32_t* offsets, i64 S, i64 C,
                  const float* gamma, float eps, const float* gx, const float* nx, float* dx,
                  float* dgamma, float* dbeta, const float* gelu_pre, float* dbias);
  void (*gelu)(const float* x, float* y, i64 n);
  void (*gelu_bwd)(const float* dy, const float* x, float* dx, i64 n);
  void (*avgpool_fwd)(const float* x, i64 N, i64 HW, i64 C, float* y);
  void (*avgpool_bwd)(const float* dy, i64 N, i64 HW, i64 C, float* dx);
  double (*softmax_ce)(const float* logits, const float* targets, i64 N, i64 K, float* dlogits);
  void (*patchify)(const float* x, i64 N, i64 H, i64 W, i64 C, i64 P, float* cols);
  void (*unpatchify)(const float* dcols, i64 N, i64 H, i64 W, i64 C, i64 P, float* dx);
  void (*nchw_to_nhwc)(const float* src, i64 N, i64 C, i64 H, i64 W, float* dst);
  void (*nhwc_to_nchw)(const float* src, i64 N, i64 H, i64 W, i64 C, float* dst);
  void (*add_scaled)(const float* x, const float* branch, const float* scale, i64 N,
                     i64 rowsPerSample, i64 C, float* out);
  void (*adamw)(float* p, const float* g, float* m, float* v, i64 n, double lr, double beta1,
                double beta2, double eps, double wd, double bc1, double bc2);
  // Machine measurements for `bench` (not model kernels): `iters` rounds of independent vector
  // FMA chains (3/4 of the register file) on the calling thread (returns the FLOPs done; a
  // checksum goes to *sink so the loop is not removed); a threaded vector copy (what a kernel
  // reading and writing n floats once can reach).
  double (*fma_burn)(i64 iters, float* sink);
  void (*copy)(const float* src, float* dst, i64 n);
};

// Each ISA namespace provides fill functions for its part of the table.
#define CNX_DECLARE_FILLS(ns)                  \
  namespace ns {                               \
  void fill_gemm(KernelTable& t);              \
  void fill_dwconv(KernelTable& t);            \
  void fill_norm(KernelTable& t);              \
  void fill_misc(KernelTable& t);              \
  }
CNX_DECLARE_FILLS(portable)
#if defined(CNX_X86)
CNX_DECLARE_FILLS(avx2)
CNX_DECLARE_FILLS(avx512)
#endif
#undef CNX_DECLARE_FILLS

// dispatch.cc
// Null when that path is not compiled in or the CPU (or OS) lacks it: the only way to reach a
// path's code, so nothing built for AVX-512 runs on a CPU without it.
const KernelTable* kernel_table(Isa isa);
// True when the path is compiled into this build (whatever the CPU).
bool isa_compiled(Isa isa);
const char* isa_name(Isa isa);
bool isa_from_name(const char* name, Isa* out);

}  // namespace cnx
