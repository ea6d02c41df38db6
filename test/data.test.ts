/**
 * The data layer: data sets (ImageFolder, IDX, CIFAR-10, synthetic), Pillow-exact resampling
 * and RandAugment ops (CRC-32 of Pillow 9.4 outputs, generated once with python3-pil),
 * transforms, the prefetching loader's determinism, mixup/cutmix, PNG output and plots.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { Rng } from '../src/rng.js';
import { ConvNextError } from '../src/errors.js';
import { openDataset, parseIdx, stratifiedIndices, FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, type Dataset } from '../src/data/dataset.js';
import { CorruptImageError, type Image } from '../src/data/image.js';
import { resizeRgb } from '../src/data/resample.js';
import {
  randomResizedCrop, randomResizedCropParams, evalResize, evalTransform, toNormalizedCHW, fromNormalizedCHW,
  hflip, randomErasing, roundHalfEven, compileTransform, resizeShortSide,
} from '../src/data/transforms.js';
import { applyOp, parseRandAugment, randAugment, type RandAugmentOp } from '../src/data/randaugment.js';
import { DataLoader, sampleSeed, type Batch } from '../src/data/loader.js';
import { Mixup, mixupTarget, sampleBeta } from '../src/data/mixup.js';
import { crc32, encodePng } from '../src/viz/png.js';
import { writePng } from '../src/viz/png_file.js';
import { Canvas } from '../src/viz/canvas.js';
import { linePlot, imageGrid, niceTicks } from '../src/viz/plot.js';

const tmpRoot = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'convnextv2-data-'));
process.on('exit', () => fs.rmSync(tmpRoot, { recursive: true, force: true }));
let tmpCount = 0;
function tmpDir(): string {
  const d = nodePath.join(tmpRoot, String(tmpCount++));
  fs.mkdirSync(d, { recursive: true });
  return d;
}

/** The deterministic test pattern also used to generate the Pillow references. */
function pattern(w: number, h: number): Image {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) data[(y * w + x) * 3 + c] = (x * 37 + y * 91 + c * 53 + ((x * y) >> 2)) & 255;
    }
  }
  return { width: w, height: h, data, label: 0 };
}

async function writeImage(path: string, w: number, h: number, channels: 1 | 3 | 4, seed: number, format: 'png' | 'jpeg' | 'webp'): Promise<void> {
  const rng = new Rng(seed);
  const raw = Buffer.alloc(w * h * channels);
  for (let i = 0; i < raw.length; i++) raw[i] = rng.int(256);
  const s = sharp(raw, { raw: { width: w, height: h, channels } });
  await (format === 'png' ? s.png() : format === 'jpeg' ? s.jpeg() : s.webp()).toFile(path);
}

// ---- data sets ---------------------------------------------------------------------------

test('ImageFolder: classes sorted like torchvision, grey/RGBA -> RGB, corrupt files reported once and skipped', async () => {
  const root = tmpDir();
  for (const c of ['dog', 'Zebra', 'cat']) fs.mkdirSync(nodePath.join(root, c));
  await writeImage(nodePath.join(root, 'cat', 'b.png'), 5, 4, 3, 1, 'png');
  await writeImage(nodePath.join(root, 'cat', 'a.JPG'), 6, 3, 3, 2, 'jpeg');
  fs.mkdirSync(nodePath.join(root, 'cat', 'more'));
  await writeImage(nodePath.join(root, 'cat', 'more', 'c.webp'), 4, 4, 3, 3, 'webp');
  await writeImage(nodePath.join(root, 'dog', 'grey.png'), 3, 2, 1, 4, 'png');
  await writeImage(nodePath.join(root, 'dog', 'alpha.png'), 2, 2, 4, 5, 'png');
  fs.writeFileSync(nodePath.join(root, 'dog', 'broken.jpg'), Buffer.from('this is not a jpeg at all'));
  fs.writeFileSync(nodePath.join(root, 'dog', 'notes.txt'), 'ignored');
  await writeImage(nodePath.join(root, 'Zebra', 'z.png'), 2, 3, 3, 6, 'png');
  const warnings: string[] = [];
  const ds = openDataset(root, 'train', { warn: (m) => warnings.push(m) });
  assert.deepEqual(ds.classes, ['Zebra', 'cat', 'dog']); // code-point order, as Python's sorted
  assert.equal(ds.length, 7);
  const files = Array.from({ length: ds.length }, (_, i) => ds.label(i));
  assert.deepEqual(files, [0, 1, 1, 1, 2, 2, 2]);
  // Order: a folder's files (sorted), then sub-folders.
  const paths: string[] = [];
  for (let i = 0; i < ds.length; i++) {
    try {
      const img = await ds.load(i);
      assert.equal(img.data.length, img.width * img.height * 3);
      paths.push(nodePath.relative(root, img.path ?? ''));
      if (img.path?.endsWith('grey.png')) {
        for (let p = 0; p < img.width * img.height; p++) {
          assert.equal(img.data[p * 3], img.data[p * 3 + 1]);
          assert.equal(img.data[p * 3], img.data[p * 3 + 2]);
        }
      }
    } catch (err) {
      assert.ok(err instanceof CorruptImageError);
      assert.match(err.message, /broken\.jpg/);
      paths.push('CORRUPT');
    }
  }
  assert.deepEqual(paths, ['Zebra/z.png', 'cat/a.JPG', 'cat/b.png', 'cat/more/c.webp', 'dog/alpha.png', 'CORRUPT', 'dog/grey.png']);
  await assert.rejects(ds.load(5), CorruptImageError);
  assert.equal(ds.skipped.length, 1);
  assert.equal(warnings.length, 1, 'each unreadable path is reported once');
  assert.match(warnings[0], /broken\.jpg/);

  // No val/ folder: val needs a split; valSplit partitions deterministically.
  assert.throws(() => openDataset(root, 'val', { warn: () => undefined }), /val-split/);
  const tr = openDataset(root, 'train', { valSplit: 0.3, seed: 7, warn: () => undefined });
  const va = openDataset(root, 'val', { valSplit: 0.3, seed: 7, warn: () => undefined });
  assert.equal(tr.length + va.length, 7);
  assert.equal(va.length, 2);
  const key = async (d: Dataset, i: number): Promise<string> => `${d.label(i)}:${(await d.load(i).catch(() => ({ path: 'bad' }))).path}`;
  const all = new Set<string>();
  for (const d of [tr, va]) for (let i = 0; i < d.length; i++) all.add(await key(d, i));
  assert.equal(all.size, 7);
  const va2 = openDataset(root, 'val', { valSplit: 0.3, seed: 7, warn: () => undefined });
  assert.deepEqual([await key(va2, 0), await key(va2, 1)], [await key(va, 0), await key(va, 1)]);
  assert.equal(openDataset(root, 'train', { limit: 3, warn: () => undefined }).length, 3);
});

test('ImageFolder official layout: train/ and val/ share the training class indices; EXIF orientation applied', async () => {
  const root = tmpDir();
  for (const c of ['a', 'b', 'c']) fs.mkdirSync(nodePath.join(root, 'train', c), { recursive: true });
  fs.mkdirSync(nodePath.join(root, 'val', 'c'), { recursive: true });
  for (const c of ['a', 'b', 'c']) await writeImage(nodePath.join(root, 'train', c, '1.png'), 3, 3, 3, 1, 'png');
  // A 4x2 JPEG tagged orientation 6 (rotate 90 degrees) decodes as 2x4.
  const raw = Buffer.alloc(4 * 2 * 3, 128);
  await sharp(raw, { raw: { width: 4, height: 2, channels: 3 } }).jpeg().withMetadata({ orientation: 6 }).toFile(nodePath.join(root, 'val', 'c', 'rot.jpg'));
  const tr = openDataset(root, 'train');
  const va = openDataset(root, 'val');
  assert.deepEqual(va.classes, ['a', 'b', 'c']);
  assert.equal(tr.length, 3);
  assert.equal(va.length, 1);
  assert.equal(va.label(0), 2);
  const img = await va.load(0);
  assert.deepEqual([img.width, img.height], [2, 4]);
  fs.mkdirSync(nodePath.join(root, 'val', 'unknown'));
  await writeImage(nodePath.join(root, 'val', 'unknown', 'x.png'), 2, 2, 3, 1, 'png');
  assert.throws(() => openDataset(root, 'val'), /not present in the training folder/);
  assert.throws(() => openDataset(nodePath.join(root, 'nope'), 'train'), ConvNextError);
});

function idx(dims: number[], payload: Uint8Array, type = 0x08): Buffer {
  const b = Buffer.alloc(4 + 4 * dims.length + payload.length);
  b[2] = type;
  b[3] = dims.length;
  dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
  b.set(payload, 4 + 4 * dims.length);
  return b;
}

test('IDX (Fashion-MNIST format): gzip or plain, grey -> RGB, header validation', async () => {
  const dir = tmpDir();
  const n = 5;
  const px = Uint8Array.from({ length: n * 4 * 3 }, (_, i) => (i * 7) & 255);
  fs.writeFileSync(nodePath.join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(idx([n, 4, 3], px)));
  fs.writeFileSync(nodePath.join(dir, 'train-labels-idx1-ubyte'), idx([n], Uint8Array.from([9, 0, 3, 3, 1])));
  fs.writeFileSync(nodePath.join(dir, 't10k-images-idx3-ubyte'), idx([2, 4, 3], px.subarray(0, 24)));
  fs.writeFileSync(nodePath.join(dir, 't10k-labels-idx1-ubyte.gz'), gzipSync(idx([2], Uint8Array.from([5, 6]))));
  const ds = openDataset(`fashion-mnist:${dir}`, 'train');
  assert.equal(ds.length, 5);
  assert.deepEqual(ds.classes, [...FASHION_MNIST_CLASSES]);
  const img = await ds.load(2);
  assert.deepEqual([img.width, img.height, img.label], [3, 4, 3]);
  for (let p = 0; p < 12; p++) for (let c = 0; c < 3; c++) assert.equal(img.data[p * 3 + c], px[2 * 12 + p]);
  const te = openDataset(`fashion-mnist:${dir}`, 'test');
  const va = openDataset(`fashion-mnist:${dir}`, 'val');
  assert.equal(te.length, 2);
  assert.equal(va.label(1), 6);
  assert.throws(() => parseIdx(Buffer.from([1, 2, 8, 1, 0, 0, 0, 1, 0]), 'x', 1), /bad magic/);
  assert.throws(() => parseIdx(idx([3], Uint8Array.from([1, 2])), 'x', 1), /payload/);
  assert.throws(() => parseIdx(idx([2, 2], Uint8Array.from([1, 2, 3, 4])), 'x', 3), /dimensions/);
  assert.throws(() => parseIdx(idx([2], Uint8Array.from([1, 2]), 0x0d), 'x', 1), /unsigned bytes/);
  fs.writeFileSync(nodePath.join(dir, 'train-labels-idx1-ubyte'), idx([4], Uint8Array.from([1, 2, 3, 4])));
  assert.throws(() => openDataset(`fashion-mnist:${dir}`, 'train'), /4 labels for 5 images/);
});

test('Fashion-MNIST from Debian dataset-fashion-mnist when installed', { skip: !fs.existsSync(FASHION_MNIST_DIR) && 'dataset-fashion-mnist not installed' }, async () => {
  const tr = openDataset('fashion-mnist', 'train');
  const te = openDataset('fashion-mnist', 'test');
  assert.equal(tr.length, 60000);
  assert.equal(te.length, 10000);
  const img = await tr.load(0);
  assert.deepEqual([img.width, img.height, img.label], [28, 28, 9]); // the first training image is an ankle boot
});

test('CIFAR-10 binary: 3073-byte records, planar -> HWC, class names from batches.meta.txt', async () => {
  const dir = tmpDir();
  const rec = (label: number, seed: number): Buffer => {
    const b = Buffer.alloc(3073);
    b[0] = label;
    for (let i = 1; i < 3073; i++) b[i] = (i * seed) & 255;
    return b;
  };
  for (let k = 1; k <= 5; k++) fs.writeFileSync(nodePath.join(dir, `data_batch_${k}.bin`), Buffer.concat([rec(k, k), rec(0, 10 + k)]));
  fs.writeFileSync(nodePath.join(dir, 'test_batch.bin'), rec(7, 99));
  fs.writeFileSync(nodePath.join(dir, 'batches.meta.txt'), 'a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n');
  const ds = openDataset(`cifar10:${dir}`, 'train');
  assert.equal(ds.length, 10);
  assert.deepEqual(ds.classes, ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j']);
  const img = await ds.load(2); // batch 2, first record
  assert.equal(img.label, 2);
  const p = 5 * 32 + 7;
  for (let c = 0; c < 3; c++) assert.equal(img.data[p * 3 + c], ((1 + c * 1024 + p) * 2) & 255);
  assert.equal((await openDataset(`cifar10:${dir}`, 'test').load(0)).label, 7);
  fs.writeFileSync(nodePath.join(dir, 'test_batch.bin'), Buffer.alloc(3000));
  assert.throws(() => openDataset(`cifar10:${dir}`, 'test'), /3073-byte records/);
});

test('synthetic: deterministic, sized, val and test are the held-out part', async () => {
  const a = openDataset('synthetic:32', 'train', { seed: 1 });
  const b = openDataset('synthetic', 'train', { seed: 1, syntheticSize: 32 });
  assert.equal(a.length, 8000);
  assert.equal(openDataset('synthetic', 'val').length, 1000);
  const x = await a.load(17);
  const y = await b.load(17);
  assert.deepEqual([x.width, x.height, x.label], [32, 32, 7]);
  assert.deepEqual(x.data, y.data);
  const z = await openDataset('synthetic:32', 'train', { seed: 2 }).load(17);
  assert.notDeepEqual(z.data, x.data);
  assert.deepEqual((await openDataset('synthetic:32', 'test', { seed: 1 }).load(3)).data, (await openDataset('synthetic:32', 'val', { seed: 1 }).load(3)).data);
});

// ---- resampling and transforms -----------------------------------------------------------

const PIL_RESIZE: [string, [number, number, number, number], [number, number], 'bicubic' | 'bilinear', number, number[]][] = [
  ['small', [0, 0, 53, 37], [20, 15], 'bicubic', 0x97a48ff3, [96, 129, 132, 137]],
  ['small', [0, 0, 53, 37], [100, 90], 'bicubic', 0x4663833a, [0, 41, 94, 0]],
  ['small', [3, 5, 37, 25], [24, 24], 'bicubic', 0x1f98a116, [72, 126, 178, 129]],
  ['small', [3, 5, 37, 25], [37, 50], 'bilinear', 0xde75a466, [57, 110, 163, 96]],
  ['small', [0, 0, 53, 37], [53, 7], 'bicubic', 0x9a9c7199, [92, 149, 123, 131]],
  ['small', [0, 0, 53, 37], [9, 37], 'bicubic', 0xf1b5b468, [96, 130, 158, 113]],
  ['big', [0, 0, 500, 375], [224, 224], 'bicubic', 0x0ac5a95f, [66, 121, 154, 148]],
  ['big', [10, 20, 300, 280], [224, 224], 'bicubic', 0x95b286cb, [177, 165, 66, 115]],
  ['big', [0, 0, 500, 375], [341, 256], 'bicubic', 0x4c3a8f66, [35, 93, 159, 94]],
];

test('resampling matches Pillow 9.4 img.crop(box).resize(size, BICUBIC/BILINEAR) bit for bit ', () => {
  const imgs = { small: pattern(53, 37), big: pattern(500, 375) };
  for (const [name, [x, y, w, h], [dw, dh], f, crc, head] of PIL_RESIZE) {
    const src = imgs[name as 'small' | 'big'];
    const out = resizeRgb(src.data, src.width, src.height, dw, dh, f, { x, y, w, h });
    assert.deepEqual([...out.subarray(0, 4)], head, `${name} ${dw}x${dh}`);
    assert.equal(crc32(out), crc, `${name} ${x},${y},${w}x${h} -> ${dw}x${dh} ${f}`);
  }
  // Known values: a 4-pixel ramp 0, 100, 200, 255 up to 8 and down to 2 pixels (Pillow).
  const ramp = new Uint8Array([0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255]);
  assert.deepEqual([...resizeRgb(ramp, 4, 1, 8, 1)].filter((_, i) => i % 3 === 0), [0, 17, 71, 126, 178, 219, 247, 255]);
  assert.deepEqual([...resizeRgb(ramp, 4, 1, 2, 1)].filter((_, i) => i % 3 === 0), [60, 221]);
  assert.throws(() => resizeRgb(ramp, 4, 1, 2, 1, 'bicubic', { x: 1, y: 0, w: 4, h: 1 }), RangeError);
});

test('RandAugment ops match Pillow 9.4 (LUTs, ImageEnhance blends, SMOOTH, a = -1 bicubic affine with fill)', () => {
  const img = pattern(53, 37);
  const cfg = { fill: [124, 116, 104] as [number, number, number], translatePct: 0.45, interpolation: 'bicubic' as const };
  const fixed = (u: number): Rng => ({ uniform: () => u } as unknown as Rng);
  const cases: [RandAugmentOp, boolean, number][] = [
    ['AutoContrast', false, 0xc26e02d2], ['Equalize', false, 0xda145014], ['Invert', false, 0xbc63f2da],
    ['Rotate', false, 0xa00593d9], ['PosterizeIncreasing', false, 0xf6195027], ['SolarizeIncreasing', false, 0xc2514396],
    ['SolarizeAdd', false, 0xbaedf422], ['ColorIncreasing', false, 0x2f9abfc3], ['ContrastIncreasing', false, 0x769ab1b8],
    ['BrightnessIncreasing', false, 0x484c1e5a], ['SharpnessIncreasing', false, 0x162638e9], ['ShearX', false, 0x5b10c0ba],
    ['ShearY', false, 0x44f5b0a8], ['TranslateXRel', false, 0x7f8baa0b], ['TranslateYRel', false, 0x44e86362],
    ['ContrastIncreasing', true, 0xb2b1c10e], ['SharpnessIncreasing', true, 0x093ac7e8], ['Rotate', true, 0xd488fec3],
  ];
  for (const [op, negate, crc] of cases) {
    // Level 7.3; the sign draw (uniform > 0.5 negates) forced either way.
    assert.equal(crc32(applyOp(img, op, 7.3, fixed(negate ? 0.9 : 0.1), cfg).data), crc, `${op}${negate ? ' negated' : ''}`);
  }
  const ra = parseRandAugment('rand-m9-mstd0.5-inc1');
  assert.equal(ra.ops.length, 15);
  assert.deepEqual([ra.magnitude, ra.magnitudeStd, ra.numLayers, ra.prob], [9, 0.5, 2, 0.5]);
  assert.deepEqual(ra.fill, [124, 116, 104]);
  assert.throws(() => parseRandAugment('v0'), /RandAugment/);
  assert.throws(() => parseRandAugment('rand-m9-zz3'), /unknown option/);
  const a = randAugment(img, new Rng(3), ra);
  const b = randAugment(img, new Rng(3), ra);
  assert.deepEqual(a.data, b.data);
});

test('randomResizedCrop: torchvision geometry, fallback, determinism; a 224 crop of 500x375 is fast', () => {
  const rng = new Rng(1);
  for (let t = 0; t < 500; t++) {
    const W = 20 + rng.int(600);
    const H = 20 + rng.int(600);
    const p = randomResizedCropParams(W, H, rng, [0.08, 1], [3 / 4, 4 / 3]);
    assert.ok(p.left >= 0 && p.top >= 0 && p.left + p.width <= W && p.top + p.height <= H);
    assert.ok(p.width > 0 && p.height > 0);
  }
  // Impossible area (scale > 1) -> the centre-crop fallback, clamped to the ratio range.
  assert.deepEqual(randomResizedCropParams(400, 100, new Rng(0), [2, 3]), { top: 0, left: 133, height: 100, width: 133 });
  assert.deepEqual(randomResizedCropParams(100, 100, new Rng(0), [2, 3]), { top: 0, left: 0, height: 100, width: 100 });
  assert.deepEqual(randomResizedCropParams(100, 400, new Rng(0), [2, 3]), { top: 133, left: 0, height: 133, width: 100 });
  assert.equal(roundHalfEven(2.5), 2);
  assert.equal(roundHalfEven(3.5), 4);
  assert.equal(roundHalfEven(-0.5), -0);
  const img = pattern(500, 375);
  const a = randomResizedCrop(img, 224, new Rng(9), { scale: [0.2, 1] });
  const b = randomResizedCrop(img, 224, new Rng(9), { scale: [0.2, 1] });
  assert.deepEqual([a.width, a.height, a.data.length], [224, 224, 224 * 224 * 3]);
  assert.deepEqual(a.data, b.data);
  const times: number[] = [];
  const r = new Rng(2);
  for (let i = 0; i < 40; i++) {
    const t0 = performance.now();
    toNormalizedCHW(hflip(randomResizedCrop(img, 224, r, { scale: [0.08, 1] }), r));
    times.push(performance.now() - t0);
  }
  times.sort((x, y) => x - y);
  const median = times[times.length >> 1];
  console.log(`# RandomResizedCrop 224 + flip + normalise from 500x375: median ${median.toFixed(2)} ms`);
  assert.ok(median < 15, `median ${median} ms`); // ~1 ms on an idle core; loose for busy CI machines
});

test('evalTransform: short side to floor(size / crop_pct) + centre crop below 384, a warp at 384', () => {
  const img = pattern(500, 375);
  assert.deepEqual([resizeShortSide(img, 256).width, resizeShortSide(img, 256).height], [341, 256]);
  const e = evalResize(img, 224);
  assert.deepEqual([e.width, e.height], [224, 224]);
  // Equals resize (341x256) then the centre crop at (58, 16).
  const full = resizeRgb(img.data, 500, 375, 341, 256);
  const crop = resizeRgb(full, 341, 256, 224, 224, 'bicubic', { x: 58, y: 16, w: 224, h: 224 });
  assert.deepEqual(e.data, crop);
  assert.equal(evalTransform(img, 224).length, 3 * 224 * 224);
  const w = evalResize(img, 384);
  assert.deepEqual(w.data, resizeRgb(img.data, 500, 375, 384, 384));
  const tall = evalResize(pattern(30, 50), 24, 0.8); // short side 30 -> 30: only the crop
  assert.deepEqual([tall.width, tall.height], [24, 24]);
  // Normalisation: torch's float32 ((v / 255) - mean) / std and the inverse.
  const chw = toNormalizedCHW(pattern(4, 3));
  assert.equal(chw[0], Math.fround(Math.fround(Math.fround(0 / 255) - Math.fround(0.485)) / Math.fround(0.229)));
  assert.deepEqual(fromNormalizedCHW(chw, 3, 4).data, pattern(4, 3).data);
});

test('random erasing (timm, pixel mode) and the train transform spec are deterministic', () => {
  const H = 32;
  const W = 32;
  const x = new Float32Array(3 * H * W).fill(7);
  randomErasing(x, 3, H, W, new Rng(4), { probability: 1, mode: 'pixel' });
  const erased = x.reduce((n, v) => n + (v !== 7 ? 1 : 0), 0);
  assert.ok(erased > 0 && erased % 3 === 0);
  const area = erased / 3;
  assert.ok(area >= 0.015 * H * W && area <= 0.4 * H * W, `erased area ${area}`);
  const y = new Float32Array(3 * H * W).fill(7);
  randomErasing(y, 3, H, W, new Rng(4), { probability: 0 });
  assert.ok(y.every((v) => v === 7));
  const f = compileTransform({ kind: 'train', size: 24, autoAugment: 'rand-m9-mstd0.5-inc1', reprob: 0.25 });
  const o1 = new Float32Array(3 * 24 * 24);
  const o2 = new Float32Array(3 * 24 * 24);
  f(pattern(40, 30), new Rng(11), o1, 0);
  f(pattern(40, 30), new Rng(11), o2, 0);
  assert.deepEqual(o1, o2);
});

// ---- loader --------------------------------------------------------------------------------

async function collect(dl: DataLoader, epoch: number, start = 0): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of dl.epoch(epoch, start)) out.push(b);
  return out;
}

test('DataLoader: batches depend on (seed, epoch, batch) only: any prefetch depth or worker count, and resume', async () => {
  const ds = openDataset('synthetic:24', 'train', { limit: 70 });
  const spec = { kind: 'train' as const, size: 20, scale: [0.2, 1] as [number, number], autoAugment: 'rand-m9-mstd0.5-inc1', reprob: 0.25 };
  const make = (prefetch: number, workers: number): DataLoader => new DataLoader(ds, { batchSize: 16, transform: spec, shuffle: true, seed: 5, prefetch, workers });
  const ref = await collect(make(0, 0), 2);
  assert.equal(ref.length, 5);
  assert.deepEqual(ref.map((b) => b.labels.length), [16, 16, 16, 16, 6]);
  assert.deepEqual(ref.map((b) => b.pixels.shape), [16, 16, 16, 16, 6].map((n) => [n, 3, 20, 20]), 'pixels are [B, 3, S, S] tensors');
  assert.ok(ref.every((b) => b.pixels.data.length === b.pixels.shape[0] * 3 * 20 * 20));
  for (const [prefetch, workers] of [[3, 0], [1, 1], [4, 2]]) {
    const dl = make(prefetch, workers);
    try {
      const got = await collect(dl, 2);
      assert.equal(got.length, ref.length);
      got.forEach((b, i) => {
        assert.deepEqual(b.indices, ref[i].indices, `prefetch ${prefetch} workers ${workers} batch ${i}`);
        assert.deepEqual(b.labels, ref[i].labels);
        assert.deepEqual(b.pixels, ref[i].pixels);
      });
      const resumed = await collect(dl, 2, 3);
      assert.deepEqual(resumed.map((b) => b.batch), [3, 4]);
      assert.deepEqual(resumed[0].pixels, ref[3].pixels);
    } finally {
      await dl.close();
    }
  }
  // Each epoch has its own order and augmentation; every sample appears once.
  const e3 = await collect(make(2, 0), 3);
  assert.notDeepEqual(e3[0].indices, ref[0].indices);
  assert.deepEqual([...e3.flatMap((b) => [...b.indices])].sort((a, b) => a - b), Array.from({ length: 70 }, (_, i) => i));
  const drop = new DataLoader(ds, { batchSize: 16, transform: spec, dropLast: true, workers: 0 });
  assert.equal(drop.length, 4);
  assert.notEqual(sampleSeed(1, 2, 3), sampleSeed(1, 2, 4));
  assert.notEqual(sampleSeed(1, 2, 3), sampleSeed(1, 3, 3));
});

test('DataLoader over files: a corrupt image is reported once and its slot filled (same with workers); fill: false shrinks the batch', async () => {
  const root = tmpDir();
  for (const c of ['a', 'b']) fs.mkdirSync(nodePath.join(root, c));
  for (let i = 0; i < 6; i++) await writeImage(nodePath.join(root, i % 2 ? 'b' : 'a', `${i}.png`), 10 + i, 8, 3, i, 'png');
  fs.writeFileSync(nodePath.join(root, 'a', '2x.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3])); // truncated JPEG
  const warnings: string[] = [];
  const ds = openDataset(root, 'train', { warn: (m) => warnings.push(m) });
  assert.equal(ds.length, 7);
  const spec = { kind: 'eval' as const, size: 8 };
  const a = await collect(new DataLoader(ds, { batchSize: 4, transform: spec, workers: 0 }), 0);
  assert.deepEqual(a.map((b) => b.labels.length), [4, 3]);
  // Order: a/0.png a/2.png a/2x.jpg(bad) a/4.png | b/1 b/3 b/5: slot 2 of batch 0 takes b/1.png.
  assert.deepEqual([...a[0].indices], [0, 1, 4, 3]);
  assert.deepEqual([...a[0].labels], [0, 0, 1, 0]);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /2x\.jpg/);
  const dl = new DataLoader(ds, { batchSize: 4, transform: spec, workers: 1 });
  try {
    const b = await collect(dl, 0);
    assert.deepEqual(b.map((x) => [...x.indices]), a.map((x) => [...x.indices]));
    assert.deepEqual(b[0].pixels, a[0].pixels);
  } finally {
    await dl.close();
  }
  assert.equal(warnings.length, 1, 'reported once');
  assert.deepEqual(ds.skipped, [nodePath.join(root, 'a', '2x.jpg')]);
  const c = await collect(new DataLoader(ds, { batchSize: 4, transform: spec, workers: 0, fill: false }), 0);
  assert.deepEqual(c.map((b) => b.labels.length), [3, 3]);
  assert.deepEqual(c.map((b) => b.pixels.shape), [[3, 3, 8, 8], [3, 3, 8, 8]]);
  assert.equal(c[0].pixels.data.length, 3 * 3 * 8 * 8);
  // The shrunk batch keeps the readable samples' pixels, in order.
  const full = a[0].pixels.data, L = 3 * 8 * 8;
  assert.deepEqual(c[0].pixels.data.subarray(0, 2 * L), full.subarray(0, 2 * L));
});

// ---- mixup -----------------------------------------------------------------------------------

test('mixup / cutmix: soft targets sum to 1, cutmix lambda is the box-area correction, label smoothing folded in', () => {
  const B = 8;
  const C = 3;
  const H = 16;
  const W = 16;
  const labels = Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
  const t0 = mixupTarget(labels, 10, 1, 0.1);
  assert.ok(Math.abs(t0[0] - 0.91) < 1e-6 && Math.abs(t0[1] - 0.01) < 1e-6);
  const rng = new Rng(3);
  let sawCut = 0;
  let sawMix = 0;
  for (let t = 0; t < 40; t++) {
    const px = new Float32Array(B * C * H * W);
    for (let b = 0; b < B; b++) px.fill(b, b * C * H * W, (b + 1) * C * H * W);
    const m = new Mixup({ mixupAlpha: 0.8, cutmixAlpha: 1.0, labelSmoothing: 0.1, numClasses: 10 });
    const r = m.apply(px, labels, C, H, W, rng);
    for (let b = 0; b < B; b++) {
      let s = 0;
      for (let k = 0; k < 10; k++) s += r.targets[b * 10 + k];
      assert.ok(Math.abs(s - 1) < 1e-5, `row ${b} sums to ${s}`);
      assert.ok(Math.abs(r.targets[b * 10 + labels[b]] - (0.9 * r.lam + 0.01 + (labels[b] === labels[B - 1 - b] ? 0.9 * (1 - r.lam) : 0))) < 1e-5);
    }
    if (r.kind === 'cutmix' && r.box) {
      sawCut++;
      const area = (r.box.yh - r.box.yl) * (r.box.xh - r.box.xl);
      assert.ok(Math.abs(r.lam - (1 - area / (H * W))) < 1e-12);
      // Sample 0 now holds sample 7's values inside the box, its own outside.
      let inside = 0;
      for (let i = 0; i < C * H * W; i++) if (px[i] === 7) inside++;
      assert.equal(inside, area * C);
    } else if (r.kind === 'mixup') {
      sawMix++;
      assert.ok(Math.abs(px[0] - 7 * (1 - r.lam)) < 1e-5);
    }
  }
  assert.ok(sawCut > 5 && sawMix > 5, `cutmix ${sawCut}, mixup ${sawMix}`);
  assert.throws(() => new Mixup({ mixupAlpha: 1, cutmixAlpha: 0, numClasses: 3 }).apply(new Float32Array(3 * 3), Int32Array.from([0, 1, 2]), 3, 1, 1, rng), /even batch/);
  // Beta(0.8, 0.8) has mean 0.5 and variance 1 / (4 * 2.6).
  const r2 = new Rng(8);
  const xs = Array.from({ length: 20000 }, () => sampleBeta(0.8, 0.8, r2));
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const vari = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.01 && Math.abs(vari - 1 / 10.4) < 0.01, `${mean} ${vari}`);
});

// ---- PNG and plots ---------------------------------------------------------------------------

test('PNG: RGB and RGBA round trip through sharp; atomic write; CRC-32', async () => {
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
  const rng = new Rng(1);
  for (const channels of [3, 4] as const) {
    const W = 37;
    const H = 11;
    const data = Uint8Array.from({ length: W * H * channels }, (_, i) => (i % 7 === 0 ? rng.int(256) : (i * 3) & 255));
    const png = encodePng({ width: W, height: H, channels, data });
    const { data: back, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height, info.channels], [W, H, channels]);
    assert.deepEqual(new Uint8Array(back), data);
  }
  const dir = tmpDir();
  const path = nodePath.join(dir, 'x.png');
  writePng(path, { width: 2, height: 1, channels: 3, data: new Uint8Array([1, 2, 3, 4, 5, 6]) });
  assert.deepEqual(fs.readdirSync(dir), ['x.png']);
  assert.deepEqual([...(await sharp(path).raw().toBuffer())], [1, 2, 3, 4, 5, 6]);
});

test('canvas, line plot and image grid render to valid PNGs', async () => {
  assert.deepEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(1, 30, 6), [5, 10, 15, 20, 25, 30]);
  const cv = new Canvas(40, 20, [255, 255, 255]);
  cv.line(0, 10, 40, 10, [255, 0, 0], 3);
  cv.text(2, 2, 'Hi', [0, 0, 0], { font: 'small' });
  assert.deepEqual([...cv.data.subarray((10 * 40 + 20) * 3, (10 * 40 + 20) * 3 + 3)], [255, 0, 0]);
  const png = linePlot({
    series: [{ label: 'loss', points: [[1, 2], [2, 1.5], [3, 1.2]] }, { label: 'val', points: [[1, 2.2], [3, 1.4]] }],
    title: 'loss', xLabel: 'epoch', yLabel: 'loss', width: 320, height: 200,
  });
  const meta = await sharp(png).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height], ['png', 320, 200]);
  const img = pattern(16, 16);
  const grid = imageGrid([img, img, img, img, img, img], 3, ['original', 'masked', 'reconstruction']);
  const gm = await sharp(grid).metadata();
  assert.equal(gm.format, 'png');
  assert.ok((gm.width ?? 0) >= 3 * 128);
});

test('--limit is a seeded, class-stratified subset: each class its share, the same for a seed, another for another seed, said in the source', () => {
  // Uneven classes: 0 has 60 samples, 1 has 30, 2 has 10 (labels in class order, as folders list them).
  const labels = [...Array(60).fill(0), ...Array(30).fill(1), ...Array(10).fill(2)] as number[];
  const ds = { length: labels.length, label: (i: number) => labels[i] };
  const counts = (idx: Int32Array) => [0, 1, 2].map((c) => Array.from(idx).filter((i) => labels[i] === c).length);
  const a = stratifiedIndices(ds, 10, 0);
  assert.deepEqual(counts(a), [6, 3, 1], 'each class its share of 10');
  assert.deepEqual(Array.from(a), [...a].sort((x, y) => x - y), 'in index order');
  assert.equal(new Set(a).size, 10, 'no sample twice');
  assert.deepEqual(Array.from(stratifiedIndices(ds, 10, 0)), Array.from(a), 'the same subset for the same seed');
  assert.notDeepEqual(Array.from(stratifiedIndices(ds, 10, 1)), Array.from(a), 'another subset for another seed');
  assert.ok(Array.from(a).some((i) => i >= 6 && labels[i] === 0), 'drawn within the class, not its first samples');
  // Largest remainders: 7 of 100 -> 4.2, 2.1, 0.7 -> 4, 2, 1.
  assert.deepEqual(counts(stratifiedIndices(ds, 7, 0)), [4, 2, 1]);
  // A real data set: the synthetic set's 10 classes, 2 each out of 20, and the log line says so.
  const syn = openDataset('synthetic:16', 'train', { limit: 20, seed: 3 });
  const per = new Map<number, number>();
  for (let i = 0; i < syn.length; i++) per.set(syn.label(i), (per.get(syn.label(i)) ?? 0) + 1);
  assert.equal(syn.length, 20);
  assert.deepEqual([...per.values()], Array(10).fill(2), 'every class, twice');
  assert.match(syn.source, /limited to 20 of \d+ images \(seed 3, stratified: 10 of 10 classes, each in its share\)$/);
});
