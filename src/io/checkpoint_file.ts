/**
 * Checkpoints on disk (Node): {@link loadCheckpoint} from a path (a file or a folder) or from
 * bytes, and the atomic writers {@link saveCheckpoint} / {@link exportCheckpoint}, over the
 * platform-neutral ./checkpoint.ts.
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { ConvNextError } from '../errors.js';
import type { ConvNeXtV2Config } from '../model/config.js';
import { writeBytesAtomicSync } from './atomic.js';
import {
  checkpointContents, type ExportOptions, type LoadedCheckpoint, loadCheckpointBytes, loadCheckpointFrom, type LoadOptions, planExport, type SaveCheckpointInput,
} from './checkpoint.js';
import type { FileSet } from './files.js';
import { nodeFiles } from './files_node.js';
import type { TensorData } from './safetensors.js';
import { writeSafetensors } from './safetensors_file.js';
import { writeTorchCheckpoint } from './torch_file.js';

/**
 * Loads a checkpoint: a safetensors file, a torch.save zip (`.pt`, `.pth`, `pytorch_model.bin`;
 * detected by its magic bytes), a Hugging Face sharded index, or a directory (HF files +
 * `config.json`, or a run directory's `checkpoint-best` / `checkpoint-last`); or the bytes of
 * one file; or a {@link FileSet} with the path in it. Detects the naming (timm, official, HF,
 * ours, official FCMAE pre-training), infers and validates the config, and reads only the
 * tensors it needs (safetensors files lazily). See `loadCheckpointFrom` in ./checkpoint.ts.
 */
export function loadCheckpoint(input: string | Uint8Array, opts: LoadOptions = {}): LoadedCheckpoint {
  return typeof input === 'string' ? loadCheckpointFrom(nodeFiles, input, opts) : loadCheckpointBytes(input, opts);
}

export type { FileSet };

function fsError(path: string, err: unknown): ConvNextError {
  return new ConvNextError(`cannot export to ${path}: ${(err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ')}`);
}

/**
 * Writes model weights for use elsewhere (no optimizer state): `timm` or `official` as one
 * safetensors file at `path` (`official` with `container: 'torch'`: a torch.save zip);
 * `hf` as a directory `path` with model.safetensors, config.json and preprocessor_config.json
 * (a backbone as a bare `ConvNextV2Model`). Files are written atomically.
 */
export function exportCheckpoint(path: string, model: { config: ConvNeXtV2Config; state: ReadonlyMap<string, TensorData> }, opts: ExportOptions): void {
  const plan = planExport(model, opts, path);
  if (plan.kind === 'hf') {
    try {
      fs.mkdirSync(path, { recursive: true });
    } catch (err) {
      throw fsError(path, err);
    }
    writeSafetensors(nodePath.join(path, 'model.safetensors'), plan.tensors, plan.metadata);
    writeBytesAtomicSync(nodePath.join(path, 'config.json'), new TextEncoder().encode(plan.configJson!));
    writeBytesAtomicSync(nodePath.join(path, 'preprocessor_config.json'), new TextEncoder().encode(plan.preprocessorJson!));
    return;
  }
  if (plan.kind === 'torch') {
    writeTorchCheckpoint(path, { model: plan.tensors });
    return;
  }
  writeSafetensors(path, plan.tensors, plan.metadata);
}

/**
 * Writes one of our checkpoints: canonical tensors in `paramSpecs` order, then the extras, with
 * metadata `format: convnextv2` and `config` (JSON), atomically (temp file, fsync, rename).
 */
export function saveCheckpoint(path: string, ck: SaveCheckpointInput): void {
  const { tensors, metadata } = checkpointContents(ck, `cannot save checkpoint ${path}`);
  writeSafetensors(path, tensors, metadata);
}
