// The error table of the shipped CLI (issue 13): every error a user can reach from the command
// line, run through dist/cli/main.js (`npm test` compiles it first: pretest), with its exact
// exit code (1 bad input, 2 bad usage), one stderr line `convnextv2: <message>` naming the flag
// or file and the reason, no stack trace, nothing on stdout after it; and the same row again
// with --json, whose stdout ends with `{"error": "convnextv2: <message>", "exit_code": <code>}`.
//
// Not in the table, and why:
// - main.ts, the `beforeExit` line 'internal error: the command stopped before finishing': an
//   invariant (a command awaiting a promise nothing settles); no input reaches it.
// - main.ts, the branch for a thrown value that is not a ConvNextError: every input error is a
//   ConvNextError; reaching that branch is itself a bug (it still prints one line, exit 1).
// - args.ts requireNumber 'missing --X' and finetune's withRecipe num() 'missing --X': every
//   number flag a command requires has a default and a flag cannot be unset from the command
//   line; only a resumed checkpoint whose recorded arguments lack the flag gets there.
// - convert.ts verify(): '... does not read back as written' (tensor counts or bits differ):
//   the writer and the reader of the library disagreeing, an invariant.
// - finetune.ts '--init P: tensor T does not fit the model': the model is built from --init's
//   own config, so every tensor fits.
// - finetune.ts '--resume P has no EMA weights (ema.T)': finetune writes ema.* whenever it
//   records --model-ema; only a hand-edited checkpoint (with valid AdamW state) gets there.
// - pretrain.ts 'no images for the reconstruction picture': the data loader refuses an empty
//   data set first ('no samples') and --vis-images must be at least 1.
// - hub.ts download failures (the Hub listing or a download failing, a repository without
//   weights, @huggingface/hub not installed): they need the network or a broken install; the
//   cache miss with HF_HUB_OFFLINE=1 is in the table.
// - CONVNEXTV2_ISA naming a path this CPU lacks, CONVNEXTV2_KERNELS=native without the addon:
//   machine- and build-dependent (the unknown values of both variables are in the table).
// - SIGINT / SIGTERM during training (exit 130 / 143): test/runfolder.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { ConvNeXtV2, makeConfig, readSafetensors, saveCheckpoint, writeSafetensors } from '../src/index.js';
import { cpu } from './backend.js';

const ROOT = new URL('..', import.meta.url).pathname;
const MAIN = join(ROOT, 'dist/cli/main.js');
const FIX = join(ROOT, 'test/fixtures/reference');
const D = mkdtempSync(join(tmpdir(), 'convnextv2-cli-errors-'));
const f = (name: string) => join(D, name);
const FCMAE_PT = join(FIX, 'fcmae_small_official.pt');
/** A tiny model for the training commands: their errors come before any real work. */
const TINY = ['--depths', '1,1,1,1', '--dims', '8,16,24,32'];

interface Row {
  args: string[];
  code: 1 | 2;
  /** Matched against the one stderr line (after `convnextv2: `). */
  message: RegExp;
  env?: Record<string, string>;
  /** Run before each of the two runs (plain and --json). */
  setup?: () => void;
  /** What the command prints on stdout before failing (default: nothing). */
  out?: RegExp;
  /** Lines allowed on stderr before the error (warnings about skipped inputs). */
  warnings?: RegExp;
}

before(async () => {
  const tiny = async (numClasses: number, block: 'v1' | 'v2' = 'v2') => {
    const config = makeConfig({ depths: [1, 1, 1, 1], dims: [8, 16, 24, 32] }, { numClasses, block });
    return { config, state: await new ConvNeXtV2(config, { kernels: cpu, seed: 1 }).stateDict() };
  };
  saveCheckpoint(f('k10.safetensors'), { ...(await tiny(10)), metadata: { input_size: '64' } });
  saveCheckpoint(f('k3.safetensors'), { ...(await tiny(3)), metadata: { input_size: '64' } });
  saveCheckpoint(f('backbone.safetensors'), { ...(await tiny(0)), metadata: { input_size: '64' } });
  saveCheckpoint(f('v1.safetensors'), await tiny(10, 'v1'));
  saveCheckpoint(f('args-notjson.safetensors'), { ...(await tiny(10)), metadata: { args: 'not json' } });
  saveCheckpoint(f('args-seed.safetensors'), { ...(await tiny(10)), metadata: { args: JSON.stringify({ seed: 0 }) } });
  writeFileSync(f('text.safetensors'), 'this is not a safetensors file at all');
  writeSafetensors(f('foo.safetensors'), [['foo', { shape: [2], data: new Float32Array(2) }]]);
  // timm's names, one tensor of the wrong shape.
  const timm = [...readSafetensors(join(FIX, 'small_timm.safetensors'))].filter(([k]) => k.startsWith('param.')).map(([k, v]) => [k.slice(6), v] as const);
  writeSafetensors(f('wrongshape.safetensors'), timm.map(([k, v]) => [k, k === 'stages.1.blocks.0.mlp.fc2.bias' ? { shape: [31], data: new Float32Array(31) } : v] as const));
  mkdirSync(f('emptydir'));
  writeFileSync(f('file.txt'), 'x');
  const png = await sharp({ create: { width: 40, height: 40, channels: 3, background: { r: 200, g: 10, b: 10 } } }).png().toBuffer();
  writeFileSync(f('img.png'), png);
  writeFileSync(f('bad.jpg'), 'not a jpeg');
  // Data folders: none of class folders; a class folder without images; no val/; a val class not in train; only unreadable images.
  mkdirSync(f('noclasses'));
  mkdirSync(f('emptyclass/a'), { recursive: true });
  for (const c of ['a', 'b']) {
    mkdirSync(f(`noval/${c}`), { recursive: true });
    writeFileSync(f(`noval/${c}/1.png`), png);
    mkdirSync(f(`corrupt/${c}`), { recursive: true });
    writeFileSync(f(`corrupt/${c}/1.jpg`), 'not a jpeg');
  }
  mkdirSync(f('valextra/train/a'), { recursive: true });
  writeFileSync(f('valextra/train/a/1.png'), png);
  mkdirSync(f('valextra/val/b'), { recursive: true });
  writeFileSync(f('valextra/val/b/1.png'), png);
  // Inputs of forward and fcmae-loss (fcmae_small: patch 32, so 64x64 images have 4 patches).
  const zeros = (shape: number[]) => ({ shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
  writeSafetensors(f('in-ok.safetensors'), [['pixel_values', zeros([1, 3, 64, 64])]]);
  writeSafetensors(f('in-nopix.safetensors'), [['x', zeros([1, 3, 64, 64])]]);
  writeSafetensors(f('in-rank3.safetensors'), [['pixel_values', zeros([3, 64, 64])]]);
  writeSafetensors(f('in-1ch.safetensors'), [['pixel_values', zeros([1, 1, 64, 64])]]);
  writeSafetensors(f('in-16px.safetensors'), [['pixel_values', zeros([1, 3, 16, 16])]]);
  writeSafetensors(f('fc-rank3.safetensors'), [['pixel_values', zeros([3, 64, 64])], ['mask', zeros([1, 4])]]);
  writeSafetensors(f('fc-maskshape.safetensors'), [['pixel_values', zeros([1, 3, 64, 64])], ['mask', zeros([1, 5])]]);
  const half = zeros([1, 4]);
  half.data[0] = 0.5;
  writeSafetensors(f('fc-maskvalues.safetensors'), [['pixel_values', zeros([1, 3, 64, 64])], ['mask', half]]);
  writeFileSync(f('labels-badjson.json'), '[oops');
  writeFileSync(f('labels-numbers.json'), '[1, 2]');
  writeFileSync(f('labels-two.txt'), 'a\nb\n');
});

after(() => rmSync(D, { recursive: true, force: true }));

const K10 = f('k10.safetensors');
const FWD = (ck: string, input = f('in-ok.safetensors')) => ['forward', '--checkpoint', ck, '--input', input, '--output', f('out.safetensors')];
const FCL = (input: string, ck = FCMAE_PT) => ['fcmae-loss', '--checkpoint', ck, '--input', input, '--output', f('out.safetensors')];
const EVAL = (...more: string[]) => ['eval', '--checkpoint', K10, '--data', 'synthetic', ...more];
const PRE = (out: string, ...more: string[]) => ['pretrain', '--out', f(out), ...TINY, '--data', 'synthetic', '--workers', '0', ...more];
const FT = (out: string, ...more: string[]) => ['finetune', '--out', f(out), ...TINY, '--data', 'synthetic', '--workers', '0', ...more];
const AN = (...more: string[]) => ['analyze', '--checkpoint', K10, '--data', 'synthetic', '--out', f('analysis'), ...more];
/** The usage error of a training or analysis command without --data (the synthetic set only by name). */
const NO_DATA = (cmd: string) => new RegExp(`^${cmd}: missing --data: name the images \\(a folder of class folders, fashion-mnist\\[:DIR\\] or cifar10:DIR\\), or --data synthetic for the embedded synthetic set$`);
const CONV = (to: string, output: string, ...more: string[]) => ['convert', '--checkpoint', K10, '--to', to, '--output', output, ...more];
const PNG = f('img.png');

const ROWS: Row[] = [
  // ---- main.ts: commands, stray arguments, environment
  { args: ['nonsense'], code: 2, message: /^unknown command 'nonsense' \(see 'convnextv2 --help'\)$/ },
  { args: ['fintune'], code: 2, message: /^unknown command 'fintune' \(did you mean 'finetune'\? see 'convnextv2 --help'\)$/ },
  { args: ['evall'], code: 2, message: /^unknown command 'evall' \(did you mean 'eval'\? see 'convnextv2 --help'\)$/ },
  { args: ['help', 'eval', 'predict'], code: 2, message: /^help: give one command, got '.*eval predict'$/ },
  { args: ['inspect', 'stray.safetensors'], code: 2, message: /^inspect: unexpected argument 'stray\.safetensors' \(flags start with --; see 'convnextv2 help inspect'\)$/ },
  { args: ['inspect', '--', '--checkpoint', K10], code: 2, message: /^inspect: unexpected argument '--checkpoint'/ },
  { args: ['info'], env: { CONVNEXTV2_THREADS: 'abc' }, code: 2, message: /^CONVNEXTV2_THREADS=abc: must be a positive integer$/ },
  { args: ['info'], env: { CONVNEXTV2_ISA: 'bogus' }, code: 2, message: /^CONVNEXTV2_ISA: unknown ISA 'bogus' \(expected avx512, avx2 or portable\)$/ },
  { args: ['info'], env: { CONVNEXTV2_KERNELS: 'bogus' }, code: 2, message: /^CONVNEXTV2_KERNELS=bogus: unknown kernels \(use native, reference, wasm or webgpu/ },
  { args: ['info', '--threads', '0'], code: 2, message: /^--threads must be a positive integer$/ },

  // ---- args.ts: the flag parser
  { args: ['forward', '--bogus'], code: 2, message: /^forward: unknown flag --bogus \(see 'convnextv2 forward --help'\)$/ },
  { args: ['finetune', '--epoch', '3'], code: 2, message: /^finetune: unknown flag --epoch \(did you mean --epochs\? see 'convnextv2 finetune --help'\)$/ },
  { args: ['finetune', '--epcohs', '3'], code: 2, message: /^finetune: unknown flag --epcohs \(did you mean --epochs\? see 'convnextv2 finetune --help'\)$/ },
  { args: ['predict', '--topk', '3'], code: 2, message: /^predict: unknown flag --topk \(did you mean --top-k\? see 'convnextv2 predict --help'\)$/ },
  { args: ['forward', '--ema=yes'], code: 2, message: /^forward: --ema takes no value$/ },
  { args: ['forward', '--checkpoint'], code: 2, message: /^forward: --checkpoint needs a value$/ },
  { args: ['bench', '--batch-size', '1.5'], code: 2, message: /^bench: --batch-size expects an integer, got '1\.5'$/ },
  { args: ['eval', '--crop-pct', 'abc'], code: 2, message: /^eval: --crop-pct expects a number, got 'abc'$/ },
  { args: ['eval', '--crop-pct='], code: 2, message: /^eval: --crop-pct expects a number, got ''$/ },
  { args: ['forward'], code: 2, message: /^forward: missing --checkpoint$/ },
  { args: ['inspect', '--checkpoint='], code: 2, message: /^inspect: missing --checkpoint$/ },
  { args: ['predict', '--checkpoint', '--top-k', '3'], code: 2, message: /^predict: --checkpoint needs a value \(got the flag --top-k; write --checkpoint=--top-k for a value that starts with --\)$/ },

  // ---- checkpoints (src/io, through any command)
  { args: FWD(f('nosuch.safetensors')), code: 1, message: /^checkpoint .*nosuch\.safetensors: no such file or directory$/ },
  { args: ['inspect', '--checkpoint', f('text.safetensors')], code: 1, message: /^.*text\.safetensors: is a text file, not a safetensors file$/ },
  { args: ['inspect', '--checkpoint', f('emptydir')], code: 1, message: /^checkpoint .*emptydir: the directory holds none of model\.safetensors, .*checkpoint-last\.safetensors$/ },
  { args: ['inspect', '--checkpoint', PNG], code: 1, message: /^checkpoint .*img\.png: is a PNG image, not a checkpoint \(safetensors, a torch\.save/ },
  { args: ['inspect', '--checkpoint', f('foo.safetensors')], code: 1, message: /^checkpoint .*foo\.safetensors: cannot recognise the parameter names .*; first names: foo$/ },
  { args: ['inspect', '--checkpoint', join(FIX, 'small_timm.safetensors')], code: 1, message: /^checkpoint .*small_timm\.safetensors: unexpected tensors grad\.R, .* \(read as timm naming/ },
  { args: ['inspect', '--checkpoint', f('wrongshape.safetensors')], code: 1, message: /^checkpoint .*wrongshape\.safetensors: .*stages\.1\.blocks\.0\.mlp\.fc2\.bias/ },
  { args: [...FWD(K10), '--ema'], code: 1, message: /^checkpoint .*k10\.safetensors: holds no EMA weights \(ema\.\*\)$/ },
  { args: [...FWD(join(FIX, 'small_timm.safetensors')), '--ema'], code: 1, message: /^checkpoint .*small_timm\.safetensors: EMA weights are read from convnextv2 checkpoints \(ema\.\*\) and \.pt files \(model_ema\) only$/ },
  { args: [...FWD(join(FIX, 'small_official.pt')), '--ema'], code: 1, message: /^checkpoint .*small_official\.pt: holds no EMA weights \(no "model_ema" entry\)$/ },
  { args: ['inspect', '--checkpoint', 'hf-hub:not a repo'], code: 2, message: /^hf-hub:not a repo: not a Hugging Face repository id \(hf-hub:ORG\/NAME\[@REVISION\]\)$/ },
  {
    args: ['inspect', '--checkpoint', 'facebook/convnextv2-atto-1k-224'], env: { HF_HUB_OFFLINE: '1', HF_HUB_CACHE: f('hf-cache') }, code: 1,
    message: /^facebook\/convnextv2-atto-1k-224: not a local path, and facebook\/convnextv2-atto-1k-224 is not in the Hugging Face cache .*hf-cache \(HF_HUB_OFFLINE is set/,
  },

  // ---- forward
  { args: FWD(K10, f('nosuch.safetensors')), code: 1, message: /^.*nosuch\.safetensors: no such file$/ },
  { args: FWD(K10, PNG), code: 1, message: /^.*img\.png: is a PNG image, not a safetensors file/ },
  { args: FWD(K10, f('in-nopix.safetensors')), code: 1, message: /^.*in-nopix\.safetensors: no tensor named pixel_values \(found: x\)$/ },
  { args: FWD(K10, f('in-rank3.safetensors')), code: 1, message: /^.*in-rank3\.safetensors: pixel_values must have rank 4 \[N, C, H, W\], got \[3,64,64\]$/ },
  { args: FWD(K10, f('in-1ch.safetensors')), code: 1, message: /^.*in-1ch\.safetensors: pixel_values: input has 1 channels, the model expects 3$/ },
  { args: FWD(K10, f('in-16px.safetensors')), code: 1, message: /^.*in-16px\.safetensors: pixel_values: input is 16x16; ConvNeXt V2 needs at least 32x32$/ },
  { args: ['forward', '--checkpoint', K10, '--input', f('in-ok.safetensors'), '--output', f('emptydir')], code: 1, message: /^cannot write .*emptydir: EISDIR/ },

  // ---- fcmae-loss
  { args: [...FCL(f('fc-rank3.safetensors')), '--grn-stats', 'global'], code: 2, message: /^fcmae-loss: --grn-stats must be batch or per-sample$/ },
  { args: FCL(f('in-ok.safetensors'), K10), code: 1, message: /^checkpoint .*k10\.safetensors: holds no FCMAE decoder \(fcmae\.\* tensors\); it is not an FCMAE checkpoint$/ },
  { args: FCL(f('in-ok.safetensors')), code: 1, message: /^.*in-ok\.safetensors: needs tensors pixel_values and mask \(found: pixel_values\)$/ },
  { args: FCL(f('fc-rank3.safetensors')), code: 1, message: /^.*fc-rank3\.safetensors: pixel_values must have rank 4 \[N, C, H, W\], got \[3,64,64\]$/ },
  { args: FCL(f('fc-maskshape.safetensors')), code: 1, message: /^.*fc-maskshape\.safetensors: mask must be \[1, 4\] for 64x64 images and patch 32, got \[1,5\]$/ },
  { args: FCL(f('fc-maskvalues.safetensors')), code: 1, message: /^.*fc-maskvalues\.safetensors: mask values must be 0 \(visible\) or 1 \(removed\)$/ },

  // ---- predict, embed, --labels
  { args: ['predict', '--checkpoint', K10], code: 2, message: /^no images given \(files, folders or globs such as "photos\/\*\.jpg"\)$/ },
  { args: ['predict', '--checkpoint', K10, f('emptydir')], code: 2, message: /^.*emptydir: a folder with no images in it \(jpg, jpeg, png, webp, gif, tif, tiff, avif, searched recursively\)$/ },
  { args: ['predict', '--checkpoint', K10, '--csv', f('emptydir'), PNG], code: 2, message: /^predict: --csv .*emptydir is a directory; give a file name$/ },
  { args: ['predict', '--checkpoint', K10, '--csv', f('no/such/p.csv'), PNG], code: 2, message: /^predict: --csv .*p\.csv: the folder .*no\/such does not exist$/ },
  { args: ['embed', '--checkpoint', K10, '--output', f('emptydir'), PNG], code: 2, message: /^embed: --output .*emptydir is a directory; give a file name$/ },
  { args: ['predict', '--checkpoint', K10, f('emptydir/*.png')], code: 2, message: /^.*emptydir\/\*\.png: matches no file$/ },
  { args: ['predict', '--checkpoint', K10, f('bad.jpg')], code: 1, message: /^cannot decode image .*bad\.jpg: (not an image|truncated or corrupt)/ },
  { args: ['predict', '--checkpoint', f('backbone.safetensors'), PNG], code: 1, message: /^checkpoint .*backbone\.safetensors: has no classifier head; use 'convnextv2 embed' for features$/ },
  { args: ['predict', '--checkpoint', K10, '--top-k', '0', PNG], code: 2, message: /^predict: --top-k 0: must be a positive integer$/ },
  { args: ['predict', '--checkpoint', K10, '--labels', f('labels-badjson.json'), PNG], code: 1, message: /^--labels .*labels-badjson\.json: not valid JSON$/ },
  { args: ['predict', '--checkpoint', K10, '--labels', f('labels-numbers.json'), PNG], code: 1, message: /^--labels .*labels-numbers\.json: expected a JSON array of names or an object of index -> name$/ },
  { args: ['predict', '--checkpoint', K10, '--labels', f('labels-two.txt'), PNG], code: 1, message: /^--labels .*labels-two\.txt: 2 names for a model with 10 classes$/ },
  { args: ['embed', '--checkpoint', K10, '--output', f('no/such/e.safetensors'), PNG], code: 2, message: /^embed: --output .*e\.safetensors: the folder .*no\/such does not exist$/ },

  // ---- eval and the data sets (src/data)
  { args: EVAL('--split', 'train'), code: 2, message: /^eval: --split must be val or test, got 'train'$/ },
  { args: ['eval', '--checkpoint', f('backbone.safetensors'), '--data', 'synthetic'], code: 1, message: /^checkpoint .*backbone\.safetensors: has no classifier head \(a backbone or FCMAE checkpoint\); fine-tune it first$/ },
  { args: EVAL('--limit', '0'), code: 2, message: /^eval: --limit 0: must be a positive integer$/ },
  { args: ['eval', '--checkpoint', f('k3.safetensors'), '--data', 'synthetic'], code: 1, message: /^eval: the checkpoint has 3 classes, synthetic .* has 10$/ },
  { args: EVAL('--input-size', '16'), code: 2, message: /^--input-size 16: must be an integer of at least 32/ },
  { args: EVAL('--crop-pct', '0'), code: 2, message: /^--crop-pct 0: must be in \(0, 1\]$/ },
  { args: EVAL('--batch-size', '0'), code: 2, message: /^eval: --batch-size 0: must be a positive integer$/ },
  { args: EVAL('--labels', f('nosuch.txt')), code: 1, message: /^--labels .*nosuch\.txt: cannot read it$/ },
  { args: ['eval', '--checkpoint', K10, '--data', f('nosuch')], code: 1, message: /^.*nosuch: no such folder \(a data set spec is a folder of class folders, fashion-mnist\[:DIR\], cifar10:DIR or synthetic\[:SIZE\]\)$/ },
  { args: ['eval', '--checkpoint', K10, '--data', PNG], code: 1, message: /^.*img\.png: is a file, not a folder/ },
  { args: ['eval', '--checkpoint', K10, '--data', f('noclasses')], code: 1, message: /^.*noclasses: no class folders \(expected DIR\/<class>\/<image> or DIR\/train\/<class>\/<image>\)$/ },
  { args: ['eval', '--checkpoint', K10, '--data', f('emptyclass'), '--val-split', '0.5'], code: 1, message: /^.*emptyclass: no images \(\.jpg, \.jpeg, \.png, \.webp\) in class folders$/ },
  { args: ['eval', '--checkpoint', K10, '--data', f('valextra')], code: 1, message: /^.*valextra\/val\/b: class folder not present in the training folder$/ },
  { args: ['eval', '--checkpoint', K10, '--data', f('noval')], code: 2, message: /^.*noval: no validation part \(no val\/ folder\); carve one out of train with --val-split$/ },
  { args: ['eval', '--checkpoint', K10, '--data', f('noval'), '--val-split', '0.9'], code: 2, message: /^val split 0\.9 of 2 images leaves an empty part$/ },
  { args: EVAL('--val-split', '2'), code: 2, message: /^eval: --val-split 2: must be in \[0, 1\)$/ },
  { args: ['eval', '--checkpoint', K10, '--data', 'synthetic:4'], code: 2, message: /^synthetic:4: image size must be an integer in \[8, 4096\]$/ },
  { args: ['eval', '--checkpoint', K10, '--data', 'cifar10:'], code: 2, message: /^cifar10 needs a folder: cifar10:DIR$/ },
  { args: ['eval', '--checkpoint', K10, '--data', 'mnist:'], code: 2, message: /^mnist needs a folder: mnist:DIR$/ },
  { args: ['eval', '--checkpoint', K10, '--data', `cifar10:${f('nosuch')}`], code: 1, message: /^.*nosuch: no such folder$/ },
  { args: ['eval', '--checkpoint', K10, '--data', `cifar10:${f('emptydir')}`], code: 1, message: /^.*emptydir: missing test_batch\.bin \(expected the CIFAR-10 binary version\)$/ },
  { args: ['eval', '--checkpoint', K10, '--data', `fashion-mnist:${f('emptydir')}`], code: 1, message: /^.*emptydir: missing t10k-images-idx3-ubyte\(\.gz\)$/ },

  // ---- bench
  { args: ['bench', '--mode', 'nope'], code: 2, message: /^bench: --mode must be infer, train, pretrain or kernels, got 'nope'$/ },
  { args: ['bench', '--batch-size', '0'], code: 2, message: /^bench: --batch-size must be at least 1$/ },
  { args: ['bench', '--input-size', '16'], code: 2, message: /^bench: --input-size must be at least 32$/ },
  { args: ['bench', '--model', 'huge2'], code: 2, message: /^--model huge2: unknown size \(one of atto, femto, pico, nano, tiny, base, large, huge; or --depths and --dims\)$/ },
  { args: ['bench', '--mode', 'kernels', '--peak', '0'], code: 2, message: /^bench: --peak must be positive$/ },
  { args: ['bench', '--mode', 'kernels'], env: { CONVNEXTV2_KERNELS: 'reference' }, code: 1, message: /^bench: --mode kernels needs the native addon \(npm run build\)$/ },
  { args: ['bench', '--mode', 'pretrain', '--input-size', '48', '--batch-size', '1'], code: 2, message: /^bench: --mode pretrain needs --input-size a multiple of 32$/ },

  // ---- convert
  { args: CONV('keras', f('o.safetensors')), code: 2, message: /^convert: --to must be one of ours, timm, hf, official, onnx, got 'keras'$/ },
  { args: CONV('official', f('o.pt'), '--format', 'onnx'), code: 2, message: /^convert: --format onnx does not apply to --to official \(use pt or safetensors\)$/ },
  { args: CONV('ours', f('o.safetensors'), '--conv-mlp'), code: 2, message: /^convert: --conv-mlp applies to --to timm only$/ },
  { args: CONV('ours', f('o.safetensors'), '--opset', '18'), code: 2, message: /^convert: --opset and --external-data apply to --to onnx only$/ },
  { args: CONV('onnx', f('o.onnx'), '--opset', '5'), code: 2, message: /^convert: --opset 5: must be 17 to 23$/ },
  { args: CONV('ours', f('emptydir')), code: 1, message: /^convert: --output .*emptydir is a directory; give a file name$/ },
  { args: CONV('hf', f('file.txt')), code: 1, message: /^convert: --output .*file\.txt is a file; --to hf writes a directory$/ },
  { args: CONV('ours', f('no/such/x.safetensors')), code: 1, message: /^convert: --output .*no\/such\/x\.safetensors: the folder .*no\/such does not exist$/ },
  { args: ['convert', '--checkpoint', f('v1.safetensors'), '--to', 'hf', '--output', f('v1-hf')], code: 1, message: /^cannot export to .*v1-hf: Hugging Face's ConvNextV2 has no ConvNeXt V1 blocks \(LayerScale\); use timm or official naming$/ },

  // ---- run folders (runlog.ts), through pretrain and finetune
  { args: ['pretrain'], code: 2, message: /^pretrain: missing --out$/ },
  { args: PRE('file.txt'), code: 2, message: /^--out .*file\.txt: not a folder$/ },
  {
    args: PRE('held'), code: 2, setup: () => { mkdirSync(f('held'), { recursive: true }); writeFileSync(f('held/log.jsonl'), '{"epoch":1}\n'); },
    message: /^pretrain: --out .*held already holds a run \(log\.jsonl\): --resume continues it, --overwrite starts it over$/,
  },
  { args: PRE('p-new', '--resume', '--overwrite'), code: 2, message: /^pretrain: --resume and --overwrite contradict each other$/ },
  { args: PRE('p-new', '--resume'), code: 1, message: /^pretrain: nothing to resume: .*p-new\/checkpoint-last\.safetensors does not exist$/ },
  { args: FT('f-new', '--resume', f('args-notjson.safetensors')), code: 1, message: /^finetune: .*args-notjson\.safetensors: its recorded arguments are not JSON$/ },
  {
    args: ['finetune', '--out', f('f-new'), '--resume', f('args-seed.safetensors'), '--seed', '5'], code: 2,
    message: /^finetune: --seed 5 contradicts the run being resumed \(.*args-seed\.safetensors was started with 0\): drop the flag, or start a new run with another --out$/,
  },

  // ---- pretrain
  { args: PRE('p-new', '--resume', K10), code: 1, message: /^pretrain: .*k10\.safetensors is not an FCMAE checkpoint \(no fcmae\.\* tensors\)$/ },
  { args: PRE('p-new', '--resume', FCMAE_PT), code: 1, message: /^pretrain: .*fcmae_small_official\.pt has no epoch\/step metadata$/ },
  { args: PRE('p-new', '--grn-stats', 'x'), code: 2, message: /^pretrain: --grn-stats must be batch or per-sample, got 'x'$/ },
  { args: PRE('p-new', '--fcmae-init', 'x'), code: 2, message: /^pretrain: --fcmae-init must be official or timm, got 'x'$/ },
  { args: PRE('p-new', '--epochs', '0'), code: 2, message: /^pretrain: --epochs, --batch-size and --update-freq must be positive$/ },
  { args: PRE('p-new', '--input-size', '48'), code: 2, message: /^pretrain: --input-size 48 must be a positive multiple of 32$/ },
  { args: PRE('p-new', '--mask-ratio', '1'), code: 2, message: /^pretrain: --mask-ratio 1: must be in \[0, 1\) and leave at least one of the 49 patches of 224 px visible$/ },
  { args: PRE('p-new', '--input-size', '32', '--mask-ratio', '0.5'), code: 2, message: /^pretrain: --mask-ratio 0\.5: must be in \[0, 1\) and leave at least one of the 1 patches of 32 px visible$/ },
  { args: PRE('p-new', '--limit', '0'), code: 2, message: /^pretrain: --limit 0: must be a positive integer$/ },
  { args: PRE('p-new', '--vis-images', '0'), code: 2, message: /^pretrain: --vis-images 0: must be a positive integer$/ },
  { args: PRE('p-new', '--save-every', '0'), code: 2, message: /^pretrain: --save-every 0: must be a positive integer$/ },
  { args: PRE('p-new', '--decoder-embed-dim', '0'), code: 2, message: /^pretrain: --decoder-embed-dim 0: must be a positive integer$/ },
  { args: PRE('p-new', '--decoder-depth', '-1'), code: 2, message: /^pretrain: --decoder-depth -1: must not be negative$/ },
  { args: PRE('p-new', '--block', 'v3'), code: 2, message: /^--block must be v2 or v1, got 'v3'$/ },
  { args: ['pretrain', '--out', f('p-new'), '--data', 'synthetic', '--depths', '1,1,1'], code: 2, message: /^--depths needs four integers, e\.g\. 2,2,6,2$/ },
  { args: ['pretrain', '--out', f('p-new'), '--data', 'synthetic', '--depths', '1,1,1,1'], code: 2, message: /^--dims needs four integers, e\.g\. 2,2,6,2$/ },
  { args: ['pretrain', '--out', f('p-new'), '--data', 'synthetic', '--depths', '1,1,1,1', '--dims', '0,8,8,8'], code: 2, message: /^invalid model config: dim 0 is not a positive integer$/ },
  { args: PRE('p-new', '--limit', '4', '--batch-size', '8'), code: 1, message: /^pretrain: 4 training images make no batch of 8$/ },
  {
    // A learning rate of 1e30 overflows at the second step: the run stops at once, saying no checkpoint exists.
    args: PRE('p-nan', '--decoder-embed-dim', '8', '--input-size', '64', '--batch-size', '2', '--limit', '8', '--vis-images', '1', '--lr', '1e30', '--epochs', '1', '--warmup-epochs', '0', '--quiet'),
    code: 1, out: /^pretrain: FCMAE 1,1,1,1\/8,16,24,32 decoder 1x8, /,
    message: /^pretrain: loss is NaN at epoch 1, step 2; stopping \(no checkpoint was written yet in .*p-nan; try a lower --blr or more --warmup-epochs\)$/,
  },

  // ---- finetune
  { args: FT('f-new', '--resume', FCMAE_PT), code: 2, message: /^finetune: .*fcmae_small_official\.pt is a pre-training checkpoint, not a fine-tuning run: start from it with --init .*fcmae_small_official\.pt/ },
  { args: FT('f-new', '--layer-decay-type', 'x'), code: 2, message: /^finetune: --layer-decay-type must be single or group$/ },
  { args: FT('f-new', '--mixup-mode', 'elem'), code: 2, message: /^finetune: --mixup-mode elem is not supported \(batch only\)$/ },
  { args: FT('f-new', '--opt-betas', '0.9'), code: 2, message: /^finetune: --opt-betas needs two numbers in \[0, 1\), e\.g\. 0\.9,0\.999$/ },
  { args: FT('f-new', '--limit', '0'), code: 2, message: /^finetune: --limit 0: must be a positive integer$/ },
  { args: FT('f-new', '--val-limit', '0'), code: 2, message: /^finetune: --val-limit 0: must be a positive integer$/ },
  { args: FT('f-new', '--model-ema', '--model-ema-decay', '2'), code: 2, message: /^finetune: --model-ema-decay 2: must be in \[0, 1\)$/ },
  { args: FT('f-new', '--batch-size', '0'), code: 2, message: /^finetune: --epochs, --batch-size and --update-freq must be positive$/ },
  { args: FT('f-new', '--recipe', 'mega'), code: 2, message: /^finetune: unknown --recipe 'mega' \(one of atto, femto, / },
  { args: FT('f-new', '--data='), code: 2, message: NO_DATA('finetune') },
  { args: ['finetune', '--out', f('f-new'), ...TINY], code: 2, message: NO_DATA('finetune') },
  { args: ['pretrain', '--out', f('p-new'), ...TINY], code: 2, message: NO_DATA('pretrain') },
  { args: ['eval', '--checkpoint', K10], code: 2, message: NO_DATA('eval') },
  { args: ['analyze', '--checkpoint', K10, '--out', f('analysis')], code: 2, message: NO_DATA('analyze') },
  { args: FT('f-new', '--val-split', '1'), code: 2, message: /^finetune: --val-split 1: must be in \[0, 1\)$/ },
  { args: FT('f-new', '--data', f('noval')), code: 2, message: /^.*noval: no validation part \(no val\/ folder\); carve one out of train with --val-split$/ },
  { args: FT('f-new', '--init', f('nosuch.safetensors')), code: 1, message: /^checkpoint .*nosuch\.safetensors: no such file or directory$/ },
  { args: ['finetune', '--out', f('f-new'), '--data', 'synthetic', '--init', K10, '--block', 'v1'], code: 2, message: /^finetune: --block v1 but .*k10\.safetensors holds v2 blocks$/ },
  { args: FT('f-new', '--drop-path', '1'), code: 2, message: /^finetune: --drop-path 1: must be in \[0, 1\)$/ },
  { args: FT('f-new', '--limit', '4', '--batch-size', '8'), code: 1, message: /^finetune: 4 training images make no batch of 8$/ },
  {
    args: FT('f-nan', '--input-size', '32', '--batch-size', '2', '--limit', '4', '--val-limit', '2', '--lr', '1e30', '--epochs', '1', '--warmup-epochs', '0', '--aa', 'none', '--reprob', '0', '--quiet'),
    code: 1, out: /^finetune: ConvNeXt V2 1,1,1,1\/8,16,24,32, 10 classes, from scratch; /,
    message: /^finetune: loss is NaN at epoch 1, step 2; stopping \(no checkpoint was written yet in .*f-nan\)$/,
  },

  // ---- analyze
  { args: ['analyze'], code: 2, message: /^analyze: missing --checkpoint$/ },
  { args: AN('--label', 'a', '--label', 'b'), code: 2, message: /^analyze: 2 --label values for 1 checkpoints$/ },
  { args: AN('--checkpoint', K10), code: 2, message: /^analyze: labels must differ \(k10, k10\); give --label for each checkpoint$/ },
  { args: AN('--images', '0'), code: 2, message: /^analyze: --images, --batch-size and --map-channels must be positive, --map-images not negative$/ },
  { args: AN('--input-size', '16'), code: 2, message: /^analyze: --input-size 16 must be an integer of at least 32$/ },
  { args: AN('--layer', '9.9'), code: 2, message: /^--layer '9\.9': no such block \(give S\.B, stages\.S\.blocks\.B or an index 0\.\.3; blocks: 0\.0, 1\.0, 2\.0, 3\.0\)$/ },
  { args: AN('--split', 'bogus'), code: 2, message: /^analyze: --split must be train, val or test, got 'bogus'$/ },
  {
    args: AN('--data', f('corrupt'), '--split', 'train', '--workers', '0'), code: 1,
    warnings: /^convnextv2: warning: skipping unreadable image .*corrupt\/[ab]\/1\.jpg: /, out: /^analyze: 1 checkpoint on ImageFolder .*corrupt/,
    message: /^analyze: no readable images in ImageFolder .*corrupt/,
  },

  // ---- demo: its own flags, checked before any work
  { args: ['demo', '--out', f('demo'), '--pretrain-epochs', '0'], code: 2, message: /^demo: --pretrain-epochs 0: must be at least 1$/ },
  { args: ['demo', '--out', f('demo'), '--labelled', '10'], code: 2, message: /^demo: --labelled 10: must be at least 32 \(the batch size\)$/ },
];

const shown = (args: string[]) => args.map((a) => a.split(D).join('$TMP').split(ROOT).join('')).join(' ');
function rowName(r: Row): string {
  const env = Object.entries(r.env ?? {}).map(([k, v]) => `${k}=${v.split(D).join('$TMP')} `).join('');
  return `exit ${r.code}: ${env}convnextv2 ${shown(r.args)}`;
}

/** The environment of every run: no inherited setting that would change which error comes first. */
const BASE_ENV: NodeJS.ProcessEnv = { ...process.env, CONVNEXTV2_DEBUG: '' };
for (const k of ['CONVNEXTV2_THREADS', 'CONVNEXTV2_ISA', 'CONVNEXTV2_KERNELS', 'HF_HUB_OFFLINE']) delete BASE_ENV[k];

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [MAIN, ...args], { cwd: D, env: { ...BASE_ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
    p.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Checks one run and returns its error line. */
function checkRun(row: Row, r: { code: number | null; stdout: string; stderr: string }, json: boolean): string {
  const what = `${json ? '--json ' : ''}run:\n--- stderr\n${r.stderr}--- stdout\n${r.stdout}---`;
  assert.equal(r.code, row.code, `exit code; ${what}`);
  assert.doesNotMatch(r.stderr + r.stdout, /\n\s+at |^\s+at .*:\d+:\d+\)?$/m, `no stack trace; ${what}`);
  const errLines = r.stderr.trim().split('\n');
  const line = errLines[errLines.length - 1];
  const before = errLines.slice(0, -1);
  if (row.warnings) {
    assert.ok(before.length > 0, `warnings expected; ${what}`);
    for (const w of before) assert.match(w, row.warnings, `a stderr line before the error; ${what}`);
  } else {
    assert.equal(errLines.length, 1, `one line on stderr; ${what}`);
  }
  assert.match(line, /^convnextv2: /, `the prefix; ${what}`);
  assert.match(line.slice('convnextv2: '.length), row.message, `the message; ${what}`);
  const outLines = r.stdout.split('\n').filter((l) => l !== '');
  const printed = json ? outLines.slice(0, -1) : outLines;
  if (row.out) {
    assert.ok(printed.length > 0, `stdout before the error; ${what}`);
    for (const l of printed) assert.match(l, row.out, `stdout before the error; ${what}`);
  } else {
    assert.deepEqual(printed, [], `nothing on stdout; ${what}`);
  }
  if (json) {
    assert.ok(r.stdout.endsWith('\n'), `stdout ends with a newline; ${what}`);
    const last = JSON.parse(outLines[outLines.length - 1] ?? 'null') as unknown;
    assert.deepEqual(last, { error: line, exit_code: row.code }, `the JSON error record; ${what}`);
  }
  return line;
}

describe('CLI error table: exit code, one line convnextv2: <message>, no stack; the same with --json', { concurrency: 2 }, () => {
  it('the table has no duplicate rows', () => {
    const seen = new Set<string>();
    for (const r of ROWS) {
      const key = JSON.stringify([r.args, r.env ?? {}]);
      assert.ok(!seen.has(key), `duplicate row ${rowName(r)}`);
      seen.add(key);
    }
  });
  for (const row of ROWS) {
    it(rowName(row), async () => {
      row.setup?.();
      const line = checkRun(row, await run(row.args, row.env), false);
      // --json right after the command name: before any flag that takes a value, and before a bare --.
      const jsonArgs = [row.args[0], '--json', ...row.args.slice(1)];
      row.setup?.();
      const jline = checkRun(row, await run(jsonArgs, row.env), true);
      // The same line, but for the names of temporary files (.NAME.PID.HEX.tmp) and help's echo of its arguments.
      const tmp = (l: string) => l.replace(/\.[^/\s']+\.\d+\.[0-9a-f]+\.tmp/g, '.TMP');
      if (row.args[0] !== 'help') assert.equal(tmp(jline), tmp(line), 'the same error with --json');
    });
  }
});
