/**
 * FCMAE: the Fully Convolutional Masked AutoEncoder of ConvNeXt V2 (paper Sec. 3.1): random
 * masking of 32x32 patches, a sparse ConvNeXt V2 encoder on the visible patches, a light
 * ConvNeXt V2 decoder, and the mean squared error of the removed patches' pixels.
 *
 * The encoder's parameters are those of a dense `ConvNeXtV2` backbone (timm names, so the
 * pre-trained encoder fine-tunes as a classifier without conversion); the decoder's carry
 * the official names under `fcmae.`.
 *
 * An encoder config with `block: 'v1'` pre-trains ConvNeXt V1 blocks (no GRN, LayerScale
 * initialised to 1e-6), the paper's GRN ablation; the decoder keeps its V2 block.
 */
import { checkKnownKeys, ConvNextError } from '../errors.js';
import { requireBackend } from '../kernels/types.js';
import { type Buf, type Kernels, memoryOf } from '../kernels/types.js';
import { FCMAE_PREFIX, fcmaeParamSpecs, type FcmaeInfo } from '../io/fcmae.js';
import { LAYER_SCALE_INIT, type ConvNeXtV2Config } from '../model/config.js';
import { ConvNeXtV2 } from '../model/convnextv2.js';
import { Arena, clearArenas } from '../nn/arena.js';
import type { Param } from '../nn/param.js';
import { ParamStore, readPerParam } from '../nn/store.js';
import { Rng } from '../rng.js';
import { shapeStr, type Tensor } from '../tensor.js';
import { FcmaeDecoder } from './decoder.js';
import { randomMask } from './masking.js';
import { type EncoderMode, type GrnStats, SparseEncoder } from './sparse_encoder.js';

export interface FcmaeOptions {
  decoderDim: number;
  decoderDepth: number;
  /** Mask patch size; equals the encoder's total stride (32). */
  patchSize: number;
  maskRatio: number;
  /** Per-patch normalised target (the official pre-training script turns it on). */
  normPixLoss: boolean;
  /** Encoder GRN statistics: over the batch's visible sites (official) or per sample. */
  grnStats: GrnStats;
  /**
   * Initialisation (default `timm`): `official` reproduces FCMAE's quirks (std 1.0 for
   * depthwise, pointwise and 1x1 convolutions over the encoder's own init, see `init`;
   * ConvNeXt-V2 issue #64), for exact reproduction of the official code; `timm` initialises every convolution and linear layer with
   * trunc_normal(std 0.02) like the classifier. In short runs the official init leaves the
   * encoder's features nearly identical across images (measured: pre-logit variance ~1e-4
   * after 3 epochs on synthetic, against ~0.6 from a supervised model), which fine-tuning
   * cannot use; `timm` avoids that.
   */
  initStyle: 'official' | 'timm';
}

export const FCMAE_DEFAULTS: FcmaeOptions = {
  decoderDim: 512, decoderDepth: 1, patchSize: 32, maskRatio: 0.6, normPixLoss: false, grnStats: 'batch', initStyle: 'timm',
};

/** FcmaeOutput in the kernels' memory (see FCMAE.forwardTensors). */
export interface FcmaeTensors {
  /** One value: the loss. */
  loss: Buf;
  pred: { shape: number[]; data: Buf };
  target: { shape: number[]; data: Buf };
  patchStats: { shape: number[]; data: Buf } | null;
  mask: Tensor;
}

/** The arrays are the model's buffers, valid until the next forward. */
export interface FcmaeOutput {
  loss: number;
  /** [N, L, p*p*C] predictions, L = (H/p)*(W/p) patches in row-major order. */
  pred: Tensor;
  /** The (normalised, with normPixLoss) target, same shape. */
  target: Tensor;
  /** [N, L, 2]: per-patch mean and std of the raw target when normPixLoss (to de-normalise pred). */
  patchStats: Tensor | null;
  /** [N, L], 1 = removed: the mask given. */
  mask: Tensor;
}

export class FCMAE {
  readonly encoderModel: ConvNeXtV2;
  readonly encoder: SparseEncoder;
  readonly decoder: FcmaeDecoder;
  readonly opts: FcmaeOptions;
  readonly kernels: Kernels;
  /** Trainable parameters: the encoder's (without the unused head.norm) and the decoder's. */
  readonly params: Param[];
  readonly decoderParams: Param[];
  /** The decoder's parameters and gradients as one buffer each (the encoder's are encoderModel.store). */
  readonly decoderStore: ParamStore;
  readonly rng: Rng;
  private readonly byName = new Map<string, Param>();
  private readonly shared = new Arena();
  private last: { rows: number; P: number; dpred: Buf; mask: Float32Array } | null = null;

  constructor(encoderConfig: ConvNeXtV2Config, opts: Partial<FcmaeOptions> = {}, init: { kernels: Kernels; seed?: number }) {
    checkKnownKeys('FCMAE', opts, Object.keys(FCMAE_DEFAULTS));
    this.opts = { ...FCMAE_DEFAULTS, ...opts };
    if (this.opts.patchSize !== 32) {
      throw new ConvNextError(`FCMAE patch size ${this.opts.patchSize}: the encoder's total stride is 32, so the patch size must be 32`);
    }
    const { decoderDim, decoderDepth, maskRatio } = this.opts;
    if (!(Number.isInteger(decoderDim) && decoderDim >= 1)) throw new ConvNextError(`FCMAE decoderDim ${decoderDim}: must be a positive integer`);
    if (!(Number.isInteger(decoderDepth) && decoderDepth >= 0)) throw new ConvNextError(`FCMAE decoderDepth ${decoderDepth}: must be a non-negative integer`);
    if (!(maskRatio >= 0 && maskRatio < 1)) throw new ConvNextError(`FCMAE maskRatio ${maskRatio}: must be in [0, 1)`);
    this.kernels = requireBackend('FCMAE', init?.kernels);
    this.encoderModel = new ConvNeXtV2({ ...encoderConfig, numClasses: 0 }, { kernels: this.kernels, seed: init.seed });
    for (const p of this.encoderModel.params) this.byName.set(p.name, p);
    this.decoderStore = new ParamStore(memoryOf(this.kernels), fcmaeParamSpecs(this.info(), encoderConfig.dims[3], encoderConfig.inChans)
      .map((s) => ({ name: s.name, shape: s.shape, noDecay: s.name.endsWith('.bias') || s.shape.length === 1 })));
    this.decoderParams = this.decoderStore.params;
    for (const p of this.decoderParams) this.byName.set(p.name, p);
    this.params = [...this.encoderModel.params.filter((p) => !p.name.startsWith('head.')), ...this.decoderParams];
    this.encoder = new SparseEncoder(this.encoderModel, this.shared);
    const d = this.opts;
    this.decoder = new FcmaeDecoder((n) => this.param(n), encoderConfig.dims[3], d.decoderDim, d.decoderDepth, 7,
      d.patchSize * d.patchSize * encoderConfig.inChans, this.shared);
    this.rng = new Rng((init.seed ?? 0) + 0x3a5c);
    this.init(init.seed ?? 0);
  }

  /** The decoder setup as stored in checkpoints. */
  info(): FcmaeInfo {
    return {
      decoderDim: this.opts.decoderDim, decoderDepth: this.opts.decoderDepth, patchSize: this.opts.patchSize,
      decoderKernelSize: 7, maskRatio: this.opts.maskRatio, normPixLoss: this.opts.normPixLoss,
    };
  }

  /** Returns the encoder's and decoder's parameters and buffers to the kernels' memory (see ConvNeXtV2.dispose). */
  dispose(): void {
    clearArenas(this);
    this.encoderModel.dispose();
    this.decoderStore.dispose();
  }

  param(name: string): Param {
    const p = this.byName.get(name);
    if (!p) throw new ConvNextError(`FCMAE has no parameter '${name}'`);
    return p;
  }

  /**
   * The official FCMAE initialisation, quirks included: FCMAE.apply(_init_weights) overrides
   * the encoder's own init, so the depthwise kernels, the pointwise (MinkowskiLinear) weights
   * and every nn.Conv2d (stem, proj, pred, decoder depthwise) get trunc_normal_ with timm's
   * default std 1.0 (truncated at +-2); only the downsampling convolutions (MinkowskiConvolution)
   * get std 0.02. The decoder's nn.Linear layers (pwconv1/2) keep PyTorch's default
   * (uniform +-1/sqrt(fan_in) for weight and bias). Biases 0, LayerNorm 1/0, GRN 0/0, the mask
   * token normal(0, 0.02).
   */
  init(seed: number): void {
    const rng = new Rng(seed);
    const k = this.kernels;
    const timm = this.opts.initStyle === 'timm';
    const set = (p: Param, f: () => number) => { const v = new Float32Array(p.size); for (let i = 0; i < v.length; i++) v[i] = f(); p.write(k, v); };
    const tn = (p: Param, std: number) => { const sd = timm ? 0.02 : std; set(p, () => rng.truncNormal(sd)); };
    for (const p of this.encoderModel.params) {
      const n = p.name;
      if (/\.bias$/.test(n) || /grn/.test(n)) p.fill(k, 0);
      else if (/\.blocks\.\d+\.gamma$/.test(n)) p.fill(k, LAYER_SCALE_INIT); // V1 blocks' LayerScale
      else if (/(stem\.1|downsample\.0|\.norm|head\.norm)\.weight$/.test(n)) p.fill(k, 1);
      else if (/downsample\.1\.weight$/.test(n)) tn(p, 0.02);
      else tn(p, 1); // stem.0, conv_dw, mlp.fc1, mlp.fc2
    }
    for (const p of this.decoderParams) {
      const n = p.name;
      if (n === `${FCMAE_PREFIX}mask_token`) {
        set(p, () => rng.normal() * 0.02);
      } else if (timm && /pwconv[12]\.bias$/.test(n)) {
        p.fill(k, 0);
      } else if (timm && /pwconv[12]\.weight$/.test(n)) {
        tn(p, 0.02);
      } else if (/pwconv[12]\.(weight|bias)$/.test(n)) {
        const fanIn = n.includes('pwconv1') ? this.opts.decoderDim : 4 * this.opts.decoderDim;
        const bound = 1 / Math.sqrt(fanIn);
        set(p, () => (rng.uniform() * 2 - 1) * bound);
      } else if (/\.bias$|grn\./.test(n)) {
        p.fill(k, 0);
      } else if (/norm\.weight$/.test(n)) {
        p.fill(k, 1);
      } else {
        tn(p, 1); // proj, pred, decoder dwconv
      }
    }
  }

  /** Random masks [N, L] for a batch of H x W images from the model's rng (or `rng`). */
  /** A random mask [N, L] (1 = removed) for N images of H x W, L = (H/p)*(W/p), `maskRatio` removed. */
  randomMask(N: number, H: number, W: number, rng: Rng = this.rng): Tensor {
    const p = this.opts.patchSize;
    const L = (H / p) * (W / p);
    return { shape: [N, L], data: randomMask(N, L, this.opts.maskRatio, rng) };
  }

  zeroGrad(): void {
    this.encoderModel.zeroGrad();
    this.kernels.fill(this.decoderStore.grad, 0);
  }

  /**
   * Forward from NCHW pixels and a mask [N, L] (1 = removed) on any backend: the loss,
   * prediction, target and patch statistics read back to the host (copies).
   * {@link FCMAE.forwardTensors} leaves them in the backend's memory instead.
   */
  async forward(pixels: Tensor, maskTensor: Tensor, opts: { mode?: EncoderMode; normPixLoss?: boolean } = {}): Promise<FcmaeOutput> {
    const t = this.forwardTensors(pixels, maskTensor, opts);
    const k = this.kernels;
    const read = async (x: { shape: number[]; data: Buf }): Promise<Tensor> => ({ shape: x.shape, data: await k.read(x.data) });
    return {
      loss: (await k.read(t.loss))[0],
      pred: await read(t.pred),
      target: await read(t.target),
      patchStats: t.patchStats && (await read(t.patchStats)),
      mask: t.mask,
    };
  }

  /**
   * Forward from NCHW pixels and a mask [N, L] (1 = removed), results in the kernels' memory
   * (the model's buffers, valid until the next forward). Keeps what backward needs.
   */
  forwardTensors(pixels: { shape: number[]; data: Buf }, maskTensor: Tensor, opts: { mode?: EncoderMode; normPixLoss?: boolean } = {}): FcmaeTensors {
    if (pixels.shape.length !== 4) throw new ConvNextError(`pixel_values must be [N, C, H, W], got ${shapeStr(pixels.shape)}`);
    const [N, C, H, W] = pixels.shape;
    const cfg = this.encoderModel.config;
    if (C !== cfg.inChans) throw new ConvNextError(`input has ${C} channels, the model expects ${cfg.inChans}`);
    const p = this.opts.patchSize;
    if (H % p !== 0 || W % p !== 0 || H < p || W < p) {
      throw new ConvNextError(`FCMAE input ${H}x${W}: height and width must be positive multiples of the patch size ${p}`);
    }
    if (pixels.data.length !== N * C * H * W) {
      throw new ConvNextError(`pixel_values has ${pixels.data.length} values, shape ${shapeStr(pixels.shape)} needs ${N * C * H * W}`);
    }
    const L = (H / p) * (W / p);
    if (maskTensor.shape.length !== 2 || maskTensor.shape[0] !== N || maskTensor.shape[1] !== L || maskTensor.data.length !== N * L) {
      throw new ConvNextError(`mask must be [${N}, ${L}] for ${N} image(s) of ${H}x${W} (patch ${p}), got ${shapeStr(maskTensor.shape)} with ${maskTensor.data.length} values`);
    }
    const mask = maskTensor.data;
    const k = this.kernels;
    const x = this.shared.get(k, 'fcmae.input', N * H * W * C);
    k.nchwToNhwc(pixels.data, N, C, H, W, x);
    const enc = this.encoder.forward(k, x, N, H, W, mask, { mode: opts.mode ?? 'sparse', grnStats: this.opts.grnStats });
    const keep = this.encoder.stageMasks()[3].keep;
    const pred = this.decoder.forward(k, enc.map, keep, N, enc.H, enc.W);
    const rows = N * enc.H * enc.W;
    const P = p * p * C;
    const target = this.shared.get(k, 'fcmae.target', rows * P);
    const norm = opts.normPixLoss ?? this.opts.normPixLoss;
    const dpred = this.shared.get(k, 'fcmae.dpred', rows * P);
    const loss = this.shared.get(k, 'fcmae.loss', 1);
    const patchStats = norm ? this.shared.get(k, 'fcmae.patch_stats', rows * 2) : null;
    k.fcmaeLoss(x, N, H, W, C, p, norm, pred, mask, target, dpred, loss, patchStats);
    this.last = { rows, P, dpred, mask };
    return {
      loss,
      pred: { shape: [N, L, P], data: pred },
      target: { shape: [N, L, P], data: target },
      patchStats: patchStats && { shape: [N, L, 2], data: patchStats },
      mask: maskTensor,
    };
  }

  /** Backward of the last forward's loss; accumulates into Param.grad (scaled by 1/lossScale). */
  backward(lossScale = 1): void {
    if (!this.last) throw new Error('FCMAE.backward without a forward');
    const { dpred, mask, rows } = this.last;
    if (lossScale !== 1) this.kernels.scale(dpred, dpred.length, 1 / lossScale);
    // The loss's gradient is zero at visible patches: only removed ones reach the prediction layer.
    const live = new Int32Array(rows);
    let n = 0;
    for (let r = 0; r < rows; r++) if (mask[r] !== 0) live[n++] = r;
    const dmap = this.decoder.backward(this.kernels, dpred, live.subarray(0, n));
    this.encoder.backward(this.kernels, dmap);
    this.last = null;
  }

  /** Copies of the decoder's tensors (`fcmae.*`), read from any backend (one read of its store). */
  async decoderStateDict(): Promise<Map<string, Tensor>> {
    const values = await readPerParam(this.kernels, this.decoderParams, (s) => s.data, (p) => p.data);
    return new Map(this.decoderParams.map((p) => [p.name, { shape: [...p.shape], data: values.get(p)! }]));
  }

  /** Copies of the encoder's (timm names) and decoder's (`fcmae.*`) tensors, read from any backend. */
  async stateDict(): Promise<Map<string, Tensor>> {
    return new Map([...(await this.encoderModel.stateDict()), ...(await this.decoderStateDict())]);
  }

  /** Loads decoder tensors (`fcmae.*`); the encoder loads through `encoderModel.loadStateDict`. */
  loadDecoderState(state: ReadonlyMap<string, Tensor>, source = 'state dict'): void {
    for (const p of this.decoderParams) {
      const t = state.get(p.name);
      if (!t) throw new ConvNextError(`${source}: missing tensor ${p.name}`);
      if (t.data.length !== p.size) throw new ConvNextError(`${source}: tensor ${p.name} has shape ${shapeStr(t.shape)}, expected ${shapeStr(p.shape)}`);
      p.write(this.kernels, t.data);
    }
  }
}
