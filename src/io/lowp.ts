/**
 * Decoding of low-precision floats to float32, shared by the safetensors and torch.save
 * readers: lookup tables built on first use.
 */

let f16Table: Float32Array | undefined;
/** float16 bit patterns -> float32 (256 KiB). float8 E5M2 is the top byte of a float16. */
export function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) t[h] = sign * m * 2 ** -24;
    else if (e === 31) t[h] = m ? NaN : sign * Infinity;
    else t[h] = sign * (1 + m / 1024) * 2 ** (e - 15);
  }
  f16Table = t;
  return t;
}

let e4m3Table: Float32Array | undefined;
/** float8 E4M3 (the "fn" variant: no infinities, NaN = S.1111.111) -> float32. */
export function fp8e4m3Table(): Float32Array {
  if (e4m3Table) return e4m3Table;
  const t = new Float32Array(256);
  for (let b = 0; b < 256; b++) {
    const sign = b & 0x80 ? -1 : 1;
    const e = (b >> 3) & 0xf;
    const m = b & 7;
    if (e === 0) t[b] = sign * m * 2 ** -9;
    else if (e === 15 && m === 7) t[b] = NaN;
    else t[b] = sign * (1 + m / 8) * 2 ** (e - 7);
  }
  e4m3Table = t;
  return t;
}
