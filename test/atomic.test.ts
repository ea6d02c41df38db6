// Atomic writes (src/io/atomic.ts writeFileAtomicSync, under saveCheckpoint and every other
// writer): when a write fails or the process dies part way, the old file is still there, intact,
// no partial file has the final name, and (unless the process was killed) no temporary file is
// left. Real failures: a writer that throws, write / fsync / rename failing, the file-size limit
// (`ulimit -f`) hit by the real CLI with SIGXFSZ killing it and with SIGXFSZ ignored (EFBIG), and
// a SIGKILL in the middle of saveCheckpoint.
// This file is also its own child process (CONVNEXTV2_ATOMIC_CHILD set): see blockingChild.
// Run: node --import tsx --test test/atomic.test.ts
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeAllSync, writeFileAtomicSync } from '../src/io/atomic.js';
import { loadCheckpoint, saveCheckpoint } from '../src/io/checkpoint_file.js';
import { writeSafetensors } from '../src/io/safetensors_file.js';
import { ConvNeXtV2 } from '../src/model/convnextv2.js';
import type { ConvNeXtV2Config } from '../src/model/config.js';
import type { Tensor } from '../src/tensor.js';
import { assertOneLineError, assertSameTensor, smallTimmParams } from './helpers.js';
import { cpu } from './backend.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const CLI = path.join(ROOT, 'src', 'cli', 'main.ts');
/** The temporary name writeFileAtomicSync uses beside `base`: `.<base>.<pid>.<12 hex>.tmp`. */
const tmpName = (base: string) => new RegExp(`^\\.${base.replace(/\./g, '\\.')}\\.\\d+\\.[0-9a-f]{12}\\.tmp$`);

if (process.env.CONVNEXTV2_ATOMIC_CHILD === 'block') {
  blockingChild(process.argv[2], process.argv[3]);
} else {
  defineTests();
}

/**
 * Child: saveCheckpoint(target) of the small_timm weights (written to `source` beforehand);
 * after the header and one tensor have been written, says `partial` on stdout and blocks, so
 * the parent can look at the folder in the middle of the write and SIGKILL it there.
 */
function blockingChild(target: string, source: string): void {
  const ck = loadCheckpoint(source);
  const write = fs.writeSync;
  let calls = 0;
  (fs as { writeSync: unknown }).writeSync = (fd: number, ...rest: unknown[]): number => {
    const n = (write as (fd: number, ...a: unknown[]) => number)(fd, ...rest);
    if (fd > 2 && ++calls === 2) {
      write(1, 'partial\n');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); // forever
    }
    return n;
  };
  syncBuiltinESMExports();
  saveCheckpoint(target, { config: ck.config, state: ck.state, metadata: { generation: 'new' } });
  write(1, 'finished\n');
  process.exit(3);
}

function defineTests(): void {
  let tmp = '';
  let n = 0;
  /** A fresh folder for one case. */
  const folder = () => { const d = path.join(tmp, `case${n++}`); fs.mkdirSync(d); return d; };
  /** The small model with other (seeded random) weights: the "old" checkpoint. */
  let oldState: Map<string, Tensor>;
  let oldConfig: ConvNeXtV2Config;
  /** small_timm's parameters as a timm safetensors file: the "new" content. */
  let timmIn = '';
  let newBytesLength = 0;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'convnextv2-atomic-'));
    timmIn = path.join(tmp, 'small_timm_params.safetensors');
    writeSafetensors(timmIn, smallTimmParams());
    const ck = loadCheckpoint(timmIn);
    oldState = await new ConvNeXtV2(ck.config, { kernels: cpu, seed: 7 }).stateDict();
    oldConfig = ck.config;
    const probe = path.join(tmp, 'probe.safetensors');
    saveCheckpoint(probe, { config: ck.config, state: ck.state, metadata: { generation: 'new' } });
    newBytesLength = fs.statSync(probe).size;
  });
  after(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

  /** Writes the old checkpoint at dir/name and returns its path and bytes. */
  function oldCheckpoint(dir: string, name = 'model.safetensors'): { file: string; bytes: Buffer } {
    const file = path.join(dir, name);
    saveCheckpoint(file, { config: oldConfig, state: oldState, metadata: { generation: 'old' } });
    return { file, bytes: fs.readFileSync(file) };
  }

  /** The file holds exactly the old bytes and loads as the old checkpoint. */
  function assertOldIntact(file: string, bytes: Buffer, what: string): void {
    const now = fs.readFileSync(file);
    assert.equal(now.length, bytes.length, `${what}: ${path.basename(file)} has ${now.length} bytes, the old file ${bytes.length}`);
    assert.ok(now.equals(bytes), `${what}: ${path.basename(file)} is not the old file`);
    const ck = loadCheckpoint(file);
    assert.equal(ck.metadata.generation, 'old', `${what}: the old checkpoint`);
    for (const [k, t] of oldState) assertSameTensor(ck.state.get(k), t, `${what}: ${k}`);
  }

  /** Replaces fs[name] (seen by the library through its `import * as fs`) while fn runs. */
  function withFsPatched<K extends 'writeSync' | 'fsyncSync' | 'renameSync'>(name: K, impl: (orig: typeof fs[K]) => typeof fs[K], fn: () => void): void {
    const orig = fs[name];
    (fs as Record<K, unknown>)[name] = impl(orig);
    syncBuiltinESMExports();
    try {
      fn();
    } finally {
      (fs as Record<K, unknown>)[name] = orig;
      syncBuiltinESMExports();
    }
  }

  const errno = (code: string, msg: string) => Object.assign(new Error(`${code}: ${msg}`), { code });

  test('a writer that throws after writing part of the data: old file intact, no temporary file, one-line error', () => {
    const dir = folder();
    const { file, bytes } = oldCheckpoint(dir);
    const msg = assertOneLineError(() => writeFileAtomicSync(file, (fd) => {
      writeAllSync(fd, new Uint8Array(4096).fill(0x41));
      throw new Error('the disk\nis on fire');
    }), /^cannot write .*model\.safetensors: the disk is on fire$/);
    assert.ok(msg.startsWith(`cannot write ${file}: `), msg);
    assertOldIntact(file, bytes, 'after a throwing writer');
    assert.deepEqual(fs.readdirSync(dir), ['model.safetensors'], 'no temporary file left');
    // And a writer that succeeds replaces it, leaving nothing else either.
    writeFileAtomicSync(file, (fd) => writeAllSync(fd, new Uint8Array([1, 2, 3])));
    assert.deepEqual([...fs.readFileSync(file)], [1, 2, 3]);
    assert.deepEqual(fs.readdirSync(dir), ['model.safetensors']);
  });

  test('saveCheckpoint over a checkpoint when write (ENOSPC after the header), fsync (EIO) or rename (EXDEV) fails', () => {
    const ck = loadCheckpoint(timmIn);
    const cases: Array<[string, () => void, RegExp]> = [];
    const dir = folder();
    const { file, bytes } = oldCheckpoint(dir);
    const save = () => saveCheckpoint(file, { config: ck.config, state: ck.state, metadata: { generation: 'new' } });
    cases.push(['write', () => {
      let written = 0;
      withFsPatched('writeSync', (orig) => ((fd: number, buf: Uint8Array, ...rest: unknown[]) => {
        if (fd > 2 && written > 0) throw errno('ENOSPC', 'no space left on device, write');
        const k = (orig as (...a: unknown[]) => number)(fd, buf, ...rest);
        written += k;
        return k;
      }) as typeof fs.writeSync, save);
    }, /^cannot write .*model\.safetensors: ENOSPC: no space left on device, write$/]);
    cases.push(['fsync', () => {
      withFsPatched('fsyncSync', () => (() => { throw errno('EIO', 'i/o error, fsync'); }) as typeof fs.fsyncSync, save);
    }, /^cannot write .*model\.safetensors: EIO: i\/o error, fsync$/]);
    cases.push(['rename', () => {
      withFsPatched('renameSync', () => (() => { throw errno('EXDEV', 'cross-device link not permitted, rename'); }) as typeof fs.renameSync, save);
    }, /^cannot write .*model\.safetensors: EXDEV: cross-device link not permitted, rename$/]);
    for (const [what, run, pattern] of cases) {
      assertOneLineError(run, pattern);
      assertOldIntact(file, bytes, `${what} failed`);
      assert.deepEqual(fs.readdirSync(dir), ['model.safetensors'], `${what} failed: no temporary file left`);
    }
    // Unpatched, the same call replaces the file.
    save();
    assert.equal(loadCheckpoint(file).metadata.generation, 'new');
    assert.deepEqual(fs.readdirSync(dir), ['model.safetensors']);
  });

  /** The real CLI (`convert --to ours` over an existing checkpoint) under a file-size limit of `kib` KiB. */
  function cliUnderFileLimit(target: string, kib: number, sigxfsz: 'ignore' | 'default') {
    // Node ignores SIGXFSZ itself (so `trap '' XFSZ` is what it does anyway). For the default
    // action (the process killed mid-write) a preload adds and removes a listener: libuv then
    // resets the signal to SIG_DFL. (tsx's cache files, written only for changed sources, are
    // under 100 KB, below the limit.)
    const shell = `${sigxfsz === 'ignore' ? "trap '' XFSZ; " : ''}ulimit -f ${kib}; exec "$0" "$@"`;
    const preload = sigxfsz === 'default'
      ? ['--import', 'data:text/javascript,const f=()=>{};process.on("SIGXFSZ",f);process.off("SIGXFSZ",f);']
      : [];
    const child = spawn('bash', ['-c', shell, process.execPath, ...preload, '--import', 'tsx', CLI, 'convert', '--checkpoint', timmIn, '--to', 'ours', '--output', target], {
      cwd: ROOT, env: { ...process.env, CONVNEXTV2_DEBUG: '' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    return new Promise<{ status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => {
      child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
    });
  }

  test('file-size limit hit by the CLI writing a checkpoint: SIGXFSZ kills it mid-write / EFBIG with SIGXFSZ ignored', async () => {
    const kib = 256;
    assert.ok(newBytesLength > 2 * kib * 1024, `the checkpoint (${newBytesLength} bytes) is larger than the limit`);
    const killedDir = folder();
    const killed = oldCheckpoint(killedDir);
    const efbigDir = folder();
    const efbig = oldCheckpoint(efbigDir);
    const [rk, re] = await Promise.all([cliUnderFileLimit(killed.file, kib, 'default'), cliUnderFileLimit(efbig.file, kib, 'ignore')]);

    // Default action: killed in the middle of the write.
    assert.equal(rk.signal, 'SIGXFSZ', `killed by SIGXFSZ (status ${rk.status}, stderr: ${rk.stderr})`);
    assertOldIntact(killed.file, killed.bytes, 'killed by SIGXFSZ');
    const left = fs.readdirSync(killedDir).filter((f) => f !== 'model.safetensors');
    // The killed process could not clean up: its temporary file, cut at the limit, is not under the final name.
    assert.equal(left.length, 1, `one leftover temporary file, got ${JSON.stringify(left)}`);
    assert.match(left[0], tmpName('model.safetensors'));
    assert.equal(fs.statSync(path.join(killedDir, left[0])).size, kib * 1024, 'the write was cut at the limit');

    // SIGXFSZ ignored: write fails with EFBIG, the CLI says so on one line and exits 1.
    assert.equal(re.signal, null, `not killed (stderr: ${re.stderr})`);
    assert.equal(re.status, 1, `exit status (stderr: ${re.stderr})`);
    const lines = re.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line on stderr, got:\n${re.stderr}`);
    assert.match(lines[0], /^convnextv2: cannot write .*model\.safetensors: EFBIG: file too large, write$/);
    assertOldIntact(efbig.file, efbig.bytes, 'EFBIG');
    assert.deepEqual(fs.readdirSync(efbigDir), ['model.safetensors'], 'no temporary file left');
  });

  test('SIGKILL in the middle of saveCheckpoint: the final name holds the old file during and after', async () => {
    const dir = folder();
    const { file, bytes } = oldCheckpoint(dir);
    const child = spawn(process.execPath, ['--import', 'tsx', SELF, file, timmIn], {
      cwd: ROOT, env: { ...process.env, CONVNEXTV2_ATOMIC_CHILD: 'block' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`the child did not reach the middle of the write (stdout ${out}, stderr ${err})`)); }, 60_000);
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('partial\n')) { clearTimeout(timer); resolve(); }
      });
      child.on('exit', () => { clearTimeout(timer); reject(new Error(`the child exited early (stdout ${out}, stderr ${err})`)); });
    });
    try {
      // Mid-write: a reader sees the old file under the final name; the new data is in a temporary file.
      assertOldIntact(file, bytes, 'during the write');
      const during = fs.readdirSync(dir).filter((f) => f !== 'model.safetensors');
      assert.equal(during.length, 1, `one temporary file during the write, got ${JSON.stringify(during)}`);
      assert.match(during[0], tmpName('model.safetensors'));
      const partial = fs.statSync(path.join(dir, during[0])).size;
      assert.ok(partial > 0 && partial < newBytesLength, `the temporary file is partial (${partial} of ${newBytesLength} bytes)`);
    } finally {
      child.kill('SIGKILL');
    }
    const { signal } = await exited;
    assert.equal(signal, 'SIGKILL');
    assert.doesNotMatch(out, /finished/);
    assertOldIntact(file, bytes, 'after SIGKILL');
    // A leftover temporary file is acceptable after SIGKILL, but never under the final name.
    for (const f of fs.readdirSync(dir)) if (f !== 'model.safetensors') assert.match(f, tmpName('model.safetensors'));
  });
}
