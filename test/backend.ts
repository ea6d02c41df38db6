// The CPU backend the tests run on (native, or what CONVNEXTV2_KERNELS names), made once.
import { createBackend } from '../src/kernels/index.js';

export const cpu = await createBackend('cpu');
