// The WebGPU backend's gradients against the float64 reference kernels, every element, for each
// case of test/gradref.ts (the layers, blocks and model that test/gradcheck.test.ts checks by
// finite differences); skipped without an adapter.
import { referenceComparisonTests } from '../gradref.js';
import { need, openWebGPU } from './helpers.js';

const gpu = await openWebGPU();
referenceComparisonTests('webgpu', (t) => need(t, gpu));
