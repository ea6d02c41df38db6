// Run-time CPU feature detection (cpuid / xgetbv, including the OS's AVX / AVX-512 state).
#pragma once
#include "kernels.h"

namespace cnx {
// True when the CPU and the OS support the instruction-set path (portable always is).
bool cpu_supports(Isa isa);
// The best path that is both compiled in and supported.
Isa cpu_best_isa();
}  // namespace cnx
