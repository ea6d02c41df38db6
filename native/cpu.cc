#include "cpu.h"

#include <chrono>
#include <cstring>

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
  CpuId id{};
  Features() {
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return;
    unsigned maxLeaf = a;
    std::memcpy(id.vendor, &b, 4);
    std::memcpy(id.vendor + 4, &d, 4);
    std::memcpy(id.vendor + 8, &c, 4);
    if (__get_cpuid(0x80000000, &a, &b, &c, &d) && a >= 0x80000004) {
      unsigned r[12];
      for (unsigned i = 0; i < 3; ++i) __get_cpuid(0x80000002 + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
      std::memcpy(id.brand, r, 48);
      trim(id.brand);
    }
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const unsigned baseFamily = (a >> 8) & 0xF, baseModel = (a >> 4) & 0xF;
    id.family = baseFamily == 0xF ? baseFamily + ((a >> 20) & 0xFF) : baseFamily;
    id.model = baseFamily == 0x6 || baseFamily == 0xF ? (((a >> 16) & 0xF) << 4) | baseModel : baseModel;
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
  // The brand string is padded with spaces (leading on some Intel parts) and NULs.
  static void trim(char* s) {
    size_t n = std::strlen(s);
    while (n > 0 && s[n - 1] == ' ') s[--n] = 0;
    size_t k = 0;
    while (s[k] == ' ') ++k;
    if (k) std::memmove(s, s + k, n - k + 1);
  }
};
const Features& features() {
  static const Features f;
  return f;
}
}  // namespace

const CpuId& cpu_id() { return features().id; }

double measure_clock_ghz(double seconds) {
  // 64 dependent adds per iteration; the loop counter runs on other ALUs in parallel.
  const long iters = 1 << 16;
  double best = 0, spent = 0;
  unsigned long x = 0, one = 1;
  while (spent < seconds) {
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < iters; ++i) {
      __asm__ volatile(
          ".rept 64\n\t"
          "add %1, %0\n\t"
          ".endr"
          : "+r"(x)
          : "r"(one));
    }
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    spent += dt;
    if (dt > 0 && 64.0 * iters / dt > best) best = 64.0 * iters / dt;
  }
  return best / 1e9;
}
#else
const CpuId& cpu_id() {
  static const CpuId id{};
  return id;
}
double measure_clock_ghz(double) { return 0; }
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
  if (kernel_table(ISA_AVX512)) return ISA_AVX512;
  if (kernel_table(ISA_AVX2)) return ISA_AVX2;
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
