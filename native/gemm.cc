// gemm kernels, portable path: the shared templates of gemm_impl.h compiled for this
// instruction set (this file gets its own compiler flags in binding.gyp).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels.h"
#include "threadpool.h"

namespace cnx {
namespace portable {
#include "simd_portable.h"
#include "vmath.h"
#include "gemm_impl.h"
}  // namespace portable
}  // namespace cnx
