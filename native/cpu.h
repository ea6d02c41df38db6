// Run-time CPU feature detection (cpuid / xgetbv, including the OS's AVX / AVX-512 state).
#pragma once
#include "kernels.h"

namespace cnx {
// True when the CPU and the OS support the instruction-set path (portable always is).
bool cpu_supports(Isa isa);
// The best path that is both compiled in and supported.
Isa cpu_best_isa();

// What the CPU says it is (cpuid): vendor ("GenuineIntel", "AuthenticAMD"), brand string
// ("AMD EPYC 7B13", "Intel(R) Xeon(R) Platinum 8581C CPU @ 2.10GHz"), display family and model.
// Empty strings and zeros where there is no cpuid.
struct CpuId {
  char vendor[13];
  char brand[49];
  unsigned family, model;
};
const CpuId& cpu_id();

// The core clock of the calling thread in GHz, now: the fastest of rounds of a chain of
// dependent register-register integer adds (one cycle each on every x86 core), over about
// `seconds`. 0 where that cannot be measured (not x86).
double measure_clock_ghz(double seconds);

// Denormal inputs and results are flushed to zero inside the kernels (x86: MXCSR FTZ and
// DAZ). Denormal operands make each FMA take ~100 cycles on x86; they arise in practice
// (GELU of large negative pre-activations, e.g. with FCMAE's std-1 initialisation) and are
// far below float32 tolerance. Worker threads keep the mode; the calling (JavaScript) thread
// gets it only for the duration of a kernel call, so JavaScript arithmetic is unaffected.
void flush_denormals_this_thread();
class DenormalGuard {
 public:
  DenormalGuard();
  ~DenormalGuard();
  DenormalGuard(const DenormalGuard&) = delete;
  DenormalGuard& operator=(const DenormalGuard&) = delete;

 private:
  unsigned saved_;
};
}  // namespace cnx
