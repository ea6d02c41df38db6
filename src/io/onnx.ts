/**
 * ONNX export of a ConvNeXt V2 classifier (or backbone), encoded with protobufjs from the
 * subset of onnx.proto we write (same messages, field numbers and proto2 syntax as ONNX's
 * own onnx.proto).
 *
 * The graph (opset 17 by default, IR version to match): input `pixel_values` float32
 * [batch, C, height, width] (batch, height and width symbolic), output `logits`
 * [batch, numClasses] (`pre_logits` [batch, dims[3]] for a backbone). Activations run NHWC
 * like our kernels: stem Conv (4x4 stride 4) then one Transpose to NHWC; LayerNormalization
 * over the last axis; the downsampling and depthwise (group = C) convolutions transpose to
 * NCHW and back; the MLP is MatMul + Add with transposed weights, exact GELU as
 * x * 0.5 * (1 + Erf(x / sqrt 2)), GRN as ReduceL2 over H, W / (ReduceMean over C + 1e-6)
 * then gamma * (x * N) + beta + x; the head ReduceMean over H, W, LayerNormalization
 * (headNormEps) and Gemm (transB).
 *
 * Weights are stored in the model (raw_data), or for models over 1 GiB (or on request) in
 * an external data file beside it (`<name>.onnx.data`, ONNX external data, 4 KiB aligned):
 * one protobuf message is limited to 2 GiB.
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { createRequire } from 'node:module';
import type protobuf from 'protobufjs';
import { ConvNextError } from '../errors.js';
import { paramSpecs, type ConvNeXtV2Config } from '../model/config.js';
import { writeAllSync, writeFileAtomicSync } from './atomic.js';
import type { TensorData } from './safetensors.js';

/** The messages of onnx.proto that the exporter writes (and tests read back). */
export const ONNX_SCHEMA = `
syntax = "proto2";
package onnx;
message AttributeProto {
  enum AttributeType {
    UNDEFINED = 0; FLOAT = 1; INT = 2; STRING = 3; TENSOR = 4; GRAPH = 5; FLOATS = 6; INTS = 7;
    STRINGS = 8; TENSORS = 9; GRAPHS = 10; SPARSE_TENSOR = 11; SPARSE_TENSORS = 12;
  }
  optional string name = 1;
  optional string ref_attr_name = 21;
  optional string doc_string = 13;
  optional AttributeType type = 20;
  optional float f = 2;
  optional int64 i = 3;
  optional bytes s = 4;
  optional TensorProto t = 5;
  repeated float floats = 7;
  repeated int64 ints = 8;
  repeated bytes strings = 9;
}
message ValueInfoProto {
  optional string name = 1;
  optional TypeProto type = 2;
  optional string doc_string = 3;
}
message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  optional string name = 3;
  optional string op_type = 4;
  optional string domain = 7;
  repeated AttributeProto attribute = 5;
  optional string doc_string = 6;
}
message ModelProto {
  optional int64 ir_version = 1;
  repeated OperatorSetIdProto opset_import = 8;
  optional string producer_name = 2;
  optional string producer_version = 3;
  optional string domain = 4;
  optional int64 model_version = 5;
  optional string doc_string = 6;
  optional GraphProto graph = 7;
  repeated StringStringEntryProto metadata_props = 14;
}
message StringStringEntryProto {
  optional string key = 1;
  optional string value = 2;
}
message GraphProto {
  repeated NodeProto node = 1;
  optional string name = 2;
  repeated TensorProto initializer = 5;
  optional string doc_string = 10;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
  repeated ValueInfoProto value_info = 13;
}
message TensorProto {
  enum DataType {
    UNDEFINED = 0; FLOAT = 1; UINT8 = 2; INT8 = 3; UINT16 = 4; INT16 = 5; INT32 = 6; INT64 = 7;
    STRING = 8; BOOL = 9; FLOAT16 = 10; DOUBLE = 11; UINT32 = 12; UINT64 = 13; COMPLEX64 = 14;
    COMPLEX128 = 15; BFLOAT16 = 16;
  }
  repeated int64 dims = 1;
  optional int32 data_type = 2;
  optional string name = 8;
  optional string doc_string = 12;
  optional bytes raw_data = 9;
  repeated StringStringEntryProto external_data = 13;
  enum DataLocation { DEFAULT = 0; EXTERNAL = 1; }
  optional DataLocation data_location = 14;
}
message TensorShapeProto {
  message Dimension {
    oneof value {
      int64 dim_value = 1;
      string dim_param = 2;
    }
    optional string denotation = 3;
  }
  repeated Dimension dim = 1;
}
message TypeProto {
  message Tensor {
    optional int32 elem_type = 1;
    optional TensorShapeProto shape = 2;
  }
  oneof value {
    Tensor tensor_type = 1;
  }
  optional string denotation = 6;
}
message OperatorSetIdProto {
  optional string domain = 1;
  optional int64 version = 2;
}
`;

let root: protobuf.Root | undefined;

/** The parsed schema (kept field names: `op_type`, `raw_data`, ...). */
export function onnxRoot(): protobuf.Root {
  // Required on first use, not imported: protobufjs pulls in `long`, which compiles a WebAssembly
  // module as it loads, and importing the package must load none.
  if (!root) root = (createRequire(import.meta.url)('protobufjs') as typeof protobuf).parse(ONNX_SCHEMA, { keepCase: true }).root;
  return root;
}

const FLOAT = 1;
const INT64 = 7;
const ATTR = { FLOAT: 1, INT: 2, INTS: 7 } as const;

/** IR version that goes with an opset (onnx/helper.py VERSION_TABLE). */
function irVersionFor(opset: number): number {
  if (opset <= 18) return 8;
  if (opset <= 20) return 9;
  if (opset <= 22) return 10;
  return 11;
}

export interface OnnxExportOptions {
  /** ONNX opset, 17 to 23 (default 17, the first with LayerNormalization). */
  opset?: number;
  /** Symbolic height and width (default true); false fixes them to `inputSize`. */
  dynamicSize?: boolean;
  /** Input height and width when `dynamicSize` is false (default 224). */
  inputSize?: number;
  /** Store weights in `<file>.data` beside the model; default: only above 1 GiB of weights. */
  externalData?: boolean;
  /** `metadata_props` of the model (e.g. labels as JSON). */
  metadata?: Readonly<Record<string, string>>;
  /** Producer version (default: this package's). */
  producerVersion?: string;
}

interface AttrValue { name: string; type: number; f?: number; i?: number; ints?: number[] }
interface NodeValue { op_type: string; name: string; input: string[]; output: string[]; attribute: AttrValue[] }
interface Init { name: string; dims: number[]; dataType: number; bytes: Uint8Array }

const attrInt = (name: string, i: number): AttrValue => ({ name, type: ATTR.INT, i });
const attrInts = (name: string, ints: number[]): AttrValue => ({ name, type: ATTR.INTS, ints });
const attrFloat = (name: string, f: number): AttrValue => ({ name, type: ATTR.FLOAT, f });

function f32Bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** [out, in] row-major -> [in, out] (a MatMul right operand). */
function transpose2d(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c];
  return out;
}

class GraphBuilder {
  readonly nodes: NodeValue[] = [];
  readonly inits: Init[] = [];
  private count = 0;
  constructor(readonly opset: number) {}

  fresh(hint: string): string {
    return `${hint}_${this.count++}`;
  }

  node(op: string, inputs: string[], attrs: AttrValue[] = [], out?: string): string {
    const o = out ?? this.fresh(op.toLowerCase());
    this.nodes.push({ op_type: op, name: `${op}_${this.nodes.length}`, input: inputs, output: [o], attribute: attrs });
    return o;
  }

  float(name: string, dims: number[], data: Float32Array): string {
    this.inits.push({ name, dims, dataType: FLOAT, bytes: f32Bytes(data) });
    return name;
  }

  int64(name: string, values: number[]): string {
    const a = BigInt64Array.from(values.map((v) => BigInt(v)));
    this.inits.push({ name, dims: [values.length], dataType: INT64, bytes: new Uint8Array(a.buffer) });
    return name;
  }

  /** ReduceL2 / ReduceMean over `axes` (an attribute before opset 18, an input from 18 on). */
  reduce(op: 'ReduceL2' | 'ReduceMean', x: string, axes: number[], keepdims: boolean): string {
    if (this.opset < 18) return this.node(op, [x], [attrInts('axes', axes), attrInt('keepdims', keepdims ? 1 : 0)]);
    const name = `axes_${axes.join('_').replace(/-/g, 'm')}`;
    if (!this.inits.some((i) => i.name === name)) this.int64(name, axes);
    return this.node(op, [x, name], [attrInt('keepdims', keepdims ? 1 : 0)]);
  }
}

/**
 * Builds the ONNX model bytes. `externalData`: a function that stores a tensor's bytes and
 * returns its offset in the data file (used when weights go to an external file).
 */
function buildModel(config: ConvNeXtV2Config, state: ReadonlyMap<string, TensorData>, opts: OnnxExportOptions, external?: { location: string; store: (b: Uint8Array) => number }): Uint8Array {
  const opset = opts.opset ?? 17;
  if (!Number.isInteger(opset) || opset < 17 || opset > 23) throw new ConvNextError(`ONNX opset ${opset} is not supported (17 to 23)`);
  for (const s of paramSpecs(config)) {
    const t = state.get(s.name);
    if (!t || t.data.length !== s.shape.reduce((a, b) => a * b, 1)) throw new ConvNextError(`cannot export to ONNX: tensor ${s.name} is missing or has the wrong size`);
  }
  const p = (name: string): TensorData => state.get(name) as TensorData;
  const g = new GraphBuilder(opset);
  const { dims, depths, layerNormEps: eps, kernelSize: k } = config;
  // Parameters as initializers under their canonical names (MLP weights transposed).
  const param = (name: string): string => g.float(name, [...p(name).shape], p(name).data);
  const ln = (x: string, pre: string, e: number): string => g.node('LayerNormalization', [x, param(`${pre}.weight`), param(`${pre}.bias`)], [attrInt('axis', -1), attrFloat('epsilon', e)]);
  const toNhwc = (x: string): string => g.node('Transpose', [x], [attrInts('perm', [0, 2, 3, 1])]);
  const toNchw = (x: string): string => g.node('Transpose', [x], [attrInts('perm', [0, 3, 1, 2])]);
  const one = g.float('const_one', [], new Float32Array([1]));
  const half = g.float('const_half', [], new Float32Array([0.5]));
  const sqrt2 = g.float('const_sqrt2', [], new Float32Array([Math.SQRT2]));
  const grnEps = config.block === 'v2' ? g.float('const_grn_eps', [], new Float32Array([1e-6])) : '';

  let h = g.node('Conv', ['pixel_values', param('stem.0.weight'), param('stem.0.bias')], [attrInts('kernel_shape', [4, 4]), attrInts('strides', [4, 4])]);
  h = ln(toNhwc(h), 'stem.1', eps);
  for (let s = 0; s < 4; s++) {
    const C = dims[s];
    if (s > 0) {
      const pre = `stages.${s}.downsample`;
      h = ln(h, `${pre}.0`, eps);
      h = g.node('Conv', [toNchw(h), param(`${pre}.1.weight`), param(`${pre}.1.bias`)], [attrInts('kernel_shape', [2, 2]), attrInts('strides', [2, 2])]);
      h = toNhwc(h);
    }
    for (let b = 0; b < depths[s]; b++) {
      const pre = `stages.${s}.blocks.${b}`;
      const pad = Math.floor(k / 2);
      let y = g.node('Conv', [toNchw(h), param(`${pre}.conv_dw.weight`), param(`${pre}.conv_dw.bias`)], [
        attrInt('group', C), attrInts('kernel_shape', [k, k]), attrInts('pads', [pad, pad, pad, pad]), attrInts('strides', [1, 1]),
      ]);
      y = ln(toNhwc(y), `${pre}.norm`, eps);
      const fc1 = p(`${pre}.mlp.fc1.weight`);
      y = g.node('MatMul', [y, g.float(`${pre}.mlp.fc1.weight_t`, [C, 4 * C], transpose2d(fc1.data, 4 * C, C))]);
      y = g.node('Add', [y, param(`${pre}.mlp.fc1.bias`)]);
      // Exact GELU: x * 0.5 * (1 + erf(x / sqrt(2))).
      const e = g.node('Erf', [g.node('Div', [y, sqrt2])]);
      y = g.node('Mul', [g.node('Mul', [y, g.node('Add', [e, one])]), half]);
      if (config.block === 'v2') {
        // GRN over H, W of each sample, normalised by the mean over channels.
        const gx = g.reduce('ReduceL2', y, [1, 2], true);
        const nx = g.node('Div', [gx, g.node('Add', [g.reduce('ReduceMean', gx, [-1], true), grnEps])]);
        const cal = g.node('Add', [g.node('Mul', [g.node('Mul', [y, nx]), param(`${pre}.mlp.grn.weight`)]), param(`${pre}.mlp.grn.bias`)]);
        y = g.node('Add', [cal, y]);
      }
      const fc2 = p(`${pre}.mlp.fc2.weight`);
      y = g.node('MatMul', [y, g.float(`${pre}.mlp.fc2.weight_t`, [4 * C, C], transpose2d(fc2.data, C, 4 * C))]);
      y = g.node('Add', [y, param(`${pre}.mlp.fc2.bias`)]);
      // ConvNeXt V1: LayerScale on the MLP output.
      if (config.block === 'v1') y = g.node('Mul', [y, param(`${pre}.gamma`)]);
      h = g.node('Add', [h, y]);
    }
  }
  const pooled = g.reduce('ReduceMean', h, [1, 2], false);
  const backbone = config.numClasses === 0;
  const outName = backbone ? 'pre_logits' : 'logits';
  const pre = g.node('LayerNormalization', [pooled, param('head.norm.weight'), param('head.norm.bias')], [attrInt('axis', -1), attrFloat('epsilon', config.headNormEps)], backbone ? outName : undefined);
  if (!backbone) g.node('Gemm', [pre, param('head.fc.weight'), param('head.fc.bias')], [attrInt('transB', 1)], outName);

  const dynamic = opts.dynamicSize ?? true;
  const size = opts.inputSize ?? 224;
  const dim = (v: number | string) => (typeof v === 'number' ? { dim_value: v } : { dim_param: v });
  const tensorType = (shape: Array<number | string>) => ({ tensor_type: { elem_type: FLOAT, shape: { dim: shape.map(dim) } } });
  const initializer = g.inits.map((t) => {
    const base = { name: t.name, dims: t.dims, data_type: t.dataType };
    if (!external || t.bytes.length < 1024) return { ...base, raw_data: t.bytes };
    const offset = external.store(t.bytes);
    return {
      ...base,
      data_location: 1,
      external_data: [
        { key: 'location', value: external.location },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(t.bytes.length) },
      ],
    };
  });
  const model = {
    ir_version: irVersionFor(opset),
    opset_import: [{ domain: '', version: opset }],
    producer_name: 'convnextv2',
    producer_version: opts.producerVersion ?? '0.1.0',
    doc_string: `ConvNeXt V2 depths [${depths.join(',')}] dims [${dims.join(',')}], ${config.numClasses} classes`,
    graph: {
      name: 'convnextv2',
      node: g.nodes,
      initializer,
      input: [{ name: 'pixel_values', type: tensorType(['batch', config.inChans, dynamic ? 'height' : size, dynamic ? 'width' : size]) }],
      output: [{ name: outName, type: tensorType(['batch', backbone ? dims[3] : config.numClasses]) }],
    },
    metadata_props: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
  };
  const Model = onnxRoot().lookupType('onnx.ModelProto');
  const err = Model.verify(model);
  if (err) throw new Error(`internal: ONNX model does not verify: ${err}`);
  return Model.encode(Model.fromObject(model)).finish();
}

/** The ONNX model bytes with all weights inside (models up to ~2 GiB). */
export function onnxModelBytes(model: { config: ConvNeXtV2Config; state: ReadonlyMap<string, TensorData> }, opts: OnnxExportOptions = {}): Uint8Array {
  return buildModel(model.config, model.state, opts);
}

/** Weights above this size go to an external data file by default. */
const EXTERNAL_THRESHOLD = 1 << 30;
const ALIGN = 4096;

/**
 * Writes the model as ONNX to `path` atomically; with external data (see
 * {@link OnnxExportOptions.externalData}) also `<path>.data` (written first). Returns the
 * files written.
 */
export function exportOnnx(path: string, model: { config: ConvNeXtV2Config; state: ReadonlyMap<string, TensorData> }, opts: OnnxExportOptions = {}): string[] {
  let weightBytes = 0;
  for (const t of model.state.values()) weightBytes += t.data.byteLength;
  const useExternal = opts.externalData ?? weightBytes > EXTERNAL_THRESHOLD;
  if (!useExternal) {
    const bytes = buildModel(model.config, model.state, opts);
    writeFileAtomicSync(path, (fd) => writeAllSync(fd, bytes));
    return [path];
  }
  const dataPath = `${path}.data`;
  const location = nodePath.basename(dataPath);
  let bytes: Uint8Array | undefined;
  writeFileAtomicSync(dataPath, (fd) => {
    let offset = 0;
    const pad = new Uint8Array(ALIGN);
    bytes = buildModel(model.config, model.state, opts, {
      location,
      store: (b) => {
        const start = offset;
        writeAllSync(fd, b);
        offset += b.length;
        const rest = (ALIGN - (offset % ALIGN)) % ALIGN;
        if (rest) { writeAllSync(fd, pad.subarray(0, rest)); offset += rest; }
        return start;
      },
    });
  });
  const out = bytes as Uint8Array;
  try {
    writeFileAtomicSync(path, (fd) => writeAllSync(fd, out));
  } catch (err) {
    fs.rmSync(dataPath, { force: true });
    throw err;
  }
  return [path, dataPath];
}
