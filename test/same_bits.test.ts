// Same bits across refactors: a small FCMAE pre-training run and a fine-tuning run started from
// it (--init, drop path, label smoothing, mixup/cutmix, layer decay, EMA evaluated, gradient
// clipping, update-freq 2) on the native kernels at one thread end with checkpoints whose every
// tensor and metadata field (but the arguments, which hold paths) hash to what was recorded in
// test/fixtures/same_bits.json before the backend redesign (issue 26) began, for each native
// path (avx512, avx2, portable) this CPU has. A refactor that changes one bit anywhere in the
// model, the sparse encoder, the optimizer, the EMA, the schedule or the data pipeline fails here.
//
// Recording (only when the numbers are meant to change; say why in the commit):
//   SAME_BITS_RECORD=1 node --import tsx --test test/same_bits.test.ts
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ALL_ISAS } from './isa_checks.js';

const ROOT = new URL('..', import.meta.url).pathname;
const MAIN = join(ROOT, 'dist/cli/main.js');
const FIXTURE = join(ROOT, 'test/fixtures/same_bits.json');
const RECORD = process.env.SAME_BITS_RECORD === '1';
const dir = mkdtempSync(join(tmpdir(), 'convnextv2-same-bits-'));
after(() => rmSync(dir, { recursive: true, force: true }));

type Digest = { metadata: Record<string, string>; tensors: Record<string, string> };
type Fixture = Record<string, { pretrain: Digest; finetune: Digest }>;

const PRETRAIN = ['pretrain', '--depths', '1,1,1,1', '--dims', '8,16,24,32', '--decoder-embed-dim', '16', '--decoder-depth', '1',
  '--data', 'synthetic', '--input-size', '64', '--batch-size', '8', '--limit', '32', '--epochs', '2', '--warmup-epochs', '1',
  '--blr', '1e-3', '--vis-images', '1'];
const FINETUNE = ['finetune', '--data', 'synthetic', '--input-size', '64', '--batch-size', '8', '--update-freq', '2', '--limit', '32',
  '--epochs', '2', '--warmup-epochs', '1', '--blr', '5e-3', '--drop-path', '0.1', '--smoothing', '0.1', '--mixup', '0.8', '--cutmix', '1',
  '--layer-decay', '0.8', '--model-ema', '--model-ema-decay', '0.9', '--model-ema-eval', '--clip-grad', '1', '--val-limit', '16'];

function cli(args: string[], isa: string): string {
  const r = spawnSync(process.execPath, [MAIN, ...args, '--threads', '1', '--workers', '1', '--quiet', '--json'], {
    encoding: 'utf8', env: { ...process.env, CONVNEXTV2_ISA: isa, CONVNEXTV2_KERNELS: undefined, CONVNEXTV2_DEBUG: '' },
  });
  assert.equal(r.status, 0, `CONVNEXTV2_ISA=${isa} convnextv2 ${args.join(' ')}\n${r.stderr}`);
  return r.stdout;
}

/** sha256 (first 16 hex digits) of each tensor's dtype, shape and bytes, and each metadata field but `args`. */
function digest(file: string): Digest {
  const b = readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  const data = b.subarray(8 + n);
  const metadata: Record<string, string> = {};
  const tensors: Record<string, string> = {};
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      for (const [k, s] of Object.entries(v as Record<string, string>)) if (k !== 'args') metadata[k] = s;
      continue;
    }
    const t = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const h = createHash('sha256').update(`${t.dtype} ${t.shape.join('x')}\n`).update(data.subarray(t.data_offsets[0], t.data_offsets[1]));
    tensors[name] = h.digest('hex').slice(0, 16);
  }
  return { metadata, tensors };
}

/** The native paths this CPU runs (a path it lacks is refused by CONVNEXTV2_ISA with one line). */
function supported(): string[] {
  const r = spawnSync(process.execPath, [MAIN, 'info', '--json'], { encoding: 'utf8', env: { ...process.env, CONVNEXTV2_ISA: undefined } });
  assert.equal(r.status, 0, r.stderr);
  const info = JSON.parse(r.stdout.trim().split('\n').pop()!) as { cpu?: { isas?: string[] } };
  const isas = info.cpu?.isas ?? [];
  assert.ok(isas.length > 0, `no native path reported by convnextv2 info --json: ${r.stdout}`);
  return ALL_ISAS.filter((i) => isas.includes(i));
}

function compare(what: string, got: Digest, want: Digest): void {
  assert.deepEqual(Object.keys(got.tensors).sort(), Object.keys(want.tensors).sort(), `${what}: the same tensor names`);
  const differ = Object.keys(want.tensors).filter((k) => got.tensors[k] !== want.tensors[k]);
  assert.deepEqual(differ, [], `${what}: ${differ.length} of ${Object.keys(want.tensors).length} tensors differ in bits`);
  assert.deepEqual(got.metadata, want.metadata, `${what}: metadata`);
}

test('same bits: FCMAE pre-training and fine-tuning from it end bit-identical to the recorded runs, on every native path this CPU has', () => {
  const fixture: Fixture = RECORD ? {} : (JSON.parse(readFileSync(FIXTURE, 'utf8')) as Fixture);
  const isas = supported();
  for (const isa of isas) {
    const pre = join(dir, `${isa}-pre`);
    const ft = join(dir, `${isa}-ft`);
    cli([...PRETRAIN, '--out', pre], isa);
    const last = JSON.parse(cli([...FINETUNE, '--init', pre, '--out', ft], isa).trim().split('\n').pop()!) as Record<string, unknown>;
    assert.ok(last, 'finetune printed its JSON');
    const got = { pretrain: digest(join(pre, 'checkpoint-last.safetensors')), finetune: digest(join(ft, 'checkpoint-last.safetensors')) };
    assert.ok(Object.keys(got.finetune.tensors).some((k) => k.startsWith('ema.')), 'EMA weights are in the checkpoint');
    assert.ok(Object.keys(got.pretrain.tensors).some((k) => k.startsWith('fcmae.')), 'decoder weights are in the checkpoint');
    if (RECORD) {
      fixture[isa] = got;
      continue;
    }
    const want = fixture[isa];
    assert.ok(want, `no recorded digests for ${isa} in ${FIXTURE}`);
    compare(`${isa} pretrain`, got.pretrain, want.pretrain);
    compare(`${isa} finetune`, got.finetune, want.finetune);
  }
  if (RECORD) writeFileSync(FIXTURE, JSON.stringify(fixture, null, 1) + '\n');
});
