/**
 * Runs a model over images and gathers, from every block's MLP hidden activation (after GELU,
 * the input of GRN; 4C channels), the paper's feature cosine distance per image, each
 * channel's spatial mean per image for class selectivity, and the activation maps of one
 * layer for a few images. The forward is the model's own (its kernels, no caching); the
 * activations are read through `ForwardOptions.capture` while their buffers are live.
 */
import { ConvNextError } from '../errors.js';
import type { ConvNeXtV2 } from '../model/convnextv2.js';
import { ClassSelectivity, distribution, featureCosineDistance, type Distribution } from './metrics.js';

/** One block of the model. */
export interface LayerInfo {
  /** Index over all blocks, from 0. */
  index: number;
  stage: number;
  block: number;
  /** timm name, e.g. `stages.2.blocks.1`. */
  name: string;
  /** (index + 1) / number of blocks: the paper's x axis. */
  relativeDepth: number;
  /** Channels of the MLP hidden activation (4C). */
  channels: number;
}

/** The blocks of a model in forward order. */
export function modelLayers(model: ConvNeXtV2): LayerInfo[] {
  const { depths, dims } = model.config;
  const total = depths.reduce((a, b) => a + b, 0);
  const out: LayerInfo[] = [];
  for (let s = 0; s < 4; s++) {
    for (let b = 0; b < depths[s]; b++) {
      const index = out.length;
      out.push({ index, stage: s, block: b, name: `stages.${s}.blocks.${b}`, relativeDepth: (index + 1) / total, channels: 4 * dims[s] });
    }
  }
  return out;
}

/**
 * A block by `S.B` (stage and block), `stages.S.blocks.B`, or its index over all blocks;
 * `undefined` means the last block of the third stage (the paper's Fig. 3 looks at stage 3).
 */
export function resolveLayer(layers: readonly LayerInfo[], spec?: string): LayerInfo {
  if (layers.length === 0) throw new ConvNextError('the model has no blocks');
  if (spec === undefined || spec === '') {
    for (const s of [2, 3, 1, 0]) {
      const inStage = layers.filter((l) => l.stage === s);
      if (inStage.length) return inStage[inStage.length - 1];
    }
  }
  const str = String(spec).trim();
  let m: RegExpExecArray | null;
  let found: LayerInfo | undefined;
  if ((m = /^(?:stages\.)?(\d+)\.(?:blocks\.)?(\d+)$/.exec(str))) {
    const s = Number(m[1]);
    const b = Number(m[2]);
    found = layers.find((l) => l.stage === s && l.block === b);
  } else if (/^\d+$/.test(str)) {
    found = layers[Number(str)];
  }
  if (!found) {
    throw new ConvNextError(`--layer '${str}': no such block (give S.B, stages.S.blocks.B or an index 0..${layers.length - 1}; blocks: ${layers.map((l) => `${l.stage}.${l.block}`).join(', ')})`, 2);
  }
  return found;
}

/** The activation maps of one image at the chosen layer. */
export interface ImageMaps {
  /** Position of the image in the analysed set. */
  image: number;
  label: number;
  /** The input as RGB bytes (de-normalised), size x size. */
  input: { width: number; height: number; data: Uint8Array };
  /** The chosen channels' maps, [H*W, channels.length] channels-last. */
  maps: Float32Array;
  H: number;
  W: number;
  /** min and 99.5th percentile over all channels of the layer for this image (display range). */
  lo: number;
  hi: number;
}

export interface LayerResult extends LayerInfo {
  /** Feature cosine distance averaged over images. */
  cosine: number;
  /** Its standard deviation over images. */
  cosineStd: number;
  /** Per-channel class selectivity indices (NaN: silent channel); null without labels. */
  selectivity: Float64Array | null;
  selectivityStats: Distribution | null;
  /** Channels whose clipped class means are all 0. */
  silentChannels: number;
}

export interface ModelAnalysis {
  images: number;
  layers: LayerResult[];
  /** The layer of the activation maps and the channels shown. */
  mapLayer: LayerInfo;
  mapChannels: number[];
  maps: ImageMaps[];
}

export interface AnalyzerOptions {
  /** Classes of the labels (0: no selectivity). */
  numClasses: number;
  /** Block whose activation maps are kept. */
  mapLayer: LayerInfo;
  /** Images whose maps are kept (the first ones). */
  mapImages: number;
  /** Channels shown per image (the first ones). */
  mapChannels: number;
}

/** Accumulates the analyses of one model over batches. */
export class ActivationAnalyzer {
  readonly layers: LayerInfo[];
  private readonly cosSum: Float64Array;
  private readonly cosSq: Float64Array;
  private readonly sel: (ClassSelectivity | null)[];
  private readonly maps: ImageMaps[] = [];
  private readonly mapChannels: number[];
  private pooled = new Float32Array(0);
  private images = 0;

  constructor(readonly model: ConvNeXtV2, readonly opts: AnalyzerOptions) {
    this.layers = modelLayers(model);
    const L = this.layers.length;
    this.cosSum = new Float64Array(L);
    this.cosSq = new Float64Array(L);
    this.sel = this.layers.map((l) => (opts.numClasses >= 2 ? new ClassSelectivity(opts.numClasses, l.channels) : null));
    const C = opts.mapLayer.channels;
    this.mapChannels = Array.from({ length: Math.min(C, Math.max(1, opts.mapChannels)) }, (_, i) => i);
  }

  /**
   * Runs the model on pixels [N, 3, size, size] (normalised, NCHW) with labels [N] (ignored
   * without classes) and accumulates. `inputs` gives the de-normalised RGB images for the maps.
   */
  addBatch(pixels: Float32Array, N: number, size: number, labels: Int32Array, inputs: (n: number) => { width: number; height: number; data: Uint8Array }): void {
    const k = this.model.kernels;
    const first = this.images;
    this.model.forward({ shape: [N, this.model.config.inChans, size, size], data: pixels.subarray(0, N * this.model.config.inChans * size * size) }, {
      capture: (where, hidden, n, H, W, C) => {
        const HW = H * W;
        for (let i = 0; i < n; i++) {
          const d = featureCosineDistance(hidden, HW, C, i * HW * C);
          this.cosSum[where.index] += d;
          this.cosSq[where.index] += d * d;
        }
        const sel = this.sel[where.index];
        if (sel) {
          if (this.pooled.length < n * C) this.pooled = new Float32Array(n * C);
          const pooled = this.pooled.subarray(0, n * C);
          k.avgPoolForward(hidden, n, HW, C, pooled);
          sel.add(pooled, labels, n);
        }
        if (where.index === this.opts.mapLayer.index) {
          for (let i = 0; i < n && this.maps.length < this.opts.mapImages; i++) this.maps.push(this.keepMaps(hidden, i, H, W, C, first + i, labels[i], inputs(i)));
        }
      },
    });
    this.images += N;
  }

  private keepMaps(hidden: Float32Array, i: number, H: number, W: number, C: number, image: number, label: number, input: ImageMaps['input']): ImageMaps {
    const HW = H * W;
    const src = hidden.subarray(i * HW * C, (i + 1) * HW * C);
    const ch = this.mapChannels;
    const maps = new Float32Array(HW * ch.length);
    for (let p = 0; p < HW; p++) for (let j = 0; j < ch.length; j++) maps[p * ch.length + j] = src[p * C + ch[j]];
    const sorted = Float32Array.from(src).sort();
    const lo = sorted[0];
    const hi = sorted[Math.min(sorted.length - 1, Math.floor(0.995 * (sorted.length - 1)))];
    return { image, label, input, maps, H, W, lo, hi };
  }

  /** Whether class selectivity can be computed: labels of 2 classes or more were seen. */
  hasSelectivity(): boolean {
    return this.selectivityOf(0) !== null;
  }

  private selectivityOf(i: number): Float64Array | null {
    const sel = this.sel[i];
    if (!sel || sel.classesSeen() < 2) return null;
    return sel.indices();
  }

  result(): ModelAnalysis {
    if (this.images === 0) throw new ConvNextError('no images were analysed');
    const n = this.images;
    const layers: LayerResult[] = this.layers.map((l, i) => {
      const mean = this.cosSum[i] / n;
      const variance = Math.max(0, this.cosSq[i] / n - mean * mean);
      const si = this.selectivityOf(i);
      return {
        ...l, cosine: mean, cosineStd: Math.sqrt(variance), selectivity: si,
        selectivityStats: si ? distribution(si) : null, silentChannels: si ? si.filter((v) => Number.isNaN(v)).length : 0,
      };
    });
    return { images: n, layers, mapLayer: this.opts.mapLayer, mapChannels: [...this.mapChannels], maps: this.maps };
  }
}
