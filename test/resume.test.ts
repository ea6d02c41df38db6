// Exact resume through the shipped CLI (dist/cli/main.js): a run stopped after epoch 1
// (--stop-after) and resumed with another thread count ends with checkpoints whose every
// tensor (model, fcmae.*, optimizer.*, ema.*) is bit-identical to an uninterrupted run's, and
// the same log; for FCMAE pre-training and for fine-tuning with mixup, drop path and an EMA
// that is evaluated (--model-ema-eval) and so chooses checkpoint-best.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertSameCheckpoint } from './helpers.js';

const ROOT = new URL('..', import.meta.url).pathname;
const MAIN = join(ROOT, 'dist/cli/main.js');
const dir = mkdtempSync(join(tmpdir(), 'convnextv2-resume-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function cli(args: string[]): { stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...process.env, CONVNEXTV2_DEBUG: '' } });
  assert.equal(r.status, 0, `convnextv2 ${args.join(' ')}\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

/** The log without wall-clock fields. */
function log(out: string): Record<string, unknown>[] {
  return readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => {
    const r = JSON.parse(l) as Record<string, unknown>;
    delete r.seconds;
    delete r.images_per_second;
    return r;
  });
}

/** Runs `args` straight to the end and stopped after epoch 1 then resumed with 1 thread; compares. */
function straightAndResumed(name: string, args: string[], files: string[]): { straight: string; resumed: string; names: string[][] } {
  const straight = join(dir, `${name}-straight`);
  const resumed = join(dir, `${name}-resumed`);
  cli([...args, '--out', straight, '--threads', '2']);
  cli([...args, '--out', resumed, '--threads', '2', '--stop-after', '1']);
  assert.equal(log(resumed).length, 1, 'stopped after epoch 1');
  const r = cli([...args.slice(0, 1), '--out', resumed, '--resume', '--threads', '1']);
  assert.match(r.stdout, /resumed after epoch 1 of \d+ \(its checkpoint\)/, 'the second run resumed instead of starting over');
  assert.deepEqual(log(resumed), log(straight));
  const names = files.map((f) => {
    assert.ok(existsSync(join(resumed, f)), `${f} written`);
    return assertSameCheckpoint(join(straight, f), join(resumed, f));
  });
  return { straight, resumed, names };
}

test('pretrain: stopped after epoch 1, resumed with another thread count: checkpoint bit-identical (encoder, decoder, AdamW moments)', () => {
  const args = ['pretrain', '--depths', '1,1,1,1', '--dims', '8,16,24,32', '--decoder-embed-dim', '32', '--data', 'synthetic',
    '--input-size', '64', '--batch-size', '16', '--limit', '48', '--epochs', '3', '--warmup-epochs', '1', '--blr', '1.5e-3',
    '--workers', '1', '--vis-images', '2'];
  const { names } = straightAndResumed('pretrain', args, ['checkpoint-last.safetensors']);
  const [last] = names;
  assert.ok(last.some((n) => n.startsWith('fcmae.')), 'decoder tensors compared');
  assert.ok(last.some((n) => n.startsWith('optimizer.m.')) && last.some((n) => n.startsWith('optimizer.v.')), 'AdamW moments compared');
  assert.ok(last.some((n) => n.startsWith('stages.')), 'encoder tensors compared');
});

test('finetune with mixup, drop path and an evaluated EMA: checkpoint-last and checkpoint-best bit-identical after resume', () => {
  const args = ['finetune', '--data', 'synthetic', '--depths', '1,1,1,1', '--dims', '8,16,24,32', '--input-size', '32',
    '--batch-size', '16', '--epochs', '3', '--limit', '64', '--val-limit', '64', '--warmup-epochs', '1', '--blr', '1e-3',
    '--drop-path', '0.1', '--mixup', '0.8', '--cutmix', '1', '--model-ema', '--model-ema-decay', '0.9', '--model-ema-eval',
    '--workers', '0'];
  const { straight, names } = straightAndResumed('finetune', args, ['checkpoint-last.safetensors', 'checkpoint-best.safetensors']);
  const [last, best] = names;
  assert.ok(last.some((n) => n.startsWith('ema.')) && best.some((n) => n.startsWith('ema.')), 'EMA weights compared in both');
  assert.ok(last.some((n) => n.startsWith('optimizer.m.')), 'AdamW moments compared');
  const rows = log(straight);
  assert.equal(rows.length, 3);
  for (const k of ['val_top1', 'ema_top1']) assert.ok(rows.every((r) => typeof r[k] === 'number'), `${k} logged every epoch`);
});
