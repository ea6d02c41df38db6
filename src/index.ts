/** convnextv2: ConvNeXt V2 in TypeScript on native SIMD kernels. */
export { ConvNextError } from './errors.js';
export { type Tensor, tensor, numel } from './tensor.js';
export { Rng } from './rng.js';
export { getKernels, getNativeKernels, setThreads, ReferenceKernels, Act } from './kernels/index.js';
export type { Kernels, Isa } from './kernels/index.js';
export {
  type ConvNeXtV2Config, type ConfigOverrides, type ParamSpec, MODEL_SIZES, makeConfig, validateConfig, paramSpecs, countParams,
} from './model/config.js';
export { ConvNeXtV2, type ModelOptions, type ForwardOptions, type ForwardResult, type StageMap } from './model/convnextv2.js';
export { GRN } from './model/grn.js';
export { Block } from './model/block.js';
export { forwardMacs } from './model/flops.js';
export { Param } from './nn/param.js';
export { AdamW, ADAMW_DEFAULTS, defaultGroups, type AdamWOptions, type ParamGroup } from './train/adamw.js';
export { trainStep, forwardBackward, smoothTargets, type StepResult } from './train/step.js';
export { readSafetensors, openSafetensors, writeSafetensors, serializeSafetensors, type TensorData } from './io/safetensors.js';
export {
  loadCheckpoint, saveCheckpoint, exportCheckpoint, timmUsesConvMlp,
  type LoadedCheckpoint, type LoadOptions, type ExportOptions, type CheckpointFormat, type Naming,
} from './io/checkpoint.js';
export { readTorchCheckpoint, writeTorchCheckpoint, findStateDict } from './io/torch.js';
export { type FcmaeInfo, FCMAE_PREFIX } from './io/fcmae.js';
export { exportOnnx, onnxModelBytes, type OnnxExportOptions } from './io/onnx.js';
export { SYNTHETIC_CLASSES, renderSynthetic, syntheticBatch } from './data/synthetic.js';
