/**
 * ConvNeXt V2 (Woo et al. 2023): a 4x4 patchify stem, four stages of ConvNeXt V2 blocks with
 * LayerNorm + 2x2 stride-2 downsampling between them, and a head of global average pooling,
 * LayerNorm and a Linear classifier. Parameters carry timm's names and PyTorch layouts, so a
 * timm state dict loads without renaming. Activations are NHWC inside; `forward` takes NCHW.
 *
 * Training follows llm.c: each layer's forward keeps what its backward needs, `backward`
 * walks the layers in reverse and accumulates parameter gradients into `Param.grad`.
 */
import { ConvNextError } from '../errors.js';
import { type Buf, type Kernels, memoryOf, requireBackend } from '../kernels/types.js';
import { Arena, clearArenas } from '../nn/arena.js';
import { LayerNorm } from '../nn/layernorm.js';
import { Linear } from '../nn/linear.js';
import type { Param } from '../nn/param.js';
import { ParamStore, readPerParam } from '../nn/store.js';
import { PatchConv } from '../nn/patchconv.js';
import { Rng } from '../rng.js';
import { shapeStr, type Tensor } from '../tensor.js';
import { HEAD_FC, HEAD_NORM, STEM_CONV, STEM_NORM } from './names.js';
import { Stage } from './stage.js';
import { type ConvNeXtV2Config, initConstant, paramSpecs, validateConfig } from './config.js';

/** Which block a captured activation comes from: stage, block within it, and index over all blocks. */
export interface BlockLocation {
  stage: number;
  block: number;
  index: number;
}

/**
 * Receives each block's MLP hidden activation (after GELU; the input of GRN in V2 blocks),
 * [N, H, W, channels] channels-last with channels = 4C. The array is a reused buffer, valid
 * only during the call.
 */
export type ActivationCapture = (where: BlockLocation, hidden: Float32Array, N: number, H: number, W: number, channels: number) => void;

export interface ModelOptions {
  /** The backend it computes on (`await createBackend('cpu')`); its parameters live there. */
  kernels: Kernels;
  /** Seed of the initialisation and of drop path (default 0). */
  seed?: number;
  /**
   * The weights (a canonical state dict: every parameter, exact shapes): the model is built
   * from them, with no random initialisation first (`ConvNeXtV2.fromCheckpoint`).
   */
  state?: ReadonlyMap<string, Tensor>;
  /** What `state` is called in errors (a file name). */
  stateSource?: string;
}

export interface ForwardOptions {
  /** Training mode: drop path active. */
  train?: boolean;
  /** Keep activations for `backward` (default: same as `train`). */
  cache?: boolean;
  /** Random source of drop path (default: the model's own). */
  rng?: Rng;
  /** Called with every block's MLP hidden activation (analysis; costs nothing when absent). */
  capture?: ActivationCapture;
  /**
   * Also return the four stage outputs (timm's `features_only`, HF's `output_hidden_states`):
   * `'NCHW'` [N, C, H, W] like PyTorch (one transpose each), or `'NHWC'` [N, H, W, C], the
   * model's own channels-last layout (no transpose). Default: not returned.
   */
  stages?: StageLayout;
}

export type StageLayout = 'NCHW' | 'NHWC';

/** What forwardTensors returns: tensors in the kernels' memory (the model's own buffers, overwritten by the next forward). */
export interface ForwardTensors {
  logits: Buf | null;
  preLogits: Buf;
  /** The four stage outputs [N, H, W, C] channels-last, when `stages` was asked for. */
  stages?: { shape: number[]; data: Buf }[];
}

export interface ForwardResult {
  /** [N, numClasses]; null when numClasses is 0 (a backbone). */
  logits: Tensor | null;
  /** Pooled and normalised features [N, dims[3]]. */
  preLogits: Tensor;
  /** The four stage outputs in the layout `ForwardOptions.stages` asked for; absent when it did not. */
  stages?: Tensor[];
}

export class ConvNeXtV2 {
  readonly config: ConvNeXtV2Config;
  readonly params: Param[];
  /** The parameters and gradients as one buffer each, the Params their views (see nn/store.ts). */
  readonly store: ParamStore;
  readonly kernels: Kernels;
  readonly rng: Rng;
  private readonly byName: Map<string, Param>;
  readonly stem: PatchConv;
  readonly stemNorm: LayerNorm;
  /** The four stages: downsampling (stages 1-3), then the blocks. */
  readonly stages: Stage[] = [];
  readonly headNorm: LayerNorm;
  readonly headFc: Linear | null;
  private inputShape: [number, number, number] = [0, 0, 0];
  private stageShapes: [number, number][] = [];
  /** Temporaries shared by all layers (see nn/arena.ts). */
  private readonly shared = new Arena();

  constructor(config: ConvNeXtV2Config, opts: ModelOptions) {
    validateConfig(config);
    this.config = { ...config, depths: [...config.depths], dims: [...config.dims] };
    this.kernels = requireBackend('ConvNeXtV2', opts?.kernels);
    this.rng = new Rng((opts.seed ?? 0) + 0x5eed);
    this.store = new ParamStore(memoryOf(this.kernels), paramSpecs(this.config));
    this.params = this.store.params;
    this.byName = new Map(this.params.map((p) => [p.name, p]));
    const p = (name: string): Param => {
      const x = this.byName.get(name);
      if (!x) throw new Error(`internal: no parameter ${name}`);
      return x;
    };
    const { dims, depths, inChans, layerNormEps: eps } = this.config;
    this.stem = new PatchConv(p(`${STEM_CONV}.weight`), p(`${STEM_CONV}.bias`), inChans, dims[0], 4);
    this.stemNorm = new LayerNorm(p(`${STEM_NORM}.weight`), p(`${STEM_NORM}.bias`), dims[0], eps);
    // Stochastic depth grows linearly from 0 to dropPathRate over all blocks (timm's linspace).
    const totalBlocks = depths.reduce((a, b) => a + b, 0);
    const rate = (i: number) => (totalBlocks > 1 ? (this.config.dropPathRate * i) / (totalBlocks - 1) : 0);
    let first = 0;
    for (let s = 0; s < 4; s++) {
      this.stages.push(new Stage(p, s, this.config, Array.from({ length: depths[s] }, (_, b) => rate(first + b))));
      first += depths[s];
    }
    this.headNorm = new LayerNorm(p(`${HEAD_NORM}.weight`), p(`${HEAD_NORM}.bias`), dims[3], this.config.headNormEps);
    this.headFc = this.config.numClasses > 0
      ? new Linear(p(`${HEAD_FC}.weight`), p(`${HEAD_FC}.bias`), dims[3], this.config.numClasses)
      : null;
    if (opts.state) this.loadStateDict(opts.state, opts.stateSource);
    else this.init(opts.seed ?? 0);
  }

  /** The model a loaded checkpoint holds, built from its weights (nothing is initialised at random first). */
  static fromCheckpoint(ck: { config: ConvNeXtV2Config; state: ReadonlyMap<string, Tensor>; file?: string }, opts: Omit<ModelOptions, 'state'>): ConvNeXtV2 {
    return new ConvNeXtV2(ck.config, { ...opts, state: ck.state, stateSource: opts.stateSource ?? (ck.file ? `checkpoint ${ck.file}` : undefined) });
  }

  /** Official initialisation: trunc_normal(std 0.02) for conv/linear weights, zero biases,
   * LayerNorm 1/0, GRN 0/0, LayerScale 1e-6 (V1); head weight and bias scaled by headInitScale. */
  init(seed: number): void {
    const rng = new Rng(seed);
    const k = this.kernels;
    const scaled = this.config.numClasses > 0 && this.config.headInitScale !== 1;
    for (const s of paramSpecs(this.config)) {
      const prm = this.param(s.name);
      if (s.init !== 'trunc_normal') {
        prm.fill(k, initConstant(s.init) * (scaled && s.name.startsWith('head.fc.') ? this.config.headInitScale : 1));
        continue;
      }
      const v = new Float32Array(prm.size);
      for (let i = 0; i < v.length; i++) v[i] = rng.truncNormal(0.02);
      if (scaled && s.name.startsWith('head.fc.')) for (let i = 0; i < v.length; i++) v[i] *= this.config.headInitScale;
      prm.write(k, v);
    }
  }

  /**
   * Returns the parameters and buffers to the kernels' memory: needed with the WebAssembly
   * kernels (their memory is not garbage-collected), a no-op otherwise. The model is unusable after.
   */
  dispose(): void {
    clearArenas(this);
    for (const stage of this.stages) stage.dispose();
    this.store.dispose();
  }

  /** A buffer of n floats in the kernels' memory under `key`, reused across calls (the loss, its gradient). */
  buffer(key: string, n: number): Buf {
    return this.shared.get(this.kernels, key, n);
  }

  param(name: string): Param {
    const x = this.byName.get(name);
    if (!x) throw new ConvNextError(`model has no parameter '${name}'`);
    return x;
  }

  numParams(): number {
    return this.params.reduce((a, p) => a + p.size, 0);
  }

  /** Copies of the parameters by timm name, read from any backend (one read of the store). */
  async stateDict(): Promise<Map<string, Tensor>> {
    const values = await readPerParam(this.kernels, this.params, (s) => s.data, (p) => p.data);
    return new Map(this.params.map((p) => [p.name, { shape: [...p.shape], data: values.get(p)! }]));
  }

  /** Copies a canonical state dict in; every tensor must be present with the exact shape. */
  loadStateDict(state: ReadonlyMap<string, Tensor>, source = 'state dict'): void {
    for (const p of this.params) {
      const t = state.get(p.name);
      if (!t) throw new ConvNextError(`${source}: missing tensor ${p.name}`);
      if (t.data.length !== p.size || shapeStr(t.shape) !== shapeStr(p.shape)) {
        throw new ConvNextError(`${source}: tensor ${p.name} has shape ${shapeStr(t.shape)}, expected ${shapeStr(p.shape)}`);
      }
      p.write(this.kernels, t.data);
    }
    const extra = [...state.keys()].filter((k) => !this.byName.has(k));
    if (extra.length) throw new ConvNextError(`${source}: unexpected tensors ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', ...' : ''}`);
  }

  zeroGrad(): void {
    this.kernels.fill(this.store.grad, 0);
  }

  /** Checks an NCHW input shape and returns [N, H, W]. */
  checkInput(shape: readonly number[]): [number, number, number] {
    if (shape.length !== 4) throw new ConvNextError(`input must be [N, C, H, W], got ${shapeStr(shape)}`);
    const [N, C, H, W] = shape;
    if (C !== this.config.inChans) throw new ConvNextError(`input has ${C} channels, the model expects ${this.config.inChans}`);
    if (N < 1) throw new ConvNextError('input batch is empty');
    if (H < 32 || W < 32) throw new ConvNextError(`input is ${H}x${W}; ConvNeXt V2 needs at least 32x32`);
    return [N, H, W];
  }

  /**
   * Forward from NCHW pixels on any backend; the results are read back to the host (copies).
   * {@link ConvNeXtV2.forwardTensors} leaves them in the backend's memory instead.
   */
  async forward(pixels: Tensor, opts: ForwardOptions = {}): Promise<ForwardResult> {
    const t = this.forwardTensors(pixels, opts);
    const k = this.kernels;
    const read = new Map<Buf, Float32Array>();
    for (const b of [t.logits, t.preLogits, ...(t.stages ?? []).map((s) => s.data)]) if (b) read.set(b, await k.read(b));
    return this.result(pixels.shape[0], t, (b) => read.get(b)!);
  }

  private result(N: number, t: ForwardTensors, host: (b: Buf) => Float32Array): ForwardResult {
    const { dims, numClasses } = this.config;
    let stages: Tensor[] | undefined;
    if (t.stages) {
      stages = t.stages.map((st) => ({ shape: st.shape, data: host(st.data) }));
    }
    return {
      logits: t.logits && { shape: [N, numClasses], data: host(t.logits) },
      preLogits: { shape: [N, dims[3]], data: host(t.preLogits) },
      ...(stages ? { stages } : {}),
    };
  }

  /** Forward from NCHW pixels (host values, or a tensor of the kernels), results left in the kernels' memory. */
  forwardTensors(pixels: { shape: number[]; data: Buf }, opts: ForwardOptions = {}): ForwardTensors {
    const [N, H, W] = this.checkInput(pixels.shape);
    if (pixels.data.length !== N * this.config.inChans * H * W) {
      throw new ConvNextError(`input data has ${pixels.data.length} values, shape ${shapeStr(pixels.shape)} needs ${N * this.config.inChans * H * W}`);
    }
    const x = this.shared.get(this.kernels, 'model.input', N * H * W * this.config.inChans);
    this.kernels.nchwToNhwc(pixels.data, N, this.config.inChans, H, W, x);
    return this.forwardNHWC(x, N, H, W, opts);
  }

  /**
   * Forward from NHWC pixels [N, H, W, inChans] in the kernels' memory. The results are the
   * model's own buffers, overwritten by the next forward.
   */
  forwardNHWC(x: Buf, N: number, H: number, W: number, opts: ForwardOptions = {}): ForwardTensors {
    const k = this.kernels;
    const train = opts.train ?? false;
    const cache = opts.cache ?? train;
    const rng = opts.rng ?? this.rng;
    const capture = opts.capture;
    if (opts.stages !== undefined && opts.stages !== 'NCHW' && opts.stages !== 'NHWC') {
      throw new ConvNextError(`forward: stages must be 'NCHW' or 'NHWC', got ${JSON.stringify(opts.stages)}`);
    }
    const { dims } = this.config;
    const buf = { shared: this.shared, cache };
    this.inputShape = [N, H, W];
    this.stageShapes = [];
    let [h, w] = this.stem.outSize(H, W);
    if (h < 1 || w < 1) throw new ConvNextError(`input ${H}x${W} is too small`);
    let y = this.stem.forward(k, x, N, H, W, buf);
    y = this.stemNorm.forward(k, y, N * h * w, buf, 'stem.ln');
    const stages: { shape: number[]; data: Buf }[] = [];
    let blockIndex = 0;
    for (let s = 0; s < 4; s++) {
      const stage = this.stages[s];
      const [h2, w2] = stage.outSize(h, w);
      if (h2 < 1 || w2 < 1) throw new ConvNextError(`input ${H}x${W} is too small: stage ${s} would be empty`);
      const first = blockIndex;
      const cap = capture
        ? (b: number) => (a: Float32Array, n: number, hh: number, ww: number, c: number) => capture({ stage: s, block: b, index: first + b }, a, n, hh, ww, c)
        : undefined;
      y = stage.forward(k, y, N, h, w, { ...buf, train, rng, capture: cap });
      blockIndex += stage.blocks.length;
      [h, w] = [h2, w2];
      this.stageShapes.push([h, w]);
      const n = N * h * w * dims[s];
      if (opts.stages === 'NHWC') {
        const keep = this.shared.get(k, `stage${s}.out`, n);
        k.copy(y.subarray(0, n), keep);
        stages.push({ shape: [N, h, w, dims[s]], data: keep });
      } else if (opts.stages === 'NCHW') {
        const nchw = this.shared.get(k, `stage${s}.out`, n);
        k.nhwcToNchw(y, N, h, w, dims[s], nchw);
        stages.push({ shape: [N, dims[s], h, w], data: nchw });
      }
    }
    const pooled = this.shared.get(k, 'head.pooled', N * dims[3]);
    k.avgPoolForward(y, N, h * w, dims[3], pooled);
    const preLogits = this.headNorm.forward(k, pooled, N, buf, 'head.ln');
    const logits = this.headFc ? this.headFc.forward(k, preLogits, N, buf, cache ? undefined : this.shared.get(k, 'head.logits', N * this.config.numClasses)) : null;
    return { logits, preLogits, ...(opts.stages ? { stages } : {}) };
  }

  /**
   * Backward from d(loss)/d(logits) [N, K] (or d/d(preLogits) when numClasses is 0) through
   * the cached forward. Accumulates parameter gradients; returns d/d(input) NHWC when
   * `needInput` (the model's own buffer, overwritten by the next backward), else null.
   */
  backward(dout: Buf, needInput = false): Buf | null {
    const k = this.kernels;
    const sh = this.shared;
    const { dims } = this.config;
    const [N] = this.inputShape;
    let d = this.headFc ? this.headFc.backward(k, dout, sh)! : dout;
    d = this.headNorm.backward(k, d, sh, 'head.dx');
    let [h, w] = this.stageShapes[3];
    const dmap = sh.get(k, 'stage3.d', N * h * w * dims[3]);
    k.avgPoolBackward(d, N, h * w, dims[3], dmap);
    d = dmap;
    for (let s = 3; s >= 0; s--) d = this.stages[s].backward(k, d, sh, `stage${s - 1}.d`);
    d = this.stemNorm.backward(k, d, sh, 'stem.d');
    return this.stem.backward(k, d, sh, needInput);
  }

  /** Bytes held in reusable activation and gradient buffers (excluding parameters). */
  bufferBytes(): number {
    return this.shared.bytes();
  }
}
