/**
 * A restricted unpickler (protocols 0-5, the opcodes that torch.save and Python's pickler
 * emit for data) and a small protocol-2 pickle writer. Nothing read from a file is ever
 * executed: "calls" are interpreted by a fixed table of JavaScript functions.
 *
 * ## Global policy (GLOBAL, STACK_GLOBAL)
 * A global `module.name` is resolved when its opcode is read, in this order:
 * 1. **Allow-listed callables and constants**: the caller's table (torch.ts passes
 *    `torch._utils._rebuild_tensor_v2`, storages, dtypes, ...) and the base table here:
 *    `collections.OrderedDict` (-> Map), `_codecs.encode` (latin-1 only, -> bytes),
 *    `builtins.set` / `builtins.frozenset` (-> Set), `types.SimpleNamespace` (-> inert record).
 *    These are the only things REDUCE / NEWOBJ can "call", and each is plain data building.
 * 2. **Refused at once** (a {@link ConvNextError} before anything else happens), anything that
 *    could run code if a real unpickler called it: modules `os`, `posix`, `nt`, `subprocess`,
 *    `sys`, `builtins`/`__builtin__` (except the set constructors above), `importlib`, `pickle`,
 *    `marshal`, `shutil`, `socket`, `ctypes`, `runpy`, `code`, `operator`, `functools`,
 *    `types`, `io`, `pathlib`, ... (see DENIED_MODULES), any top-level module starting with `_`
 *    (`_posixsubprocess`, `__torch__`, ...), any name part that is a dunder (`__import__`,
 *    `__globals__`, `__reduce__`, ...) or one of DENIED_NAMES (`eval`, `exec`, `system`,
 *    `popen`, `getattr`, `load`, ...), and malformed names.
 * 3. **Refused unless allow-listed**: everything in the packages `torch` and `numpy` (so
 *    `torch.load`, `numpy.load`, ... are errors) except inert class references to
 *    `torch.nn.modules.*` (a pickled nn.Module reads as nested records).
 * 4. **Anything else** (e.g. `argparse.Namespace`, a user's config class) becomes an inert
 *    {@link PickleGlobal} reference. It can be instantiated only by NEWOBJ / NEWOBJ_EX, which
 *    produce an inert {@link PickleRecord} `{__class__: 'argparse.Namespace', ...}` without
 *    calling anything; BUILD then copies the pickled state into the record. REDUCE on it is an
 *    error (REDUCE is a call, and only allow-listed callables may be called).
 *
 * ## Values
 * None -> null, bool -> boolean, int -> number (bigint beyond 2^53), float -> number,
 * str -> string, bytes/bytearray -> Uint8Array, list -> array, tuple -> frozen array,
 * dict/OrderedDict -> Map, set/frozenset -> Set, instances -> PickleRecord, unused globals ->
 * PickleGlobal, persistent ids -> whatever the caller's `persistentLoad` returns.
 *
 * ## Bounds
 * Every length is checked against the bytes that remain before anything is allocated; the
 * stack, the mark stack and the memo have size limits; integers are limited to 4 KiB of
 * digits. Each opcode consumes at least one byte, so the work is linear in the input.
 */
import { ConvNextError } from '../errors.js';
import type { TensorData } from './safetensors.js';

// ---------------------------------------------------------------------------------------------
// Value types

/** A reference to a Python global that was not called (a class, a dtype, ...). */
export class PickleGlobal {
  constructor(readonly module: string, readonly name: string) {}
  /** `module.name` */
  get qualname(): string { return `${this.module}.${this.name}`; }
  toString(): string { return this.qualname; }
}

/** An allow-listed global that REDUCE / NEWOBJ may "call": a JavaScript data builder. */
export class PickleFunction extends PickleGlobal {
  constructor(module: string, name: string, readonly fn: (args: readonly PickleValue[], kwargs?: PickleDict) => PickleValue) {
    super(module, name);
  }
}

/** Base class for opaque values a caller's persistent-id loader produces (e.g. torch storages). */
export abstract class PickleExternal {
  abstract readonly kind: string;
}

/** An inert instance of a class that was never called: its class name and pickled state. */
export interface PickleRecord {
  readonly __class__: string;
  [key: string]: PickleValue | undefined;
}

/** A Python dict or OrderedDict, insertion-ordered. */
export type PickleDict = Map<PickleValue, PickleValue>;

/** Every value the unpickler can produce. Tuples are frozen arrays. */
export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | PickleDict
  | Set<PickleValue>
  | PickleRecord
  | PickleGlobal
  | PickleExternal
  | TensorData;

const records = new WeakSet<object>();
const plainDicts = new WeakSet<object>();

/**
 * True for a Map the unpickler made from a plain `dict` (EMPTY_DICT / DICT), false for one
 * from `collections.OrderedDict` or made elsewhere; lets a writer keep the distinction.
 */
export function isPlainDict(v: unknown): boolean {
  return v instanceof Map && plainDicts.has(v);
}

function newDict(): PickleDict {
  const m: PickleDict = new Map();
  plainDicts.add(m);
  return m;
}

/** True for inert records made by the unpickler (or {@link makeRecord}). */
export function isPickleRecord(v: unknown): v is PickleRecord {
  return typeof v === 'object' && v !== null && records.has(v);
}

/** True for a Python tuple as read by the unpickler (a frozen array). */
export function isTuple(v: unknown): v is readonly PickleValue[] {
  return Array.isArray(v) && Object.isFrozen(v);
}

/** Freezes `items` in place and returns it: the representation of a Python tuple. */
export function tupleOf(items: PickleValue[]): PickleValue[] {
  Object.freeze(items);
  return items;
}

/** Makes an inert record of class `cls` (`module.name`). Keys are own, enumerable properties. */
export function makeRecord(cls: string, fields?: Iterable<readonly [string, PickleValue]>): PickleRecord {
  const rec = { __class__: cls } as PickleRecord;
  records.add(rec);
  if (fields) for (const [k, v] of fields) setRecordField(rec, k, v);
  return rec;
}

function setRecordField(rec: PickleRecord, key: string, value: PickleValue): void {
  if (key === '__class__') throw new Error('state sets __class__');
  // defineProperty: a key such as "__proto__" becomes a plain own property.
  Object.defineProperty(rec, key, { value, enumerable: true, writable: true, configurable: true });
}

// ---------------------------------------------------------------------------------------------
// Policy

/** Modules whose globals are refused as soon as they are read (with their submodules). */
export const DENIED_MODULES: ReadonlySet<string> = new Set([
  'os', 'posix', 'nt', 'posixpath', 'ntpath', 'subprocess', 'sys', 'builtins', '__builtin__',
  'importlib', 'imp', 'runpy', 'code', 'codeop', 'pickle', 'cPickle', 'marshal', 'shelve', 'dill',
  'cloudpickle', 'joblib', 'shutil', 'socket', 'ssl', 'select', 'selectors', 'ctypes', 'cffi', 'pty', 'tty', 'termios',
  'fcntl', 'resource', 'multiprocessing', 'concurrent', 'threading', 'thread', 'signal', 'atexit',
  'webbrowser', 'pdb', 'bdb', 'timeit', 'trace', 'profile', 'cProfile', 'operator', 'functools',
  'itertools', 'types', 'inspect', 'gc', 'weakref', 'copyreg', 'copy_reg', 'io', 'tempfile', 'pathlib',
  'glob', 'fileinput', 'platform', 'asyncio', 'urllib', 'urllib2', 'http', 'httplib', 'ftplib',
  'smtplib', 'telnetlib', 'xmlrpc', 'requests', 'commands', 'popen2', 'shlex', 'site', 'sysconfig',
  'distutils', 'setuptools', 'pip', 'pkg_resources', 'zipimport', 'pkgutil', 'ensurepip', 'venv',
  'tkinter', 'Tkinter', 'doctest', 'unittest', 'pydoc', 'code', 'ast', 'dis', 'compileall',
  'py_compile', 'linecache', 'tokenize', 'yaml', 'jinja2', 'IPython', 'sh', 'pexpect', 'paramiko',
  'mmap', 'winreg', '_winreg', 'msvcrt', 'win32api', 'win32con', 'nturl2path', 'spawn',
]);

/** Names refused in any module. */
export const DENIED_NAMES: ReadonlySet<string> = new Set([
  'eval', 'exec', 'execfile', 'compile', 'system', 'popen', 'popen2', 'popen3', 'popen4',
  'spawn', 'spawnl', 'spawnle', 'spawnlp', 'spawnlpe', 'spawnv', 'spawnve', 'spawnvp', 'spawnvpe',
  'execl', 'execle', 'execlp', 'execlpe', 'execv', 'execve', 'execvp', 'execvpe', 'fork', 'forkpty',
  'kill', 'killpg', 'Popen', 'call', 'check_call', 'check_output', 'run', 'getoutput',
  'getstatusoutput', 'getattr', 'setattr', 'delattr', 'globals', 'locals', 'vars', 'open', 'input',
  'raw_input', 'breakpoint', 'apply', 'import_module', 'load', 'loads', 'load_module', 'reload',
  'remove', 'unlink', 'rmtree', 'rmdir', 'startfile', 'attrgetter', 'methodcaller', 'partial',
]);

/** Packages in which only allow-listed names resolve (plus the inert prefixes below). */
export const STRICT_PACKAGES: ReadonlySet<string> = new Set(['torch', 'numpy']);
const STRICT_INERT_PREFIXES = ['torch.nn.modules.'];

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Python 2 module names that pickle maps to Python 3 ones. */
const PY2_MODULES: Record<string, string> = { __builtin__: 'builtins', copy_reg: 'copyreg' };

function bytesFromLatin1(s: string, what: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 255) throw new Error(`${what}: character U+${c.toString(16)} is not latin-1`);
    out[i] = c;
  }
  return out;
}

function toSet(args: readonly PickleValue[], what: string): Set<PickleValue> {
  if (args.length === 0) return new Set();
  if (args.length !== 1 || !Array.isArray(args[0])) throw new Error(`${what} expects one list`);
  return new Set(args[0]);
}

/** Globals every unpickle accepts; callers add theirs with `UnpickleOptions.globals`. */
export const BASE_GLOBALS: ReadonlyMap<string, PickleGlobal> = new Map<string, PickleGlobal>([
  ['collections.OrderedDict', new PickleFunction('collections', 'OrderedDict', (args) => {
    const m: PickleDict = new Map();
    if (args.length === 0) return m;
    if (args.length !== 1 || !Array.isArray(args[0])) throw new Error('OrderedDict() expects no argument or a list of pairs');
    for (const pair of args[0]) {
      if (!Array.isArray(pair) || pair.length !== 2) throw new Error('OrderedDict() item is not a pair');
      m.set(pair[0], pair[1]);
    }
    return m;
  })],
  ['_codecs.encode', new PickleFunction('_codecs', 'encode', (args) => {
    const [s, enc] = args;
    if (typeof s !== 'string' || (args.length === 2 && typeof enc !== 'string') || args.length < 1 || args.length > 2) {
      throw new Error('_codecs.encode expects (str, encoding)');
    }
    const e = args.length === 2 ? String(enc).toLowerCase().replace(/_/g, '-') : 'utf-8';
    if (e === 'latin1' || e === 'latin-1' || e === 'iso-8859-1' || e === 'iso8859-1') return bytesFromLatin1(s, '_codecs.encode');
    if (e === 'utf-8' || e === 'utf8') return new TextEncoder().encode(s);
    throw new Error(`_codecs.encode with encoding ${JSON.stringify(e).slice(0, 40)} is not supported`);
  })],
  ['builtins.set', new PickleFunction('builtins', 'set', (args) => toSet(args, 'set()'))],
  ['builtins.frozenset', new PickleFunction('builtins', 'frozenset', (args) => toSet(args, 'frozenset()'))],
  ['types.SimpleNamespace', new PickleFunction('types', 'SimpleNamespace', (args) => {
    if (args.length !== 0) throw new Error('SimpleNamespace() expects no positional argument');
    return makeRecord('types.SimpleNamespace');
  })],
]);

/**
 * Why `module.name` must be refused, or undefined when it may be an inert reference. Does not
 * consult allow-lists: call it for names that are not allow-listed.
 */
export function refusalReason(module: string, name: string): string | undefined {
  const mod = PY2_MODULES[module] ?? module;
  const modParts = mod.split('.');
  const nameParts = name.split('.');
  if (![...modParts, ...nameParts].every((p) => IDENT.test(p))) return 'is not a valid Python name';
  const top = modParts[0];
  if (DENIED_MODULES.has(top)) return 'could run code';
  if (top.startsWith('_')) return 'is from a private module that could run code';
  for (const p of [...modParts, ...nameParts]) {
    if (p.startsWith('__') && p.endsWith('__')) return 'could run code';
  }
  for (const p of nameParts) if (DENIED_NAMES.has(p)) return 'could run code';
  if (STRICT_PACKAGES.has(top)) {
    const q = `${mod}.${name}`;
    if (!STRICT_INERT_PREFIXES.some((pre) => q.startsWith(pre))) return 'is not allow-listed';
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Unpickler

/** Options of {@link unpickle}. */
export interface UnpickleOptions {
  /** Label for error messages, e.g. `model.pt: data.pkl`. */
  source?: string;
  /** Resolves persistent ids (BINPERSID / PERSID). Without it they are an error. */
  persistentLoad?: (pid: PickleValue) => PickleValue;
  /** Extra allow-listed globals keyed `module.name`: callables or constants. */
  globals?: ReadonlyMap<string, PickleGlobal | PickleValue>;
  /** Stack size limit (default 2^22 entries). */
  maxStack?: number;
  /** Memo size limit (default 2^22 entries). */
  maxMemo?: number;
}

const MARK = Symbol('mark');
type Item = PickleValue | typeof MARK;

const DEFAULT_MAX_STACK = 1 << 22;
const DEFAULT_MAX_MEMO = 1 << 22;
const MAX_MARK_DEPTH = 1 << 16;
const MAX_LONG_BYTES = 4096;
const MAX_LINE = 4096;

const OPNAMES: Record<number, string> = {};
{
  const names: Array<[string, number]> = [
    ['MARK', 0x28], ['STOP', 0x2e], ['POP', 0x30], ['POP_MARK', 0x31], ['DUP', 0x32], ['FLOAT', 0x46],
    ['INT', 0x49], ['BININT', 0x4a], ['BININT1', 0x4b], ['LONG', 0x4c], ['BININT2', 0x4d], ['NONE', 0x4e],
    ['PERSID', 0x50], ['BINPERSID', 0x51], ['REDUCE', 0x52], ['STRING', 0x53], ['BINSTRING', 0x54],
    ['SHORT_BINSTRING', 0x55], ['UNICODE', 0x56], ['BINUNICODE', 0x58], ['APPEND', 0x61], ['BUILD', 0x62],
    ['GLOBAL', 0x63], ['DICT', 0x64], ['EMPTY_DICT', 0x7d], ['APPENDS', 0x65], ['GET', 0x67], ['BINGET', 0x68],
    ['INST', 0x69], ['LONG_BINGET', 0x6a], ['LIST', 0x6c], ['EMPTY_LIST', 0x5d], ['OBJ', 0x6f], ['PUT', 0x70],
    ['BINPUT', 0x71], ['LONG_BINPUT', 0x72], ['SETITEM', 0x73], ['TUPLE', 0x74], ['EMPTY_TUPLE', 0x29],
    ['SETITEMS', 0x75], ['BINFLOAT', 0x47], ['PROTO', 0x80], ['NEWOBJ', 0x81], ['EXT1', 0x82], ['EXT2', 0x83],
    ['EXT4', 0x84], ['TUPLE1', 0x85], ['TUPLE2', 0x86], ['TUPLE3', 0x87], ['NEWTRUE', 0x88], ['NEWFALSE', 0x89],
    ['LONG1', 0x8a], ['LONG4', 0x8b], ['BINBYTES', 0x42], ['SHORT_BINBYTES', 0x43], ['SHORT_BINUNICODE', 0x8c],
    ['BINUNICODE8', 0x8d], ['BINBYTES8', 0x8e], ['EMPTY_SET', 0x8f], ['ADDITEMS', 0x90], ['FROZENSET', 0x91],
    ['NEWOBJ_EX', 0x92], ['STACK_GLOBAL', 0x93], ['MEMOIZE', 0x94], ['FRAME', 0x95], ['BYTEARRAY8', 0x96],
    ['NEXT_BUFFER', 0x97], ['READONLY_BUFFER', 0x98],
  ];
  for (const [n, c] of names) OPNAMES[c] = n;
}

function describe(v: Item): string {
  if (v === MARK) return 'a mark';
  if (v === null) return 'None';
  if (typeof v === 'boolean') return 'a bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an int' : 'a float';
  if (typeof v === 'bigint') return 'an int';
  if (typeof v === 'string') return 'a str';
  if (v instanceof Uint8Array) return 'bytes';
  if (Array.isArray(v)) return Object.isFrozen(v) ? 'a tuple' : 'a list';
  if (v instanceof Map) return 'a dict';
  if (v instanceof Set) return 'a set';
  if (v instanceof PickleGlobal) return `global ${printable(v.qualname)}`;
  if (v instanceof PickleExternal) return `a ${v.kind}`;
  if (isPickleRecord(v)) return `a ${printable(v.__class__)} record`;
  return 'a tensor';
}

function printable(s: string, max = 80): string {
  const t = s.replace(/[^\x20-\x7e]/g, '?');
  return t.length > max ? `${t.slice(0, max)}...` : t;
}

class Machine {
  private pos = 0;
  private readonly stack: Item[] = [];
  private readonly marks: number[] = [];
  private readonly memo = new Map<number, PickleValue>();
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true });
  private readonly maxStack: number;
  private readonly maxMemo: number;
  private opStart = 0;

  constructor(private readonly data: Uint8Array, private readonly opts: UnpickleOptions) {
    this.maxStack = opts.maxStack ?? DEFAULT_MAX_STACK;
    this.maxMemo = opts.maxMemo ?? DEFAULT_MAX_MEMO;
  }

  fail(why: string): never {
    const src = this.opts.source ?? 'pickle';
    throw new ConvNextError(`${src}: ${why} (at byte ${this.opStart})`);
  }

  private need(n: number, what: string): void {
    if (!(n >= 0) || n > this.data.length - this.pos) {
      this.fail(`${what} of ${n} bytes runs past the end of the pickle (${this.data.length - this.pos} left; truncated or corrupt)`);
    }
  }

  private bytes(n: number, what: string): Uint8Array {
    this.need(n, what);
    const b = this.data.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  private u8(): number { this.need(1, 'argument'); return this.data[this.pos++]; }
  private u16(): number { const b = this.bytes(2, 'argument'); return b[0] | (b[1] << 8); }
  private u32(): number { const b = this.bytes(4, 'argument'); return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0; }
  private i32(): number { const b = this.bytes(4, 'argument'); return b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24); }
  /** An 8-byte length; anything that does not fit the remaining bytes is an error. */
  private u64len(what: string): number {
    const lo = this.u32();
    const hi = this.u32();
    if (hi !== 0) this.fail(`${what} claims over 4 GiB, more than the pickle holds`);
    return lo;
  }

  private line(what: string): string {
    const start = this.pos;
    const end = Math.min(this.data.length, start + MAX_LINE);
    for (let i = start; i < end; i++) {
      if (this.data[i] === 0x0a) {
        this.pos = i + 1;
        try {
          return this.utf8.decode(this.data.subarray(start, i));
        } catch {
          this.fail(`${what} is not valid UTF-8`);
        }
      }
    }
    this.fail(`${what}: no newline within ${MAX_LINE} bytes (truncated or corrupt)`);
  }

  private text(n: number, what: string): string {
    const b = this.bytes(n, what);
    try {
      return this.utf8.decode(b);
    } catch {
      this.fail(`${what} is not valid UTF-8`);
    }
  }

  private push(v: Item): void {
    if (this.stack.length >= this.maxStack) this.fail(`stack over ${this.maxStack} entries`);
    this.stack.push(v);
  }

  private pop(what: string): PickleValue {
    const base = this.marks.length ? this.marks[this.marks.length - 1] + 1 : 0;
    if (this.stack.length <= base) this.fail(`${what} on an empty stack (or across a mark)`);
    return this.stack.pop() as PickleValue;
  }

  private top(what: string): PickleValue {
    const base = this.marks.length ? this.marks[this.marks.length - 1] + 1 : 0;
    if (this.stack.length <= base) this.fail(`${what} on an empty stack (or across a mark)`);
    return this.stack[this.stack.length - 1] as PickleValue;
  }

  /** Pops everything above the last mark, and the mark. */
  private popMark(what: string): PickleValue[] {
    const m = this.marks.pop();
    if (m === undefined) this.fail(`${what} without a mark`);
    const items = this.stack.splice(m) as Item[];
    items.shift(); // the mark itself
    return items as PickleValue[];
  }

  private put(idx: number): void {
    if (this.memo.size >= this.maxMemo && !this.memo.has(idx)) this.fail(`memo over ${this.maxMemo} entries`);
    this.memo.set(idx, this.top('PUT'));
  }

  private get(idx: number): void {
    const v = this.memo.get(idx);
    if (v === undefined) this.fail(`memo key ${idx} is not defined`);
    this.push(v);
  }

  private resolveGlobal(module: string, name: string): PickleGlobal | PickleValue {
    const mod = PY2_MODULES[module] ?? module;
    const key = `${mod}.${name}`;
    const extra = this.opts.globals?.get(key);
    if (extra !== undefined) return extra;
    const base = BASE_GLOBALS.get(key);
    if (base !== undefined) return base;
    const why = refusalReason(module, name);
    if (why !== undefined) this.fail(`refused global ${printable(key)}: ${why}`);
    return new PickleGlobal(mod, name);
  }

  private call(fn: PickleValue, args: PickleValue, what: string, kwargs?: PickleDict): PickleValue {
    if (!(fn instanceof PickleFunction)) {
      if (fn instanceof PickleGlobal) this.fail(`${what} calls ${printable(fn.qualname)}, which is not an allow-listed callable`);
      this.fail(`${what} calls ${describe(fn)}, which is not callable`);
    }
    if (!Array.isArray(args)) this.fail(`${what}: arguments of ${printable(fn.qualname)} are ${describe(args)}, not a tuple`);
    try {
      return fn.fn(args, kwargs);
    } catch (err) {
      if (err instanceof ConvNextError) throw err;
      this.fail(`${printable(fn.qualname)}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private newobj(cls: PickleValue, args: PickleValue, kwargs: PickleValue | undefined, what: string): PickleValue {
    if (!Array.isArray(args)) this.fail(`${what}: arguments are ${describe(args)}, not a tuple`);
    if (kwargs !== undefined && !(kwargs instanceof Map)) this.fail(`${what}: keyword arguments are ${describe(kwargs)}, not a dict`);
    if (cls instanceof PickleFunction) return this.call(cls, args, what, kwargs);
    if (!(cls instanceof PickleGlobal)) this.fail(`${what} on ${describe(cls)}, not a class`);
    const rec = makeRecord(cls.qualname);
    if (args.length) setRecordField(rec, '__args__', args);
    if (kwargs && kwargs.size) setRecordField(rec, '__kwargs__', kwargs);
    return rec;
  }

  private setState(rec: PickleRecord, state: PickleValue): void {
    const fromDict = (d: PickleValue): void => {
      if (d === null) return;
      if (!(d instanceof Map)) this.fail(`BUILD state of ${printable(rec.__class__)} is ${describe(d)}, not a dict`);
      for (const [k, v] of d) {
        if (typeof k !== 'string') this.fail(`BUILD state of ${printable(rec.__class__)} has a key that is ${describe(k)}, not a str`);
        if (k === '__class__') this.fail(`BUILD state of ${printable(rec.__class__)} sets __class__`);
        setRecordField(rec, k, v);
      }
    };
    if (state instanceof Map) fromDict(state);
    else if (Array.isArray(state) && Object.isFrozen(state) && state.length === 2) {
      fromDict(state[0]);
      fromDict(state[1]);
    } else setRecordField(rec, '__state__', state);
  }

  private build(obj: PickleValue, state: PickleValue): void {
    if (isPickleRecord(obj)) { this.setState(obj, state); return; }
    // Attributes set on a dict (e.g. a state_dict's `_metadata`) or on a tensor are not kept.
    if ((obj instanceof Map || isTensorLike(obj)) && (state instanceof Map || state === null || Array.isArray(state))) return;
    this.fail(`BUILD on ${describe(obj)} is not supported`);
  }

  private setItems(target: PickleValue, items: PickleValue[], what: string): void {
    if (items.length % 2) this.fail(`${what} with an odd number of items`);
    if (target instanceof Map) {
      for (let i = 0; i < items.length; i += 2) target.set(items[i], items[i + 1]);
    } else if (isPickleRecord(target)) {
      let m = target.__dictitems__;
      if (!(m instanceof Map)) { m = new Map(); setRecordField(target, '__dictitems__', m); }
      for (let i = 0; i < items.length; i += 2) m.set(items[i], items[i + 1]);
    } else this.fail(`${what} on ${describe(target)}, not a dict`);
  }

  private append(target: PickleValue, items: PickleValue[], what: string): void {
    if (Array.isArray(target) && !Object.isFrozen(target)) {
      for (const v of items) target.push(v);
    } else if (isPickleRecord(target)) {
      let l = target.__listitems__;
      if (!Array.isArray(l)) { l = []; setRecordField(target, '__listitems__', l); }
      for (const v of items) l.push(v);
    } else this.fail(`${what} on ${describe(target)}, not a list`);
  }

  private long(b: Uint8Array): number | bigint {
    if (b.length === 0) return 0;
    if (b.length <= 6) {
      let v = 0;
      for (let i = b.length - 1; i >= 0; i--) v = v * 256 + b[i];
      if (b[b.length - 1] & 0x80) v -= 2 ** (8 * b.length);
      return v;
    }
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  private decimal(s: string, what: string): number | bigint {
    const t = s.endsWith('L') ? s.slice(0, -1) : s;
    if (!/^[+-]?\d{1,4300}$/.test(t)) this.fail(`${what} argument ${JSON.stringify(printable(s, 40))} is not an integer`);
    const v = BigInt(t);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  run(): PickleValue {
    const d = this.data;
    while (true) {
      this.opStart = this.pos;
      if (this.pos >= d.length) this.fail('pickle ends without STOP (truncated)');
      const op = d[this.pos++];
      switch (op) {
        case 0x80: { // PROTO
          const p = this.u8();
          if (p > 5) this.fail(`pickle protocol ${p} is not supported (0-5)`);
          break;
        }
        case 0x95: { // FRAME: a length hint; the data follows inline
          const n = this.u64len('FRAME');
          this.need(n, 'FRAME');
          break;
        }
        case 0x2e: { // STOP
          const v = this.pop('STOP');
          if (this.stack.length !== 0 || this.marks.length !== 0) this.fail('STOP with more than one value on the stack');
          return v;
        }
        case 0x28: // MARK
          if (this.marks.length >= MAX_MARK_DEPTH) this.fail(`marks nested over ${MAX_MARK_DEPTH} deep`);
          this.marks.push(this.stack.length);
          this.push(MARK);
          break;
        case 0x30: this.pop('POP'); break; // POP
        case 0x31: this.popMark('POP_MARK'); break; // POP_MARK
        case 0x32: this.push(this.top('DUP')); break; // DUP
        case 0x4e: this.push(null); break; // NONE
        case 0x88: this.push(true); break; // NEWTRUE
        case 0x89: this.push(false); break; // NEWFALSE
        case 0x4a: this.push(this.i32()); break; // BININT
        case 0x4b: this.push(this.u8()); break; // BININT1
        case 0x4d: this.push(this.u16()); break; // BININT2
        case 0x8a: { // LONG1
          const n = this.u8();
          this.push(this.long(this.bytes(n, 'LONG1')));
          break;
        }
        case 0x8b: { // LONG4
          const n = this.i32();
          if (n < 0) this.fail('LONG4 with a negative length');
          if (n > MAX_LONG_BYTES) this.fail(`LONG4 of ${n} bytes is over the limit of ${MAX_LONG_BYTES}`);
          this.push(this.long(this.bytes(n, 'LONG4')));
          break;
        }
        case 0x49: { // INT (text)
          const s = this.line('INT');
          if (s === '00') this.push(false);
          else if (s === '01') this.push(true);
          else this.push(this.decimal(s, 'INT'));
          break;
        }
        case 0x4c: this.push(this.decimal(this.line('LONG'), 'LONG')); break; // LONG (text)
        case 0x46: { // FLOAT (text)
          const s = this.line('FLOAT').trim();
          if (!/^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|nan|infinity)$/i.test(s)) this.fail('FLOAT argument is not a number');
          this.push(/nan/i.test(s) ? NaN : /inf/i.test(s) ? (s.startsWith('-') ? -Infinity : Infinity) : Number(s));
          break;
        }
        case 0x47: { // BINFLOAT: big-endian double
          const b = this.bytes(8, 'BINFLOAT');
          this.push(new DataView(b.buffer, b.byteOffset, 8).getFloat64(0, false));
          break;
        }
        case 0x58: this.push(this.text(this.u32(), 'BINUNICODE')); break; // BINUNICODE
        case 0x8c: this.push(this.text(this.u8(), 'SHORT_BINUNICODE')); break; // SHORT_BINUNICODE
        case 0x8d: this.push(this.text(this.u64len('BINUNICODE8'), 'BINUNICODE8')); break; // BINUNICODE8
        case 0x54: { // BINSTRING (Python 2 str: decoded as UTF-8, else Latin-1, as torch.load does)
          const n = this.i32();
          if (n < 0) this.fail('BINSTRING with a negative length');
          this.push(this.py2str(this.bytes(n, 'BINSTRING')));
          break;
        }
        case 0x55: this.push(this.py2str(this.bytes(this.u8(), 'SHORT_BINSTRING'))); break; // SHORT_BINSTRING
        case 0x42: this.push(this.bytes(this.u32(), 'BINBYTES').slice()); break; // BINBYTES
        case 0x43: this.push(this.bytes(this.u8(), 'SHORT_BINBYTES').slice()); break; // SHORT_BINBYTES
        case 0x8e: this.push(this.bytes(this.u64len('BINBYTES8'), 'BINBYTES8').slice()); break; // BINBYTES8
        case 0x96: this.push(this.bytes(this.u64len('BYTEARRAY8'), 'BYTEARRAY8').slice()); break; // BYTEARRAY8
        case 0x5d: this.push([]); break; // EMPTY_LIST
        case 0x6c: this.push(this.popMark('LIST')); break; // LIST
        case 0x61: { // APPEND
          const v = this.pop('APPEND');
          this.append(this.top('APPEND'), [v], 'APPEND');
          break;
        }
        case 0x65: { // APPENDS
          const items = this.popMark('APPENDS');
          this.append(this.top('APPENDS'), items, 'APPENDS');
          break;
        }
        case 0x29: this.push(tupleOf([])); break; // EMPTY_TUPLE
        case 0x74: this.push(tupleOf(this.popMark('TUPLE'))); break; // TUPLE
        case 0x85: { // TUPLE1
          const a = this.pop('TUPLE1');
          this.push(tupleOf([a]));
          break;
        }
        case 0x86: { // TUPLE2
          const b = this.pop('TUPLE2');
          const a = this.pop('TUPLE2');
          this.push(tupleOf([a, b]));
          break;
        }
        case 0x87: { // TUPLE3
          const c = this.pop('TUPLE3');
          const b = this.pop('TUPLE3');
          const a = this.pop('TUPLE3');
          this.push(tupleOf([a, b, c]));
          break;
        }
        case 0x7d: this.push(newDict()); break; // EMPTY_DICT
        case 0x64: { // DICT
          const items = this.popMark('DICT');
          const m = newDict();
          this.setItems(m, items, 'DICT');
          this.push(m);
          break;
        }
        case 0x73: { // SETITEM
          const v = this.pop('SETITEM');
          const k = this.pop('SETITEM');
          this.setItems(this.top('SETITEM'), [k, v], 'SETITEM');
          break;
        }
        case 0x75: { // SETITEMS
          const items = this.popMark('SETITEMS');
          this.setItems(this.top('SETITEMS'), items, 'SETITEMS');
          break;
        }
        case 0x8f: this.push(new Set()); break; // EMPTY_SET
        case 0x90: { // ADDITEMS
          const items = this.popMark('ADDITEMS');
          const s = this.top('ADDITEMS');
          if (!(s instanceof Set)) this.fail(`ADDITEMS on ${describe(s)}, not a set`);
          for (const v of items) s.add(v);
          break;
        }
        case 0x91: this.push(new Set(this.popMark('FROZENSET'))); break; // FROZENSET
        case 0x71: this.put(this.u8()); break; // BINPUT
        case 0x72: this.put(this.u32()); break; // LONG_BINPUT
        case 0x94: this.put(this.memo.size); break; // MEMOIZE
        case 0x70: this.put(this.memoIndex(this.line('PUT'), 'PUT')); break; // PUT (text)
        case 0x68: this.get(this.u8()); break; // BINGET
        case 0x6a: this.get(this.u32()); break; // LONG_BINGET
        case 0x67: this.get(this.memoIndex(this.line('GET'), 'GET')); break; // GET (text)
        case 0x63: { // GLOBAL
          const module = this.line('GLOBAL module');
          const name = this.line('GLOBAL name');
          this.push(this.resolveGlobal(module, name));
          break;
        }
        case 0x93: { // STACK_GLOBAL
          const name = this.pop('STACK_GLOBAL');
          const module = this.pop('STACK_GLOBAL');
          if (typeof module !== 'string' || typeof name !== 'string') this.fail('STACK_GLOBAL needs two strings');
          this.push(this.resolveGlobal(module, name));
          break;
        }
        case 0x52: { // REDUCE
          const args = this.pop('REDUCE');
          const fn = this.pop('REDUCE');
          this.push(this.call(fn, args, 'REDUCE'));
          break;
        }
        case 0x81: { // NEWOBJ
          const args = this.pop('NEWOBJ');
          const cls = this.pop('NEWOBJ');
          this.push(this.newobj(cls, args, undefined, 'NEWOBJ'));
          break;
        }
        case 0x92: { // NEWOBJ_EX
          const kwargs = this.pop('NEWOBJ_EX');
          const args = this.pop('NEWOBJ_EX');
          const cls = this.pop('NEWOBJ_EX');
          this.push(this.newobj(cls, args, kwargs, 'NEWOBJ_EX'));
          break;
        }
        case 0x62: { // BUILD
          const state = this.pop('BUILD');
          this.build(this.top('BUILD'), state);
          break;
        }
        case 0x51: { // BINPERSID
          const pid = this.pop('BINPERSID');
          this.push(this.persistent(pid));
          break;
        }
        case 0x50: this.push(this.persistent(this.line('PERSID'))); break; // PERSID (text)
        default: {
          const name = OPNAMES[op];
          if (name) this.fail(`opcode ${name} is not supported by this restricted unpickler`);
          this.fail(`invalid opcode 0x${op.toString(16).padStart(2, '0')} (not a pickle, or corrupt)`);
        }
      }
    }
  }

  private py2str(b: Uint8Array): string {
    try {
      return this.utf8.decode(b);
    } catch {
      return new TextDecoder('latin1').decode(b);
    }
  }

  private memoIndex(s: string, what: string): number {
    if (!/^\d{1,10}$/.test(s)) this.fail(`${what} argument is not a memo index`);
    return Number(s);
  }

  private persistent(pid: PickleValue): PickleValue {
    const load = this.opts.persistentLoad;
    if (!load) this.fail('persistent id found, but no persistent loader was given');
    try {
      return load(pid);
    } catch (err) {
      if (err instanceof ConvNextError) throw err;
      this.fail(`persistent id: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

function isTensorLike(v: PickleValue): v is TensorData {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && (v as TensorData).data instanceof Float32Array;
}

/**
 * Interprets `data` as a pickle under the policy above and returns its value. Every problem is
 * a one-line ConvNextError starting with `opts.source`.
 */
export function unpickle(data: Uint8Array, opts: UnpickleOptions = {}): PickleValue {
  return new Machine(data, opts).run();
}

// ---------------------------------------------------------------------------------------------
// Writer (protocol 2)

/**
 * Low-level protocol-2 pickle writer that memoizes like Python's pickler: every string
 * (by value), global, non-empty tuple, list, dict and REDUCE / NEWOBJ result gets a BINPUT
 * (LONG_BINPUT past 255), and later uses of the same string or global are BINGETs.
 */
export class PickleWriter {
  private chunks: Uint8Array[] = [];
  private cur = new Uint8Array(1 << 16);
  private len = 0;
  private nextMemo = 0;
  private readonly strings = new Map<string, number>();
  private readonly globalsMemo = new Map<string, number>();

  constructor() { this.op(0x80, 2); }

  private byte(b: number): void {
    if (this.len === this.cur.length) {
      this.chunks.push(this.cur);
      this.cur = new Uint8Array(1 << 16);
      this.len = 0;
    }
    this.cur[this.len++] = b;
  }

  private raw(b: Uint8Array): void {
    for (let i = 0; i < b.length;) {
      if (this.len === this.cur.length) {
        this.chunks.push(this.cur);
        this.cur = new Uint8Array(Math.max(1 << 16, Math.min(b.length - i, 1 << 24)));
        this.len = 0;
      }
      const n = Math.min(b.length - i, this.cur.length - this.len);
      this.cur.set(b.subarray(i, i + n), this.len);
      this.len += n;
      i += n;
    }
  }

  private u32(v: number): void { this.byte(v & 0xff); this.byte((v >>> 8) & 0xff); this.byte((v >>> 16) & 0xff); this.byte((v >>> 24) & 0xff); }

  private op(code: number, arg?: number): void {
    this.byte(code);
    if (arg !== undefined) this.byte(arg);
  }

  /** BINPUT / LONG_BINPUT of the value on top; returns its memo index. */
  memoize(): number {
    const i = this.nextMemo++;
    if (i < 256) this.op(0x71, i);
    else { this.byte(0x72); this.u32(i); }
    return i;
  }

  private getMemo(i: number): void {
    if (i < 256) this.op(0x68, i);
    else { this.byte(0x6a); this.u32(i); }
  }

  mark(): void { this.byte(0x28); }
  none(): void { this.byte(0x4e); }
  bool(v: boolean): void { this.byte(v ? 0x88 : 0x89); }

  /** An int as BININT1 / BININT2 / BININT / LONG1, as Python chooses. */
  int(v: number | bigint): void {
    if (typeof v === 'number' && !Number.isSafeInteger(v)) throw new ConvNextError(`cannot pickle ${v} as an int`);
    const n = BigInt(v);
    if (n >= 0n && n <= 0xffn) { this.op(0x4b, Number(n)); return; }
    if (n >= 0n && n <= 0xffffn) { this.byte(0x4d); this.byte(Number(n) & 0xff); this.byte(Number(n) >> 8); return; }
    if (n >= -(2n ** 31n) && n < 2n ** 31n) { this.byte(0x4a); this.u32(Number(BigInt.asUintN(32, n))); return; }
    // LONG1: minimal two's complement, little-endian.
    const bytes: number[] = [];
    let x = n;
    while (true) {
      bytes.push(Number(x & 0xffn));
      x >>= 8n;
      const last = bytes[bytes.length - 1];
      if ((x === 0n && !(last & 0x80)) || (x === -1n && last & 0x80)) break;
    }
    if (bytes.length > 255) throw new ConvNextError('cannot pickle an int of more than 255 bytes');
    this.op(0x8a, bytes.length);
    for (const b of bytes) this.byte(b);
  }

  float(v: number): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, false);
    this.byte(0x47);
    this.raw(b);
  }

  /** A str as BINUNICODE, memoized by value. */
  string(s: string): void {
    const m = this.strings.get(s);
    if (m !== undefined) { this.getMemo(m); return; }
    const b = new TextEncoder().encode(s);
    this.byte(0x58);
    this.u32(b.length);
    this.raw(b);
    this.strings.set(s, this.memoize());
  }

  /** A global as GLOBAL 'module\nname\n', memoized. */
  global(module: string, name: string): void {
    const key = `${module}\n${name}\n`;
    const m = this.globalsMemo.get(key);
    if (m !== undefined) { this.getMemo(m); return; }
    this.byte(0x63);
    this.raw(new TextEncoder().encode(key));
    this.globalsMemo.set(key, this.memoize());
  }

  emptyTuple(): void { this.byte(0x29); }
  /** Closes a tuple of `n` items already written (after a mark when n > 3), then memoizes. */
  tuple(n: number): void {
    if (n === 0) { this.emptyTuple(); return; }
    if (n === 1) this.byte(0x85);
    else if (n === 2) this.byte(0x86);
    else if (n === 3) this.byte(0x87);
    else this.byte(0x74);
    this.memoize();
  }
  emptyDict(): void { this.byte(0x7d); this.memoize(); }
  emptyList(): void { this.byte(0x5d); this.memoize(); }
  setitem(): void { this.byte(0x73); }
  setitems(): void { this.byte(0x75); }
  append(): void { this.byte(0x61); }
  appends(): void { this.byte(0x65); }
  reduce(): void { this.byte(0x52); this.memoize(); }
  newobj(): void { this.byte(0x81); this.memoize(); }
  build(): void { this.byte(0x62); }
  binpersid(): void { this.byte(0x51); }

  /** Writes STOP and returns the pickle bytes. The writer must not be used afterwards. */
  finish(): Uint8Array {
    this.byte(0x2e);
    const total = this.chunks.reduce((s, c) => s + c.length, 0) + this.len;
    const out = new Uint8Array(total);
    let p = 0;
    for (const c of this.chunks) { out.set(c, p); p += c.length; }
    out.set(this.cur.subarray(0, this.len), p);
    this.chunks = [];
    return out;
  }
}
