/**
 * What a file is, from its first bytes, for error messages that say what was given instead
 * of what a parser choked on ("is a PNG image, not a checkpoint" rather than "header length
 * 8533880815075067912 is over 100000000 bytes").
 */

/** 'a PNG image', 'an ONNX model', ... or null when the bytes say nothing we know. */
export function sniff(b: Uint8Array): string | null {
  const at = (i: number, ...xs: number[]) => xs.every((x, k) => b[i + k] === x);
  const ascii = (i: number, s: string) => [...s].every((c, k) => b[i + k] === c.charCodeAt(0));
  if (at(0, 0x89, 0x50, 0x4e, 0x47)) return 'a PNG image';
  if (at(0, 0xff, 0xd8, 0xff)) return 'a JPEG image';
  if (ascii(0, 'GIF8')) return 'a GIF image';
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'a WebP image';
  if (ascii(0, 'BM') && b.length >= 14) return 'a BMP image';
  if (at(0, 0x49, 0x49, 0x2a, 0x00) || at(0, 0x4d, 0x4d, 0x00, 0x2a)) return 'a TIFF image';
  if (at(4, 0x66, 0x74, 0x79, 0x70)) return 'an AVIF/HEIF image or an MP4 video';
  // ONNX ModelProto: ir_version (field 1, varint) then producer_name (field 2, string).
  if (b[0] === 0x08 && b[1] > 0 && b[1] < 0x20 && b[2] === 0x12) return 'an ONNX model';
  if (at(0, 0x93) && ascii(1, 'NUMPY')) return 'a NumPy .npy array';
  if (at(0, 0x89) && ascii(1, 'HDF')) return 'an HDF5 file (a Keras / TensorFlow model?)';
  if (at(0, 0x1f, 0x8b)) return 'a gzip file (unpack it first)';
  if (at(0, 0x50, 0x4b, 0x03, 0x04)) return 'a zip archive';
  if (at(0, 0x80) && b[1] >= 2 && b[1] <= 5) return 'a Python pickle (a legacy torch.save file?)';
  const first = b.find((x) => x !== 0x20 && x !== 0x0a && x !== 0x0d && x !== 0x09);
  if (first === 0x7b || first === 0x5b) return 'JSON text';
  if (b.length > 0 && b.every((x) => x === 0x09 || x === 0x0a || x === 0x0d || (x >= 0x20 && x < 0x7f))) return 'a text file';
  return null;
}
