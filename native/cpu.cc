#include "cpu.h"

#if defined(CNX_X86) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#include <xmmintrin.h>
#define CNX_HAVE_CPUID 1
#endif

namespace cnx {

#if defined(CNX_HAVE_CPUID)
namespace {
struct Features {
  bool avx2 = false;
  bool avx512 = false;
  Features() {
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return;
    unsigned maxLeaf = a;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx) return;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    (void)xhi;
    const bool osYmm = (xlo & 0x6) == 0x6;              // SSE + AVX state
    const bool osZmm = (xlo & 0xE6) == 0xE6;            // + opmask, ZMM_Hi256, Hi16_ZMM
    if (maxLeaf < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    const bool avx2 = (b >> 5) & 1;
    const bool f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    this->avx2 = osYmm && avx2 && fma;
    this->avx512 = this->avx2 && osZmm && f && dq && bw && vl;
  }
};
const Features& features() {
  static const Features f;
  return f;
}
}  // namespace
#endif

bool cpu_supports(Isa isa) {
  switch (isa) {
    case ISA_PORTABLE: return true;
#if defined(CNX_HAVE_CPUID)
    case ISA_AVX2: return features().avx2;
    case ISA_AVX512: return features().avx512;
#endif
    default: return false;
  }
}

Isa cpu_best_isa() {
  if (cpu_supports(ISA_AVX512) && kernel_table(ISA_AVX512)) return ISA_AVX512;
  if (cpu_supports(ISA_AVX2) && kernel_table(ISA_AVX2)) return ISA_AVX2;
  return ISA_PORTABLE;
}

#if defined(CNX_HAVE_CPUID)
static constexpr unsigned kFtzDaz = 0x8040;  // MXCSR flush-to-zero (bit 15), denormals-are-zero (bit 6)
void flush_denormals_this_thread() { _mm_setcsr(_mm_getcsr() | kFtzDaz); }
DenormalGuard::DenormalGuard() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFtzDaz); }
DenormalGuard::~DenormalGuard() { _mm_setcsr(saved_); }
#else
void flush_denormals_this_thread() {}
DenormalGuard::DenormalGuard() : saved_(0) {}
DenormalGuard::~DenormalGuard() {}
#endif

}  // namespace cnx
