// The WebAssembly kernels' gradients against the float64 reference kernels, every element, for
// each case of test/gradref.ts (the layers, blocks and model that test/gradcheck.test.ts checks
// by finite differences). The wasm patchify refuses sizes the patch does not divide (the
// interface floors them), so the patch convolution and the model run on even sizes instead.
import { loadWasmKernels } from '../../src/kernels/wasm_node.js';
import { CASES, EVEN_CASES, referenceComparisonTests } from '../gradref.js';

const k = await loadWasmKernels(undefined, 2);
const odd = new Set([CASES.patchConv, CASES.model]);
referenceComparisonTests('wasm', () => k, { cases: [...Object.values(CASES).filter((c) => !odd.has(c)), ...Object.values(EVEN_CASES)] });
