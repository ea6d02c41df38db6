/**
 * The paper's GRN ablation in miniature: FCMAE pre-training of a ConvNeXt with V1 blocks (no
 * GRN, LayerScale) and one with V2 blocks (GRN), same size, data, budget and seed; then
 * `analyze` on both encoders (feature cosine distance per block, class selectivity,
 * activation maps), a short fine-tuning of both with the same budget, and test top-1 of the
 * last fine-tuning epoch (no selection on the test set). The paper (Fig. 4) finds the V1
 * FCMAE encoder's cosine distance below V2's across most layers (feature collapse).
 *
 * Model: depths 2,2,2,2, dims 32,64,128,256, 96 px (3x3 mask grid). Data: Fashion-MNIST
 * (/usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist) upscaled to 96 px, else
 * the embedded synthetic set. Pre-training uses `--fcmae-init timm` for both: FCMAE's official
 * std-1 initialisation leaves the encoder's features nearly identical across images after runs
 * this short (measured with V2 blocks, see src/fcmae/fcmae.ts), a collapse of its own that
 * would confound the comparison.
 *
 *   node --import tsx scripts/grn-ablation.ts [--out results/grn-ablation] [--data SPEC]
 *     [--pretrain-images 20000] [--pretrain-epochs 5] [--labelled 4000] [--finetune-epochs 5]
 *     [--analyze-images 500] [--seed 0] [--quick]
 *
 * About 20 minutes on 2 cores with the defaults; --quick (a few minutes' smoke run: 1,000
 * images, 2 + 2 epochs) checks the pipeline. Writes OUT/report.md and OUT/results.json.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  process.stdout.write(readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0].replace(/^\/\*\*?\n?/, '').replace(/^ \* ?/gm, '') + '\n');
  process.exit(0);
}
const quick = argv.includes('--quick');
const opt = (name: string, def: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : def;
};
const FMNIST = '/usr/share/datasets/fashion-mnist';
const data = opt('data', existsSync(FMNIST) ? 'fashion-mnist' : 'synthetic:96');
const out = resolve(opt('out', quick ? 'results/grn-ablation-quick' : 'results/grn-ablation'));
const pretrainImages = opt('pretrain-images', quick ? '1000' : '20000');
const pretrainEpochs = opt('pretrain-epochs', quick ? '2' : '5');
const labelled = opt('labelled', quick ? '500' : '4000');
const finetuneEpochs = opt('finetune-epochs', quick ? '2' : '5');
const analyzeImages = opt('analyze-images', quick ? '100' : '500');
const testLimit = quick ? ['--limit', '1000'] : [];
const seed = opt('seed', '0');

const ROOT = new URL('..', import.meta.url).pathname;
const MAIN = join(ROOT, 'src/cli/main.ts');
const MODEL = ['--depths', '2,2,2,2', '--dims', '32,64,128,256'];
const COMMON = ['--data', data, '--input-size', '96', '--batch-size', '32', '--workers', '1', '--seed', seed];
const PRETRAIN = [...MODEL, ...COMMON, '--decoder-embed-dim', '128', '--fcmae-init', 'timm', '--epochs', pretrainEpochs,
  '--warmup-epochs', '1', '--blr', '1.5e-3', '--limit', pretrainImages, '--vis-images', '4'];
const FINETUNE = [...COMMON, '--epochs', finetuneEpochs, '--limit', labelled, '--val-limit', '1000', '--warmup-epochs', '1',
  '--blr', '1e-2', '--layer-decay', '0.9', '--aa', 'none', '--reprob', '0', '--smoothing', '0.1', '--drop-path', '0.1'];
const KINDS = [{ block: 'v1', label: 'V1 (no GRN) FCMAE' }, { block: 'v2', label: 'V2 (GRN) FCMAE' }] as const;

const commands: string[] = [];
function cli(args: string[]): string {
  const line = `convnextv2 ${args.map((a) => (/[\s()]/.test(a) ? JSON.stringify(a) : a)).join(' ')}`;
  commands.push(line.replace(out + '/', 'OUT/').split(out).join('OUT'));
  process.stderr.write(`$ ${line}\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`convnextv2 ${args[0]} failed (exit ${r.status})`);
  return r.stdout;
}
const lastJson = <T>(stdout: string): T => JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as T;
const readLog = (path: string): Record<string, number>[] =>
  readFileSync(path, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Record<string, number>);

mkdirSync(out, { recursive: true });
const t0 = Date.now();
const minutes = () => (Date.now() - t0) / 60000;
const timing: Record<string, number> = {};
const step = (name: string, fn: () => void) => {
  const s = Date.now();
  fn();
  timing[name] = (Date.now() - s) / 60000;
};

// 1. FCMAE pre-training, same budget for both block kinds.
for (const k of KINDS) step(`pretrain ${k.block}`, () => cli(['pretrain', ...PRETRAIN, '--block', k.block, '--out', join(out, `pretrain-${k.block}`), '--overwrite']));

// 2. The analyses of both pre-trained encoders, on one plot.
const analysisArgs = (dirs: string[], labels: string[], dest: string) => ['analyze', ...dirs.flatMap((d) => ['--checkpoint', d]),
  ...labels.flatMap((l) => ['--label', l]), '--data', data, '--split', 'val', '--images', analyzeImages, '--input-size', '96', '--workers', '1', '--out', dest, '--json'];
step('analyze pretrained', () => cli(analysisArgs(KINDS.map((k) => join(out, `pretrain-${k.block}`, 'checkpoint-last.safetensors')), KINDS.map((k) => k.label), join(out, 'analysis-pretrained'))));

// 3. Fine-tuning of both with the same budget; test top-1 of the last epoch.
const top1: Record<string, number> = {};
for (const k of KINDS) {
  step(`finetune ${k.block}`, () => cli(['finetune', ...FINETUNE, '--init', join(out, `pretrain-${k.block}`), '--out', join(out, `finetune-${k.block}`), '--overwrite']));
  step(`test ${k.block}`, () => {
    top1[k.block] = lastJson<{ top1: number }>(cli(['eval', '--checkpoint', join(out, `finetune-${k.block}`, 'checkpoint-last.safetensors'), '--data', data, '--split', 'test', ...testLimit, '--json'])).top1;
  });
}
step('analyze finetuned', () => cli(analysisArgs(KINDS.map((k) => join(out, `finetune-${k.block}`, 'checkpoint-last.safetensors')),
  KINDS.map((k) => k.label.replace('FCMAE', 'fine-tuned')), join(out, 'analysis-finetuned'))));

// 4. The report.
interface Layer { name: string; relative_depth: number; cosine_distance: number; selectivity: { mean: number; median: number } | null }
interface Analysis { images: number; models: { label: string; layers: Layer[] }[] }
const pre = JSON.parse(readFileSync(join(out, 'analysis-pretrained', 'analysis.json'), 'utf8')) as Analysis;
const fin = JSON.parse(readFileSync(join(out, 'analysis-finetuned', 'analysis.json'), 'utf8')) as Analysis;
copyFileSync(join(out, 'analysis-pretrained', 'cosine-distance.png'), join(out, 'grn-ablation-cosine.png'));
const mean = (ls: Layer[]) => ls.reduce((a, l) => a + l.cosine_distance, 0) / ls.length;
const below = (a: Analysis) => a.models[0].layers.filter((l, i) => l.cosine_distance < a.models[1].layers[i].cosine_distance).length;
const preLoss = Object.fromEntries(KINDS.map((k) => { const log = readLog(join(out, `pretrain-${k.block}`, 'log.jsonl')); return [k.block, log[log.length - 1].loss]; }));
const ftLog = Object.fromEntries(KINDS.map((k) => [k.block, readLog(join(out, `finetune-${k.block}`, 'log.jsonl'))]));
const nLayers = pre.models[0].layers.length;
const rel = (p: string) => relative(out, p) || '.';

const L: string[] = [];
L.push('# GRN ablation: ConvNeXt V1 vs V2 blocks under FCMAE pre-training', '');
L.push(`Data \`${data}\`, 96 px; model depths 2,2,2,2, dims 32,64,128,256, V1 blocks (LayerScale 1e-6, no GRN) vs V2 blocks (GRN), ` +
  `decoder 128 x 1 (a V2 block in both). FCMAE: ${pretrainImages} unlabelled training images, ${pretrainEpochs} epochs, batch 32, mask 0.6, ` +
  `blr 1.5e-3, 1 warmup epoch, norm-pix loss, seed ${seed}, \`--fcmae-init timm\` (std 0.02 everywhere; the official std-1 init leaves ` +
  "the encoder's features nearly identical across images in runs this short, see src/fcmae/fcmae.ts). Fine-tuning: the first " +
  `${labelled} labelled training images, ${finetuneEpochs} epochs, blr 1e-2, layer decay 0.9, smoothing 0.1, drop path 0.1, no RandAugment; ` +
  `test top-1 of the last epoch on ${quick ? 'the first 1000' : 'all'} test images. Analyses on ${pre.images} images of the held-out split.`, '');
L.push(`![cosine distance of the pre-trained encoders](${rel(join(out, 'grn-ablation-cosine.png'))})`, '');
L.push('## Feature cosine distance per block (pre-trained encoders)', '');
L.push(`| block | relative depth | ${pre.models.map((m) => m.label).join(' | ')} | ${fin.models.map((m) => m.label).join(' | ')} |`);
L.push(`|---|---|${pre.models.map(() => '---|').join('')}${fin.models.map(() => '---|').join('')}`);
for (let i = 0; i < nLayers; i++) {
  const l = pre.models[0].layers[i];
  L.push(`| ${l.name} | ${l.relative_depth.toFixed(3)} | ${[...pre.models, ...fin.models].map((m) => m.layers[i].cosine_distance.toFixed(4)).join(' | ')} |`);
}
L.push(`| **mean** | | ${[...pre.models, ...fin.models].map((m) => `**${mean(m.layers).toFixed(4)}**`).join(' | ')} |`, '');
L.push(`Pre-trained: V1 below V2 at ${below(pre)} of ${nLayers} blocks; after fine-tuning: ${below(fin)} of ${nLayers}.`, '');
L.push('## Pre-training and fine-tuning', '');
L.push('| blocks | FCMAE loss, last epoch | fine-tuning val top-1 per epoch (first 1000 held-out images) | test top-1 (%), last epoch |', '|---|---|---|---|');
for (const k of KINDS) {
  L.push(`| ${k.block.toUpperCase()} | ${preLoss[k.block].toFixed(4)} | ${ftLog[k.block].map((r) => r.val_top1.toFixed(1)).join(', ')} | ${top1[k.block].toFixed(2)} |`);
}
L.push('');
L.push('More: `analysis-pretrained/report.md` and `analysis-finetuned/report.md` (selectivity, activation maps), ' +
  '`pretrain-*/reconstruction-epoch*.png`, the run folders\' `log.jsonl`.', '');
L.push('## Commands', '', '```', ...commands, '```', '');
L.push(`Wall time ${minutes().toFixed(1)} minutes (${Object.entries(timing).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}).`, '');
writeFileSync(join(out, 'report.md'), L.join('\n'));
const results = {
  data, seed: Number(seed), pretrainImages: Number(pretrainImages), pretrainEpochs: Number(pretrainEpochs), labelled: Number(labelled), finetuneEpochs: Number(finetuneEpochs),
  minutes: minutes(), timing, pretrainLoss: preLoss, testTop1: top1, v1BelowV2: { pretrained: below(pre), finetuned: below(fin), blocks: nLayers },
  cosine: {
    pretrained: Object.fromEntries(pre.models.map((m) => [m.label, m.layers.map((l) => l.cosine_distance)])),
    finetuned: Object.fromEntries(fin.models.map((m) => [m.label, m.layers.map((l) => l.cosine_distance)])),
  },
};
writeFileSync(join(out, 'results.json'), JSON.stringify(results, null, 2) + '\n');
process.stdout.write(L.join('\n') + '\n');
