/**
 * Data sets, opened from a spec string:
 *   DIR                    ImageFolder: class sub-folders, or `train/` and `val/` of them
 *   fashion-mnist[:DIR]    IDX files (gzip or not); default /usr/share/datasets/fashion-mnist
 *   mnist:DIR              the same format with digit classes
 *   cifar10:DIR            the CIFAR-10 binary version (data_batch_*.bin, test_batch.bin)
 *   synthetic[:SIZE]       the embedded procedural set (8000 train, 1000 val images)
 * Every data set yields 8-bit RGB HWC images ({@link Image}). A data set can describe itself
 * as a structured-cloneable value ({@link Dataset.share}) from which a worker thread rebuilds
 * it ({@link datasetFromShared}); big pixel arrays travel as SharedArrayBuffers, not copies.
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { gunzipSync } from 'node:zlib';
import { ConvNextError } from '../errors.js';
import { Rng } from '../rng.js';
import { CorruptImageError, decodeImage, type Image } from './image.js';
import { SYNTHETIC_CLASSES, renderSynthetic } from './synthetic.js';

export type Split = 'train' | 'val' | 'test';

export interface Dataset {
  readonly length: number;
  readonly classes: string[];
  /** A one-line description (what was opened and which part). */
  readonly source: string;
  /** Paths of images found unreadable so far (each reported once). */
  readonly skipped: string[];
  /** Sample i; a corrupt file rejects with a CorruptImageError (after reporting it). */
  load(i: number): Promise<Image>;
  /** The label of sample i without decoding it. */
  label(i: number): number;
  /** Records (and warns about, once per path) an unreadable image. */
  reportSkipped(path: string, reason: string): void;
  /** A structured-cloneable description that {@link datasetFromShared} turns back into this data set. */
  share(): SharedDataset;
}

export type SharedDataset =
  | { kind: 'folder'; source: string; classes: string[]; root: string; files: string; labels: Int32Array }
  | { kind: 'raw'; source: string; classes: string[]; pixels: Uint8Array; labels: Uint8Array; width: number; height: number; channels: 1 | 3; planar: boolean }
  | { kind: 'synthetic'; source: string; split: 'train' | 'val'; count: number; size: number; seed: number }
  | { kind: 'subset'; source: string; base: SharedDataset; indices: Int32Array };

export interface OpenOptions {
  /** Keep N samples (after any validation carve-out): a seeded, class-stratified subset (see {@link stratifiedIndices}). */
  limit?: number;
  /** Image side for `synthetic` (default 64; `synthetic:SIZE` also sets it). */
  syntheticSize?: number;
  /** Seed for `synthetic` images and for the `valSplit` carve-out (default 0). */
  seed?: number;
  /**
   * Fraction of the training part carved out (seeded, deterministic) as the validation part:
   * `train` is then the rest and `val` the carved part; `test` stays the data set's own
   * held-out part. Needed for `val` where a data set has none (ImageFolder without val/).
   */
  valSplit?: number;
  /** Where warnings go (default: stderr). */
  warn?: (message: string) => void;
}

const DEFAULT_WARN = (m: string): void => {
  process.stderr.write(`convnextv2: warning: ${m}\n`);
};

export const FASHION_MNIST_CLASSES = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
] as const;
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const CIFAR10_CLASSES = [
  'airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck',
] as const;
export const SYNTHETIC_TRAIN_SIZE = 8000;
export const SYNTHETIC_VAL_SIZE = 1000;
export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp'] as const;

abstract class BaseDataset implements Dataset {
  readonly skipped: string[] = [];
  private readonly seen = new Set<string>();
  constructor(readonly source: string, readonly classes: string[], protected readonly warn: (m: string) => void) {}
  abstract readonly length: number;
  abstract load(i: number): Promise<Image>;
  abstract label(i: number): number;
  abstract share(): SharedDataset;
  reportSkipped(path: string, reason: string): void {
    if (this.seen.has(path)) return;
    this.seen.add(path);
    this.skipped.push(path);
    this.warn(`skipping unreadable image ${path}: ${reason}`);
  }
  protected checkIndex(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) throw new RangeError(`sample ${i} out of range [0, ${this.length})`);
  }
}

// ---- ImageFolder -------------------------------------------------------------------------

class FolderDataset extends BaseDataset {
  readonly length: number;
  constructor(source: string, classes: string[], readonly root: string, readonly files: string[], readonly labels: Int32Array, warn: (m: string) => void) {
    super(source, classes, warn);
    this.length = files.length;
  }
  label(i: number): number {
    this.checkIndex(i);
    return this.labels[i];
  }
  async load(i: number): Promise<Image> {
    this.checkIndex(i);
    const path = nodePath.join(this.root, this.files[i]);
    try {
      return await decodeImage(path, this.labels[i], path);
    } catch (err) {
      if (err instanceof CorruptImageError) this.reportSkipped(path, err.reason);
      throw err;
    }
  }
  share(): SharedDataset {
    return { kind: 'folder', source: this.source, classes: this.classes, root: this.root, files: this.files.join('\n'), labels: this.labels };
  }
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Python's default string order (by code point), as torchvision's `sorted`. */
function byCodePoint(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    const d = x[i].codePointAt(0)! - y[i].codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

function listClassDirs(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() || (e.isSymbolicLink() && isDir(nodePath.join(dir, e.name))))
    .map((e) => e.name)
    .sort(byCodePoint);
}

/** Image files under `dir` (recursively, following links) in torchvision's order, relative to `rel`. */
function walkImages(dir: string, rel: string, out: string[], depth = 0): void {
  if (depth > 64) throw new ConvNextError(`${dir}: folders nested too deeply (a link loop?)`);
  // torchvision: sorted(os.walk(dir)) then sorted(fnames): a folder's files, then its sub-folders' in path order.
  const entries = fs.readdirSync(dir, { withFileTypes: true });
  const files: string[] = [];
  const subdirs: string[] = [];
  for (const e of entries) {
    const full = nodePath.join(dir, e.name);
    const directory = e.isDirectory() || (e.isSymbolicLink() && isDir(full));
    if (directory) subdirs.push(e.name);
    else if (IMAGE_EXTENSIONS.includes(nodePath.extname(e.name).toLowerCase() as (typeof IMAGE_EXTENSIONS)[number])) files.push(e.name);
  }
  for (const f of files.sort(byCodePoint)) out.push(rel === '' ? f : `${rel}/${f}`);
  for (const d of subdirs.sort(byCodePoint)) walkImages(nodePath.join(dir, d), rel === '' ? d : `${rel}/${d}`, out, depth + 1);
}

function scanFolder(dir: string, classes: string[], strictClasses: boolean): { files: string[]; labels: number[] } {
  const files: string[] = [];
  const labels: number[] = [];
  const index = new Map(classes.map((c, i) => [c, i]));
  for (const c of listClassDirs(dir)) {
    const label = index.get(c);
    if (label === undefined) {
      if (strictClasses) throw new ConvNextError(`${nodePath.join(dir, c)}: class folder not present in the training folder`);
      continue;
    }
    const before = files.length;
    walkImages(nodePath.join(dir, c), c, files);
    for (let i = before; i < files.length; i++) labels.push(label);
  }
  return { files, labels };
}

interface PartsResult {
  train: () => Dataset;
  /** The held-out part (val/ or the test set), null when the data set has none. */
  heldOut: (() => Dataset) | null;
  heldOutName: string;
}

function openFolder(root: string, warn: (m: string) => void): PartsResult {
  if (!isDir(root)) {
    const what = fs.existsSync(root) ? 'is a file, not a folder' : 'no such folder';
    throw new ConvNextError(`${root}: ${what} (a data set spec is a folder of class folders, fashion-mnist[:DIR], cifar10:DIR or synthetic[:SIZE])`);
  }
  const trainDir = nodePath.join(root, 'train');
  const official = isDir(trainDir) && listClassDirs(trainDir).length > 0;
  const makePart = (dir: string, classes: string[], part: string, strict: boolean): Dataset => {
    const { files, labels } = scanFolder(dir, classes, strict);
    if (files.length === 0) throw new ConvNextError(`${dir}: no images (${IMAGE_EXTENSIONS.join(', ')}) in class folders`);
    return new FolderDataset(`ImageFolder ${dir} (${part}, ${files.length} images, ${classes.length} classes)`, classes, dir, files, Int32Array.from(labels), warn);
  };
  if (official) {
    const classes = listClassDirs(trainDir);
    const valDir = ['val', 'validation', 'test'].map((d) => nodePath.join(root, d)).find(isDir);
    return {
      train: () => makePart(trainDir, classes, 'train', false),
      heldOut: valDir ? () => makePart(valDir, classes, nodePath.basename(valDir), true) : null,
      heldOutName: valDir && nodePath.basename(valDir) === 'test' ? 'test' : 'val',
    };
  }
  const classes = listClassDirs(root);
  if (classes.length === 0) throw new ConvNextError(`${root}: no class folders (expected DIR/<class>/<image> or DIR/train/<class>/<image>)`);
  return { train: () => makePart(root, classes, 'all', false), heldOut: null, heldOutName: 'val' };
}

// ---- raw pixel arrays (IDX, CIFAR) -----------------------------------------------------

class RawDataset extends BaseDataset {
  readonly length: number;
  private readonly plane: number;
  constructor(
    source: string, classes: string[], readonly pixels: Uint8Array, readonly labels: Uint8Array,
    readonly width: number, readonly height: number, readonly channels: 1 | 3, readonly planar: boolean,
    warn: (m: string) => void,
  ) {
    super(source, classes, warn);
    this.length = labels.length;
    this.plane = width * height;
  }
  label(i: number): number {
    this.checkIndex(i);
    return this.labels[i];
  }
  load(i: number): Promise<Image> {
    this.checkIndex(i);
    const n = this.plane;
    const data = new Uint8Array(n * 3);
    const base = i * n * this.channels;
    const px = this.pixels;
    if (this.channels === 1) {
      for (let p = 0; p < n; p++) {
        const v = px[base + p];
        data[p * 3] = v;
        data[p * 3 + 1] = v;
        data[p * 3 + 2] = v;
      }
    } else if (this.planar) {
      for (let p = 0; p < n; p++) {
        data[p * 3] = px[base + p];
        data[p * 3 + 1] = px[base + n + p];
        data[p * 3 + 2] = px[base + 2 * n + p];
      }
    } else {
      data.set(px.subarray(base, base + n * 3));
    }
    return Promise.resolve({ width: this.width, height: this.height, data, label: this.labels[i] });
  }
  share(): SharedDataset {
    return {
      kind: 'raw', source: this.source, classes: this.classes, pixels: this.pixels, labels: this.labels,
      width: this.width, height: this.height, channels: this.channels, planar: this.planar,
    };
  }
}

/** A Uint8Array over shared memory holding `n` bytes (so worker threads see it without a copy). */
function sharedBytes(n: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(n));
}

function readMaybeGzip(path: string): Buffer {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(path);
  } catch (err) {
    throw new ConvNextError(`cannot read ${path}: ${(err as Error).message}`);
  }
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      buf = gunzipSync(buf);
    } catch (err) {
      throw new ConvNextError(`${path}: bad gzip data: ${(err as Error).message}`);
    }
  }
  return buf;
}

/** Parses an IDX file of unsigned bytes; returns its dimensions and data. */
export function parseIdx(buf: Uint8Array, path: string, expectDims: number): { dims: number[]; data: Uint8Array } {
  if (buf.length < 4) throw new ConvNextError(`${path}: not an IDX file (${buf.length} bytes)`);
  if (buf[0] !== 0 || buf[1] !== 0) throw new ConvNextError(`${path}: not an IDX file (bad magic ${[...buf.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join('')})`);
  if (buf[2] !== 0x08) throw new ConvNextError(`${path}: IDX data type 0x${buf[2].toString(16)} is not unsigned bytes (0x08)`);
  const nd = buf[3];
  if (nd !== expectDims) throw new ConvNextError(`${path}: IDX file has ${nd} dimensions, expected ${expectDims}`);
  const hdr = 4 + 4 * nd;
  if (buf.length < hdr) throw new ConvNextError(`${path}: truncated IDX header`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dims: number[] = [];
  let count = 1;
  for (let d = 0; d < nd; d++) {
    const v = view.getUint32(4 + 4 * d, false);
    if (v === 0) throw new ConvNextError(`${path}: IDX dimension ${d} is 0`);
    dims.push(v);
    count *= v;
  }
  if (buf.length !== hdr + count) throw new ConvNextError(`${path}: IDX payload is ${buf.length - hdr} bytes, the header says ${dims.join('x')} = ${count}`);
  return { dims, data: buf.subarray(hdr) };
}

function findFile(dir: string, names: string[]): string {
  for (const n of names) {
    for (const cand of [n, `${n}.gz`]) {
      const p = nodePath.join(dir, cand);
      if (fs.existsSync(p)) return p;
    }
  }
  throw new ConvNextError(`${dir}: missing ${names[0]}(.gz)`);
}

function openIdx(dir: string, classes: readonly string[], name: string, warn: (m: string) => void): PartsResult {
  if (!isDir(dir)) {
    const hint = name === 'fashion-mnist' && dir === FASHION_MNIST_DIR ? ' (install Debian\'s dataset-fashion-mnist, or give fashion-mnist:DIR)' : '';
    throw new ConvNextError(`${dir}: no such folder${hint}`);
  }
  const part = (prefix: 'train' | 't10k', partName: string) => (): Dataset => {
    const imgPath = findFile(dir, [`${prefix}-images-idx3-ubyte`, `${prefix}-images.idx3-ubyte`]);
    const lblPath = findFile(dir, [`${prefix}-labels-idx1-ubyte`, `${prefix}-labels.idx1-ubyte`]);
    const img = parseIdx(readMaybeGzip(imgPath), imgPath, 3);
    const lbl = parseIdx(readMaybeGzip(lblPath), lblPath, 1);
    const [n, h, w] = img.dims;
    if (lbl.dims[0] !== n) throw new ConvNextError(`${lblPath}: ${lbl.dims[0]} labels for ${n} images in ${imgPath}`);
    for (let i = 0; i < n; i++) {
      if (lbl.data[i] >= classes.length) throw new ConvNextError(`${lblPath}: label ${lbl.data[i]} at ${i} is not below ${classes.length}`);
    }
    const pixels = sharedBytes(img.data.length);
    pixels.set(img.data);
    const labels = sharedBytes(n);
    labels.set(lbl.data);
    return new RawDataset(`${name} ${dir} (${partName}, ${n} images ${w}x${h})`, [...classes], pixels, labels, w, h, 1, false, warn);
  };
  return { train: part('train', 'train'), heldOut: part('t10k', 'test'), heldOutName: 'test' };
}

const CIFAR_RECORD = 3073;

function openCifar(dirIn: string, warn: (m: string) => void): PartsResult {
  const sub = nodePath.join(dirIn, 'cifar-10-batches-bin');
  const dir = !fs.existsSync(nodePath.join(dirIn, 'test_batch.bin')) && isDir(sub) ? sub : dirIn;
  if (!isDir(dir)) throw new ConvNextError(`${dirIn}: no such folder`);
  let classes: string[] = [...CIFAR10_CLASSES];
  const metaPath = nodePath.join(dir, 'batches.meta.txt');
  if (fs.existsSync(metaPath)) {
    const names = fs.readFileSync(metaPath, 'utf8').split(/\r?\n/).map((s) => s.trim()).filter((s) => s.length > 0);
    if (names.length !== 10) throw new ConvNextError(`${metaPath}: ${names.length} class names, expected 10`);
    classes = names;
  }
  const part = (files: string[], partName: string) => (): Dataset => {
    const bufs = files.map((f) => {
      const p = nodePath.join(dir, f);
      if (!fs.existsSync(p)) throw new ConvNextError(`${dir}: missing ${f} (expected the CIFAR-10 binary version)`);
      const b = fs.readFileSync(p);
      if (b.length === 0 || b.length % CIFAR_RECORD !== 0) throw new ConvNextError(`${p}: ${b.length} bytes is not a whole number of ${CIFAR_RECORD}-byte records`);
      return { p, b };
    });
    const n = bufs.reduce((s, x) => s + x.b.length / CIFAR_RECORD, 0);
    const pixels = sharedBytes(n * 3072);
    const labels = sharedBytes(n);
    let k = 0;
    for (const { p, b } of bufs) {
      for (let r = 0; r < b.length / CIFAR_RECORD; r++, k++) {
        const lab = b[r * CIFAR_RECORD];
        if (lab >= 10) throw new ConvNextError(`${p}: record ${r} has label ${lab}`);
        labels[k] = lab;
        pixels.set(b.subarray(r * CIFAR_RECORD + 1, (r + 1) * CIFAR_RECORD), k * 3072);
      }
    }
    return new RawDataset(`cifar10 ${dir} (${partName}, ${n} images 32x32)`, classes, pixels, labels, 32, 32, 3, true, warn);
  };
  return {
    train: part([1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`), 'train'),
    heldOut: part(['test_batch.bin'], 'test'),
    heldOutName: 'test',
  };
}

// ---- synthetic ---------------------------------------------------------------------------

class SyntheticDataset extends BaseDataset {
  constructor(readonly split: 'train' | 'val', readonly length: number, readonly size: number, readonly seed: number, warn: (m: string) => void, source?: string) {
    super(source ?? `synthetic (${split}, ${length} images ${size}x${size}, seed ${seed})`, [...SYNTHETIC_CLASSES], warn);
  }
  label(i: number): number {
    this.checkIndex(i);
    return i % SYNTHETIC_CLASSES.length;
  }
  load(i: number): Promise<Image> {
    this.checkIndex(i);
    const S = this.size;
    const { image, label } = renderSynthetic(i, this.split, { size: S, seed: this.seed });
    const n = S * S;
    const data = new Uint8Array(n * 3);
    for (let c = 0; c < 3; c++) {
      for (let p = 0; p < n; p++) data[p * 3 + c] = Math.round(image[c * n + p] * 255);
    }
    return Promise.resolve({ width: S, height: S, data, label });
  }
  share(): SharedDataset {
    return { kind: 'synthetic', source: this.source, split: this.split, count: this.length, size: this.size, seed: this.seed };
  }
}

// ---- subsets -----------------------------------------------------------------------------

class SubsetDataset implements Dataset {
  readonly length: number;
  constructor(readonly base: Dataset, readonly indices: Int32Array, readonly source: string) {
    this.length = indices.length;
  }
  get classes(): string[] {
    return this.base.classes;
  }
  get skipped(): string[] {
    return this.base.skipped;
  }
  private map(i: number): number {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) throw new RangeError(`sample ${i} out of range [0, ${this.length})`);
    return this.indices[i];
  }
  load(i: number): Promise<Image> {
    return this.base.load(this.map(i));
  }
  label(i: number): number {
    return this.base.label(this.map(i));
  }
  reportSkipped(path: string, reason: string): void {
    this.base.reportSkipped(path, reason);
  }
  share(): SharedDataset {
    return { kind: 'subset', source: this.source, base: this.base.share(), indices: this.indices };
  }
}

/** Rebuilds a data set from {@link Dataset.share} (in a worker thread). */
export function datasetFromShared(s: SharedDataset, warn: (m: string) => void = DEFAULT_WARN): Dataset {
  switch (s.kind) {
    case 'folder':
      return new FolderDataset(s.source, s.classes, s.root, s.files.length > 0 ? s.files.split('\n') : [], s.labels, warn);
    case 'raw':
      return new RawDataset(s.source, s.classes, s.pixels, s.labels, s.width, s.height, s.channels, s.planar, warn);
    case 'synthetic':
      return new SyntheticDataset(s.split, s.count, s.size, s.seed, warn, s.source);
    case 'subset':
      return new SubsetDataset(datasetFromShared(s.base, warn), s.indices, s.source);
  }
}

// ---- openDataset ---------------------------------------------------------------------------

/** The deterministic carve-out: which of n training samples go to validation (sorted), and the rest. */
export function splitIndices(n: number, fraction: number, seed: number): { train: Int32Array; val: Int32Array } {
  const nVal = Math.round(n * fraction);
  const perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  new Rng((seed ^ 0x5eed5) >>> 0).shuffle(perm);
  const val = perm.slice(0, nVal).sort();
  const train = perm.slice(nVal).sort();
  return { train, val };
}

/**
 * Opens split `split` of the data set named by `spec` (see the file comment). `val` and
 * `test` are the same held-out part unless `valSplit` carves a validation part out of train;
 * asking for the one a data set does not name (test of synthetic, val of Fashion-MNIST) warns.
 */
export function openDataset(spec: string, split: Split, opts: OpenOptions = {}): Dataset {
  const warn = opts.warn ?? DEFAULT_WARN;
  const seed = opts.seed ?? 0;
  if (split !== 'train' && split !== 'val' && split !== 'test') throw new ConvNextError(`unknown split '${String(split)}' (train, val or test)`, 2);
  const valSplit = opts.valSplit ?? 0;
  if (!(valSplit >= 0 && valSplit < 1)) throw new ConvNextError(`val split ${valSplit} must be in [0, 1)`, 2);
  if (opts.limit !== undefined && !(Number.isInteger(opts.limit) && opts.limit > 0)) throw new ConvNextError(`limit ${opts.limit} must be a positive integer`, 2);

  let parts: PartsResult;
  const colon = spec.indexOf(':');
  const scheme = colon > 0 ? spec.slice(0, colon) : spec;
  const arg = colon > 0 ? spec.slice(colon + 1) : '';
  if (scheme === 'synthetic' && !fs.existsSync(spec)) {
    const size = arg !== '' ? Number(arg) : opts.syntheticSize ?? 64;
    if (!Number.isInteger(size) || size < 8 || size > 4096) throw new ConvNextError(`synthetic:${arg}: image size must be an integer in [8, 4096]`, 2);
    parts = {
      train: () => new SyntheticDataset('train', SYNTHETIC_TRAIN_SIZE, size, seed, warn),
      heldOut: () => new SyntheticDataset('val', SYNTHETIC_VAL_SIZE, size, seed, warn),
      heldOutName: 'val',
    };
  } else if ((scheme === 'fashion-mnist' || scheme === 'mnist') && !fs.existsSync(spec)) {
    if (scheme === 'mnist' && arg === '') throw new ConvNextError('mnist needs a folder: mnist:DIR', 2);
    const classes = scheme === 'mnist' ? ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'] : FASHION_MNIST_CLASSES;
    parts = openIdx(arg !== '' ? arg : FASHION_MNIST_DIR, classes, scheme, warn);
  } else if (scheme === 'cifar10' && !fs.existsSync(spec)) {
    if (arg === '') throw new ConvNextError('cifar10 needs a folder: cifar10:DIR', 2);
    parts = openCifar(arg, warn);
  } else {
    parts = openFolder(spec, warn);
  }

  let ds: Dataset;
  if (valSplit > 0 && split !== 'test') {
    const train = parts.train();
    const { train: tIdx, val: vIdx } = splitIndices(train.length, valSplit, seed);
    if (vIdx.length === 0 || tIdx.length === 0) throw new ConvNextError(`val split ${valSplit} of ${train.length} images leaves an empty part`, 2);
    const idx = split === 'train' ? tIdx : vIdx;
    ds = new SubsetDataset(train, idx, `${train.source}, ${split === 'train' ? 'training' : 'validation'} part of a ${valSplit} split (seed ${seed}): ${idx.length} images`);
  } else if (split === 'train') {
    ds = parts.train();
  } else {
    if (!parts.heldOut) throw new ConvNextError(`${spec}: no validation part (no val/ folder); carve one out of train with --val-split`, 2);
    ds = parts.heldOut();
    // One held-out part serves as both val and test: say which one a request got.
    if (split !== parts.heldOutName) warn(`${spec} has no separate ${split} part: using its ${parts.heldOutName} part (${ds.length} images)`);
  }
  if (opts.limit !== undefined && opts.limit < ds.length) {
    const idx = stratifiedIndices(ds, opts.limit, seed);
    const classes = new Set(Array.from(idx, (i) => ds.label(i))).size;
    ds = new SubsetDataset(ds, idx, `${ds.source}, limited to ${opts.limit} of ${ds.length} images (seed ${seed}, stratified: ${classes} of ${ds.classes.length} classes, each in its share)`);
  }
  return ds;
}

/**
 * A seeded, class-stratified choice of `n` of `ds`'s samples, in index order: each class gets
 * its share of n (largest remainders first, ties to the lower class), drawn at random within
 * the class. Labels only: no image is decoded.
 */
export function stratifiedIndices(ds: Pick<Dataset, 'length' | 'label'>, n: number, seed: number): Int32Array {
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < ds.length; i++) {
    const c = ds.label(i);
    let list = byClass.get(c);
    if (!list) byClass.set(c, (list = []));
    list.push(i);
  }
  const classes = [...byClass.keys()].sort((a, b) => a - b);
  const exact = classes.map((c) => (n * byClass.get(c)!.length) / ds.length);
  const take = exact.map(Math.floor);
  let left = n - take.reduce((a, b) => a + b, 0);
  const order = classes.map((_, k) => k).sort((a, b) => (exact[b] - take[b]) - (exact[a] - take[a]) || a - b);
  for (const k of order) {
    if (left === 0) break;
    take[k]++;
    left--;
  }
  const rng = new Rng((seed ^ 0x11a17) >>> 0);
  const out: number[] = [];
  classes.forEach((c, k) => {
    const members = Int32Array.from(byClass.get(c)!);
    rng.shuffle(members);
    out.push(...members.subarray(0, take[k]));
  });
  return Int32Array.from(out.sort((a, b) => a - b));
}
