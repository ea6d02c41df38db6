// norm kernels, avx512 path: the shared templates of norm_impl.h compiled for this
// instruction set (this file gets its own compiler flags in binding.gyp).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <immintrin.h>

#include "kernels.h"
#include "threadpool.h"

namespace cnx {
namespace avx512 {
#include "simd_avx512.h"

#include "vmath.h"
#include "norm_impl.h"
}  // namespace avx512
}  // namespace cnx
