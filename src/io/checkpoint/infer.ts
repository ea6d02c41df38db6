/**
 * Architecture inference: the model config (depths, dims, classes, input channels, kernel
 * size, block kind) from canonical tensor names and shapes, by a majority vote per quantity.
 */
import { ConvNextError } from '../../errors.js';
import { MODEL_SIZES, validateConfig, type ConvNeXtV2Config } from '../../model/config.js';
import { sameShape, shapeStr } from './names.js';

class Votes {
  private readonly counts = new Map<number, number>();
  add(v: number | undefined): void {
    if (v === undefined || !Number.isSafeInteger(v) || v < 0) return;
    this.counts.set(v, (this.counts.get(v) ?? 0) + 1);
  }
  /** The value most tensors agree on (ties: the first seen). */
  winner(): number | undefined {
    let best: number | undefined;
    let bestN = 0;
    for (const [v, n] of this.counts) if (n > bestN) { best = v; bestN = n; }
    return best;
  }
}

/** The named size with these depths and dims, if any. */
export function matchModelSize(depths: readonly number[], dims: readonly number[]): string | undefined {
  for (const [name, s] of Object.entries(MODEL_SIZES)) {
    if (sameShape(s.depths, depths) && sameShape(s.dims, dims)) return name;
  }
  return undefined;
}

/** Upper bound on blocks per stage (the largest model has 27). */
const MAX_BLOCKS = 1000;

/** Infers the architecture from canonical names and shapes (a majority vote per quantity). */
export function inferConfig(label: string, shapes: ReadonlyMap<string, number[]>, declared: Partial<ConvNeXtV2Config>): ConvNeXtV2Config {
  const dimVotes = [new Votes(), new Votes(), new Votes(), new Votes()];
  const inVotes = new Votes();
  const kVotes = new Votes();
  const clsVotes = new Votes();
  const maxBlock = [-1, -1, -1, -1];
  let layerScales = 0;
  let grns = 0;
  const quarter = (v: number | undefined) => (v !== undefined && v % 4 === 0 ? v / 4 : undefined);
  for (const [name, sh] of shapes) {
    let m: RegExpExecArray | null;
    if ((m = /^stem\.([01])\.(weight|bias)$/.exec(name))) {
      dimVotes[0].add(sh[0]);
      if (m[1] === '0' && m[2] === 'weight' && sh.length === 4) inVotes.add(sh[1]);
    } else if ((m = /^stages\.([1-3])\.downsample\.([01])\.(weight|bias)$/.exec(name))) {
      const s = Number(m[1]);
      if (m[2] === '0') dimVotes[s - 1].add(sh[0]);
      else {
        dimVotes[s].add(sh[0]);
        if (m[3] === 'weight' && sh.length === 4) dimVotes[s - 1].add(sh[1]);
      }
    } else if ((m = /^stages\.([0-3])\.blocks\.(\d+)\.(.+)$/.exec(name))) {
      const s = Number(m[1]);
      const b = Number(m[2]);
      if (b >= MAX_BLOCKS) throw new ConvNextError(`${label}: tensor ${name} has an implausible block index ${m[2]}`);
      maxBlock[s] = Math.max(maxBlock[s], b);
      const d = dimVotes[s];
      switch (m[3]) {
        case 'conv_dw.weight':
          d.add(sh[0]);
          if (sh.length === 4) kVotes.add(sh[2]);
          break;
        case 'conv_dw.bias': case 'norm.weight': case 'norm.bias': case 'mlp.fc2.bias':
          d.add(sh[0]);
          break;
        case 'gamma':
          d.add(sh[0]);
          layerScales++;
          break;
        case 'mlp.fc1.weight':
          if (sh.length === 2) { d.add(sh[1]); d.add(quarter(sh[0])); }
          break;
        case 'mlp.fc2.weight':
          if (sh.length === 2) { d.add(sh[0]); d.add(quarter(sh[1])); }
          break;
        case 'mlp.grn.weight': case 'mlp.grn.bias':
          grns++;
          d.add(quarter(sh[0]));
          break;
        case 'mlp.fc1.bias':
          d.add(quarter(sh[0]));
          break;
        default:
          break;
      }
    } else if (/^head\.norm\.(weight|bias)$/.test(name)) {
      dimVotes[3].add(sh[0]);
    } else if (name === 'head.fc.weight') {
      clsVotes.add(sh[0]);
      if (sh.length === 2) dimVotes[3].add(sh[1]);
    } else if (name === 'head.fc.bias') {
      clsVotes.add(sh[0]);
    }
  }
  const dims: number[] = [];
  for (let s = 0; s < 4; s++) {
    const d = dimVotes[s].winner();
    if (d === undefined) throw new ConvNextError(`${label}: cannot tell the width of stage ${s} (no tensors for it)`);
    dims.push(d);
  }
  const depths = maxBlock.map((b) => b + 1);
  const cfg: ConvNeXtV2Config = {
    dropPathRate: 0,
    headInitScale: 1,
    layerNormEps: 1e-6,
    headNormEps: 1e-6,
    ...declared,
    depths,
    dims,
    numClasses: clsVotes.winner() ?? 0,
    inChans: inVotes.winner() ?? declared.inChans ?? 3,
    kernelSize: kVotes.winner() ?? declared.kernelSize ?? 7,
    // ConvNeXt V1 blocks: LayerScale and no GRN (with both, the gammas are left over as unexpected).
    block: layerScales > 0 && grns === 0 ? 'v1' : 'v2',
  };
  // What the metadata / config.json says must agree with the tensors.
  for (const key of ['depths', 'dims', 'numClasses', 'inChans', 'kernelSize', 'block'] as const) {
    const want = declared[key];
    if (want === undefined) continue;
    const got = cfg[key];
    const same = Array.isArray(want) && Array.isArray(got) ? sameShape(want, got) : want === got;
    if (!same) {
      const fmt = (v: unknown) => (Array.isArray(v) ? shapeStr(v as number[]) : String(v));
      throw new ConvNextError(`${label}: its config says ${key} ${fmt(want)} but the tensors say ${fmt(got)}`);
    }
  }
  try {
    validateConfig(cfg);
  } catch (err) {
    throw new ConvNextError(`${label}: the tensors describe no valid model (${err instanceof Error ? err.message : String(err)})`);
  }
  return cfg;
}
