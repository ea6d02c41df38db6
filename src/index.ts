/** convnextv2: ConvNeXt V2 in TypeScript on native SIMD kernels. */
import './io/codecs_node.js';

export { ConvNextError } from './errors.js';
export { type Tensor, tensor, numel } from './tensor.js';
export { Rng } from './rng.js';
export { createBackend, BACKEND_CHOICES, Act, type BackendChoice, type BackendOptions, type Kernels, type Isa } from './kernels/index.js';
export type { WasmLocation } from './kernels/wasm.js';
export type { WebGPUOptions } from './kernels/webgpu/device.js';
export type { Buf, DeviceIndex, DeviceTensor, Capabilities, Idx, NativeIsa } from './kernels/types.js';

export {
  type ConvNeXtV2Config, type ConfigOverrides, type ParamSpec, type BlockType, MODEL_SIZES, LAYER_SCALE_INIT, makeConfig, validateConfig,
  paramSpecs, countParams,
} from './model/config.js';
export {
  ConvNeXtV2, type ModelOptions, type ForwardOptions, type ForwardResult, type ForwardTensors, type StageLayout, type ActivationCapture, type BlockLocation,
} from './model/convnextv2.js';
export { GRN } from './model/grn.js';
export { Block, type HiddenCapture } from './model/block.js';
export { LayerScaledLinear } from './nn/layerscale.js';
export { forwardMacs } from './model/flops.js';
export { Param } from './nn/param.js';
export { AdamW, ADAMW_DEFAULTS, defaultGroups, type AdamWOptions, type ParamGroup } from './train/adamw.js';
export { finetuneParamGroups, pretrainParamGroups, type FinetuneGroupOptions } from './train/param_groups.js';
export { trainStep, forwardBackward, smoothTargets, clipGradients, type StepResult, type StepTensors } from './train/step.js';
export { parseSafetensorsBuffer, serializeSafetensors, type TensorData } from './io/safetensors.js';
export { readSafetensors, openSafetensors, writeSafetensors } from './io/safetensors_file.js';
export {
  loadCheckpointFrom, serializeCheckpoint, exportBytes, timmUsesConvMlp, DEFAULT_PREPROCESSING,
  type LoadedCheckpoint, type LoadOptions, type ExportOptions, type CheckpointFormat, type Naming, type Preprocessing,
} from './io/checkpoint.js';
export { loadCheckpoint, saveCheckpoint, exportCheckpoint } from './io/checkpoint_file.js';
export { memoryFiles, type FileSet } from './io/files.js';
export { nodeFiles } from './io/files_node.js';
export { classNames, parseLabelsText, type ClassNames } from './io/labels.js';
export { readLabelsFile } from './io/labels_file.js';
export { IMAGENET_1K_CLASSES, IMAGENET_1K_SYNSETS } from './data/imagenet.js';
export { readTorchCheckpointBuffer, serializeTorchCheckpoint, findStateDict } from './io/torch.js';
export { readTorchCheckpoint, writeTorchCheckpoint } from './io/torch_file.js';
export { type FcmaeInfo, FCMAE_PREFIX } from './io/fcmae.js';
export { exportOnnx, onnxModelBytes, type OnnxExportOptions } from './io/onnx.js';
export { SYNTHETIC_CLASSES, renderSynthetic, syntheticBatch } from './data/synthetic.js';
export {
  openDataset, datasetFromShared, splitIndices, parseIdx, FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, CIFAR10_CLASSES,
  type Dataset, type Split, type OpenOptions, type SharedDataset,
} from './data/dataset.js';
export { decodeImage, CorruptImageError, type Image } from './data/image.js';
export { resizeRgb, type ResampleFilter, type CropBox } from './data/resample.js';
export {
  randomResizedCrop, randomResizedCropParams, hflip, flipHorizontal, resize, resizeShortSide, centerCrop, evalResize,
  evalTransform, toNormalizedCHW, fromNormalizedCHW, randomErasing, compileTransform, applyTransform, IMAGENET_MEAN, IMAGENET_STD,
  type TransformSpec, type TrainTransformSpec, type EvalTransformSpec, type ResizeTransformSpec, type SampleTransform,
  type RandomResizedCropOptions, type RandomErasingOptions, type CropParams,
} from './data/transforms.js';
export { randAugment, parseRandAugment, type RandAugmentConfig } from './data/randaugment.js';
export { Mixup, mixupTarget, type MixupOptions, type MixResult } from './data/mixup.js';
export { DataLoader, sampleSeed, type DataLoaderOptions, type Batch, type BatchSource, type CustomTransform } from './data/loader.js';
export { encodePng, crc32, type RasterImage } from './viz/png.js';
export { writePng } from './viz/png_file.js';
export { Canvas, type Color, type TextOptions } from './viz/canvas.js';
export { linePlot, linePlotCanvas, imageGrid, imageGridCanvas, PALETTE, type Series, type LinePlotOptions, type GridImage } from './viz/plot.js';
export { FCMAE, FCMAE_DEFAULTS, type FcmaeOptions, type FcmaeOutput, type FcmaeTensors } from './fcmae/fcmae.js';
export { FinetuneEngine, type FinetuneEngineOptions, type FinetuneEpoch, type EvalSummary } from './train/finetune_engine.js';
export { NonFiniteLossError, type EpochHooks, type EpochStats, type StepInfo } from './train/epoch.js';
export { runTraining, type TrainingRun, type RunFolder } from './train/run.js';
export { PretrainEngine, type PretrainEngineOptions, type PretrainEpoch } from './fcmae/pretrain_engine.js';
export { type Comm, singleProcess, allgatherJson } from './parallel/comm.js';
export { connect, launchInfo, type LaunchInfo } from './parallel/mpi.js';
export { GradientSum } from './parallel/grad_sum.js';
export { optimizerTensors, loadOptimizerTensors } from './train/optimizer_state.js';
export { randomMask, stageMask, type StageMask } from './fcmae/masking.js';
export { SparseEncoder, type EncoderMode, type GrnStats, type EncoderOutput } from './fcmae/sparse_encoder.js';
export { patchifyTarget, normalizePatches, maskedMse } from './kernels/fcmae_loss.js';
export { ModelEma } from './train/ema.js';
export { topClasses, EvalCounter, type RankedClass } from './train/metrics.js';
export { layerId, layerScale, numLayers, type LayerDecayType } from './train/layer_decay.js';
export { lrAt, scaledLr, type CosineSchedule } from './train/schedule.js';
export { clipGradNorm } from './train/step.js';
export {
  featureCosineDistance, channelCosineDistance, cosineMatrix, ClassSelectivity, selectivityIndices, distribution, type Distribution,
} from './analysis/metrics.js';
export {
  ActivationAnalyzer, modelLayers, resolveLayer, type LayerInfo, type LayerResult, type ModelAnalysis, type ImageMaps, type AnalyzerOptions,
} from './analysis/collect.js';
export { cosineDistancePlot, selectivityPlot, activationMapsPng, viridis, type LabelledAnalysis } from './analysis/plots.js';
export { analysisReport, type ReportInput, type ReportModel } from './analysis/report.js';
