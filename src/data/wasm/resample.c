/*
 * The two passes of Pillow's 8-bit separable resampling (ImagingResampleHorizontal_8bpc /
 * ImagingResampleVertical_8bpc) for interleaved RGB, compiled to WebAssembly (SIMD128) by
 * scripts/build-wasm.sh into src/data/wasm/resample-wasm.ts. The coefficients (22-bit fixed
 * point) are computed in TypeScript (src/data/resample.ts) and passed in; the arithmetic
 * here is integer and identical to Pillow's and to the TypeScript fallback.
 */
#include <stdint.h>
#include <wasm_simd128.h>

#define PRECISION_BITS 22

/* Sums wrap like Pillow's int sums (they stay in range); unsigned avoids C's signed overflow. */
static inline uint8_t clip8(uint32_t u) {
  const int32_t v = (int32_t)u >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* rows x (dw outputs) from rows of `src` (stride srcStride, first pixel of each row at src). */
__attribute__((export_name("horizontal")))
void horizontal(const uint8_t *src, int srcStride, int rows, uint8_t *dst, int dw,
                const int32_t *bounds, const int32_t *kk, int ksize) {
  for (int r = 0; r < rows; r++) {
    const uint8_t *row = src + (long)r * srcStride;
    uint8_t *o = dst + (long)r * dw * 3;
    for (int xx = 0; xx < dw; xx++) {
      const int xmin = bounds[xx * 2];
      const int n = bounds[xx * 2 + 1];
      const int32_t *k = kk + xx * ksize;
      const uint8_t *p = row + xmin * 3;
      /* One lane per channel (R, G, B, and a 4th byte that is ignored): each tap loads 4
         bytes, so the caller leaves at least one readable byte after the last pixel. */
      v128_t acc = wasm_i32x4_splat(1 << (PRECISION_BITS - 1));
      for (int x = 0; x < n; x++, p += 3) {
        const v128_t v = wasm_u32x4_extend_low_u16x8(wasm_u16x8_extend_low_u8x16(wasm_v128_load32_zero(p)));
        acc = wasm_i32x4_add(acc, wasm_i32x4_mul(v, wasm_i32x4_splat(k[x])));
      }
      acc = wasm_i32x4_shr(acc, PRECISION_BITS);
      acc = wasm_i32x4_min(wasm_i32x4_max(acc, wasm_i32x4_splat(0)), wasm_i32x4_splat(255));
      o[0] = (uint8_t)wasm_i32x4_extract_lane(acc, 0);
      o[1] = (uint8_t)wasm_i32x4_extract_lane(acc, 1);
      o[2] = (uint8_t)wasm_i32x4_extract_lane(acc, 2);
      o += 3;
    }
  }
}

/* dh output rows of rowLen bytes; output row yy mixes rows bounds[2yy].. of `src` (stride srcStride). */
__attribute__((export_name("vertical")))
void vertical(const uint8_t *src, int srcStride, uint8_t *dst, int rowLen, int dh,
              const int32_t *bounds, const int32_t *kk, int ksize, uint32_t *acc) {
  for (int yy = 0; yy < dh; yy++) {
    const int ymin = bounds[yy * 2];
    const int n = bounds[yy * 2 + 1];
    const int32_t *k = kk + yy * ksize;
    for (int i = 0; i < rowLen; i++) acc[i] = 1u << (PRECISION_BITS - 1);
    for (int y = 0; y < n; y++) {
      const uint32_t w = (uint32_t)k[y];
      const uint8_t *s = src + (long)(ymin + y) * srcStride;
      for (int i = 0; i < rowLen; i++) acc[i] += (uint32_t)s[i] * w;
    }
    uint8_t *o = dst + (long)yy * rowLen;
    for (int i = 0; i < rowLen; i++) o[i] = clip8(acc[i]);
  }
}
