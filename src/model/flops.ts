/**
 * Multiply-adds of one forward pass (convolutions, depthwise convolutions and linear layers,
 * the layers that do the arithmetic; norms and activations are not counted), as fvcore/timm
 * count them. FLOPs = 2 x multiply-adds; a training step counts 3x the forward.
 */
import type { ConvNeXtV2Config } from './config.js';

export function forwardMacs(cfg: ConvNeXtV2Config, H: number, W: number): number {
  const { dims, depths, kernelSize: k } = cfg;
  let h = Math.floor(H / 4);
  let w = Math.floor(W / 4);
  let macs = h * w * dims[0] * cfg.inChans * 16;
  for (let s = 0; s < 4; s++) {
    const C = dims[s];
    if (s > 0) {
      h = Math.floor(h / 2);
      w = Math.floor(w / 2);
      macs += h * w * C * dims[s - 1] * 4;
    }
    macs += depths[s] * h * w * (C * k * k + 8 * C * C);
  }
  macs += dims[3] * cfg.numClasses;
  return macs;
}

/**
 * Multiply-adds of one FCMAE forward: the stem on the whole image, the rest of the encoder
 * on the `visible` fraction of positions (1 for the dense-masked path), and the decoder
 * (projection, blocks, prediction) on the final-stage grid.
 */
export function fcmaeMacs(cfg: ConvNeXtV2Config, H: number, W: number, dec: { decoderDim: number; decoderDepth: number; patchSize: number }, visible: number): number {
  const stem = Math.floor(H / 4) * Math.floor(W / 4) * cfg.dims[0] * cfg.inChans * 16;
  const encoder = forwardMacs({ ...cfg, numClasses: 0 }, H, W) - stem;
  const g = Math.floor(H / 32) * Math.floor(W / 32);
  const D = dec.decoderDim;
  const decoder = g * (cfg.dims[3] * D + dec.decoderDepth * (D * 49 + 8 * D * D) + D * dec.patchSize * dec.patchSize * cfg.inChans);
  return stem + visible * encoder + decoder;
}
