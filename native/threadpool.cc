#include "threadpool.h"
#include "cpu.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CNX_PAUSE() _mm_pause()
#else
#define CNX_PAUSE() std::this_thread::yield()
#endif

namespace cnx {

namespace {

thread_local bool tl_in_task = false;

class Pool {
 public:
  Pool() { start(pool_default_threads()); }
  ~Pool() { stop_all(); }

  int threads() const { return nthreads_; }

  void set_threads(int n) {
    if (n < 1) n = 1;
    std::lock_guard<std::mutex> d(dispatch_);
    if (n == nthreads_) return;
    stop_all();
    start(n);
  }

  void run(int64_t n, TaskFn fn, void* ctx) {
    if (tl_in_task || nthreads_ <= 1 || n <= 1) return serial(n, fn, ctx);
    std::unique_lock<std::mutex> d(dispatch_, std::try_to_lock);
    if (!d.owns_lock() || workers_.empty()) return serial(n, fn, ctx);
    fn_ = fn;
    ctx_ = ctx;
    n_ = n;
    next_.store(0, std::memory_order_relaxed);
    active_.store((int)workers_.size(), std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(mu_);
      gen_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    work();
    // Wait for the workers to finish their last tasks: spin briefly, then yield so that a
    // worker that lost its core (other processes running) gets it back sooner.
    for (int it = 0; active_.load(std::memory_order_acquire) != 0; ++it) {
      if (it < 2048)
        CNX_PAUSE();
      else
        std::this_thread::yield();
    }
  }

 private:
  static void serial(int64_t n, TaskFn fn, void* ctx) {
    const bool was = tl_in_task;
    tl_in_task = true;
    for (int64_t i = 0; i < n; ++i) fn(ctx, i);
    tl_in_task = was;
  }

  void work() {
    tl_in_task = true;
    for (;;) {
      const int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
      if (i >= n_) break;
      fn_(ctx_, i);
    }
    tl_in_task = false;
  }

  void worker_main(uint64_t seen) {
    flush_denormals_this_thread();
    for (;;) {
      // Spin briefly (consecutive kernels follow each other closely), then sleep.
      uint64_t g = gen_.load(std::memory_order_acquire);
      if (g == seen && !stop_.load(std::memory_order_relaxed)) {
        // ~50 us of pause-spinning, then yielding spins up to 200 us (cheap for other
        // runnable threads), then sleep on the condition variable.
        const auto t0 = std::chrono::steady_clock::now();
        for (int it = 0;; ++it) {
          g = gen_.load(std::memory_order_acquire);
          if (g != seen || stop_.load(std::memory_order_relaxed)) break;
          if ((it & 63) == 63) {
            const auto dt = std::chrono::steady_clock::now() - t0;
            if (dt > std::chrono::microseconds(200)) break;
            if (dt > std::chrono::microseconds(50)) std::this_thread::yield();
          }
          CNX_PAUSE();
        }
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] {
          return gen_.load(std::memory_order_acquire) != seen ||
                 stop_.load(std::memory_order_relaxed);
        });
        g = gen_.load(std::memory_order_acquire);
      }
      if (stop_.load(std::memory_order_relaxed)) return;
      seen = g;
      work();
      active_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  void start(int n) {
    nthreads_ = n;
    stop_.store(false);
    // The generation is read here, before the thread exists: a job published before the
    // new thread first looks must still be seen as new by it.
    const uint64_t g0 = gen_.load(std::memory_order_acquire);
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, g0] { worker_main(g0); });
  }

  void stop_all() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_.store(true);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  int nthreads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex dispatch_;  // one job at a time
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<bool> stop_{false};
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int> active_{0};
};

Pool& pool() {
  static Pool p;
  return p;
}

struct Scratch {
  float* p[8] = {};
  size_t n[8] = {};
  ~Scratch() {
    for (int i = 0; i < 8; ++i) std::free(p[i]);
  }
};
thread_local Scratch tl_scratch;

}  // namespace

int pool_default_threads() {
  if (const char* e = std::getenv("CONVNEXTV2_THREADS")) {
    char* end = nullptr;
    long v = std::strtol(e, &end, 10);
    if (end != e && *end == 0 && v >= 1 && v <= 1024) return (int)v;
  }
  int n = 0;
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
#endif
  if (n <= 0) n = (int)std::thread::hardware_concurrency();
  return n > 0 ? n : 1;
}

void pool_run(int64_t ntasks, TaskFn fn, void* ctx) { pool().run(ntasks, fn, ctx); }
int pool_threads() { return pool().threads(); }
void pool_set_threads(int n) { pool().set_threads(n); }

float* scratch(int slot, size_t nfloats) {
  Scratch& s = tl_scratch;
  if (nfloats < 16) nfloats = 16;
  if (s.n[slot] < nfloats) {
    std::free(s.p[slot]);
    size_t bytes = (nfloats * sizeof(float) + 63) & ~size_t(63);
    s.p[slot] = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!s.p[slot]) {
      std::fputs("convnextv2: out of memory for kernel scratch\n", stderr);
      std::abort();
    }
    s.n[slot] = nfloats;
  }
  return s.p[slot];
}

}  // namespace cnx
