// One persistent thread pool for all kernels, plus per-thread scratch memory.
// Size: the CPUs this process may run on, or CONVNEXTV2_THREADS; settable at run time.
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace cnx {

typedef void (*TaskFn)(void* ctx, int64_t task);

// Runs fn(ctx, i) for every i in [0, ntasks), spread over the pool (the caller takes part).
// Which thread runs which task is unspecified: kernels make each task's arithmetic fixed.
// Nested calls, or calls while another thread uses the pool, run serially in the caller.
void pool_run(int64_t ntasks, TaskFn fn, void* ctx);
int pool_threads();
void pool_set_threads(int n);  // n >= 1
int pool_default_threads();

// Per-thread, 64-byte-aligned scratch buffer (slot 0..7), grown as needed, kept for reuse.
float* scratch(int slot, size_t nfloats);

template <class F>
inline void parallel_for(int64_t n, F&& f) {
  typedef typename std::remove_reference<F>::type Fn;
  if (n <= 0) return;
  if (n == 1) {
    f((int64_t)0);
    return;
  }
  struct Tramp {
    static void call(void* c, int64_t i) { (*static_cast<Fn*>(c))(i); }
  };
  pool_run(n, &Tramp::call, (void*)&f);
}

}  // namespace cnx
