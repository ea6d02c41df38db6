/**
 * `convnextv2 fcmae-loss`: the FCMAE loss of a checkpoint on given pixels and mask, like the
 * official `FCMAE.forward` with a fixed mask. Architecture, decoder and patch size come from
 * the checkpoint (ours or an official FCMAE .pt); --norm-pix-loss is off unless given.
 */
import { ConvNextError } from '../errors.js';
import { FCMAE } from '../fcmae/fcmae.js';
import { loadCheckpoint } from '../io/checkpoint_file.js';
import { openSafetensors, writeSafetensors } from '../io/safetensors_file.js';
import { shapeStr } from '../tensor.js';
import type { Command } from './command.js';

export const fcmaeLoss: Command = {
  name: 'fcmae-loss',
  summary: 'FCMAE loss and predictions of a checkpoint for given pixels and mask',
  usage: 'convnextv2 fcmae-loss --checkpoint P --input IN.safetensors --output OUT.safetensors [--norm-pix-loss] [--dense-masking] [--grn-stats batch|per-sample]',
  examples: [
    'convnextv2 fcmae-loss --checkpoint runs/pretrain --input batch.safetensors --output loss.safetensors',
    'convnextv2 fcmae-loss --checkpoint fcmae_atto.pt --input batch.safetensors --output loss.safetensors --dense-masking',
  ],
  flags: {
    checkpoint: { kind: 'string', help: 'FCMAE checkpoint (ours or official .pt)' },
    input: { kind: 'string', help: 'safetensors with pixel_values [N, C, H, W] and mask [N, L] (1 = removed)' },
    output: { kind: 'string', help: 'safetensors to write: loss [1], pred [N, L, p*p*C]' },
    'norm-pix-loss': { kind: 'boolean', help: 'per-patch normalised target' },
    'dense-masking': { kind: 'boolean', help: 'use the dense-masked encoder (same function)' },
    'grn-stats': { kind: 'string', help: 'encoder GRN statistics: batch (official) or per-sample', default: 'batch' },
  },
  async run(args, ctx) {
    const path = args.requireString('checkpoint');
    const inPath = args.requireString('input');
    const outPath = args.requireString('output');
    const grnStats = args.requireString('grn-stats');
    if (grnStats !== 'batch' && grnStats !== 'per-sample') throw new ConvNextError(`fcmae-loss: --grn-stats must be batch or per-sample`, 2);
    const ck = loadCheckpoint(path, { extra: true });
    if (!ck.fcmae || !ck.extra) throw new ConvNextError(`checkpoint ${path}: holds no FCMAE decoder (fcmae.* tensors); it is not an FCMAE checkpoint`);
    const m = new FCMAE(ck.config, {
      decoderDim: ck.fcmae.decoderDim, decoderDepth: ck.fcmae.decoderDepth, patchSize: ck.fcmae.patchSize,
      normPixLoss: args.bool('norm-pix-loss'), grnStats,
    }, { kernels: await ctx.backend() });
    m.encoderModel.loadStateDict(ck.state, `checkpoint ${path}`);
    m.loadDecoderState(ck.extra, `checkpoint ${path}`);
    const r = openSafetensors(inPath);
    const px = r.tensors.find((t) => t.name === 'pixel_values');
    const mk = r.tensors.find((t) => t.name === 'mask');
    if (!px || !mk) throw new ConvNextError(`${inPath}: needs tensors pixel_values and mask (found: ${r.tensors.map((t) => t.name).join(', ') || 'none'})`);
    if (px.shape.length !== 4) throw new ConvNextError(`${inPath}: pixel_values must have rank 4 [N, C, H, W], got ${shapeStr(px.shape)}`);
    const [N, , H, W] = px.shape;
    const p = ck.fcmae.patchSize;
    const L = Math.floor(H / p) * Math.floor(W / p);
    if (mk.shape.length !== 2 || mk.shape[0] !== N || mk.shape[1] !== L) {
      throw new ConvNextError(`${inPath}: mask must be [${N}, ${L}] for ${H}x${W} images and patch ${p}, got ${shapeStr(mk.shape)}`);
    }
    const mask = r.get('mask');
    if (mask.some((v) => v !== 0 && v !== 1)) throw new ConvNextError(`${inPath}: mask values must be 0 (visible) or 1 (removed)`);
    const out = await m.forward({ shape: px.shape, data: r.get('pixel_values') }, { shape: mk.shape, data: mask }, { mode: args.bool('dense-masking') ? 'dense' : 'sparse' });
    writeSafetensors(outPath, [
      ['loss', { shape: [1], data: Float32Array.of(out.loss) }],
      ['pred', out.pred],
    ], { format: 'convnextv2-fcmae-loss', checkpoint: path });
    ctx.out(`loss ${out.loss} (${N} image(s), ${mask.reduce((a, v) => a + v, 0)} removed patches) -> ${outPath}`);
    return { loss: out.loss, output: outPath };
  },
};
