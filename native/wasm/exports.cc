// The WebAssembly build of the kernels: the portable path's sources (gemm.cc, dwconv.cc,
// norm.cc, misc.cc, compiled here with -msimd128) behind a flat C ABI for src/kernels/wasm.ts.
// Pointers are offsets into the module's linear memory. The JavaScript side validates every
// argument against the op table before calling.
//
// Two links of the same objects (scripts/build-wasm.ts): convnextv2.wasm imports a shared
// memory and runs the thread pool below over Web Workers / worker_threads that instantiate the
// same module on that memory (each with its own stack and TLS block, set up by wasm.ts);
// convnextv2-single.wasm imports an unshared memory and runs one thread (pages that are not
// cross-origin isolated). Which thread runs which task does not matter: the kernels' reductions
// have a fixed order, so results are bit-identical for any thread count, as on native.
//
// No libc allocator: Debian's wasi-libc is built without atomics, and its malloc is neither
// thread-safe nor linkable into a shared memory. cnx_alloc below is a small size-class
// allocator under a spin lock; nothing here calls malloc.
#include <atomic>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "../kernels.h"
#include "../ops.h"
#include "../threadpool.h"

extern unsigned char __heap_base;

namespace {

// ---- memory: 64-byte-aligned blocks in size classes (4 per power of two above 1 KiB), each
// preceded by a 64-byte header holding its class; freed blocks go to their class's list.
constexpr int kClasses = 16 + 4 * 23;
constexpr uint64_t kPage = 65536;
std::atomic_flag heap_lock = ATOMIC_FLAG_INIT;
uintptr_t heap_top = 0;
uint32_t free_head[kClasses];
uint64_t bytes_in_use = 0;

uint64_t class_size(int c) {
  if (c < 16) return (uint64_t)(c + 1) * 64;
  const uint64_t base = (uint64_t)1024 << ((c - 16) / 4);
  return base + (base / 4) * (uint64_t)((c - 16) % 4 + 1);
}
int size_class(uint64_t n) {
  int c = 0;
  while (c < kClasses && class_size(c) < n) ++c;
  return c;
}
struct Lock {
  Lock() { while (heap_lock.test_and_set(std::memory_order_acquire)) {} }
  ~Lock() { heap_lock.clear(std::memory_order_release); }
};

}  // namespace

extern "C" {
// A block of at least `bytes` (64-byte aligned), or 0 when the memory cannot grow.
uint32_t cnx_alloc(uint64_t bytes) {
  const int c = size_class(bytes ? bytes : 1);
  if (c >= kClasses) return 0;
  const uint64_t size = class_size(c);
  Lock lock;
  uint32_t p = free_head[c];
  if (p) {
    std::memcpy(&free_head[c], reinterpret_cast<void*>((uintptr_t)p), 4);
  } else {
    if (!heap_top) heap_top = ((uintptr_t)&__heap_base + 63) & ~(uintptr_t)63;
    const uint64_t end = (uint64_t)heap_top + 64 + size;
    const uint64_t have = (uint64_t)__builtin_wasm_memory_size(0) * kPage;
    if (end > have) {
      if (end > ((uint64_t)1 << 32)) return 0;
      if (__builtin_wasm_memory_grow(0, (end - have + kPage - 1) / kPage) < 0) return 0;
    }
    p = (uint32_t)(heap_top + 64);
    reinterpret_cast<uint32_t*>((uintptr_t)heap_top)[0] = (uint32_t)c;
    heap_top = (uintptr_t)end;
  }
  bytes_in_use += size;
  return p;
}
void cnx_dealloc(uint32_t p) {
  if (!p) return;
  const uint32_t c = reinterpret_cast<uint32_t*>((uintptr_t)p - 64)[0];
  Lock lock;
  std::memcpy(reinterpret_cast<void*>((uintptr_t)p), &free_head[c], 4);
  free_head[c] = p;
  bytes_in_use -= class_size((int)c);
}
}

// What the kernels need from the C/C++ runtime, thread-safe: musl's exp/log write errno (one
// shared int here: nobody reads it), and function-local statics (gemm's micro-kernel table)
// use the Itanium guards, which libc++abi would bring without atomics.
extern "C" {
int errno;
std::atomic_flag guard_lock = ATOMIC_FLAG_INIT;
int __cxa_guard_acquire(uint64_t* g) {
  if (__atomic_load_n(reinterpret_cast<uint8_t*>(g), __ATOMIC_ACQUIRE)) return 0;
  while (guard_lock.test_and_set(std::memory_order_acquire)) {}
  if (*reinterpret_cast<uint8_t*>(g)) {
    guard_lock.clear(std::memory_order_release);
    return 0;
  }
  return 1;  // initialise under the lock (no guarded static initialises another)
}
void __cxa_guard_release(uint64_t* g) {
  __atomic_store_n(reinterpret_cast<uint8_t*>(g), 1, __ATOMIC_RELEASE);
  guard_lock.clear(std::memory_order_release);
}
void __cxa_guard_abort(uint64_t*) { guard_lock.clear(std::memory_order_release); }
}

namespace cnx {
namespace portable {
void fill_gemm(KernelTable&);
void fill_dwconv(KernelTable&);
void fill_norm(KernelTable&);
void fill_misc(KernelTable&);
}  // namespace portable

// ---- the pool. The caller of a kernel (the JavaScript thread that owns the main instance)
// publishes a job, takes tasks itself and spins until all are done (a page's main thread may
// not block); workers spin briefly, then sleep in memory.atomic.wait32 on `gen`. Tasks are
// claimed by a compare-and-swap on `ticket` (job id << 32 | next index), so a worker that
// looks late at a finished job can never take a task of the next one; each job's fields sit
// in the slot of its id's parity, which the next job does not touch.
namespace {
struct Job {
  std::atomic<TaskFn> fn{nullptr};
  std::atomic<void*> ctx{nullptr};
  std::atomic<int64_t> n{0};
};
struct Pool {
  std::atomic<uint32_t> gen{0};
  std::atomic<uint64_t> ticket{0};
  std::atomic<int64_t> done{0};
  std::atomic<int> started{0};
  std::atomic<int> quit{0};
  std::atomic<uint32_t> worker_tasks{0};  // tasks the workers ran (tests check they take part)
  int threads = 1;
  Job job[2];
};
Pool P;
thread_local bool tl_in_task = false;

// The single-thread build (no atomics) has no workers to wake or sleep.
void wake_workers() {
#ifdef __wasm_atomics__
  __builtin_wasm_memory_atomic_notify(reinterpret_cast<int*>(&P.gen), 0xffffffffu);
#endif
}
void sleep_while(uint32_t seen) {
#ifdef __wasm_atomics__
  __builtin_wasm_memory_atomic_wait32(reinterpret_cast<int*>(&P.gen), (int)seen, -1);
#else
  (void)seen;
#endif
}

int64_t work(uint32_t g) {
  Job& j = P.job[g & 1];
  for (int64_t ran = 0;; ++ran) {
    uint64_t v = P.ticket.load(std::memory_order_acquire);
    int64_t n;
    do {
      n = j.n.load(std::memory_order_relaxed);
      if ((uint32_t)(v >> 32) != g || (int64_t)(v & 0xffffffffu) >= n) return ran;
    } while (!P.ticket.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire));
    tl_in_task = true;
    j.fn.load(std::memory_order_relaxed)(j.ctx.load(std::memory_order_relaxed), (int64_t)(v & 0xffffffffu));
    tl_in_task = false;
    P.done.fetch_add(1, std::memory_order_release);
  }
}
}  // namespace

void pool_run(int64_t ntasks, TaskFn fn, void* ctx) {
  if (tl_in_task || P.threads <= 1 || ntasks <= 1 || ntasks >= 0xffffffffLL || P.started.load(std::memory_order_acquire) == 0) {
    const bool was = tl_in_task;
    tl_in_task = true;
    for (int64_t i = 0; i < ntasks; ++i) fn(ctx, i);
    tl_in_task = was;
    return;
  }
  const uint32_t g = P.gen.load(std::memory_order_relaxed) + 1;
  Job& j = P.job[g & 1];
  j.fn.store(fn, std::memory_order_relaxed);
  j.ctx.store(ctx, std::memory_order_relaxed);
  j.n.store(ntasks, std::memory_order_relaxed);
  P.done.store(0, std::memory_order_relaxed);
  P.ticket.store((uint64_t)g << 32, std::memory_order_release);
  P.gen.store(g, std::memory_order_release);
  wake_workers();
  work(g);
  while (P.done.load(std::memory_order_acquire) < ntasks) {}
}
int pool_threads() { return P.threads; }
void pool_set_threads(int n) { P.threads = n < 1 ? 1 : n; }
int pool_default_threads() { return 1; }

// Per-thread scratch (a TLS block per instance), grown as needed; an allocation failure traps
// (address 0 is valid memory in wasm: a null pointer would not fault).
float* scratch(int slot, size_t nfloats) {
  static thread_local uint32_t bufs[8];
  static thread_local size_t caps[8];
  if (nfloats < 16) nfloats = 16;
  if (nfloats > caps[slot]) {
    cnx_dealloc(bufs[slot]);
    bufs[slot] = cnx_alloc((uint64_t)nfloats * sizeof(float));
    if (!bufs[slot]) __builtin_trap();
    caps[slot] = nfloats;
  }
  return reinterpret_cast<float*>((uintptr_t)bufs[slot]);
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

EXPORT(cnx_malloc) uint32_t cnx_malloc(uint32_t bytes) { return cnx_alloc(bytes); }
EXPORT(cnx_free) void cnx_free(uint32_t p) { cnx_dealloc(p); }
EXPORT(cnx_bytes_in_use) double cnx_bytes_in_use() { return (double)bytes_in_use; }

// Threads: each worker instance calls cnx_worker(id), id = 1, 2, ... (after wasm.ts set its
// stack pointer and TLS block), which returns only when cnx_stop_workers is called; workers
// with id >= the thread count set by cnx_set_threads sit jobs out.
EXPORT(cnx_set_threads) void cnx_set_threads(int n) { cnx::pool_set_threads(n); }
EXPORT(cnx_workers_started) int cnx_workers_started() { return cnx::P.started.load(); }
EXPORT(cnx_worker_tasks) uint32_t cnx_worker_tasks() { return cnx::P.worker_tasks.load(); }
EXPORT(cnx_worker) void cnx_worker(int id) {
  using cnx::P;
  uint32_t seen = P.gen.load(std::memory_order_acquire);
  P.started.fetch_add(1, std::memory_order_acq_rel);
  for (;;) {
    uint32_t g;
    for (int it = 0; (g = P.gen.load(std::memory_order_acquire)) == seen && !P.quit.load(std::memory_order_relaxed); ++it) {
      if (it > (1 << 16)) cnx::sleep_while(seen);
    }
    if (P.quit.load(std::memory_order_relaxed)) break;
    seen = g;
    if (id < P.threads) P.worker_tasks.fetch_add((uint32_t)cnx::work(g), std::memory_order_relaxed);
  }
  P.started.fetch_sub(1, std::memory_order_acq_rel);
}
EXPORT(cnx_stop_workers) void cnx_stop_workers() {
  cnx::P.quit.store(1);
  cnx::P.gen.fetch_add(1);
  cnx::wake_workers();
}

EXPORT(gemm) void gemm(int transA, int transB, int M, int N, int K, uint32_t A, int lda, uint32_t B, int ldb, uint32_t C,
                       int ldc, int accumulate, uint32_t bias, int act, uint32_t preact, uint32_t ascale, int ascaleRows,
                       uint32_t ashift, uint32_t resid, uint32_t sqsum, int sqRows) {
  cnx::GemmCall g{};
  g.transA = transA; g.transB = transB; g.M = M; g.N = N; g.K = K;
  g.A = ptr<const float>(A); g.lda = lda; g.B = ptr<const float>(B); g.ldb = ldb; g.C = ptr<float>(C); g.ldc = ldc;
  g.accumulate = accumulate; g.bias = ptr<const float>(bias); g.act = act; g.preact = ptr<float>(preact);
  g.ascale = ptr<const float>(ascale); g.ascale_rows = ascaleRows; g.ashift = ptr<const float>(ashift);
  g.resid = ptr<const float>(resid); g.sqsum = ptr<float>(sqsum); g.sq_rows = sqRows;
  t().gemm(g);
}
// The compiled ops (../ops.h): cnx_call(op, slots) runs op number `op` of CNX_OPS on arguments
// in 8-byte slots (doubles), in the op table's order: a tensor is its address (0 for null), an
// Int32Array its address and length (two slots), a boolean 0 or 1, a number itself. The slot
// reads follow the parameter types, so no op is written out here. wasm.ts finds each op's
// number by name (cnx_op_name) and checks its signature (cnx_op_signature) against the table.
namespace {
// The slots an argument of type T takes, and its value read from slot i.
template <typename T>
constexpr int width() {
  return std::is_same_v<T, const int32_t*> || std::is_same_v<T, cnx::ops::Idx> ? 2 : 1;
}
template <typename T>
T slot(const double* s, int i) {
  using cnx::ops::Idx;
  if constexpr (std::is_same_v<T, Idx>) {
    return Idx{ptr<const int32_t>((uint32_t)s[i]), (cnx::i64)s[i + 1]};
  } else if constexpr (std::is_pointer_v<T>) {
    return ptr<std::remove_pointer_t<T>>((uint32_t)s[i]);
  } else if constexpr (std::is_same_v<T, bool>) {
    return s[i] != 0;
  } else {
    return (T)s[i];
  }
}

template <auto F>
struct WasmOp;
template <typename R, typename... A, R (*F)(const cnx::KernelTable&, A...)>
struct WasmOp<F> {
  // The first slot of argument I: the widths of the arguments before it.
  static constexpr int first(size_t I) {
    constexpr int w[] = {width<A>()..., 0};
    int at = 0;
    for (size_t k = 0; k < I; ++k) at += w[k];
    return at;
  }
  template <size_t... I>
  static double invoke(const double* s, std::index_sequence<I...>) {
    if constexpr (std::is_void_v<R>) {
      F(t(), slot<A>(s, first(I))...);
      return 0;
    } else {
      return (double)F(t(), slot<A>(s, first(I))...);
    }
  }
  static double call(const double* s) { return invoke(s, std::index_sequence_for<A...>{}); }
};

#define CNX_OP_FN(name, fn) &WasmOp<fn>::call,
#define CNX_OP_NAME(name, fn) #name,
#define CNX_OP_SIG(name, fn) cnx::ops::Signature<decltype(fn)>::text,
double (*const kOps[])(const double*) = {CNX_OPS(CNX_OP_FN)};
const char* const kOpNames[] = {CNX_OPS(CNX_OP_NAME)};
const char* const kOpSignatures[] = {CNX_OPS(CNX_OP_SIG)};
constexpr int kOpCount = (int)(sizeof kOps / sizeof kOps[0]);
}  // namespace

EXPORT(cnx_op_count) int cnx_op_count() { return kOpCount; }
EXPORT(cnx_op_name) uint32_t cnx_op_name(int op) { return op >= 0 && op < kOpCount ? (uint32_t)(uintptr_t)kOpNames[op] : 0; }
EXPORT(cnx_op_signature) uint32_t cnx_op_signature(int op) {
  return op >= 0 && op < kOpCount ? (uint32_t)(uintptr_t)kOpSignatures[op] : 0;
}
EXPORT(cnx_call) double cnx_call(int op, uint32_t slots) {
  if (op < 0 || op >= kOpCount) __builtin_trap();
  return kOps[op](ptr<const double>(slots));
}
