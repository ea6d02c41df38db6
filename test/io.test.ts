/**
 * safetensors reading/writing and checkpoint name mapping (src/io).
 * Run: node --import tsx --test test/io.test.ts
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConvNextError } from '../src/errors.js';
import { paramSpecs } from '../src/model/config.js';
import { Rng } from '../src/rng.js';
import { parseSafetensorsBuffer, serializeSafetensors, type TensorData } from '../src/io/safetensors.js';
import { openSafetensors, readSafetensors, readSafetensorsWithMetadata, writeSafetensors } from '../src/io/safetensors_file.js';
import { toCanonical, toOfficialNames, toTimmNames, toHfNames, detectNaming, planCanonical, type StateDict } from '../src/io/checkpoint.js';
import { loadCheckpoint, saveCheckpoint, exportCheckpoint } from '../src/io/checkpoint_file.js';
import { assertOneLineError, assertSameTensor, bits, REF, SMALL_TIMM, smallTimmParams } from './helpers.js';

const HF_DIR = path.join(REF, 'small_hf');

let tmp = '';
before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'convnextv2-io-')); });
after(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

/** A safetensors file from a hand-written header and data section. */
function rawFile(header: unknown, data: Uint8Array, pad = true): Buffer {
  let json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  if (pad && json.length % 8) json = Buffer.concat([json, Buffer.alloc(8 - (json.length % 8), 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

describe('safetensors reader', () => {
  test('reads every fixture with the expected shapes and values', () => {
    const t = openSafetensors(SMALL_TIMM);
    try {
      assert.equal(t.tensors.length, 216);
      assert.equal(t.metadata.format, 'timm');
      assert.equal(t.metadata.dims, '[16, 32, 48, 64]');
      assert.deepEqual(t.info('param.stem.0.weight').shape, [16, 3, 4, 4]);
      assert.deepEqual(t.info('input.1.pixel_values').shape, [1, 3, 96, 128]);
      assert.deepEqual(t.info('param.stages.3.blocks.1.mlp.fc1.weight').shape, [256, 64]);
      assert.deepEqual(t.info('grad.R').shape, [2, 10]);
      const w = t.get('param.stem.0.weight');
      assert.equal(w.length, 16 * 3 * 16);
      assert.deepEqual([...w.slice(0, 3)], [-0.044930778443813324, -0.10291705280542374, -0.10523192584514618]);
      assert.deepEqual([...t.get('param.stages.2.blocks.1.mlp.grn.weight').slice(0, 2)], [0.38648566603660583, -0.6012507677078247]);
      // Every byte of the data section belongs to exactly one tensor.
      const total = t.tensors.reduce((a, e) => a + e.byteLength, 0);
      const first = Math.min(...t.tensors.map((e) => e.offset));
      assert.equal(first + total, t.size);
    } finally {
      t.close();
    }

    const hf = readSafetensorsWithMetadata(path.join(HF_DIR, 'model.safetensors'));
    assert.equal(hf.tensors.size, 100);
    assert.deepEqual(hf.metadata, { format: 'pt' });
    assert.deepEqual(hf.tensors.get('convnextv2.encoder.stages.3.layers.1.grn.weight')?.shape, [1, 1, 1, 256]);
    assert.deepEqual([...(hf.tensors.get('convnextv2.encoder.stages.3.layers.1.grn.weight')?.data.slice(0, 2) ?? [])], [-0.5306317806243896, 0.8123778104782104]);
    assert.deepEqual(hf.tensors.get('classifier.weight')?.shape, [10, 64]);

    const exp = readSafetensors(path.join(HF_DIR, 'expected.safetensors'));
    assert.deepEqual([...exp.keys()], ['input.0.pixel_values', 'output.0.logits']);
    assert.deepEqual(exp.get('input.0.pixel_values')?.shape, [2, 3, 64, 64]);
    assert.deepEqual([...(exp.get('output.0.logits')?.data.slice(0, 2) ?? [])], [-0.03219202160835266, 0.15830375254154205]);

    const fc = readSafetensors(path.join(REF, 'fcmae_small.safetensors'));
    assert.equal(fc.size, 227);
    assert.deepEqual(fc.get('param.encoder.stages.0.0.dwconv.kernel')?.shape, [49, 16]);
    assert.deepEqual(fc.get('output.pred')?.shape, [2, 16, 3072]);
    assert.deepEqual([...(fc.get('output.loss')?.data ?? [])], [2.191049098968506]);
  });

  test('writing back what was read reproduces the reference writer byte for byte', () => {
    const file = path.join(HF_DIR, 'model.safetensors');
    const r = readSafetensorsWithMetadata(file);
    const again = Buffer.from(serializeSafetensors(r.tensors, r.metadata));
    assert.ok(again.equals(fs.readFileSync(file)), 'serialized bytes differ from the fixture');
    const exp = path.join(HF_DIR, 'expected.safetensors');
    const e = readSafetensorsWithMetadata(exp);
    assert.ok(Buffer.from(serializeSafetensors(e.tensors, e.metadata)).equals(fs.readFileSync(exp)));
  });

  test('converts F16, BF16, F64, F8 and integer dtypes on a hand-built file, at unaligned offsets', () => {
    const parts: Buffer[] = [];
    const header: Record<string, unknown> = { __metadata__: { who: 'hand' } };
    let off = 0;
    const add = (name: string, dtype: string, shape: number[], bytes: Buffer) => {
      header[name] = { dtype, shape, data_offsets: [off, off + bytes.length] };
      parts.push(bytes);
      off += bytes.length;
    };
    const u16 = (xs: number[]) => { const b = Buffer.alloc(xs.length * 2); xs.forEach((x, i) => b.writeUInt16LE(x, i * 2)); return b; };
    // One byte first, so every later tensor starts at an odd offset.
    add('flag', 'BOOL', [3], Buffer.from([1, 0, 7]));
    add('half', 'F16', [3, 3], u16([0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0xfc00, 0x7e00, 0x8000, 0x3555]));
    add('bf', 'BF16', [5], u16([0x3f80, 0xc049, 0x7f80, 0x0001, 0x4120]));
    const f64 = Buffer.alloc(4 * 8);
    [1 / 3, 1e300, -1.5, 2 ** -1074].forEach((x, i) => f64.writeDoubleLE(x, i * 8));
    add('dbl', 'F64', [2, 2], f64);
    const f32 = Buffer.alloc(3 * 4);
    [0.1, -2.5, 3e38].forEach((x, i) => f32.writeFloatLE(x, i * 4));
    add('single', 'F32', [3], f32);
    const i64 = Buffer.alloc(3 * 8);
    [-5n, 2n ** 40n, 7n].forEach((x, i) => i64.writeBigInt64LE(x, i * 8));
    add('labels', 'I64', [3], i64);
    const i32 = Buffer.alloc(2 * 4);
    [-123456, 99].forEach((x, i) => i32.writeInt32LE(x, i * 4));
    add('ints', 'I32', [2], i32);
    add('bytes', 'U8', [4], Buffer.from([0, 1, 128, 255]));
    add('e4m3', 'F8_E4M3', [4], Buffer.from([0x38, 0x7e, 0x01, 0xb8]));
    add('e5m2', 'F8_E5M2', [3], Buffer.from([0x3c, 0x7b, 0xc0]));
    add('empty', 'F16', [0, 5], Buffer.alloc(0));
    add('scalar', 'F32', [], Buffer.from(new Float32Array([42]).buffer));

    const file = path.join(tmp, 'dtypes.safetensors');
    fs.writeFileSync(file, rawFile(header, Buffer.concat(parts)));
    for (const r of [openSafetensors(file), parseSafetensorsBuffer(fs.readFileSync(file))]) {
      try {
        assert.deepEqual(r.metadata, { who: 'hand' });
        assert.equal(r.info('half').dtype, 'F16');
        assert.deepEqual([...r.get('flag')], [1, 0, 1]);
        const h = r.get('half');
        assert.deepEqual([...h.slice(0, 6)], [1, -2, 65504, 2 ** -24, Infinity, -Infinity]);
        assert.ok(Number.isNaN(h[6]));
        assert.ok(Object.is(h[7], -0));
        assert.equal(h[8], 0.333251953125);
        assert.deepEqual([...r.get('bf')], [1, -3.140625, Infinity, Math.fround(2 ** -133), 10]);
        assert.deepEqual([...r.get('dbl')], [Math.fround(1 / 3), Infinity, -1.5, 0]);
        assert.deepEqual([...r.getFloat64('dbl')], [1 / 3, 1e300, -1.5, 2 ** -1074]);
        assert.deepEqual([...r.get('single')], [Math.fround(0.1), -2.5, Math.fround(3e38)]);
        assert.deepEqual([...r.getFloat64('labels')], [-5, 2 ** 40, 7]);
        assert.deepEqual([...r.get('labels')], [-5, 2 ** 40, 7]);
        assert.deepEqual([...r.get('ints')], [-123456, 99]);
        assert.deepEqual([...r.get('bytes')], [0, 1, 128, 255]);
        assert.deepEqual([...r.get('e4m3')], [1, 448, 2 ** -9, -1]);
        assert.deepEqual([...r.get('e5m2')], [1, 57344, -2]);
        assert.deepEqual(r.getTensor('empty'), { shape: [0, 5], data: new Float32Array(0) });
        assert.deepEqual(r.getTensor('scalar'), { shape: [], data: new Float32Array([42]) });
      } finally {
        r.close();
      }
    }
  });

  test('reads a tensor lazily at an offset past 4 GiB (sparse file)', { skip: process.platform === 'win32' ? 'no sparse files' : false }, () => {
    const big = 4 * 1024 ** 3 + 12345;
    const header = {
      __metadata__: { note: 'sparse' },
      head: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      filler: { dtype: 'U8', shape: [big], data_offsets: [8, 8 + big] },
      tail: { dtype: 'F32', shape: [2, 2], data_offsets: [8 + big, 8 + big + 16] },
    };
    const prefix = rawFile(header, Buffer.from(new Float32Array([1.5, -2]).buffer));
    const file = path.join(tmp, 'sparse.safetensors');
    const fd = fs.openSync(file, 'w');
    try {
      fs.writeSync(fd, prefix, 0, prefix.length, 0);
      const tail = Buffer.from(new Float32Array([3, 4, 5, 6]).buffer);
      fs.writeSync(fd, tail, 0, tail.length, prefix.length + big);
    } finally {
      fs.closeSync(fd);
    }
    const r = openSafetensors(file);
    try {
      assert.ok(r.size > 4 * 1024 ** 3);
      assert.deepEqual(r.info('tail').offset, prefix.length + big);
      assert.deepEqual([...r.get('tail')], [3, 4, 5, 6]);
      assert.deepEqual([...r.get('head')], [1.5, -2]);
      assert.deepEqual(r.info('filler').shape, [big]);
    } finally {
      r.close();
    }
    fs.rmSync(file);
  });
});

describe('safetensors writer', () => {
  test('round trip is bit-exact, keeps order and metadata', () => {
    const nan = new Float32Array(new Uint32Array([0x7fc00001, 0xffa00000]).buffer);
    const tensors = new Map<string, TensorData>([
      ['z.last.but.first', { shape: [2, 3], data: new Float32Array([1, -0, Infinity, -Infinity, 1e-45, 3.4028234663852886e38]) }],
      ['10', { shape: [2], data: nan }],
      ['2', { shape: [1, 1, 1, 1], data: new Float32Array([0.1]) }],
      ['ünïcødé "quoted"', { shape: [0], data: new Float32Array(0) }],
      ['scalar', { shape: [], data: new Float32Array([7]) }],
      ['rand', { shape: [33, 7], data: Float32Array.from({ length: 231 }, (_v, i) => Math.sin(i * 12.9898) * 43758.5453) }],
    ]);
    const metadata = { config: JSON.stringify({ a: [1, 2], b: 'x\ny' }), step: '12', empty: '' };
    const file = path.join(tmp, 'roundtrip.safetensors');
    writeSafetensors(file, tensors, metadata);
    const bytes = fs.readFileSync(file);
    const headerLen = Number(bytes.readBigUInt64LE(0));
    assert.equal(headerLen % 8, 0, 'header padded to 8 bytes');
    // The header is one JSON object padded with spaces only, and the data starts right after it.
    const header = bytes.subarray(8, 8 + headerLen).toString('utf8');
    const json = header.trimEnd();
    assert.match(header.slice(json.length), /^ {0,7}$/, 'padding is at most 7 spaces');
    const parsed = JSON.parse(json) as Record<string, { data_offsets?: [number, number] }>;
    const ends = Object.values(parsed).flatMap((v) => v.data_offsets ?? []);
    assert.equal(8 + headerLen + Math.max(...ends), bytes.length, 'the data ends at the end of the file');

    const back = readSafetensorsWithMetadata(file);
    assert.deepEqual(back.metadata, metadata);
    assert.deepEqual([...back.tensors.keys()], [...tensors.keys()], 'insertion order, even for integer-like names');
    for (const [k, t] of tensors) assertSameTensor(back.tensors.get(k), t, k);
    assert.ok(Buffer.from(serializeSafetensors(tensors, metadata)).equals(bytes), 'serialize and write agree');
    // Subarray views are written from their own window.
    const big = new Float32Array([9, 8, 7, 6, 5]);
    const b2 = parseSafetensorsBuffer(serializeSafetensors([['v', { shape: [3], data: big.subarray(1, 4) }]]));
    assert.deepEqual([...b2.get('v')], [8, 7, 6]);
    assert.deepEqual(b2.metadata, {});
  });

  test('replaces files atomically and leaves no temporary files', () => {
    const dir = path.join(tmp, 'atomic');
    fs.mkdirSync(dir);
    const file = path.join(dir, 'x.safetensors');
    writeSafetensors(file, [['a', { shape: [1], data: new Float32Array([1]) }]]);
    writeSafetensors(file, [['b', { shape: [2], data: new Float32Array([2, 3]) }]], { v: '2' });
    assert.deepEqual(fs.readdirSync(dir), ['x.safetensors']);
    const r = readSafetensorsWithMetadata(file);
    assert.deepEqual([...r.tensors.keys()], ['b']);
    assertOneLineError(() => writeSafetensors(path.join(dir, 'no', 'such', 'dir.safetensors'), []), /cannot write/);
    assertOneLineError(() => writeSafetensors(path.join(dir, 'y.safetensors'), [['a', { shape: [3], data: new Float32Array(2) }]]), /tensor a has shape \[3\]/);
    assertOneLineError(() => serializeSafetensors([['a', { shape: [1], data: new Float32Array(1) }], ['a', { shape: [1], data: new Float32Array(1) }]]), /given twice/);
    assert.deepEqual(fs.readdirSync(dir), ['x.safetensors']);
  });
});

describe('hostile and broken files', () => {
  const f32 = (n: number) => Buffer.from(new Float32Array(n).buffer);
  const cases: Array<[string, () => Buffer, RegExp]> = [
    ['header length claims 1 TB', () => { const b = rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32(1)); b.writeBigUInt64LE(2n ** 40n); return b; }, /header length 1099511627776/],
    ['header length past the end', () => { const b = rawFile({}, Buffer.alloc(0)); b.writeBigUInt64LE(5000n); return b; }, /runs past the end/],
    ['header length 2^64-1', () => { const b = rawFile({}, Buffer.alloc(0)); b.writeBigUInt64LE(2n ** 64n - 1n); return b; }, /header length/],
    ['offsets past the end', () => rawFile({ a: { dtype: 'F32', shape: [1000000], data_offsets: [0, 4000000] } }, f32(4)), /needs more bytes|past the end/],
    ['huge shape, 1 TB', () => rawFile({ a: { dtype: 'F32', shape: [1024, 1024, 1024, 256], data_offsets: [0, 2 ** 40] } }, f32(4)), /tensor a/],
    ['end past data, size consistent', () => rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [12, 20] } }, f32(4)), /past the end/],
    ['overlapping tensors', () => rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, f32(4)), /tensors a and b overlap/],
    ['shape/size mismatch', () => rawFile({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, f32(4)), /hold 16 bytes but F32 shape \[3\] needs 12/],
    ['end before start', () => rawFile({ a: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, f32(4)), /end before/],
    ['negative dimension', () => rawFile({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, f32(1)), /not a non-negative integer/],
    ['fractional offsets', () => rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0.5, 4.5] } }, f32(2)), /data_offsets/],
    ['missing data_offsets', () => rawFile({ a: { dtype: 'F32', shape: [1] } }, f32(1)), /data_offsets/],
    ['bad JSON', () => rawFile('{"a": {"dtype": "F32",', f32(1)), /not valid JSON/],
    ['JSON array header', () => rawFile('[1,2,3]', f32(1)), /does not start with|not a JSON object/],
    ['header not UTF-8', () => rawFile(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]).toString('latin1'), f32(1)), /UTF-8|JSON/],
    ['unknown dtype', () => rawFile({ a: { dtype: 'F128', shape: [1], data_offsets: [0, 16] } }, f32(4)), /unknown dtype F128/],
    ['non-string metadata', () => rawFile({ __metadata__: { n: 3 } }, f32(0)), /__metadata__ value of n is not a string/],
    ['empty file', () => Buffer.alloc(0), /empty file/],
    ['3-byte file', () => Buffer.from('abc'), /too small/],
    ['text file', () => Buffer.from('This is certainly not a safetensors file.\n'.repeat(3)), /is a text file, not a safetensors file/],
  ];
  for (const [name, make, pattern] of cases) {
    test(name, () => {
      const file = path.join(tmp, `hostile-${name.replace(/\W+/g, '_')}.safetensors`);
      const bytes = make();
      fs.writeFileSync(file, bytes);
      const msg = assertOneLineError(() => openSafetensors(file), pattern);
      assert.ok(msg.startsWith(file), `message names the file: ${msg}`);
      assertOneLineError(() => readSafetensors(file), pattern);
      assertOneLineError(() => parseSafetensorsBuffer(bytes, 'buf'), pattern);
    });
  }

  test('truncated file', () => {
    const whole = fs.readFileSync(path.join(HF_DIR, 'expected.safetensors'));
    for (const n of [4, 100, Math.floor(whole.length / 2), whole.length - 1]) {
      const file = path.join(tmp, `truncated-${n}.safetensors`);
      fs.writeFileSync(file, whole.subarray(0, n));
      assertOneLineError(() => openSafetensors(file), /truncated|too small|past the end|needs more bytes/);
    }
  });

  test('a file truncated after opening fails on read, not with a RangeError', () => {
    const whole = fs.readFileSync(path.join(HF_DIR, 'expected.safetensors'));
    const file = path.join(tmp, 'shrinks.safetensors');
    fs.writeFileSync(file, whole);
    const r = openSafetensors(file);
    try {
      fs.truncateSync(file, 1000);
      assertOneLineError(() => r.get('output.0.logits'), /file ended while reading tensor output\.0\.logits/);
    } finally {
      r.close();
    }
  });

  test('a PyTorch zip, a directory and a missing file', () => {
    assertOneLineError(() => openSafetensors(path.join(REF, 'small_official.pt')), /zip archive/);
    assertOneLineError(() => openSafetensors(REF), /directory/);
    assertOneLineError(() => openSafetensors(path.join(tmp, 'nope.safetensors')), /no such file/);
    assertOneLineError(() => openSafetensors(SMALL_TIMM).get('nope'), /no tensor named nope/);
  });
});

describe('checkpoint name mapping', () => {
  test('small_timm: config inferred, canonical order', () => {
    const r = toCanonical(smallTimmParams(), { source: 'small_timm' });
    assert.equal(r.naming, 'timm');
    assert.deepEqual(r.config.depths, [2, 2, 2, 2]);
    assert.deepEqual(r.config.dims, [16, 32, 48, 64]);
    assert.equal(r.config.numClasses, 10);
    assert.equal(r.config.inChans, 3);
    assert.equal(r.config.kernelSize, 7);
    assert.equal(r.modelName, undefined);
    assert.deepEqual([...r.state.keys()], paramSpecs(r.config).map((s) => s.name));
    // Also straight from the fixture: the `param.` prefix is found among grad./input./output.
    const all = toCanonical(readSafetensors(SMALL_TIMM), { allowUnexpected: true });
    assert.equal(all.prefix, 'param.');
    assert.ok(all.unused.includes('grad.R'));
  });

  test('timm -> official / timm conv-MLP / HF -> files -> back is bit-exact', () => {
    const params = smallTimmParams();
    const { config, state } = toCanonical(params);
    const variants: Array<[string, StateDict, string]> = [
      ['official', toOfficialNames(state), 'official'],
      ['convmlp', toTimmNames(state, { convMlp: true }), 'timm'],
      ['hf', toHfNames(state), 'hf'],
      ['prefixed', new Map([...state].map(([k, t]) => [`module.${k}`, t])), 'timm'],
    ];
    const official = variants[0][1];
    assert.deepEqual(official.get('stages.1.0.grn.gamma')?.shape, [1, 1, 1, 128]);
    assert.ok(official.has('downsample_layers.2.1.weight') && official.has('head.weight') && official.has('norm.bias'));
    assert.deepEqual(variants[1][1].get('stages.0.blocks.1.mlp.fc2.weight')?.shape, [16, 64, 1, 1]);
    assert.ok(variants[2][1].has('convnextv2.encoder.stages.2.downsampling_layer.1.weight') && variants[2][1].has('classifier.bias'));
    for (const [name, sd, naming] of variants) {
      const file = path.join(tmp, `map-${name}.safetensors`);
      writeSafetensors(file, sd);
      const ck = loadCheckpoint(file);
      assert.equal(ck.naming, naming, name);
      assert.equal(ck.format, naming, name);
      assert.deepEqual(ck.config.depths, [2, 2, 2, 2], name);
      assert.deepEqual(ck.config.dims, [16, 32, 48, 64], name);
      assert.equal(ck.config.numClasses, 10, name);
      assert.deepEqual([...ck.state.keys()], [...state.keys()], name);
      for (const [k, t] of state) assertSameTensor(ck.state.get(k), t, `${name}: ${k}`);
    }
    // Backbone: no head.fc.
    const backbone = new Map([...state].filter(([k]) => !k.startsWith('head.fc.')));
    const bb = toCanonical(toOfficialNames(backbone));
    assert.equal(bb.config.numClasses, 0);
    assert.equal(bb.state.size, backbone.size);
    assert.equal(config.numClasses, 10);
  });

  test('exportCheckpoint writes timm, official and HF folders that load back', () => {
    const { config, state } = toCanonical(smallTimmParams());
    const labels = Array.from({ length: 10 }, (_v, i) => `class ${i}`);
    for (const naming of ['timm', 'official', 'hf'] as const) {
      const out = path.join(tmp, `export-${naming}${naming === 'hf' ? '' : '.safetensors'}`);
      exportCheckpoint(out, { config: { ...config, headNormEps: 1e-5 }, state }, { naming, labels, convMlp: naming === 'timm' });
      const ck = loadCheckpoint(out);
      assert.equal(ck.naming, naming);
      assert.equal(ck.config.headNormEps, 1e-5, naming);
      assert.deepEqual(ck.labels, labels, naming);
      for (const [k, t] of state) assertSameTensor(ck.state.get(k), t, `${naming}: ${k}`);
    }
  });

  test('the HF fixture maps to a full canonical state dict with config.json applied', () => {
    const ck = loadCheckpoint(HF_DIR);
    assert.equal(ck.format, 'hf');
    assert.equal(ck.file, path.join(HF_DIR, 'model.safetensors'));
    assert.equal(ck.config.headNormEps, 1e-12);
    assert.equal(ck.config.layerNormEps, 1e-6);
    assert.deepEqual(ck.config.depths, [2, 2, 2, 2]);
    assert.deepEqual(ck.config.dims, [16, 32, 48, 64]);
    assert.equal(ck.config.numClasses, 10);
    assert.equal(ck.labels, undefined, "transformers' LABEL_N placeholders are no class names");
    const specs = paramSpecs(ck.config);
    assert.deepEqual([...ck.state.keys()], specs.map((s) => s.name));
    for (const s of specs) assert.deepEqual(ck.state.get(s.name)?.shape, s.shape, s.name);
    const raw = readSafetensors(path.join(HF_DIR, 'model.safetensors'));
    const pairs: Array<[string, string]> = [
      ['stem.0.weight', 'convnextv2.embeddings.patch_embeddings.weight'],
      ['stem.1.bias', 'convnextv2.embeddings.layernorm.bias'],
      ['stages.2.downsample.0.weight', 'convnextv2.encoder.stages.2.downsampling_layer.0.weight'],
      ['stages.3.blocks.1.mlp.grn.weight', 'convnextv2.encoder.stages.3.layers.1.grn.weight'],
      ['stages.1.blocks.0.mlp.fc2.weight', 'convnextv2.encoder.stages.1.layers.0.pwconv2.weight'],
      ['head.norm.weight', 'convnextv2.layernorm.weight'],
      ['head.fc.weight', 'classifier.weight'],
    ];
    for (const [canon, hf] of pairs) {
      assert.deepEqual(bits(ck.state.get(canon)?.data ?? new Float32Array()), bits(raw.get(hf)?.data ?? new Float32Array(1)), canon);
    }
    // The file alone: HF's default layer_norm_eps (1e-12) still applies.
    const copy = path.join(tmp, 'hf-alone.safetensors');
    fs.copyFileSync(path.join(HF_DIR, 'model.safetensors'), copy);
    assert.equal(loadCheckpoint(copy).config.headNormEps, 1e-12);
    // A bare ConvNextV2Model (no `convnextv2.` level, no classifier) is a backbone.
    const bare = new Map([...raw].filter(([k]) => k.startsWith('convnextv2.')).map(([k, t]) => [k.slice('convnextv2.'.length), t]));
    const b = toCanonical(bare);
    assert.equal(b.naming, 'hf');
    assert.equal(b.config.numClasses, 0);
    assert.equal(b.state.size, specs.length - 2);
  });

  test('wrong shapes, missing and unexpected tensors are named', () => {
    const params = smallTimmParams();
    const wrong = new Map(params);
    wrong.set('stages.1.blocks.0.mlp.fc1.weight', { shape: [64, 16], data: new Float32Array(64 * 16) });
    assertOneLineError(() => toCanonical(wrong, { source: 'x.safetensors' }),
      /^checkpoint x\.safetensors: tensor stages\.1\.blocks\.0\.mlp\.fc1\.weight has shape \[64,16\], expected \[128,32\]$/);
    // The stem weight is one of the tensors the config is inferred from; the vote still names it.
    const stem = new Map(params);
    stem.set('stem.0.weight', { shape: [17, 3, 4, 4], data: new Float32Array(17 * 48) });
    assertOneLineError(() => toCanonical(stem, { source: 'x' }), /tensor stem\.0\.weight has shape \[17,3,4,4\], expected \[16,3,4,4\]/);
    const off = toOfficialNames(toCanonical(params).state);
    off.set('stages.2.1.grn.beta', { shape: [1, 1, 1, 7], data: new Float32Array(7) });
    assertOneLineError(() => toCanonical(off, { source: 'o.pt' }),
      /tensor stages\.2\.1\.grn\.beta \(stages\.2\.blocks\.1\.mlp\.grn\.bias\) has shape \[1,1,1,7\], expected \[1,1,1,192\]/);

    const missing = new Map(params);
    missing.delete('stages.2.blocks.1.norm.bias');
    assertOneLineError(() => toCanonical(missing, { source: 'm' }), /missing tensor stages\.2\.blocks\.1\.norm\.bias/);
    const extra = new Map(params);
    extra.set('stages.1.blocks.0.gamma', { shape: [32], data: new Float32Array(32) });
    assertOneLineError(() => toCanonical(extra, { source: 'e' }), /unexpected tensor stages\.1\.blocks\.0\.gamma/);
    const offMissing = toOfficialNames(toCanonical(params).state);
    offMissing.delete('downsample_layers.3.0.bias');
    assertOneLineError(() => toCanonical(offMissing), /missing tensor downsample_layers\.3\.0\.bias/);
    assertOneLineError(() => toCanonical(new Map([['foo', { shape: [1], data: new Float32Array(1) }]])), /cannot recognise the parameter names/);
    // Shapes only: a file is validated before any tensor is read.
    assertOneLineError(() => planCanonical([['stem.0.weight', [16, 3, 4, 4]]], { source: 's' }), /cannot tell the width of stage 1/);
  });

  test('detection: prefixes, several models, FCMAE pre-training checkpoints', () => {
    assert.deepEqual(detectNaming(['model.stem.0.weight', 'model_ema.stem.0.weight']), { naming: 'timm', prefix: 'model.' });
    assert.deepEqual(detectNaming(['convnextv2.embeddings.patch_embeddings.weight']), { naming: 'hf', prefix: '', bare: false });
    assert.deepEqual(detectNaming(['downsample_layers.0.0.weight']), { naming: 'official', prefix: '' });
    assertOneLineError(() => detectNaming(['a.stem.0.weight', 'b.stem.0.weight']), /several models/);
    assertOneLineError(() => detectNaming(['encoder.stages.0.0.dwconv.kernel', 'encoder.downsample_layers.0.0.weight']), /FCMAE pre-training checkpoint/);
    // loadCheckpoint reads FCMAE checkpoints (test/interop.test.ts); here the fixture's grad.* are left over.
    assertOneLineError(() => loadCheckpoint(path.join(REF, 'fcmae_small.safetensors')), /unexpected tensors grad\./, /official FCMAE checkpoint with key prefix 'param\.'/);
  });
});

describe('our checkpoints', () => {
  test('saveCheckpoint / loadCheckpoint with extras, EMA, metadata and run directories', () => {
    const { config, state } = toCanonical(smallTimmParams());
    const full = { ...config, dropPathRate: 0.1, headNormEps: 1e-5 };
    const extra: StateDict = new Map();
    const ema: StateDict = new Map();
    for (const [k, t] of state) {
      extra.set(`optimizer.m.${k}`, { shape: t.shape, data: t.data.map((v) => v * 0.5) });
      const e = { shape: t.shape, data: t.data.map((v) => v + 1) };
      ema.set(k, e);
      extra.set(`ema.${k}`, e);
    }
    extra.set('fcmae.mask_token', { shape: [1, 32, 1, 1], data: new Float32Array(32).fill(0.25) });
    const run = path.join(tmp, 'run');
    fs.mkdirSync(run);
    const labels = Array.from({ length: 10 }, (_v, i) => `c${i}`);
    saveCheckpoint(path.join(run, 'checkpoint-last.safetensors'), { config: full, state, extra, metadata: { step: '7', epoch: '2' }, labels });
    const ck = loadCheckpoint(run);
    assert.equal(ck.format, 'convnextv2');
    assert.equal(ck.file, path.join(run, 'checkpoint-last.safetensors'));
    assert.deepEqual(ck.config, full);
    assert.equal(ck.metadata.step, '7');
    assert.equal(ck.metadata.epoch, '2');
    assert.deepEqual(ck.labels, labels);
    assert.equal(ck.extra, undefined);
    assert.equal(ck.extraNames.length, 2 * state.size + 1);
    for (const [k, t] of state) assertSameTensor(ck.state.get(k), t, k);

    const withExtra = loadCheckpoint(path.join(run, 'checkpoint-last.safetensors'), { extra: true });
    for (const [k, t] of extra) assertSameTensor(withExtra.extra?.get(k), t, k);
    const emaCk = loadCheckpoint(run, { ema: true });
    for (const [k, t] of ema) assertSameTensor(emaCk.state.get(k), t, `ema ${k}`);

    // checkpoint-best wins over checkpoint-last.
    saveCheckpoint(path.join(run, 'checkpoint-best.safetensors'), { config: full, state: ema });
    const best = loadCheckpoint(run);
    assert.equal(best.file, path.join(run, 'checkpoint-best.safetensors'));
    assertSameTensor(best.state.get('stem.0.weight'), ema.get('stem.0.weight') as TensorData, 'best');
    assert.ok(fs.readdirSync(run).every((f) => f.endsWith('.safetensors')), 'no temporary files');

    assertOneLineError(() => saveCheckpoint(path.join(run, 'bad.safetensors'), { config: full, state, extra: new Map([['other.x', { shape: [1], data: new Float32Array(1) }]]) }), /extra tensor other\.x must start with/);
    const short = new Map(state);
    short.delete('head.fc.bias');
    assertOneLineError(() => saveCheckpoint(path.join(run, 'bad.safetensors'), { config: full, state: short }), /missing tensor head\.fc\.bias/);
    assertOneLineError(() => loadCheckpoint(path.join(tmp, 'empty-run-dir-does-not-exist')), /no such file or directory/);
    const emptyDir = path.join(tmp, 'empty-run');
    fs.mkdirSync(emptyDir);
    assertOneLineError(() => loadCheckpoint(emptyDir), /holds none of model\.safetensors/);
    assert.ok(!fs.existsSync(path.join(run, 'bad.safetensors')));
  });

  test('metadata config that disagrees with the tensors is an error', () => {
    const { config, state } = toCanonical(smallTimmParams());
    const file = path.join(tmp, 'liar.safetensors');
    const tensors = paramSpecs(config).map((s) => [s.name, state.get(s.name) as TensorData] as const);
    writeSafetensors(file, tensors, { format: 'convnextv2', config: JSON.stringify({ ...config, dims: [16, 32, 48, 96] }) });
    assertOneLineError(() => loadCheckpoint(file), /config says dims \[16,32,48,96\] but the tensors say \[16,32,48,64\]/);
  });
});

describe('fuzz', () => {
  test('2,400 seeded mutations of safetensors fixtures load or throw a one-line ConvNextError', { timeout: 120_000 }, () => {
    const ours = path.join(tmp, 'fuzz-ours.safetensors');
    const { config, state } = toCanonical(smallTimmParams());
    saveCheckpoint(ours, { config, state, extra: new Map([['ema.stem.0.bias', state.get('stem.0.bias') as TensorData]]), labels: Array.from({ length: 10 }, (_v, i) => `c${i}`) });
    const seeds = [path.join(HF_DIR, 'model.safetensors'), path.join(HF_DIR, 'expected.safetensors'), ours].map((f) => fs.readFileSync(f));
    const rng = new Rng(20240503);
    const N = 2400;
    const kinds = new Map<string, number>();
    let loaded = 0;
    let worst = 0;
    const t0 = performance.now();
    for (let i = 0; i < N; i++) {
      const src = seeds[i % seeds.length];
      const headerEnd = Math.min(src.length, 8 + Number(src.readBigUInt64LE(0)));
      const kind = ['flip', 'flip', 'digit', 'digit', 'truncate', 'length', 'insert', 'delete', 'anywhere'][rng.int(9)];
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
      let buf: Buffer;
      if (kind === 'truncate') {
        buf = Buffer.from(src.subarray(0, rng.uniform() < 0.7 ? rng.int(headerEnd + 1) : rng.int(src.length)));
      } else if (kind === 'insert' || kind === 'delete') {
        const at = 8 + rng.int(headerEnd - 8);
        const n = 1 + rng.int(8);
        const ins = Buffer.from(Array.from({ length: n }, () => ' "{}[],:0123456789eE-.'.charCodeAt(rng.int(22))));
        buf = kind === 'insert' ? Buffer.concat([src.subarray(0, at), ins, src.subarray(at)]) : Buffer.concat([src.subarray(0, at), src.subarray(at + n)]);
      } else {
        buf = Buffer.from(src);
        if (kind === 'flip') for (let j = 1 + rng.int(4); j > 0; j--) buf[8 + rng.int(headerEnd - 8)] ^= 1 << rng.int(8);
        else if (kind === 'anywhere') for (let j = 1 + rng.int(4); j > 0; j--) buf[rng.int(buf.length)] = rng.int(256);
        else if (kind === 'length') buf[rng.int(8)] = rng.int(256);
        else {
          // A digit of the JSON header replaced: shapes and offsets change, syntax stays.
          const header = buf.subarray(8, headerEnd);
          const digits: number[] = [];
          header.forEach((b, j) => { if (b >= 0x30 && b <= 0x39) digits.push(j); });
          for (let j = 1 + rng.int(2); j > 0 && digits.length; j--) header[digits[rng.int(digits.length)]] = 0x30 + rng.int(10);
        }
      }
      const label = `fuzz#${i}`;
      const t1 = performance.now();
      try {
        const r = parseSafetensorsBuffer(buf, label);
        for (const n of r.names()) r.getTensor(n);
        r.close();
        if (i % 6 === 0) {
          const file = path.join(tmp, `fuzz-${i % 12}.safetensors`);
          fs.writeFileSync(file, buf);
          loadCheckpoint(file, { allowUnexpected: true, extra: true });
        }
        loaded++;
      } catch (err) {
        if (!(err instanceof ConvNextError)) {
          fs.writeFileSync(path.join(os.tmpdir(), `convnextv2-fuzz-failure-${i}.safetensors`), buf);
          assert.fail(`case ${i} (${kind}): ${err instanceof Error ? err.stack : String(err)}`);
        }
        assert.ok(!/[\r\n]/.test(err.message), `case ${i}: message not one line: ${err.message}`);
      }
      worst = Math.max(worst, performance.now() - t1);
    }
    const total = performance.now() - t0;
    assert.ok(loaded > 0 && loaded < N, `loaded ${loaded} of ${N}`);
    assert.ok(total < 60_000, `fuzz took ${total.toFixed(0)} ms`);
    console.log(`# safetensors fuzz: ${N} cases, ${loaded} loaded, ${N - loaded} rejected, worst ${worst.toFixed(1)} ms, total ${(total / 1000).toFixed(1)} s, kinds ${JSON.stringify(Object.fromEntries(kinds))}`);
  });
});
