// Run folders of pretrain and finetune (issue 12, data safety): a folder holding a run is
// refused without --resume or --overwrite, and left untouched; --resume alone continues with
// the recorded arguments, exactly as an uninterrupted run; a contradicting flag is refused,
// --epochs is taken and reported; bad flags leave no folder behind; Ctrl-C says where it
// stopped and how to continue.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckpoint } from '../src/io/checkpoint_file.js';
import { parseArgs, type FlagSpecs } from '../src/cli/args.js';
import { resumeArgs } from '../src/cli/runlog.js';

const ROOT = new URL('..', import.meta.url).pathname;
const MAIN = join(ROOT, 'src/cli/main.ts');
const dir = mkdtempSync(join(tmpdir(), 'convnextv2-runs-'));
const PRE = ['pretrain', '--depths', '1,1,1,1', '--dims', '8,16,24,32', '--decoder-embed-dim', '16', '--data', 'synthetic', '--input-size', '64',
  '--batch-size', '16', '--limit', '32', '--warmup-epochs', '0.5', '--blr', '1.5e-3', '--workers', '0', '--vis-images', '1', '--seed', '3'];
const FT = ['finetune', '--depths', '1,1,1,1', '--dims', '8,16,24,32', '--data', 'synthetic', '--input-size', '32', '--batch-size', '16',
  '--limit', '32', '--val-limit', '16', '--warmup-epochs', '1', '--blr', '1e-3', '--workers', '0', '--aa', 'none', '--model-ema', '--model-ema-decay', '0.9', '--crop-pct', '0.9'];

function cli(args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { encoding: 'utf8', env: { ...process.env, CONVNEXTV2_DEBUG: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
function oneLine(r: { code: number | null; stderr: string }, code: number, pattern: RegExp): void {
  assert.equal(r.code, code, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line on stderr:\n${r.stderr}`);
  assert.match(lines[0], /^convnextv2: /);
  assert.match(lines[0], pattern);
}
const losses = (out: string) => readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { loss: number }).loss);
const snapshot = (out: string) => new Map(readdirSync(out).map((f) => [f, readFileSync(join(out, f)).toString('base64')]));

test('pretrain: an existing run is refused and untouched; --resume alone continues it exactly with its recorded arguments', () => {
  const straight = join(dir, 'straight');
  assert.equal(cli([...PRE, '--epochs', '2', '--out', straight]).code, 0);
  const run = join(dir, 'run');
  const first = cli([...PRE, '--epochs', '2', '--stop-after', '1', '--out', run]);
  assert.equal(first.code, 0, first.stderr);
  const before = snapshot(run);
  // Again without --resume: refused, naming both ways on, and nothing in the folder changes.
  oneLine(cli([...PRE, '--epochs', '2', '--out', run]), 2, /--out .*run already holds a run \(checkpoint-last\.safetensors, log\.jsonl\): --resume continues it, --overwrite starts it over/);
  assert.deepEqual(snapshot(run), before);
  oneLine(cli(['pretrain', '--out', run, '--resume', '--overwrite']), 2, /--resume and --overwrite contradict/);
  // A flag that contradicts the recorded run is refused (the issue's --dims and --input-size).
  oneLine(cli(['pretrain', '--out', run, '--resume', '--input-size', '96']), 2, /--input-size 96 contradicts the run being resumed \(.*checkpoint-last\.safetensors was started with 64\)/);
  oneLine(cli(['pretrain', '--out', run, '--resume', '--dims', '8,16,24,48']), 2, /--dims 8,16,24,48 contradicts the run being resumed/);
  assert.deepEqual(snapshot(run), before);
  // --resume with no other flag: the recorded 64 px, 2 steps of 16, seed 3, ... (not the defaults).
  const r = cli(['pretrain', '--out', run, '--resume', '--threads', '1']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /2 steps\/epoch of 16, .*resumed after epoch 1/);
  assert.deepEqual(losses(run), losses(straight));
  const a = loadCheckpoint(join(straight, 'checkpoint-last.safetensors'), { extra: true });
  const b = loadCheckpoint(join(run, 'checkpoint-last.safetensors'), { extra: true });
  for (const [name, t] of a.state) assert.deepEqual(b.state.get(name)!.data, t.data, name);
  for (const [name, t] of a.extra!) assert.deepEqual(b.extra!.get(name)!.data, t.data, name);
  // --epochs may change on resume: taken, said, and recorded for the next resume.
  // --quiet (like --threads) says how the run is driven: never a contradiction of the recorded run.
  const more = cli(['pretrain', '--out', run, '--resume', '--epochs', '3', '--quiet']);
  assert.equal(more.code, 0, more.stderr);
  assert.match(more.stdout, /pretrain: resuming .*checkpoint-last\.safetensors with --epochs 3 \(was 2\)/);
  assert.equal(losses(run).length, 3);
  const ck = loadCheckpoint(join(run, 'checkpoint-last.safetensors'), { extra: true });
  assert.equal((JSON.parse(ck.metadata.args) as { epochs: number }).epochs, 3);
  // --resume on a complete run: said, with how to extend it; nothing is trained or written.
  const done = snapshot(run);
  const again = cli(['pretrain', '--out', run, '--resume']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /pretrain: .*checkpoint-last\.safetensors is complete \(3 of 3 epochs\): nothing to train; to train longer, resume with --epochs M \(M > 3\)/);
  assert.deepEqual(snapshot(run), done);
});

test('pretrain --overwrite starts over: the old run\'s checkpoints, log and PNGs are gone', () => {
  const run = join(dir, 'over');
  assert.equal(cli([...PRE, '--epochs', '2', '--out', run]).code, 0);
  assert.ok(existsSync(join(run, 'reconstruction-epoch002.png')));
  const r = cli([...PRE, '--epochs', '1', '--out', run, '--overwrite']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readdirSync(run).sort(), ['README.txt', 'checkpoint-last.safetensors', 'log.jsonl', 'loss.png', 'lr.png', 'reconstruction-epoch001.png']);
  assert.equal(losses(run).length, 1);
});

test('bad flags are refused before the run folder is created', () => {
  const cases: [string[], number, RegExp][] = [
    [['--mask-ratio', '1.5'], 2, /--mask-ratio 1\.5: must be in \[0, 1\)/],
    [['--mask-ratio', '0.99'], 2, /leave at least one of the 4 patches/],
    [['--limit', '-5'], 2, /--limit -5: must be a positive integer/],
    [['--depths', '1,1,1'], 2, /depths/],
    [['--data', join(dir, 'no-such-folder')], 1, /no-such-folder/],
  ];
  for (const [i, [extra, code, pattern]] of cases.entries()) {
    const out = join(dir, `bad-${i}`);
    const r = cli([...PRE, '--epochs', '1', '--out', out, ...extra]);
    assert.notEqual(r.code, 0, `${extra.join(' ')}: ${r.stdout}`);
    oneLine(r, code, pattern);
    assert.ok(!existsSync(out), `${extra.join(' ')} left ${out} behind`);
  }
  const out = join(dir, 'bad-model');
  oneLine(cli(['pretrain', '--data', 'synthetic', '--model', 'gigantic', '--out', out]), 2, /gigantic/);
  oneLine(cli(['finetune', '--data', 'synthetic', '--model', 'gigantic', '--out', out]), 2, /gigantic/);
  oneLine(cli([...FT, '--epochs', '1', '--limit', '-5', '--out', out]), 2, /--limit -5: must be a positive integer/);
  // Without --data: refused before anything is made (the synthetic set only by name).
  oneLine(cli(['finetune', '--model', 'atto', '--out', out]), 2, /^convnextv2: finetune: missing --data: .*--data synthetic for the embedded synthetic set$/);
  assert.ok(!existsSync(out));
  const small = join(ROOT, 'test/fixtures/reference/small_official.pt');
  oneLine(cli(['eval', '--checkpoint', small, '--data', 'synthetic', '--limit', '-5']), 2, /eval: --limit -5: must be a positive integer/);
  const r = cli(['analyze', '--checkpoint', small, '--data', 'synthetic', '--images', '8', '--layer', '9.9', '--out', out]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /9\.9/);
  assert.ok(!existsSync(out), 'analyze --layer 9.9 left its --out behind');
});

test('finetune: the same folder rules (refused without --resume, recorded arguments on resume); eval RUN --ema; convert keeps the input size and crop', () => {
  const run = join(dir, 'ft');
  // Started from the pre-training test's checkpoint (--init), interrupted after epoch 1.
  const init = join(dir, 'straight', 'checkpoint-last.safetensors');
  assert.ok(existsSync(init), 'the pretrain test (first in this file) wrote the --init checkpoint');
  assert.equal(cli([...FT, '--init', init, '--epochs', '2', '--stop-after', '1', '--out', run]).code, 0);
  oneLine(cli([...FT, '--epochs', '2', '--out', run]), 2, /already holds a run \(checkpoint-best\.safetensors, checkpoint-last\.safetensors, log\.jsonl\)/);
  oneLine(cli(['finetune', '--out', run, '--resume', '--batch-size', '8']), 2, /--batch-size 8 contradicts the run being resumed/);
  const r = cli(['finetune', '--out', run, '--resume']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /2 steps\/epoch of 16, .*resumed after epoch 1 of 2 \(its checkpoint\)/);
  assert.match(r.stdout, /continuing its run \(started from .*straight\/checkpoint-last\.safetensors\)/, 'not "from scratch"');
  assert.doesNotMatch(r.stdout, /from scratch/);
  assert.equal(losses(run).length, 2);
  const complete = cli(['finetune', '--out', run, '--resume']);
  assert.equal(complete.code, 0, complete.stderr);
  assert.match(complete.stdout, /finetune: .*checkpoint-last\.safetensors is complete \(2 of 2 epochs\): nothing to train; to train longer, resume with --epochs M \(M > 2\)/);
  assert.equal(losses(run).length, 2);
  // The run folder's best checkpoint carries the EMA weights: eval RUN --ema works, and differs from the raw weights.
  const best = loadCheckpoint(join(run, 'checkpoint-best.safetensors'), { extra: true });
  assert.ok(best.extraNames.some((n) => n.startsWith('ema.')) && !best.extraNames.some((n) => n.startsWith('optimizer.')));
  const evalArgs = ['eval', '--checkpoint', run, '--data', 'synthetic', '--limit', '32', '--json'];
  const e = cli([...evalArgs, '--ema']);
  assert.equal(e.code, 0, e.stderr);
  const raw = cli(evalArgs);
  assert.equal(raw.code, 0, raw.stderr);
  assert.notEqual(JSON.parse(e.stdout.trim().split('\n').pop()!).loss, JSON.parse(raw.stdout.trim().split('\n').pop()!).loss);
  assert.match(raw.stdout, /\(32 px, crop 0\.9\)/);

  // convert keeps the preprocessing the run was trained with (32 px, crop 0.9) in every target.
  const want = { inputSize: 32, cropPct: 0.9 };
  const conv = (to: string, output: string, ...extra: string[]) => {
    const c = cli(['convert', '--checkpoint', run, '--to', to, '--output', output, ...extra]);
    assert.equal(c.code, 0, c.stderr);
    return output;
  };
  const ours = conv('ours', join(dir, 'ft-ours.safetensors'));
  assert.deepEqual(loadCheckpoint(ours).preprocessing, want);
  const ev = cli(['eval', '--checkpoint', ours, '--data', 'synthetic', '--limit', '32']);
  assert.equal(ev.code, 0, ev.stderr);
  assert.match(ev.stdout, /\(32 px, crop 0\.9\)/);
  const hf = conv('hf', join(dir, 'ft-hf'));
  const hfConfig = JSON.parse(readFileSync(join(hf, 'config.json'), 'utf8')) as { image_size: number };
  const hfPre = JSON.parse(readFileSync(join(hf, 'preprocessor_config.json'), 'utf8')) as { size: { shortest_edge: number }; crop_pct: number };
  assert.equal(hfConfig.image_size, 32);
  assert.deepEqual([hfPre.size.shortest_edge, hfPre.crop_pct], [32, 0.9]);
  assert.deepEqual(loadCheckpoint(hf).preprocessing, want);
  for (const [to, extra] of [['timm', []], ['official', ['--format', 'safetensors']]] as const) {
    assert.deepEqual(loadCheckpoint(conv(to, join(dir, `ft-${to}.safetensors`), ...extra)).preprocessing, want, to);
  }
  // And from the Hugging Face export onward (config.json / preprocessor_config.json as the source).
  const fromHf = join(dir, 'ft-hf-ours.safetensors');
  const c2 = cli(['convert', '--checkpoint', hf, '--to', 'ours', '--output', fromHf]);
  assert.equal(c2.code, 0, c2.stderr);
  assert.deepEqual(loadCheckpoint(fromHf).preprocessing, want);
});

test('SIGINT while training: one line with the epoch, the step, the checkpoint and how to resume; exit 130', async () => {
  const run = join(dir, 'int');
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...PRE, '--epochs', '50', '--out', run], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const code = await new Promise<number | null>((resolve, reject) => {
    const t = setInterval(() => {
      if (existsSync(join(run, 'checkpoint-last.safetensors'))) {
        clearInterval(t);
        child.kill('SIGINT');
      }
    }, 20);
    child.on('exit', (c) => { clearInterval(t); resolve(c); });
    child.on('error', reject);
  });
  assert.equal(code, 130, stderr);
  const last = stderr.trim().split('\n').pop()!;
  assert.match(last, new RegExp(`^convnextv2: pretrain: interrupted at epoch \\d+ step \\d+ \\(checkpoint-last\\.safetensors holds epoch \\d+\\); resume with --resume --out ${run}$`));
  const held = Number(/holds epoch (\d+)/.exec(last)![1]);
  assert.equal(loadCheckpoint(join(run, 'checkpoint-last.safetensors'), { extra: true }).metadata.epoch, String(held));
});

test('a warm-up longer than the run is said once before training, with a value to try; the log records the schedule', () => {
  const run = join(dir, 'warm');
  const r = cli([...PRE.filter((a, i, all) => a !== '--warmup-epochs' && all[i - 1] !== '--warmup-epochs'), '--epochs', '1', '--out', run]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^pretrain: note: --warmup-epochs 40 is longer than the run \(1 epoch\): the learning rate reaches \S+ of its \S+ at most; for a run this short try --warmup-epochs 0\.1$/m);
  const rec = JSON.parse(readFileSync(join(run, 'log.jsonl'), 'utf8').trim()) as Record<string, number>;
  assert.equal(rec.warmup_epochs, 40);
  assert.equal(rec.epochs, 1);
  assert.ok(rec.peak_lr > 0 && rec.min_lr === 0);
  // A warm-up of a tenth of the run, or of most of it but shorter, is not remarked on.
  for (const [epochs, warm] of [['5', '0.5'], ['4', '3']]) {
    const ok = cli([...PRE.filter((a, i, all) => a !== '--warmup-epochs' && all[i - 1] !== '--warmup-epochs'), '--warmup-epochs', warm, '--epochs', epochs, '--stop-after', '1', '--out', join(dir, `warm-ok-${epochs}`)]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.doesNotMatch(ok.stdout, /note: --warmup-epochs/);
  }
  const ft = cli([...FT, '--epochs', '2', '--warmup-epochs', '20', '--stop-after', '1', '--out', join(dir, 'warm-ft')]);
  assert.equal(ft.code, 0, ft.stderr);
  assert.match(ft.stdout, /^finetune: note: --warmup-epochs 20 is longer than the run \(2 epochs\)/m);
  // Said once: not again when the run is resumed.
  const again = cli(['finetune', '--resume', '--out', join(dir, 'warm-ft'), '--quiet']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /resumed after epoch 1 of 2/);
  assert.doesNotMatch(again.stdout, /note: --warmup-epochs/);
});

test('resumeArgs: recorded arguments are the defaults, a flag the run did not record keeps its own, a contradiction is refused', () => {
  const specs: FlagSpecs = {
    epochs: { kind: 'int', help: '', default: 5 },
    blr: { kind: 'number', help: '', default: 1e-3 },
    'new-flag': { kind: 'int', help: '', default: 7 },
    threads: { kind: 'int', help: '' },
  };
  const recorded = JSON.stringify({ epochs: 3, blr: 2e-4, threads: 2 });
  const mutable = new Set(['epochs']);
  const plain = resumeArgs('finetune', parseArgs([], specs, 'finetune'), recorded, 'ck', mutable);
  assert.deepEqual([plain.args.number('epochs'), plain.args.number('blr'), plain.args.number('new-flag'), plain.args.number('threads')], [3, 2e-4, 7, undefined]);
  assert.deepEqual(plain.changed, []);
  const given = resumeArgs('finetune', parseArgs(['--epochs', '9', '--new-flag', '8', '--threads', '1'], specs, 'finetune'), recorded, 'ck', mutable);
  assert.deepEqual([given.args.number('epochs'), given.args.number('new-flag'), given.args.number('threads')], [9, 8, 1]);
  assert.deepEqual(given.changed, ['--epochs 9 (was 3)']);
  assert.throws(() => resumeArgs('finetune', parseArgs(['--blr', '1e-2'], specs, 'finetune'), recorded, 'ck', mutable),
    /^ConvNextError: finetune: --blr 0\.01 contradicts the run being resumed \(ck was started with 0\.0002\)/);
});

test('a pre-training checkpoint records its input size; finetune --init takes it unless --input-size is given, and says so', () => {
  const pre = join(dir, 'size-pre');
  const r = cli([...PRE.filter((a, i, all) => all[i - 1] !== '--input-size' && a !== '--input-size'), '--input-size', '96', '--epochs', '1', '--out', pre]);
  assert.equal(r.code, 0, r.stderr);
  const ck = loadCheckpoint(join(pre, 'checkpoint-last.safetensors'), { extra: true });
  assert.equal(ck.preprocessing?.inputSize, 96, 'its preprocessing: 96 px');
  assert.equal(ck.fcmae?.inputSize, 96, 'its FCMAE record: 96 px');
  const noSize = FT.filter((a, i, all) => all[i - 1] !== '--input-size' && a !== '--input-size' && a !== '--depths' && a !== '--dims' && all[i - 1] !== '--depths' && all[i - 1] !== '--dims');
  const ft = cli([...noSize, '--init', pre, '--epochs', '1', '--out', join(dir, 'size-ft')]);
  assert.equal(ft.code, 0, ft.stderr);
  assert.match(ft.stdout, /, at its input size 96 px \(--input-size to change\)/);
  assert.equal(loadCheckpoint(join(dir, 'size-ft', 'checkpoint-last.safetensors')).preprocessing?.inputSize, 96);
  const given = cli([...noSize, '--init', pre, '--input-size', '32', '--epochs', '1', '--out', join(dir, 'size-ft32')]);
  assert.equal(given.code, 0, given.stderr);
  assert.doesNotMatch(given.stdout, /at its input size/);
  assert.equal(loadCheckpoint(join(dir, 'size-ft32', 'checkpoint-last.safetensors')).preprocessing?.inputSize, 32);
});

test('an unreadable training image is skipped, warned once and counted at each epoch\'s end; --strict-data stops at it with one line', async () => {
  const { encodePng } = await import('../src/viz/png.js');
  const data = join(dir, 'folder-data');
  for (const [k, cls] of ['cats', 'dogs'].entries()) {
    mkdirSync(join(data, cls), { recursive: true });
    for (let i = 0; i < 6; i++) {
      writeFileSync(join(data, cls, `${i}.png`), encodePng({ width: 40, height: 40, channels: 3, data: Uint8Array.from({ length: 40 * 40 * 3 }, (_, j) => (j * (3 + i) + 90 * k) % 256) }));
    }
  }
  writeFileSync(join(data, 'dogs', 'broken.jpg'), Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 74, 70, 73, 70]));
  const args = ['finetune', '--depths', '1,1,1,1', '--dims', '8,16,24,32', '--data', data, '--val-split', '0.25', '--input-size', '32', '--batch-size', '4',
    '--epochs', '2', '--warmup-epochs', '0', '--workers', '0', '--aa', 'none', '--reprob', '0', '--seed', '1'];
  const r = cli([...args, '--out', join(dir, 'skip')]);
  assert.equal(r.code, 0, r.stderr);
  const warned = r.stderr.split('\n').filter((l) => /broken\.jpg/.test(l));
  assert.equal(warned.length, 1, `warned once: ${r.stderr}`);
  assert.match(warned[0], /broken\.jpg: truncated or corrupt JPEG data$/);
  assert.doesNotMatch(r.stderr, /vips|libjpeg|premature/i, 'no libvips text');
  const epochs = r.stdout.split('\n').filter((l) => /^epoch \d+:/.test(l));
  assert.equal(epochs.length, 2);
  // The file may fall in the validation part of the split (then it is counted from epoch 1 on as well).
  for (const l of epochs) assert.match(l, /; 1 unreadable image skipped so far \(named in the warnings; --strict-data to stop at one\)$/);
  const strict = cli([...args, '--strict-data', '--quiet', '--out', join(dir, 'strict')]);
  oneLine(strict, 1, /cannot decode image .*broken\.jpg: truncated or corrupt JPEG data \(--strict-data stops at an unreadable image; without it, it is skipped and counted\)$/);
});

test('a run folder has a README.txt of its files and curve PNGs redrawn every epoch (loss, lr; accuracy for fine-tuning)', () => {
  const ft = join(dir, 'curves-ft');
  assert.equal(cli([...FT, '--epochs', '2', '--stop-after', '1', '--out', ft, '--quiet']).code, 0);
  const png = (f: string) => readFileSync(join(ft, f));
  const first = Object.fromEntries(['loss.png', 'lr.png', 'accuracy.png'].map((f) => [f, png(f)]));
  for (const [f, b] of Object.entries(first)) assert.deepEqual([...b.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], `${f} is a PNG`);
  const readme = readFileSync(join(ft, 'README.txt'), 'utf8');
  for (const f of readdirSync(ft).filter((f) => f !== 'README.txt')) assert.ok(readme.includes(f.replace(/\d{3}/, 'NNN')), `README.txt says what ${f} is`);
  // The next epoch redraws them.
  assert.equal(cli(['finetune', '--resume', '--out', ft, '--quiet']).code, 0);
  for (const f of Object.keys(first)) assert.notDeepEqual(png(f), first[f], `${f} redrawn after epoch 2`);
  const pre = join(dir, 'curves-pre');
  assert.equal(cli([...PRE, '--epochs', '1', '--out', pre, '--quiet']).code, 0);
  assert.ok(existsSync(join(pre, 'loss.png')) && existsSync(join(pre, 'lr.png')) && !existsSync(join(pre, 'accuracy.png')));
  assert.match(readFileSync(join(pre, 'README.txt'), 'utf8'), /FCMAE pre-training run/);
  // --overwrite starts over: the old curves go with the run.
  assert.equal(cli([...PRE, '--epochs', '1', '--out', ft, '--overwrite', '--quiet']).code, 0);
  assert.ok(!existsSync(join(ft, 'accuracy.png')), 'the fine-tuning curves are gone');
});
