// Builds one kernel table per compiled instruction-set path. The fill functions live in the
// per-ISA translation units and are compiled for that ISA (the compiler may use its vector
// registers even to store the function pointers), so no code of a path runs, table building
// included, before cpu_supports() has said yes.
#include <cstring>

#include "cpu.h"
#include "kernels.h"

namespace cnx {

namespace {
template <void (*G)(KernelTable&), void (*D)(KernelTable&), void (*N)(KernelTable&),
          void (*M)(KernelTable&)>
KernelTable make(const char* name) {
  KernelTable t;
  std::memset(&t, 0, sizeof t);
  t.name = name;
  G(t);
  D(t);
  N(t);
  M(t);
  return t;
}
}  // namespace

const KernelTable* kernel_table(Isa isa) {
  if (!cpu_supports(isa)) return nullptr;
  switch (isa) {
    case ISA_PORTABLE: {
      static const KernelTable t = make<portable::fill_gemm, portable::fill_dwconv,
                                        portable::fill_norm, portable::fill_misc>("portable");
      return &t;
    }
#if defined(CNX_X86)
    case ISA_AVX2: {
      static const KernelTable t =
          make<avx2::fill_gemm, avx2::fill_dwconv, avx2::fill_norm, avx2::fill_misc>("avx2");
      return &t;
    }
    case ISA_AVX512: {
      static const KernelTable t = make<avx512::fill_gemm, avx512::fill_dwconv,
                                        avx512::fill_norm, avx512::fill_misc>("avx512");
      return &t;
    }
#endif
    default: return nullptr;
  }
}

bool isa_compiled(Isa isa) {
#if defined(CNX_X86)
  return isa == ISA_PORTABLE || isa == ISA_AVX2 || isa == ISA_AVX512;
#else
  return isa == ISA_PORTABLE;
#endif
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case ISA_AVX512: return "avx512";
    case ISA_AVX2: return "avx2";
    default: return "portable";
  }
}

bool isa_from_name(const char* name, Isa* out) {
  if (!std::strcmp(name, "avx512")) { *out = ISA_AVX512; return true; }
  if (!std::strcmp(name, "avx2")) { *out = ISA_AVX2; return true; }
  if (!std::strcmp(name, "portable")) { *out = ISA_PORTABLE; return true; }
  return false;
}

}  // namespace cnx
