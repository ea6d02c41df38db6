/** The Markdown report of `convnextv2 analyze`: what was measured, the PNGs, the numbers in tables. */
import type { ConvNeXtV2Config } from '../model/config.js';
import type { ModelAnalysis } from './collect.js';

export interface ReportModel {
  label: string;
  file: string;
  config: ConvNeXtV2Config;
  analysis: ModelAnalysis;
  /** Activation-map PNG, relative to the report. */
  mapsPng: string | null;
}

export interface ReportInput {
  models: ReportModel[];
  data: string;
  split: string;
  inputSize: number;
  /** PNGs relative to the report. */
  cosinePng: string;
  selectivityPng: string | null;
  /** Why selectivity is absent, when it is. */
  selectivityNote?: string;
}

const f3 = (v: number): string => (Number.isFinite(v) ? v.toFixed(3) : 'n/a');
const f4 = (v: number): string => (Number.isFinite(v) ? v.toFixed(4) : 'n/a');
const esc = (s: string): string => s.replace(/\|/g, '\\|');

function describe(c: ConvNeXtV2Config): string {
  return `ConvNeXt ${c.block === 'v1' ? 'V1 blocks (LayerScale, no GRN)' : 'V2 blocks (GRN)'}, depths ${c.depths.join(',')}, dims ${c.dims.join(',')}`;
}

export function analysisReport(r: ReportInput): string {
  const L: string[] = [];
  const ms = r.models;
  const images = ms[0]?.analysis.images ?? 0;
  L.push('# Feature analysis', '');
  L.push(`Data: \`${r.data}\` (${r.split} split), ${images} images at ${r.inputSize} px (evaluation transform).`, '');
  L.push('| label | checkpoint | model |', '|---|---|---|');
  for (const m of ms) L.push(`| ${esc(m.label)} | \`${esc(m.file)}\` | ${describe(m.config)} |`);
  L.push('');

  L.push('## Feature cosine distance', '');
  L.push('For each block, the MLP hidden activation X after GELU (the input of GRN in V2 blocks; H x W x 4C),',
    'X_i its i-th channel flattened over H x W: (1/C^2) sum_i sum_j (1 - cos(X_i, X_j)) / 2 (C = 4C channels,',
    'the diagonal included), averaged over the images. Higher values mean more diverse channels; feature',
    'collapse (dead, saturated or redundant channels) lowers it. The x axis is (block index + 1) / blocks.', '');
  L.push(`![feature cosine distance](${r.cosinePng})`, '');
  L.push(`| block | relative depth | channels | ${ms.map((m) => `${esc(m.label)} (mean ± sd over images)`).join(' | ')} |`);
  L.push(`|---|---|---|${ms.map(() => '---|').join('')}`);
  const layers = ms[0]?.analysis.layers ?? [];
  const sameShape = ms.every((m) => m.analysis.layers.length === layers.length);
  for (let i = 0; i < layers.length; i++) {
    const l = layers[i];
    const cells = ms.map((m) => {
      const x = m.analysis.layers[i];
      return x ? `${f4(x.cosine)} ± ${f4(x.cosineStd)}` : '';
    });
    L.push(`| ${l.name} | ${f3(l.relativeDepth)} | ${l.channels} | ${cells.join(' | ')} |`);
  }
  const mean = (m: ReportModel) => m.analysis.layers.reduce((a, l) => a + l.cosine, 0) / Math.max(1, m.analysis.layers.length);
  L.push(`| **mean over blocks** | | | ${ms.map((m) => `**${f4(mean(m))}**`).join(' | ')} |`, '');
  if (ms.length === 2 && sameShape) {
    const [a, b] = ms;
    const below = a.analysis.layers.filter((l, i) => l.cosine < b.analysis.layers[i].cosine).length;
    L.push(`${esc(a.label)} is below ${esc(b.label)} at ${below} of ${layers.length} blocks.`, '');
  }

  L.push('## Class selectivity', '');
  if (r.selectivityPng) {
    L.push('Per channel of each block\'s MLP hidden activation: mu_k is the mean over the images of class k of the',
      "channel's spatial mean per image, clipped at 0; the index is (mu_max - mu_rest) / (mu_max + mu_rest), in [0, 1]",
      '(1: the channel responds to one class only). Silent channels (mu_k = 0 for every class) have no index and are',
      'counted separately.', '');
    L.push(`![class selectivity](${r.selectivityPng})`, '');
    L.push(`| block | ${ms.map((m) => `${esc(m.label)}: mean / median / p90 (silent)`).join(' | ')} |`);
    L.push(`|---|${ms.map(() => '---|').join('')}`);
    for (let i = 0; i < layers.length; i++) {
      const cells = ms.map((m) => {
        const x = m.analysis.layers[i];
        const st = x?.selectivityStats;
        return st ? `${f3(st.mean)} / ${f3(st.median)} / ${f3(st.p90)} (${x.silentChannels})` : 'n/a';
      });
      L.push(`| ${layers[i].name} | ${cells.join(' | ')} |`);
    }
    L.push('');
  } else {
    L.push(r.selectivityNote ?? 'Not computed (no labels).', '');
  }

  L.push('## Activation maps', '');
  for (const m of ms) {
    if (!m.mapsPng) continue;
    const a = m.analysis;
    L.push(`${esc(m.label)}: block \`${a.mapLayer.name}\`, channels ${a.mapChannels[0]}..${a.mapChannels[a.mapChannels.length - 1]} of ${a.mapLayer.channels}, ` +
      `${a.maps.length} images; each image on its own colour scale (viridis, layer minimum to 99.5th percentile), so dead channels are uniformly dark and saturated ones uniformly bright.`, '');
    L.push(`![activation maps of ${esc(m.label)}](${m.mapsPng})`, '');
  }
  return L.join('\n');
}
