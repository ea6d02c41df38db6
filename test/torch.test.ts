// PyTorch checkpoints without Python: reading the official .pt fixtures, the writer's round trip
// (byte-identical pickle to torch.save's), dtype conversion and strided views, hostile inputs
// (each a one-line ConvNextError, nothing called, nothing large allocated) and a seeded fuzz.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { ConvNextError } from '../src/errors.js';
import { type TensorData } from '../src/io/safetensors.js';
import { readSafetensors } from '../src/io/safetensors_file.js';
import { findStateDict, isTensorData, readTorchCheckpointBuffer, torchPickleBytes, torchTensorInfo, type TorchWritable } from '../src/io/torch.js';
import { readTorchCheckpoint, writeTorchCheckpoint } from '../src/io/torch_file.js';
import { isPickleRecord, isTuple, makeRecord, PickleWriter, unpickle, type PickleValue } from '../src/io/pickle.js';
import { openZipBuffer, ZipWriter, crc32 } from '../src/io/zip.js';
import { sameBits } from '../src/tensor.js';
import { assertOneLineError } from './helpers.js';

const FIX = new URL('./fixtures/reference/', import.meta.url).pathname;
const SMALL_PT = FIX + 'small_official.pt';
const FCMAE_PT = FIX + 'fcmae_small_official.pt';

function tmpDir(): string {
  return fs.mkdtempSync(nodePath.join(os.tmpdir(), 'convnextv2-torch-'));
}

/** Builds a zip in memory with ZipWriter. */
function zipOf(entries: ReadonlyArray<readonly [string, Uint8Array]>, zip64Threshold?: number): Uint8Array {
  const chunks: Uint8Array[] = [];
  const w = new ZipWriter((b) => chunks.push(b.slice()), { zip64Threshold });
  for (const [n, d] of entries) w.add(n, d);
  w.finish();
  return Buffer.concat(chunks);
}

/** All entries of a zip, in order. */
function entriesOf(bytes: Uint8Array): Array<[string, Uint8Array]> {
  const z = openZipBuffer(bytes, 'fixture');
  return z.entries.map((e) => [e.name, z.read(e)]);
}

/** Re-zips `bytes`, replacing each entry by `f(name, data)` (null drops it). */
function rezip(bytes: Uint8Array, f: (name: string, data: Uint8Array) => Uint8Array | null): Uint8Array {
  const out: Array<[string, Uint8Array]> = [];
  for (const [n, d] of entriesOf(bytes)) {
    const r = f(n, d);
    if (r) out.push([n, r]);
  }
  return zipOf(out);
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A torch-style archive around a pickle and raw storages. */
function archive(pkl: Uint8Array, storages: ReadonlyArray<readonly [string, Uint8Array]>, byteorder = 'little'): Uint8Array {
  return zipOf([
    ['archive/data.pkl', pkl],
    ['archive/byteorder', text(byteorder)],
    ...storages.map(([k, d]) => [`archive/data/${k}`, d] as const),
    ['archive/version', text('3\n')],
  ]);
}

interface ViewSpec {
  type: string;
  key: string;
  numel: number;
  offset?: number;
  size: number[];
  stride: number[];
  /** `_rebuild_tensor_v3` with this torch dtype name. */
  v3?: string;
  /** Wrap in `_rebuild_parameter(..., requires_grad=True, ...)`. */
  param?: boolean;
}

/** Writes a tensor rebuild call for `s` with the pickle writer. */
function writeView(w: PickleWriter, s: ViewSpec): void {
  const tuple = (n: number, f: () => void): void => { if (n > 3) w.mark(); f(); w.tuple(n); };
  if (s.param) w.global('torch._utils', '_rebuild_parameter');
  w.global('torch._utils', s.v3 ? '_rebuild_tensor_v3' : '_rebuild_tensor_v2');
  tuple(s.v3 ? 7 : 6, () => {
    tuple(5, () => { w.string('storage'); w.global('torch', s.type); w.string(s.key); w.string('cpu'); w.int(s.numel); });
    w.binpersid();
    w.int(s.offset ?? 0);
    tuple(s.size.length, () => s.size.forEach((d) => w.int(d)));
    tuple(s.stride.length, () => s.stride.forEach((d) => w.int(d)));
    w.bool(false);
    w.global('collections', 'OrderedDict'); w.emptyTuple(); w.reduce();
    if (s.v3) w.global('torch', s.v3);
  });
  w.reduce();
  if (s.param) {
    w.bool(true);
    w.global('collections', 'OrderedDict'); w.emptyTuple(); w.reduce();
    w.tuple(3);
    w.reduce();
  }
}

/** A pickle of `{name: view, ...}` (a plain dict). */
function viewsPickle(views: ReadonlyArray<readonly [string, ViewSpec]>): Uint8Array {
  const w = new PickleWriter();
  w.emptyDict();
  for (const [name, v] of views) {
    w.string(name);
    writeView(w, v);
    w.setitem();
  }
  return w.finish();
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
}

function getMap(v: PickleValue): Map<PickleValue, PickleValue> {
  assert.ok(v instanceof Map, 'expected a dict');
  return v;
}

// Official ConvNeXt-V2 names -> timm names (the fixture's small_timm.safetensors).
function officialToTimm(name: string): string {
  const rules: Array<[RegExp, string]> = [
    [/^downsample_layers\.0\.0\.(\w+)$/, 'stem.0.$1'],
    [/^downsample_layers\.0\.1\.(\w+)$/, 'stem.1.$1'],
    [/^downsample_layers\.(\d)\.(\d)\.(\w+)$/, 'stages.$1.downsample.$2.$3'],
    [/^stages\.(\d)\.(\d+)\.dwconv\.(\w+)$/, 'stages.$1.blocks.$2.conv_dw.$3'],
    [/^stages\.(\d)\.(\d+)\.norm\.(\w+)$/, 'stages.$1.blocks.$2.norm.$3'],
    [/^stages\.(\d)\.(\d+)\.pwconv1\.(\w+)$/, 'stages.$1.blocks.$2.mlp.fc1.$3'],
    [/^stages\.(\d)\.(\d+)\.pwconv2\.(\w+)$/, 'stages.$1.blocks.$2.mlp.fc2.$3'],
    [/^stages\.(\d)\.(\d+)\.grn\.gamma$/, 'stages.$1.blocks.$2.mlp.grn.weight'],
    [/^stages\.(\d)\.(\d+)\.grn\.beta$/, 'stages.$1.blocks.$2.mlp.grn.bias'],
    [/^norm\.(\w+)$/, 'head.norm.$1'],
    [/^head\.(\w+)$/, 'head.fc.$1'],
  ];
  for (const [re, to] of rules) if (re.test(name)) return name.replace(re, to);
  throw new Error(`no timm name for ${name}`);
}

// ---------------------------------------------------------------------------------------------
// The official fixtures

test('small_official.pt: "model" tensors equal small_timm params bit for bit', () => {
  const ck = readTorchCheckpoint(SMALL_PT);
  const top = getMap(ck);
  assert.deepEqual([...top.keys()], ['model']);
  const sd = findStateDict(ck, undefined, SMALL_PT);
  const timm = readSafetensors(FIX + 'small_timm.safetensors');
  const params = [...timm.keys()].filter((k) => k.startsWith('param.'));
  assert.equal(sd.size, params.length);
  assert.equal(sd.size, 100);
  for (const [name, t] of sd) {
    const ref = timm.get(`param.${officialToTimm(name)}`);
    assert.ok(ref, `small_timm lacks ${officialToTimm(name)}`);
    // GRN gamma/beta are [1,1,1,C] in the official layout and [C] in timm's.
    if (/grn/.test(name)) assert.deepEqual(t.shape, [1, 1, 1, ref.shape[0]]);
    else assert.deepEqual(t.shape, ref.shape, name);
    assert.ok(sameBits(t.data, ref.data), `${name} differs`);
    assert.deepEqual(torchTensorInfo(t)?.dtype, 'float32');
  }
  assert.equal(findStateDict(ck, 'model').size, 100);
});

test('fcmae_small_official.pt: inert argparse Namespace, epoch 799, tensors equal fcmae_small params', () => {
  const ck = readTorchCheckpoint(FCMAE_PT);
  const top = getMap(ck);
  assert.deepEqual([...top.keys()], ['model', 'epoch', 'args']);
  assert.equal(top.get('epoch'), 799);
  const args = top.get('args');
  assert.ok(isPickleRecord(args), 'args is an inert record');
  assert.equal(args.__class__, 'argparse.Namespace');
  assert.equal(args.mask_ratio, 0.6);
  assert.equal(args.input_size, 128);
  assert.equal(args.model, 'convnextv2_custom');
  assert.equal(typeof (args as unknown as { call?: unknown }).call, 'undefined');
  const sd = findStateDict(ck);
  const ref = readSafetensors(FIX + 'fcmae_small.safetensors');
  const params = [...ref.keys()].filter((k) => k.startsWith('param.'));
  assert.equal(sd.size, params.length);
  for (const [name, t] of sd) {
    const r = ref.get(`param.${name}`);
    assert.ok(r, `fcmae_small lacks param.${name}`);
    assert.deepEqual(t.shape, r.shape, name);
    assert.ok(sameBits(t.data, r.data), `${name} differs`);
  }
  assert.ok(sd.has('encoder.stages.0.0.dwconv.kernel'));
  assert.ok(sd.has('mask_token'));
});

test('findStateDict: key choice and clear errors', () => {
  const t: TensorData = { shape: [1], data: new Float32Array([1]) };
  const sd = new Map<PickleValue, PickleValue>([['w', t]]);
  assert.equal(findStateDict(new Map<PickleValue, PickleValue>([['model_ema', sd], ['x', 1]])).get('w'), t);
  assert.equal(findStateDict(new Map<PickleValue, PickleValue>([['state_dict', sd]])).get('w'), t);
  assert.equal(findStateDict(sd).get('w'), t);
  const both = new Map<PickleValue, PickleValue>([['model', sd], ['model_ema', new Map<PickleValue, PickleValue>([['v', t]])]]);
  assert.ok(findStateDict(both).has('w'));
  assert.ok(findStateDict(both, 'model_ema').has('v'));
  assertOneLineError(() => findStateDict(both, 'nope', 'x.pt'), /^x\.pt: no key "nope" \(keys: "model", "model_ema"\)$/);
  assertOneLineError(() => findStateDict(new Map<PickleValue, PickleValue>([['epoch', 3]]), undefined, 'y.pt'), /^y\.pt: no state dict of tensors/);
});

// ---------------------------------------------------------------------------------------------
// Writer

test('writer: re-saving small_official.pt gives the same data.pkl bytes and layout as torch.save', () => {
  const orig = fs.readFileSync(SMALL_PT);
  const ck = readTorchCheckpoint(SMALL_PT);
  const dir = tmpDir();
  try {
    const out = nodePath.join(dir, 'resaved.pt');
    writeTorchCheckpoint(out, ck as TorchWritable);
    const mine = fs.readFileSync(out);
    assert.equal(mine.length, orig.length);
    const a = entriesOf(orig);
    const b = entriesOf(mine);
    assert.deepEqual(b.map(([n]) => n), a.map(([n]) => n));
    const za = openZipBuffer(orig);
    const zb = openZipBuffer(mine);
    for (let i = 0; i < a.length; i++) {
      assert.equal(zb.entries[i].dataOffset, za.entries[i].dataOffset, `offset of ${a[i][0]}`);
      assert.equal(zb.entries[i].dataOffset % 64, 0);
      if (a[i][0] !== 'archive/.data/serialization_id') assert.ok(Buffer.from(b[i][1]).equals(Buffer.from(a[i][1])), `${a[i][0]} differs`);
      else assert.match(new TextDecoder().decode(b[i][1]), /^\d{40}$/);
    }
    // Only the serialization id and the CRC-32 fields that cover it may differ.
    let diff = 0;
    for (let i = 0; i < orig.length; i++) if (orig[i] !== mine[i]) diff++;
    assert.ok(diff <= 48, `${diff} bytes differ`);
    assert.deepEqual(fs.readdirSync(dir), ['resaved.pt'], 'no temporary file left');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('writer: data.pkl of the FCMAE checkpoint (Namespace, epoch) is byte-identical to torch.save', () => {
  const orig = fs.readFileSync(FCMAE_PT);
  const z = openZipBuffer(orig);
  const pkl = z.read(z.get('archive/data.pkl') as NonNullable<ReturnType<typeof z.get>>);
  const mine = torchPickleBytes(readTorchCheckpoint(FCMAE_PT) as TorchWritable);
  assert.ok(Buffer.from(mine).equals(Buffer.from(pkl)));
});

test('writer: round trip of a general object is exact', () => {
  const rnd = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7) * 3 + (i % 7 === 0 ? NaN : 0));
  const shared: TensorData = { shape: [2, 3], data: rnd(6) };
  const model = new Map<string, TensorData>([
    ['a.weight', { shape: [4, 3, 2, 2], data: rnd(48) }],
    ['a.bias', { shape: [4], data: rnd(4) }],
    ['scalar', { shape: [], data: new Float32Array([2.5]) }],
    ['empty', { shape: [0, 3], data: new Float32Array(0) }],
    ['tied.0', shared],
    ['tied.1', shared],
    ['grn.gamma', { shape: [1, 1, 1, 5], data: rnd(5) }],
  ]);
  const obj: TorchWritable = {
    model,
    epoch: 12,
    big: 2n ** 70n,
    neg: -123456789012,
    lr: 1.5e-4,
    flags: [true, false, null],
    pair: Object.freeze([1, 'two']),
    name: 'ConvNeXt V2 \u2014 \u{1F600}',
    raw: new Uint8Array([0, 1, 255, 128]),
    nested: { list: [1, [2, [3]]], map: new Map<string | number, TorchWritable>([[7, 'seven'], ['x', 1.25]]) },
    args: makeRecord('argparse.Namespace', [['mask_ratio', 0.6], ['input_size', 224], ['model', 'convnextv2_atto']]),
  };
  const dir = tmpDir();
  try {
    const p = nodePath.join(dir, 'ck.pt');
    writeTorchCheckpoint(p, obj);
    const back = getMap(readTorchCheckpoint(p));
    const sd = findStateDict(back);
    assert.deepEqual([...sd.keys()], [...model.keys()]);
    for (const [k, t] of model) {
      const u = sd.get(k) as TensorData;
      assert.deepEqual(u.shape, t.shape, k);
      assert.ok(sameBits(u.data, t.data), k);
    }
    // Tied tensors share one storage, as torch.save writes them.
    assert.equal(torchTensorInfo(sd.get('tied.0') as TensorData)?.storage, torchTensorInfo(sd.get('tied.1') as TensorData)?.storage);
    assert.equal(back.get('epoch'), 12);
    assert.equal(back.get('big'), 2n ** 70n);
    assert.equal(back.get('neg'), -123456789012);
    assert.equal(back.get('lr'), 1.5e-4);
    assert.deepEqual(back.get('flags'), [true, false, null]);
    assert.ok(isTuple(back.get('pair')));
    assert.deepEqual([...(back.get('pair') as PickleValue[])], [1, 'two']);
    assert.equal(back.get('name'), 'ConvNeXt V2 \u2014 \u{1F600}');
    assert.deepEqual([...(back.get('raw') as Uint8Array)], [0, 1, 255, 128]);
    const nested = getMap(back.get('nested') as PickleValue);
    assert.deepEqual(nested.get('list'), [1, [2, [3]]]);
    assert.deepEqual([...getMap(nested.get('map') as PickleValue)], [[7, 'seven'], ['x', 1.25]]);
    const args = back.get('args');
    assert.ok(isPickleRecord(args));
    assert.equal(args.__class__, 'argparse.Namespace');
    assert.equal(args.mask_ratio, 0.6);
    // Writing what was read gives the file's pickle again, byte for byte.
    const zip = openZipBuffer(fs.readFileSync(p));
    const pkl = zip.read(zip.entries.find((e) => e.name.endsWith('/data.pkl'))!);
    assert.ok(Buffer.from(torchPickleBytes(back as TorchWritable)).equals(Buffer.from(pkl)), 'read -> write gives the same data.pkl');
    assert.ok(Buffer.from(torchPickleBytes(obj)).equals(Buffer.from(pkl)), 'torchPickleBytes is what writeTorchCheckpoint wrote');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('writer: refuses cycles, bad shapes and dangerous record classes; failures leave no file', () => {
  const dir = tmpDir();
  try {
    const p = nodePath.join(dir, 'bad.pt');
    const cyc: TorchWritable[] = [];
    cyc.push(cyc);
    assertOneLineError(() => writeTorchCheckpoint(p, cyc), /cycle/);
    assertOneLineError(() => writeTorchCheckpoint(p, { model: new Map([['w', { shape: [2, 2], data: new Float32Array(3) }]]) }), /shape \[2,2\] has 3 values/);
    assertOneLineError(() => writeTorchCheckpoint(p, { r: makeRecord('os.system') }), /cannot be written/);
    assert.deepEqual(fs.readdirSync(dir), []);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// Reader features: dtypes, views, byte order, zip variants

test('reader: dtype conversion, strided views, offsets, broadcast, v3 and parameters', () => {
  const f64 = Float64Array.from([0, 1, 2, 3, 4, 5]);
  const half = Uint16Array.from([0x3c00, 0xc000, 0x3800, 0x7c00]);
  const bf16 = Uint16Array.from([0x3f80, 0xc040]);
  const i64 = BigInt64Array.from([-5n, 2n ** 40n]);
  const big = Float32Array.from({ length: 10000 }, (_, i) => i);
  const views: Array<[string, ViewSpec]> = [
    ['transposed', { type: 'DoubleStorage', key: 'd', numel: 6, size: [2, 3], stride: [1, 2] }],
    ['offset', { type: 'DoubleStorage', key: 'd', numel: 6, offset: 1, size: [2], stride: [3] }],
    ['half', { type: 'HalfStorage', key: 'h', numel: 4, size: [4], stride: [1] }],
    ['bf16', { type: 'BFloat16Storage', key: 'b', numel: 2, size: [2], stride: [1] }],
    ['long', { type: 'LongStorage', key: 'l', numel: 2, size: [2], stride: [1] }],
    ['int', { type: 'IntStorage', key: 'i', numel: 3, size: [3], stride: [1] }],
    ['bool', { type: 'BoolStorage', key: 'o', numel: 3, size: [3], stride: [1] }],
    ['byte', { type: 'ByteStorage', key: 'u8', numel: 2, size: [2], stride: [1] }],
    ['broadcast', { type: 'FloatStorage', key: 'f', numel: 1, size: [3, 2], stride: [0, 0] }],
    ['v3half', { type: 'UntypedStorage', key: 'u', numel: 4, size: [2], stride: [1], v3: 'float16' }],
    ['param', { type: 'FloatStorage', key: 'f', numel: 1, size: [], stride: [], param: true }],
    ['sparse', { type: 'FloatStorage', key: 'big', numel: 10000, offset: 10, size: [2, 3], stride: [5000, 1] }],
    ['sliced', { type: 'FloatStorage', key: 'big', numel: 10000, offset: 4, size: [3, 2], stride: [10, 2] }],
  ];
  const storages: Array<[string, Uint8Array]> = [
    ['d', bytesOf(f64)], ['h', bytesOf(half)], ['b', bytesOf(bf16)], ['l', bytesOf(i64)],
    ['i', bytesOf(Int32Array.from([-7, 0, 2 ** 30]))], ['o', Uint8Array.from([1, 0, 2])], ['u8', Uint8Array.from([0, 255])],
    ['f', bytesOf(Float32Array.from([7]))], ['u', bytesOf(Uint16Array.from([0x3c00, 0x4000]))], ['big', bytesOf(big)],
  ];
  const run = (bytes: Uint8Array): Map<PickleValue, PickleValue> => getMap(readTorchCheckpointBuffer(bytes, 'views.pt'));
  const check = (m: Map<PickleValue, PickleValue>): void => {
    const g = (k: string): TensorData => {
      const t = m.get(k);
      assert.ok(isTensorData(t), k);
      return t;
    };
    assert.deepEqual([...g('transposed').data], [0, 2, 4, 1, 3, 5]);
    assert.deepEqual(g('transposed').shape, [2, 3]);
    assert.deepEqual([...g('offset').data], [1, 4]);
    assert.deepEqual([...g('half').data], [1, -2, 0.5, Infinity]);
    assert.equal(torchTensorInfo(g('half'))?.dtype, 'float16');
    assert.deepEqual([...g('bf16').data], [1, -3]);
    assert.deepEqual([...g('long').data], [-5, 2 ** 40]);
    assert.deepEqual([...g('int').data], [-7, 0, 2 ** 30]);
    assert.deepEqual([...g('bool').data], [1, 0, 1]);
    assert.deepEqual([...g('byte').data], [0, 255]);
    assert.deepEqual([...g('broadcast').data], [7, 7, 7, 7, 7, 7]);
    assert.deepEqual([...g('v3half').data], [1, 2]);
    assert.deepEqual(g('param').shape, []);
    assert.deepEqual([...g('param').data], [7]);
    assert.equal(torchTensorInfo(g('param'))?.requiresGrad, true);
    assert.deepEqual([...g('sparse').data], [10, 11, 12, 5010, 5011, 5012]);
    assert.deepEqual([...g('sliced').data], [4, 6, 14, 16, 24, 26]);
  };
  const pkl = viewsPickle(views);
  check(run(archive(pkl, storages)));
  // The same values stored big-endian.
  const swapped = storages.map(([k, d]) => {
    const size = { d: 8, h: 2, b: 2, l: 8, i: 4, o: 1, u8: 1, f: 4, u: 1, big: 4 }[k] as number;
    const s = d.slice();
    for (let i = 0; i < s.length; i += size) s.subarray(i, i + size).reverse();
    return [k, s] as [string, Uint8Array];
  });
  // UntypedStorage is bytes: its float16 view is swapped per 2 bytes by the v3 dtype.
  const u = swapped.find(([k]) => k === 'u') as [string, Uint8Array];
  u[1] = bytesOf(Uint16Array.from([0x003c, 0x0040]));
  check(run(archive(pkl, swapped, 'big')));
});

test('reader: Python-written zip (deflate, zip64 local header, comment, other top folder)', () => {
  // Made by Python's zipfile: ZIP_DEFLATED for all entries, force_zip64 for data.pkl, a comment.
  const b64 = 'UEsDBC0AAAAIAAAAIQB5dv9l//////////8NABQAdGlueS9kYXRhLnBrbAEAEADIAAAAAAAAAKoAAAAAAAAAJY67DoIwGIULFdF6fQxciPEZjEsHIy5sDbaNkFTK34tOJk4kvrUVppOcfOfyid+AsjJBCD20kAoizrVSkrtGt5acjZBGimPDHYF4VwAuo4C+YMKdNrzOmXeNsoQZefONEszJ1mrDngcCSZaVaYBtIKu7hOkYISelK3cdTQLpULiHWYmD8s7DnE4dkAtFNKa4hwXFNOph+a3/+ysH6wI2dngsO81r2NLU5z9QSwMEFAAAAAgAfFF6XYU94xkIAAAABgAAAA4AAAB0aW55L2J5dGVvcmRlcsvJLCnJSQUAUEsDBBQAAAAIAHxRel0upcuvGQAAABgAAAALAAAAdGlueS9kYXRhLzBjYGiwZ2BgOMDAkODAwNBgB2TvyxdqtgIAUEsDBBQAAAAIAHxRel3RnmdVBAAAAAIAAAAMAAAAdGlueS92ZXJzaW9uM+YCAFBLAQItAy0AAAAIAAAAIQB5dv9lqgAAAMgAAAANAAAAAAAAAAAAAACAAQAAAAB0aW55L2RhdGEucGtsUEsBAhQDFAAAAAgAfFF6XYU94xkIAAAABgAAAA4AAAAAAAAAAAAAAIAB6QAAAHRpbnkvYnl0ZW9yZGVyUEsBAhQDFAAAAAgAfFF6XS6ly68ZAAAAGAAAAAsAAAAAAAAAAAAAAIABHQEAAHRpbnkvZGF0YS8wUEsBAhQDFAAAAAgAfFF6XdGeZ1UEAAAAAgAAAAwAAAAAAAAAAAAAAIABXwEAAHRpbnkvdmVyc2lvblBLBQYAAAAABAAEAOoAAACNAQAAGQB3cml0dGVuIGJ5IFB5dGhvbiB6aXBmaWxl';
  const ck = getMap(readTorchCheckpointBuffer(Buffer.from(b64, 'base64'), 'tiny.pt'));
  assert.equal(ck.get('epoch'), 7);
  const w = findStateDict(ck).get('w') as TensorData;
  assert.deepEqual(w.shape, [2, 3]);
  assert.ok(sameBits(w.data, Float32Array.from([1, -2, 3.5, 0.25, -0.125, 1e-3])));
});

test('zip: zip64 records and extra fields written and read back (forced with a low threshold)', () => {
  const entries: Array<[string, Uint8Array]> = [
    ['archive/a', text('hello')],
    ['archive/b', new Uint8Array(300).fill(7)],
    ['archive/c', new Uint8Array(10).fill(1)],
  ];
  const bytes = zipOf(entries, 100);
  const z = openZipBuffer(bytes, 'z64');
  assert.deepEqual(z.entries.map((e) => e.name), entries.map(([n]) => n));
  for (const [i, e] of z.entries.entries()) {
    assert.equal(e.dataOffset % 64, 0);
    assert.ok(Buffer.from(z.read(e)).equals(Buffer.from(entries[i][1])));
    assert.equal(e.crc32, crc32(entries[i][1]));
  }
  assert.deepEqual([...z.readRange(z.entries[1], 295, 5)], [7, 7, 7, 7, 7]);
  assertOneLineError(() => z.readRange(z.entries[1], 299, 5), /bytes \[299, 304\) requested, it has 300/);
  // A corrupted byte is caught by the CRC check, not by a read without it.
  const bad = bytes.slice();
  bad[z.entries[0].dataOffset] ^= 1;
  const zb = openZipBuffer(bad, 'bad.zip');
  assertOneLineError(() => zb.read(zb.entries[0]), /^bad\.zip: entry archive\/a: CRC-32 mismatch/);
  assert.equal(zb.read(zb.entries[0], { verifyCrc: false }).length, 5);
});

// ---------------------------------------------------------------------------------------------
// Hostile inputs

/** A checkpoint whose data.pkl is `pkl`. */
const withPickle = (pkl: Uint8Array): Uint8Array => archive(pkl, []);
const bytesLit = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
/** A protocol-4 pickle: PROTO 4, one FRAME holding `body`. */
const framed = (body: string): string => {
  const n = body.length;
  return '\x80\x04\x95' + String.fromCharCode(n & 0xff, n >> 8, 0, 0, 0, 0, 0, 0) + body;
};

test('hostile: os.system via GLOBAL + REDUCE is refused when GLOBAL is read, nothing runs', () => {
  const dir = tmpDir();
  try {
    const marker = nodePath.join(dir, 'pwned');
    const cmd = `touch ${marker}`;
    const pkl = bytesLit(`\x80\x02cos\nsystem\nX${String.fromCharCode(cmd.length, 0, 0, 0)}${cmd}\x85R.`);
    const file = nodePath.join(dir, 'evil.pt');
    fs.writeFileSync(file, withPickle(pkl));
    const msg = assertOneLineError(() => readTorchCheckpoint(file), /evil\.pt: data\.pkl: refused global os\.system: could run code \(at byte 2\)$/);
    assert.ok(msg.length < 300);
    assertOneLineError(() => unpickle(pkl), /^pickle: refused global os\.system/);
    assert.ok(!fs.existsSync(marker), 'the command ran');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('hostile: builtins.eval, __builtin__.eval, posix.system via STACK_GLOBAL, and friends', () => {
  const cases: Array<[string, RegExp]> = [
    ['\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R.', /refused global builtins\.eval/],
    ['\x80\x02c__builtin__\neval\nX\x01\x00\x00\x001\x85R.', /refused global builtins\.eval/],
    [framed('\x8c\x05posix\x94\x8c\x06system\x94\x93\x94\x8c\x02id\x94\x85\x94R\x94.'), /refused global posix\.system: could run code \(at byte 28\)/],
    ['\x80\x02cnt\nsystem\n)R.', /refused global nt\.system/],
    ['\x80\x02csubprocess\nPopen\n)R.', /refused global subprocess\.Popen/],
    ['\x80\x02cbuiltins\ngetattr\n)R.', /refused global builtins\.getattr/],
    ['\x80\x02cbuiltins\n__import__\n)R.', /refused global builtins\.__import__/],
    ['\x80\x02ctorch\nload\n)R.', /refused global torch\.load: could run code/],
    ['\x80\x02ctorch.serialization\n_load\n)R.', /refused global torch\.serialization\._load: is not allow-listed/],
    ['\x80\x02cnumpy\nload\n)R.', /refused global numpy\.load/],
    ['\x80\x02c_posixsubprocess\nfork_exec\n)R.', /refused global _posixsubprocess\.fork_exec/],
    ['\x80\x02cargparse\n__globals__\n)R.', /refused global argparse\.__globals__/],
    ['\x80\x02cos.path\njoin\n)R.', /refused global os\.path\.join/],
    ['\x80\x02cx y\nz\n)R.', /is not a valid Python name/],
    // A benign class may be instantiated inertly (NEWOBJ) but never called (REDUCE).
    ['\x80\x02cargparse\nNamespace\nX\x01\x00\x00\x00a\x85R.', /REDUCE calls argparse\.Namespace, which is not an allow-listed callable/],
    // Calling something that is not callable at all.
    ['\x80\x02K\x01)R.', /REDUCE calls an int, which is not callable/],
    ['\x80\x02\x82\x01.', /opcode EXT1 is not supported/],
    ['\x80\x02cinspect\ngetmembers\n)R.', /refused global inspect\.getmembers/],
  ];
  for (const [s, re] of cases) {
    assertOneLineError(() => readTorchCheckpointBuffer(withPickle(bytesLit(s)), 'evil.pt'), re);
  }
  // NEWOBJ of a benign class gives an inert record; nothing is called.
  const rec = unpickle(bytesLit('\x80\x02cmyproj.config\nConfig\n)\x81}X\x01\x00\x00\x00aK\x05sb.'));
  assert.ok(isPickleRecord(rec));
  assert.equal(rec.__class__, 'myproj.config.Config');
  assert.equal(rec.a, 5);
  // A state key named __proto__ is a plain property, not a prototype change.
  const rec2 = unpickle(bytesLit('\x80\x02cm\nC\n)\x81}X\x09\x00\x00\x00__proto__}sb.'));
  assert.ok(isPickleRecord(rec2));
  assert.equal(Object.getPrototypeOf(rec2), Object.prototype);
});

test('hostile: bounds on pickle lengths, memo, stack and marks', () => {
  const cases: Array<[string, RegExp]> = [
    ['\x80\x02X\xf0\xff\xff\xff', /BINUNICODE of 4294967280 bytes runs past the end of the pickle/],
    ['\x80\x04\x8d\xff\xff\xff\xff\xff\xff\x00\x00', /BINUNICODE8 claims over 4 GiB/],
    ['\x80\x02B\xff\xff\xff\x7fab', /BINBYTES of 2147483647 bytes runs past the end/],
    ['\x80\x02\x8b\xff\xff\xff\x7f', /LONG4 of 2147483647 bytes is over the limit/],
    ['\x80\x02h\x05.', /memo key 5 is not defined/],
    ['\x80\x02j\xff\xff\xff\xff.', /memo key 4294967295 is not defined/],
    ['\x80\x02K\x01K\x02.', /STOP with more than one value/],
    ['\x80\x02(K\x01.', /STOP/],
    ['\x80\x02', /ends without STOP/],
    ['\x80\x02e.', /APPENDS without a mark/],
    ['\x80\x02]K\x01s.', /SETITEM on an empty stack|SETITEM on a list/],
    ['\x80\x09.', /protocol 9 is not supported/],
    ['\x80\x02\xff', /invalid opcode 0xff/],
    ['\x80\x02)K\x01a.', /APPEND on a tuple, not a list/],
  ];
  for (const [s, re] of cases) assertOneLineError(() => unpickle(bytesLit(s), { source: 'p' }), re);
  assertOneLineError(() => unpickle(new Uint8Array(70000).fill(0x28)), /marks nested over 65536 deep/);
  assertOneLineError(() => unpickle(bytesLit('\x80\x02' + 'N'.repeat(100) + '.'), { maxStack: 50 }), /stack over 50 entries/);
  const memo = new PickleWriter();
  memo.emptyList();
  for (let i = 0; i < 20; i++) memo.memoize();
  assertOneLineError(() => unpickle(memo.finish(), { maxMemo: 10 }), /memo over 10 entries/);
});

test('hostile: missing storage, short storage, bad persistent ids, views past the budget', () => {
  const small = fs.readFileSync(SMALL_PT);
  assertOneLineError(() => readTorchCheckpointBuffer(rezip(small, (n, d) => (n === 'archive/data/5' ? null : d)), 'm.pt'),
    /^m\.pt: storage data\/5 is missing from the archive$/);
  assertOneLineError(() => readTorchCheckpointBuffer(rezip(small, (n, d) => (n === 'archive/data/3' ? d.subarray(0, 40) : d)), 's.pt'),
    /^s\.pt: storage data\/3 has 40 bytes, tensor needs 64 \(shape \[16\], offset 0, float32\)/);
  const one = [['f', bytesOf(Float32Array.from([1]))]] as const;
  const view = (v: Partial<ViewSpec>): Uint8Array => archive(viewsPickle([['t', { type: 'FloatStorage', key: 'f', numel: 1, size: [1], stride: [1], ...v }]]), one);
  assertOneLineError(() => readTorchCheckpointBuffer(view({ size: [2] }), 'v.pt'), /storage data\/f has 4 bytes, tensor needs 8/);
  assertOneLineError(() => readTorchCheckpointBuffer(view({ offset: 1 }), 'v.pt'), /tensor needs 8/);
  assertOneLineError(() => readTorchCheckpointBuffer(view({ size: [60000, 60000], stride: [0, 0] }), 'v.pt'), /more than twice the storage bytes/);
  assertOneLineError(() => readTorchCheckpointBuffer(view({ size: [2 ** 20, 2 ** 20, 2 ** 20], stride: [0, 0, 0] }), 'v.pt'), /more than 4294967295 elements/);
  assertOneLineError(() => readTorchCheckpointBuffer(view({ size: [2], stride: [2 ** 50] }), 'v.pt'), /tensor needs|reaches past/);
  assertOneLineError(() => readTorchCheckpointBuffer(view({ size: [1, 2], stride: [1] }), 'v.pt'), /size has 2 dimensions but stride 1/);
  assertOneLineError(() => readTorchCheckpointBuffer(view({ numel: 5 }), 'v.pt'), /declares 5 float32 elements \(20 bytes\)/);
  assertOneLineError(() => readTorchCheckpointBuffer(view({ key: '../x' }), 'v.pt'), /storage key is not a plain name/);
  assertOneLineError(() => readTorchCheckpointBuffer(view({ type: 'ComplexFloatStorage' }), 'v.pt'), /torch\.ComplexFloatStorage is not supported/);
  assertOneLineError(() => readTorchCheckpointBuffer(view({ v3: 'complex64', type: 'UntypedStorage' }), 'v.pt'), /dtype torch\.complex64 are not supported/);
});

test('hostile: truncated zips, central directory out of bounds or of 1 TB, overlapping entries', () => {
  const small = fs.readFileSync(SMALL_PT);
  const before = process.memoryUsage().arrayBuffers;
  for (const cut of [1, 4, 21, 22, 100, 10000, small.length >> 1, small.length - 200, small.length - 98, small.length - 60, small.length - 23, small.length - 1]) {
    assertOneLineError(() => readTorchCheckpointBuffer(small.subarray(0, cut), `cut${cut}.pt`), new RegExp(`^cut${cut}\\.pt: `));
  }
  const eocd = small.length - 22;
  const z64 = small.length - 22 - 20 - 56;
  assert.equal(small.readUInt32LE(eocd), 0x06054b50);
  assert.equal(small.readUInt32LE(z64), 0x06064b50);
  const patch = (f: (b: Buffer) => void): Buffer => { const b = Buffer.from(small); f(b); return b; };
  assertOneLineError(() => readTorchCheckpointBuffer(patch((b) => b.writeBigUInt64LE(2n ** 40n, z64 + 40)), 'tb.pt'),
    /^tb\.pt: central directory of 1099511627776 bytes at offset \d+ runs past the end/);
  assertOneLineError(() => readTorchCheckpointBuffer(patch((b) => b.writeBigUInt64LE(BigInt(small.length + 1000), z64 + 48)), 'off.pt'),
    /central directory offset \d+ is past the end/);
  assertOneLineError(() => readTorchCheckpointBuffer(patch((b) => b.writeBigUInt64LE(2n ** 63n, z64 + 48)), 'off.pt'),
    /central directory offset over 2\^53 is past the end/);
  assertOneLineError(() => readTorchCheckpointBuffer(patch((b) => b.writeBigUInt64LE(2n ** 40n, z64 + 32)), 'n.pt'),
    /entries on this disk|over the limit/);
  assertOneLineError(() => readTorchCheckpointBuffer(patch((b) => b.writeBigUInt64LE(2n ** 50n, small.length - 42 + 8)), 'loc.pt'),
    /zip64 end-of-central-directory offset \d+ is outside the file/);
  // A classic zip (no zip64 records) claiming a central directory past the end / of ~4 GB.
  const classic = zipOf([['archive/data.pkl', bytesLit('\x80\x02N.')]]);
  const plain = Buffer.concat([classic.subarray(0, classic.length - 98), classic.subarray(classic.length - 22)]);
  assert.equal(plain.readUInt32LE(plain.length - 22), 0x06054b50);
  const p2 = Buffer.from(plain);
  p2.writeUInt32LE(0xfffffff0, p2.length - 22 + 12);
  assertOneLineError(() => readTorchCheckpointBuffer(p2, 'c.pt'), /central directory of 4294967280 bytes at offset \d+ runs past/);
  const p3 = Buffer.from(plain);
  p3.writeUInt32LE(0xfffff000, p3.length - 22 + 16);
  assertOneLineError(() => readTorchCheckpointBuffer(p3, 'c.pt'), /central directory offset 4294963200 is past the end/);
  // Local header offset past the directory; entry sizes beyond the data.
  const cd = plain.readUInt32LE(plain.length - 22 + 16);
  const p4 = Buffer.from(plain);
  p4.writeUInt32LE(0x7ffffff0, cd + 42);
  assertOneLineError(() => readTorchCheckpointBuffer(p4, 'c.pt'), /local header offset 2147483632 is past the start of the central directory/);
  const p5 = Buffer.from(plain);
  p5.writeUInt32LE(0x7ffffff0, cd + 20);
  p5.writeUInt32LE(0x7ffffff0, cd + 24);
  assertOneLineError(() => readTorchCheckpointBuffer(p5, 'c.pt'), /compressed size 2147483632 is larger than the archive data/);
  // Two directory entries pointing at the same data.
  const two = zipOf([['archive/data.pkl', bytesLit('\x80\x02N.')], ['archive/x', text('x')]]);
  const cd2 = two.length - 22 - 20 - 56 - (46 + 'archive/x'.length) - (46 + 'archive/data.pkl'.length);
  const t2 = Buffer.from(two);
  t2.writeUInt32LE(0, cd2 + 46 + 'archive/data.pkl'.length + 42);
  assertOneLineError(() => readTorchCheckpointBuffer(t2, 'o.pt'), /bad local header|differs|overlap/);
  // Nothing of the claimed sizes was allocated (the fixtures and patched copies are ~1 MB each).
  assert.ok(process.memoryUsage().arrayBuffers - before < 256 * 1024 * 1024);
});

test('hostile: legacy, empty, non-zip, TorchScript, directory and missing files', () => {
  const dir = tmpDir();
  try {
    const legacy = nodePath.join(dir, 'legacy.pt');
    fs.writeFileSync(legacy, bytesLit('\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.'));
    assertOneLineError(() => readTorchCheckpoint(legacy), /^.*legacy\.pt: legacy torch\.save format is not supported, re-save with torch\.save in PyTorch >= 1\.6$/);
    const empty = nodePath.join(dir, 'empty.pt');
    fs.writeFileSync(empty, '');
    assertOneLineError(() => readTorchCheckpoint(empty), /empty\.pt: empty file, not a PyTorch checkpoint$/);
    const txt = nodePath.join(dir, 'notes.pt');
    fs.writeFileSync(txt, 'hello world, not a checkpoint');
    assertOneLineError(() => readTorchCheckpoint(txt), /notes\.pt: not a PyTorch checkpoint \(no zip signature/);
    assertOneLineError(() => readTorchCheckpoint(nodePath.join(dir, 'absent.pt')), /absent\.pt: no such file$/);
    assertOneLineError(() => readTorchCheckpoint(dir), /is a directory/);
    const ts = zipOf([['m/constants.pkl', bytesLit('\x80\x02).')], ['m/code/m.py', text('x')], ['m/version', text('3')]]);
    assertOneLineError(() => readTorchCheckpointBuffer(ts, 'script.pt'), /TorchScript archive/);
    assertOneLineError(() => readTorchCheckpointBuffer(zipOf([['flat.pkl', bytesLit('\x80\x02N.')]]), 'flat.pt'), /is not in a folder/);
    assertOneLineError(() => readTorchCheckpointBuffer(zipOf([['a/other', text('x')]]), 'nopkl.pt'), /no a\/data\.pkl in the archive/);
    assertOneLineError(() => readTorchCheckpointBuffer(zipOf([['a/data.pkl', bytesLit('\x80\x02N.')], ['a/byteorder', text('middle')]]), 'bo.pt'), /says "middle", expected "little" or "big"/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// Fuzz

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('fuzz: 4,000 seeded mutations of both fixtures load or throw a one-line ConvNextError', { timeout: 120_000 }, () => {
  const bases = [fs.readFileSync(SMALL_PT), fs.readFileSync(FCMAE_PT)];
  // Regions worth hitting: the pickle (first entry) and the directory at the end.
  const pklEnd = bases.map((b) => { const z = openZipBuffer(b); const e = z.entries[0]; return e.dataOffset + e.size; });
  const rng = mulberry32(20240611);
  const int = (n: number): number => Math.floor(rng() * n);
  const N = 4000;
  let loaded = 0;
  let worst = 0;
  const t0 = performance.now();
  const kinds = new Map<string, number>();
  for (let i = 0; i < N; i++) {
    const which = i & 1;
    const base = bases[which];
    const pick = (): number => {
      const r = rng();
      if (r < 0.5) return int(pklEnd[which]);
      if (r < 0.75) return base.length - 1 - int(Math.min(base.length, 8192));
      return int(base.length);
    };
    let buf: Uint8Array;
    const kind = ['flip', 'flip', 'flip', 'insert', 'delete', 'truncate', 'overwrite'][int(7)];
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    if (kind === 'flip') {
      buf = Uint8Array.from(base);
      const n = 1 + int(4);
      for (let k = 0; k < n; k++) buf[pick()] ^= 1 + int(255);
    } else if (kind === 'insert') {
      const at = pick();
      const ins = Uint8Array.from({ length: 1 + int(16) }, () => int(256));
      buf = Buffer.concat([base.subarray(0, at), ins, base.subarray(at)]);
    } else if (kind === 'delete') {
      const at = pick();
      buf = Buffer.concat([base.subarray(0, at), base.subarray(Math.min(base.length, at + 1 + int(16)))]);
    } else if (kind === 'truncate') {
      buf = base.subarray(0, int(base.length));
    } else {
      // Overwrite a run with a value that often looks like a size: 0x00, 0xff or random.
      buf = Uint8Array.from(base);
      const at = pick();
      const v = [0, 0xff, int(256)][int(3)];
      buf.fill(v, at, Math.min(buf.length, at + 1 + int(8)));
    }
    const start = performance.now();
    try {
      const ck = readTorchCheckpointBuffer(buf, `fuzz#${i}`, { verifyCrc: i % 5 === 0 });
      findStateDict(ck);
      loaded++;
    } catch (err) {
      if (!(err instanceof ConvNextError)) {
        assert.fail(`case ${i} (${kind}) threw ${err instanceof Error ? `${err.name}: ${err.message}\n${err.stack}` : String(err)}`);
      }
      assert.ok(!/[\r\n]/.test(err.message), `case ${i}: message not one line`);
      assert.ok(err.message.startsWith(`fuzz#${i}: `), `case ${i}: message does not name the source: ${err.message}`);
    }
    const dt = performance.now() - start;
    worst = Math.max(worst, dt);
    assert.ok(dt < 2000, `case ${i} (${kind}) took ${dt.toFixed(0)} ms`);
  }
  const total = performance.now() - t0;
  assert.ok(loaded > 0 && loaded < N, `loaded ${loaded} of ${N}`);
  assert.ok(total < 60_000, `fuzz took ${total.toFixed(0)} ms`);
  console.log(`# fuzz: ${N} cases, ${loaded} loaded, ${N - loaded} rejected, worst ${worst.toFixed(1)} ms, total ${(total / 1000).toFixed(1)} s, kinds ${JSON.stringify(Object.fromEntries(kinds))}`);
});
