/**
 * Checkpoint formats and parameter-name mapping.
 *
 * Every reader produces our canonical state dict: the names and shapes of `paramSpecs(cfg)`
 * (timm names, PyTorch layouts, Linear MLP form). Accepted namings:
 * - `timm`: canonical names; the MLP as Linear [out,in] or 1x1 conv [out,in,1,1] (timm's
 *   `conv_mlp` form of atto..nano); `head.fc` optional (absent = backbone). A key prefix such
 *   as `model.` or `module.` is detected.
 * - `official`: facebookresearch/ConvNeXt-V2 fine-tune names (`downsample_layers.I.J`,
 *   `stages.S.B.{dwconv,norm,pwconv1,grn.gamma,grn.beta,pwconv2}`, `norm`, `head`).
 * - `hf`: Hugging Face transformers `ConvNextV2ForImageClassification` (`convnextv2.…`,
 *   `classifier`) or a bare `ConvNextV2Model`.
 * GRN parameters may be [C] or [1,1,1,C] (or [1,C]) in any naming. ConvNeXt V1 checkpoints
 * (timm `stages.S.blocks.B.gamma`, official `stages.S.B.gamma`: LayerScale, no GRN) load as
 * `block: 'v1'` models.
 *
 * The model config is inferred from the tensor shapes (depths, dims, classes, input channels,
 * kernel size), so loading needs no model name. Validation is strict: every expected tensor
 * present with its exact shape, nothing left over; errors name the tensors.
 *
 * Our own checkpoints (`format: 'convnextv2'`) are safetensors files with canonical names,
 * optional `optimizer.` / `ema.` / `fcmae.` prefixed tensors and JSON metadata (`config`).
 *
 * The code lives in io/checkpoint/, one file per job; this module re-exports its public names:
 * - names.ts: state-dict types, name rules, layout variants, canonical -> other namings.
 * - detect.ts: detection of a state dict's naming and key prefix (detectNaming).
 * - infer.ts: architecture inference from tensor shapes (matchModelSize).
 * - plan.ts: mapping plans and the canonical state dict (planCanonical, toCanonical).
 * - preprocessing.ts: evaluation preprocessing, written and read back.
 * - export.ts: exports to other namings (hfConfigJson, planExport, exportBytes).
 * - save.ts: our own checkpoints (checkState, checkpointContents, serializeCheckpoint).
 * - load.ts: loading any supported checkpoint (loadCheckpointFrom, loadCheckpointBytes).
 */
export type { StateDict, Naming, CheckpointFormat, TimmExportOptions } from './checkpoint/names.js';
export { EXTRA_PREFIXES, CHECKPOINT_FILES, toTimmNames, toOfficialNames, toHfNames, toNaming } from './checkpoint/names.js';
export type { DetectedNaming } from './checkpoint/detect.js';
export { detectNaming } from './checkpoint/detect.js';
export { matchModelSize } from './checkpoint/infer.js';
export type { PlanOptions, PlanEntry, MappingPlan, CanonicalResult } from './checkpoint/plan.js';
export { planCanonical, toCanonical } from './checkpoint/plan.js';
export type { Preprocessing } from './checkpoint/preprocessing.js';
export { DEFAULT_PREPROCESSING, hfPreprocessorJson, preprocessingMetadata } from './checkpoint/preprocessing.js';
export type { ExportOptions, ExportPlan } from './checkpoint/export.js';
export { hfConfigJson, timmUsesConvMlp, planExport, exportBytes } from './checkpoint/export.js';
export type { SaveCheckpointInput } from './checkpoint/save.js';
export { checkState, checkpointContents, serializeCheckpoint } from './checkpoint/save.js';
export type { LoadOptions, LoadedCheckpoint } from './checkpoint/load.js';
export { resolveCheckpointPath, readHfConfig, loadCheckpointFrom, loadCheckpointBytes } from './checkpoint/load.js';
