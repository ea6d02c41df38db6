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
