// MPI for data-parallel training, found at run time: libmpi is dlopen'ed (Open MPI's
// libmpi.so.40 or MPICH's libmpich.so.12; no MPI headers or libraries at build time), so a
// machine without MPI builds and runs as before. The two implementations differ in their ABI:
// Open MPI's handles are pointers to exported objects (ompi_mpi_comm_world, ompi_mpi_float,
// ...), MPICH's are integer constants; each gets its own table of function pointers below.
//
// Only what the training loop needs, all on MPI_COMM_WORLD from the main thread
// (MPI_THREAD_FUNNELED): rank and size, alltoall and allgather of floats (the fixed-order
// gradient sum is built from them in TypeScript: MPI_Allreduce's summation order depends on
// the rank count and algorithm), barrier, finalize and abort.
//
// A watchdog thread bounds every collective: when one has not returned after the timeout (a
// rank died without the launcher noticing, or hangs), it prints one line and calls MPI_Abort,
// which ends every rank of the job.
#include <napi.h>

#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

namespace {

enum class Impl { None, OpenMPI, MPICH };

// Handles as the implementation passes them: Open MPI pointers, MPICH ints (both passed in
// integer registers; the function pointer types below use the right width for each).
template <typename H>
struct Api {
  int (*initialized)(int*);
  int (*finalized)(int*);
  int (*init_thread)(int*, char***, int, int*);
  int (*finalize)();
  int (*comm_rank)(H, int*);
  int (*comm_size)(H, int*);
  int (*alltoall)(const void*, int, H, void*, int, H, H);
  int (*allgather)(const void*, int, H, void*, int, H, H);
  int (*barrier)(H);
  int (*abort)(H, int);
  int (*get_library_version)(char*, int*);
  H world, f32;
};

struct State {
  void* lib = nullptr;
  Impl impl = Impl::None;
  std::string libName;
  Api<void*> ompi{};
  Api<int> mpich{};
  bool initialized = false;
  int rank = 0, size = 1;
  // Watchdog: the collective in progress (null: none) and since when.
  std::mutex mu;
  std::condition_variable cv;
  const char* op = nullptr;
  std::chrono::steady_clock::time_point since;
  double timeoutSeconds = 0;
  std::thread watchdog;
  std::atomic<bool> stop{false};
};

State& st() {
  static State s;
  return s;
}

template <typename F>
bool sym(void* lib, const char* name, F& f) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  return f != nullptr;
}

template <typename H>
bool bind(void* lib, Api<H>& a) {
  return sym(lib, "MPI_Initialized", a.initialized) && sym(lib, "MPI_Finalized", a.finalized) &&
         sym(lib, "MPI_Init_thread", a.init_thread) && sym(lib, "MPI_Finalize", a.finalize) &&
         sym(lib, "MPI_Comm_rank", a.comm_rank) && sym(lib, "MPI_Comm_size", a.comm_size) &&
         sym(lib, "MPI_Alltoall", a.alltoall) && sym(lib, "MPI_Allgather", a.allgather) &&
         sym(lib, "MPI_Barrier", a.barrier) &&
         sym(lib, "MPI_Abort", a.abort) && sym(lib, "MPI_Get_library_version", a.get_library_version);
}

// Runs one MPI call with `op` registered for the watchdog.
template <typename F>
int guarded(const char* op, F&& f) {
  State& s = st();
  {
    std::lock_guard<std::mutex> lk(s.mu);
    s.op = op;
    s.since = std::chrono::steady_clock::now();
  }
  const int rc = f();
  {
    std::lock_guard<std::mutex> lk(s.mu);
    s.op = nullptr;
  }
  return rc;
}

void callAbort(int code) {
  State& s = st();
  if (s.impl == Impl::OpenMPI) s.ompi.abort(s.ompi.world, code);
  if (s.impl == Impl::MPICH) s.mpich.abort(s.mpich.world, code);
}

void watchdogMain() {
  State& s = st();
  std::unique_lock<std::mutex> lk(s.mu);
  while (!s.stop.load()) {
    s.cv.wait_for(lk, std::chrono::milliseconds(200));
    if (!s.op || s.timeoutSeconds <= 0) continue;
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.since).count();
    if (waited < s.timeoutSeconds) continue;
    std::fprintf(stderr,
                 "convnextv2: mpi: rank %d of %d: %s has not completed in %.0f s (a rank died or hangs); "
                 "aborting the job\n",
                 s.rank, s.size, s.op, waited);
    std::fflush(stderr);
    lk.unlock();
    callAbort(3);
    std::_Exit(3);  // MPI_Abort does not return; if it did, this rank still ends
  }
}

Napi::Value Throw(const Napi::Env& env, const std::string& msg) {
  Napi::Error::New(env, "mpi: " + msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

// load(candidates: string[]) -> { lib, impl, version } | null (none of them loads).
Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State& s = st();
  if (s.lib) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("lib", s.libName);
    o.Set("impl", s.impl == Impl::OpenMPI ? "openmpi" : "mpich");
    return o;
  }
  if (info.Length() < 1 || !info[0].IsArray()) return Throw(env, "load needs an array of library names");
  Napi::Array names = info[0].As<Napi::Array>();
  std::string tried;
  for (uint32_t i = 0; i < names.Length(); ++i) {
    const std::string name = names.Get(i).As<Napi::String>().Utf8Value();
    // RTLD_GLOBAL: Open MPI's components (plugins) resolve their symbols against libmpi.
    void* lib = dlopen(name.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
      tried += (tried.empty() ? "" : "; ") + std::string(dlerror());
      continue;
    }
    void* w = dlsym(lib, "ompi_mpi_comm_world");
    if (w) {
      s.impl = Impl::OpenMPI;
      if (!bind(lib, s.ompi)) return Throw(env, name + " lacks MPI functions");
      s.ompi.world = w;
      s.ompi.f32 = dlsym(lib, "ompi_mpi_float");
      if (!s.ompi.f32) return Throw(env, name + " lacks ompi_mpi_float");
    } else if (dlsym(lib, "MPIR_Init_thread") || dlsym(lib, "MPIR_Err_return_comm") || name.find("mpich") != std::string::npos) {
      s.impl = Impl::MPICH;
      if (!bind(lib, s.mpich)) return Throw(env, name + " lacks MPI functions");
      s.mpich.world = 0x44000000;  // MPI_COMM_WORLD
      s.mpich.f32 = 0x4c00040a;    // MPI_FLOAT
    } else {
      dlclose(lib);
      tried += (tried.empty() ? "" : "; ") + name + ": neither Open MPI nor MPICH";
      continue;
    }
    s.lib = lib;
    s.libName = name;
    char ver[8192] = {0};
    int len = 0;
    if (s.impl == Impl::OpenMPI) s.ompi.get_library_version(ver, &len);
    else s.mpich.get_library_version(ver, &len);
    std::string v(ver, (size_t)(len > 0 ? len : 0));
    const size_t nl = v.find_first_of("\n,");
    if (nl != std::string::npos) v = v.substr(0, nl);
    Napi::Object o = Napi::Object::New(env);
    o.Set("lib", name);
    o.Set("impl", s.impl == Impl::OpenMPI ? "openmpi" : "mpich");
    o.Set("version", v);
    return o;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("error", tried);
  return o;
}

// init(timeoutSeconds) -> { rank, size }
Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State& s = st();
  if (!s.lib) return Throw(env, "init before load");
  if (!s.initialized) {
    int done = 0, provided = 0;
    if (s.impl == Impl::OpenMPI) s.ompi.initialized(&done);
    else s.mpich.initialized(&done);
    int rc = 0;
    if (!done) rc = s.impl == Impl::OpenMPI ? s.ompi.init_thread(nullptr, nullptr, 1, &provided)
                                            : s.mpich.init_thread(nullptr, nullptr, 1, &provided);
    if (rc != 0) return Throw(env, "MPI_Init_thread failed (" + std::to_string(rc) + ")");
    if (s.impl == Impl::OpenMPI) {
      s.ompi.comm_rank(s.ompi.world, &s.rank);
      s.ompi.comm_size(s.ompi.world, &s.size);
    } else {
      s.mpich.comm_rank(s.mpich.world, &s.rank);
      s.mpich.comm_size(s.mpich.world, &s.size);
    }
    s.initialized = true;
  }
  if (info.Length() > 0 && info[0].IsNumber()) s.timeoutSeconds = info[0].As<Napi::Number>().DoubleValue();
  if (!s.watchdog.joinable()) s.watchdog = std::thread(watchdogMain);
  Napi::Object o = Napi::Object::New(env);
  o.Set("rank", s.rank);
  o.Set("size", s.size);
  return o;
}

Napi::Float32Array f32(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsTypedArray() ||
      info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    Napi::TypeError::New(info.Env(), std::string("mpi: ") + what + " must be a Float32Array").ThrowAsJavaScriptException();
    return Napi::Float32Array();
  }
  return info[i].As<Napi::Float32Array>();
}

bool ready(const Napi::CallbackInfo& info) {
  if (!st().initialized) {
    Throw(info.Env(), "not initialised");
    return false;
  }
  return true;
}

// alltoall(send, recv, count): block r of send (count floats) goes to rank r; block r of recv
// comes from rank r. allgather(send, recv, count): recv block r = rank r's send.
Napi::Value FloatCollective(const Napi::CallbackInfo& info, bool toAll) {
  if (!ready(info)) return info.Env().Undefined();
  State& s = st();
  const char* name = toAll ? "MPI_Alltoall" : "MPI_Allgather";
  Napi::Float32Array a = f32(info, 0, "send"), b = f32(info, 1, "recv");
  if (info.Env().IsExceptionPending()) return info.Env().Undefined();
  const double count = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : -1;
  const double sendNeed = toAll ? count * s.size : count;
  if (count < 0 || count > 2147483647.0 || (double)a.ElementLength() < sendNeed || (double)b.ElementLength() < count * s.size)
    return Throw(info.Env(), std::string(toAll ? "alltoall" : "allgather") + ": send must hold " + (toAll ? "size x " : "") +
                                 "count floats, recv size x count (count < 2^31)");
  const int n = (int)count;
  const int rc = guarded(name, [&] {
    if (s.impl == Impl::OpenMPI) {
      auto f = toAll ? s.ompi.alltoall : s.ompi.allgather;
      return f(a.Data(), n, s.ompi.f32, b.Data(), n, s.ompi.f32, s.ompi.world);
    }
    auto f = toAll ? s.mpich.alltoall : s.mpich.allgather;
    return f(a.Data(), n, s.mpich.f32, b.Data(), n, s.mpich.f32, s.mpich.world);
  });
  if (rc != 0) return Throw(info.Env(), std::string(name) + " failed (" + std::to_string(rc) + ")");
  return info.Env().Undefined();
}

Napi::Value Alltoall(const Napi::CallbackInfo& info) { return FloatCollective(info, true); }
Napi::Value Allgather(const Napi::CallbackInfo& info) { return FloatCollective(info, false); }

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  if (!ready(info)) return info.Env().Undefined();
  State& s = st();
  const int rc = guarded("MPI_Barrier", [&] {
    return s.impl == Impl::OpenMPI ? s.ompi.barrier(s.ompi.world) : s.mpich.barrier(s.mpich.world);
  });
  if (rc != 0) return Throw(info.Env(), "MPI_Barrier failed (" + std::to_string(rc) + ")");
  return info.Env().Undefined();
}

void stopWatchdog() {
  State& s = st();
  s.stop.store(true);
  s.cv.notify_all();
  if (s.watchdog.joinable()) s.watchdog.join();
}

Napi::Value Finalize(const Napi::CallbackInfo& info) {
  State& s = st();
  if (!s.initialized) return info.Env().Undefined();
  stopWatchdog();
  int done = 0;
  if (s.impl == Impl::OpenMPI) {
    s.ompi.finalized(&done);
    if (!done) s.ompi.finalize();
  } else {
    s.mpich.finalized(&done);
    if (!done) s.mpich.finalize();
  }
  s.initialized = false;
  return info.Env().Undefined();
}

Napi::Value Abort(const Napi::CallbackInfo& info) {
  State& s = st();
  const int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
  if (s.initialized) callAbort(code);
  std::_Exit(code);
  return info.Env().Undefined();
}

}  // namespace

namespace cnx {
void register_mpi(Napi::Env env, Napi::Object exports) {
  Napi::Object m = Napi::Object::New(env);
  m.Set("load", Napi::Function::New(env, Load));
  m.Set("init", Napi::Function::New(env, Init));
  m.Set("alltoall", Napi::Function::New(env, Alltoall));
  m.Set("allgather", Napi::Function::New(env, Allgather));
  m.Set("barrier", Napi::Function::New(env, Barrier));
  m.Set("finalize", Napi::Function::New(env, Finalize));
  m.Set("abort", Napi::Function::New(env, Abort));
  exports.Set("mpi", m);
}
}  // namespace cnx
