/**
 * convnextv2 for the browser (and any JavaScript runtime): the platform-neutral core, nothing
 * from Node. `npm run build:web` bundles it to dist/web/index.js. Checkpoints are read from
 * bytes (`loadCheckpoint(uint8array)`, or the files of an HF folder by name) and written to
 * bytes (`serializeCheckpoint`, `exportBytes`) for a download. Kernels: a backend made by
 * `await createBackend('wasm')` (the WebAssembly build of the native kernels, with threads where
 * the page is cross-origin isolated), `'webgpu'` or `'reference'`, given to every model as `kernels`. The training loops are the engines the
 * CLI runs (FinetuneEngine, PretrainEngine) over any BatchSource.
 */
import { type LoadedCheckpoint, loadCheckpointBytes, loadCheckpointFrom, type LoadOptions } from './io/checkpoint.js';
import { type FileSet, memoryFiles } from './io/files.js';

export { ConvNextError, errorLine } from './errors.js';
export { type Tensor, tensor, numel } from './tensor.js';
export { Rng } from './rng.js';
export { createBackend, BACKEND_CHOICES, Act, type BackendChoice, type BackendOptions, type Kernels, type Isa } from './kernels/index.js';
export type { WasmLocation } from './kernels/wasm.js';
export type { WebGPUOptions } from './kernels/webgpu/device.js';
export type { Buf, DeviceIndex, DeviceTensor, Capabilities, Idx, NativeIsa } from './kernels/types.js';

export {
  type ConvNeXtV2Config, type ConfigOverrides, MODEL_SIZES, makeConfig, validateConfig, paramSpecs, countParams,
} from './model/config.js';
export { ConvNeXtV2, type ModelOptions, type ForwardOptions, type ForwardResult, type ForwardTensors, type StageLayout } from './model/convnextv2.js';
export { GRN } from './model/grn.js';
export { forwardMacs } from './model/flops.js';
export { Param } from './nn/param.js';
export { AdamW, ADAMW_DEFAULTS, defaultGroups, type AdamWOptions, type ParamGroup } from './train/adamw.js';
export { finetuneParamGroups, pretrainParamGroups, type FinetuneGroupOptions } from './train/param_groups.js';
export { trainStep, forwardBackward, smoothTargets, clipGradNorm, clipGradients, type StepResult, type StepTensors } from './train/step.js';
export { ModelEma } from './train/ema.js';
export { topClasses, EvalCounter, type RankedClass } from './train/metrics.js';
export { layerScale, type LayerDecayType } from './train/layer_decay.js';
export { lrAt, scaledLr, type CosineSchedule } from './train/schedule.js';
export { FCMAE, FCMAE_DEFAULTS, type FcmaeOptions, type FcmaeOutput, type FcmaeTensors } from './fcmae/fcmae.js';
export { FinetuneEngine, type FinetuneEngineOptions, type FinetuneEpoch, type EvalSummary } from './train/finetune_engine.js';
export { NonFiniteLossError, type EpochHooks, type EpochStats, type StepInfo } from './train/epoch.js';
export { runTraining, type TrainingRun, type RunFolder } from './train/run.js';
export { PretrainEngine, type PretrainEngineOptions, type PretrainEpoch } from './fcmae/pretrain_engine.js';
export { sampleSeed, type Batch, type BatchSource } from './data/batch.js';
export { ImageBatches, type ImageBatchesOptions } from './data/memory_batches.js';
export { decodeImageBlob, MAX_DECODE_PIXELS } from './data/decode_browser.js';
export { optimizerTensors, loadOptimizerTensors } from './train/optimizer_state.js';
export { parseSafetensorsBuffer, serializeSafetensors, type TensorData } from './io/safetensors.js';
export { readTorchCheckpointBuffer, serializeTorchCheckpoint, findStateDict } from './io/torch.js';
export {
  serializeCheckpoint, exportBytes, DEFAULT_PREPROCESSING, preprocessingMetadata, CHECKPOINT_FILES,
  type LoadedCheckpoint, type LoadOptions, type ExportOptions, type CheckpointFormat, type Naming, type Preprocessing, type SaveCheckpointInput,
} from './io/checkpoint.js';
export { memoryFiles, type FileSet } from './io/files.js';
export { classNames, parseLabelsText, type ClassNames } from './io/labels.js';
export { IMAGENET_1K_CLASSES } from './data/imagenet.js';
export { SYNTHETIC_CLASSES, renderSynthetic } from './data/synthetic.js';
export { evalTransform, toNormalizedCHW, fromNormalizedCHW, resize, centerCrop, IMAGENET_MEAN, IMAGENET_STD } from './data/transforms.js';
export type { Image } from './data/image.js';
export { encodePng, type RasterImage } from './viz/png.js';
export { linePlot, imageGrid, type Series, type LinePlotOptions, type GridImage } from './viz/plot.js';
export { featureCosineDistance, channelCosineDistance, ClassSelectivity, distribution } from './analysis/metrics.js';
export { ActivationAnalyzer, modelLayers, resolveLayer, type LayerInfo, type ModelAnalysis } from './analysis/collect.js';
export { cosineDistancePlot, selectivityPlot, activationMapsPng } from './analysis/plots.js';
export { randomMask } from './fcmae/masking.js';
export { reconstructImages, reconstructionPng, type Reconstruction } from './fcmae/reconstruction.js';
export { Mixup } from './data/mixup.js';
export { randAugment, parseRandAugment } from './data/randaugment.js';
export { randomResizedCrop, hflip, compileTransform, applyTransform, type TransformSpec } from './data/transforms.js';

/**
 * Loads a checkpoint from bytes: one file of any supported format (our safetensors, timm's,
 * the official `.pt`, an official FCMAE `.pt`), or the files of a Hugging Face folder by name
 * (`{ 'model.safetensors': bytes, 'config.json': bytes, ... }`), or a {@link FileSet} with the
 * path in it.
 */
export function loadCheckpoint(input: Uint8Array | Readonly<Record<string, Uint8Array>> | FileSet, opts: LoadOptions & { path?: string } = {}): LoadedCheckpoint {
  if (input instanceof Uint8Array) return loadCheckpointBytes(input, opts);
  if (isFileSet(input)) return loadCheckpointFrom(input, opts.path ?? '.', opts);
  return loadCheckpointFrom(memoryFiles(input), opts.path ?? '.', opts);
}

function isFileSet(v: object): v is FileSet {
  return typeof (v as FileSet).kind === 'function' && typeof (v as FileSet).openSafetensors === 'function';
}
