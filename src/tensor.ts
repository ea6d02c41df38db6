/**
 * A tensor is a shape and a row-major Float32Array. Inside the library activations are NHWC
 * (channels-last); the public model API takes and returns NCHW like PyTorch.
 */
import { ConvNextError } from './errors.js';

export interface Tensor {
  shape: number[];
  data: Float32Array;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function tensor(shape: number[], data?: Float32Array): Tensor {
  const n = numel(shape);
  if (data && data.length !== n) {
    throw new ConvNextError(`tensor data has ${data.length} values, shape [${shape.join(',')}] needs ${n}`);
  }
  return { shape: [...shape], data: data ?? new Float32Array(n) };
}

export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

/** Bit-exact equality of float32 arrays (NaN payloads and -0 included). */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
