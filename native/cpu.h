// Run-time CPU feature detection (cpuid / xgetbv, including the OS's AVX / AVX-512 state).
#pragma once
#include "kernels.h"

namespace cnx {
// True when the CPU and the OS support the instruction-set path (portable always is).
bool cpu_supports(Isa isa);
// The best path that is both compiled in and supported.
Isa cpu_best_isa();

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
