/**
 * Does FCMAE pre-training help when labels are scarce? Fashion-MNIST (Debian's
 * dataset-fashion-mnist, /usr/share/datasets/fashion-mnist), images upscaled to 96 px so the
 * 32 px mask grid has 3x3 cells, a small ConvNeXt V2 (depths 2,2,2,2, dims 32,64,128,256).
 * Per seed: FCMAE pre-training on 10,000 unlabelled training images (2 epochs), then
 * fine-tuning on the first 1,000 labelled training images (5 epochs) from the FCMAE encoder
 * and from scratch with the same budget, then top-1 on the full 10,000-image test set.
 *
 *   node --import tsx scripts/fashion-mnist.ts [--seeds 0,1,2] [--out results/fashion-mnist] [--data fashion-mnist:DIR]
 *
 * Writes OUT/results.json and OUT/table.md (mean and standard deviation over seeds).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const argv = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1] : def;
};
const seeds = opt('seeds', '0,1,2').split(',').map(Number);
const out = resolve(opt('out', 'results/fashion-mnist'));
const data = opt('data', 'fashion-mnist');
const ROOT = new URL('..', import.meta.url).pathname;
const MAIN = join(ROOT, 'src/cli/main.ts');
const MODEL = ['--depths', '2,2,2,2', '--dims', '32,64,128,256'];
const COMMON = ['--data', data, '--input-size', '96', '--batch-size', '32', '--workers', '1'];
const PRETRAIN = [...MODEL, ...COMMON, '--decoder-embed-dim', '128', '--fcmae-init', 'timm', '--epochs', '2', '--warmup-epochs', '0.5', '--blr', '1.5e-3', '--limit', '10000'];
const FINETUNE = [...COMMON, '--epochs', '5', '--limit', '1000', '--val-limit', '2000', '--warmup-epochs', '1', '--blr', '1e-2', '--layer-decay', '0.9',
  '--aa', 'none', '--reprob', '0', '--smoothing', '0.1', '--drop-path', '0.1'];

function cli(args: string[]): string {
  process.stderr.write(`$ convnextv2 ${args.join(' ')}\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`convnextv2 ${args[0]} failed (exit ${r.status})`);
  return r.stdout;
}

function testTop1(run: string): number {
  const line = cli(['eval', '--checkpoint', run, '--data', data, '--split', 'test', '--json']).trim().split('\n').pop()!;
  return (JSON.parse(line) as { top1: number }).top1;
}

mkdirSync(out, { recursive: true });
const rows: { seed: number; fcmae: number; scratch: number }[] = [];
const t0 = Date.now();
for (const seed of seeds) {
  const s = ['--seed', String(seed)];
  const dir = join(out, `seed${seed}`);
  cli(['pretrain', ...PRETRAIN, ...s, '--out', join(dir, 'pretrain'), '--overwrite']);
  cli(['finetune', ...FINETUNE, ...s, '--init', join(dir, 'pretrain'), '--out', join(dir, 'finetune-fcmae'), '--overwrite']);
  cli(['finetune', ...MODEL, ...FINETUNE, ...s, '--out', join(dir, 'finetune-scratch'), '--overwrite']);
  rows.push({ seed, fcmae: testTop1(join(dir, 'finetune-fcmae')), scratch: testTop1(join(dir, 'finetune-scratch')) });
  process.stderr.write(`seed ${seed}: ${JSON.stringify(rows[rows.length - 1])}\n`);
}
const stat = (v: number[]) => {
  const m = v.reduce((a, b) => a + b, 0) / v.length;
  const sd = v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1)) : 0;
  return { mean: m, sd };
};
const f = stat(rows.map((r) => r.fcmae));
const sc = stat(rows.map((r) => r.scratch));
const minutes = (Date.now() - t0) / 60000;
const table = [
  `| init | test top-1 (%), mean ± sd over ${rows.length} seeds | per seed |`,
  '|---|---|---|',
  `| FCMAE pre-trained (10k unlabelled, 2 epochs) | ${f.mean.toFixed(2)} ± ${f.sd.toFixed(2)} | ${rows.map((r) => r.fcmae.toFixed(2)).join(', ')} |`,
  `| from scratch | ${sc.mean.toFixed(2)} ± ${sc.sd.toFixed(2)} | ${rows.map((r) => r.scratch.toFixed(2)).join(', ')} |`,
  '',
  `Difference (FCMAE - scratch): ${(f.mean - sc.mean).toFixed(2)} points; ${minutes.toFixed(0)} minutes on this machine.`,
].join('\n');
writeFileSync(join(out, 'results.json'), JSON.stringify({ rows, fcmae: f, scratch: sc, minutes }, null, 2));
writeFileSync(join(out, 'table.md'), table + '\n');
console.log(table);
