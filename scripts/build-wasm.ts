/**
 * The WebAssembly kernels: native/wasm/exports.cc and the portable kernel sources
 * (native/{gemm,dwconv,norm,misc}.cc, the same ones the addon compiles) built with clang for
 * wasm32 with SIMD128 into dist/wasm/convnextv2.wasm (threads, shared memory) and
 * dist/wasm/convnextv2-single.wasm (one thread); the only import is the memory (no WASI calls).
 * Needs Debian's clang and WASI sysroot:
 *   apt-get install -y --no-install-recommends clang lld wasi-libc libc++-dev-wasm32 libc++abi-14-dev-wasm32 libclang-rt-dev-wasm32
 *
 *   npm run build:wasm        (node --import tsx scripts/build-wasm.ts [--out FILE])
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const WASM_PATH = join(ROOT, 'dist', 'wasm', 'convnextv2.wasm');
const APT = 'apt-get install -y --no-install-recommends clang lld wasi-libc libc++-dev-wasm32 libc++abi-14-dev-wasm32 libclang-rt-dev-wasm32';

export const WASM_SINGLE_PATH = join(ROOT, 'dist', 'wasm', 'convnextv2-single.wasm');

/**
 * Compiles the kernel sources twice: with atomics and thread-local storage into `out`, which
 * imports a shared memory (threads), and plainly into the `-single` file next to it, which
 * imports an unshared one (one thread, for pages that are not cross-origin isolated). Throws with the
 * apt-get line when the toolchain is missing. Returns the two paths.
 */
export function buildWasm(out = WASM_PATH): [string, string] {
  const cxx = process.env.CXX_WASM ?? 'clang++';
  const libcxx = '/usr/lib/llvm-14/include/wasm32-wasi/c++/v1';
  if (spawnSync(cxx, ['--version']).status !== 0 || !existsSync('/usr/include/wasm32-wasi') || !existsSync(libcxx)) {
    throw new Error(`build-wasm: needs clang and the WASI sysroot (${APT})`);
  }
  mkdirSync(dirname(out), { recursive: true });
  const single = out.replace(/\.wasm$/, '') + '-single.wasm';
  const n = join(ROOT, 'native');
  const tmp = mkdtempSync(join(tmpdir(), 'cnx-wasm-'));
  try {
    const common = [
      '--target=wasm32-wasi', '--sysroot=/usr', '-isystem', '/usr/include/wasm32-wasi', '-isystem', libcxx,
      '-O3', '-msimd128', '-fno-exceptions', '-std=c++17', `-I${n}`,
    ];
    const sources = [join(n, 'wasm', 'exports.cc'), ...['gemm', 'dwconv', 'norm', 'misc'].map((f) => join(n, `${f}.cc`))];
    const compile = (tag: string, flags: string[]) => sources.map((src, i) => {
      const o = join(tmp, `${tag}${i}.o`);
      run(cxx, [...common, ...flags, '-c', '-o', o, src]);
      return o;
    });
    const link = [
      '--target=wasm32-wasi', '--sysroot=/usr', '-nostartfiles', '-L/usr/lib/wasm32-wasi', '-Wl,--no-entry', '-Wl,--import-memory',
      '-Wl,--initial-memory=67108864', '-Wl,--max-memory=4294967296', '-Wl,-z,stack-size=1048576',
    ];
    run(cxx, [...link, '-o', single, ...compile('single', [])]);
    const exports = ['__stack_pointer', '__wasm_init_tls', '__tls_size', '__tls_align'].map((s) => `-Wl,--export=${s}`);
    const threaded = compile('mt', ['-matomics', '-mbulk-memory', '-mmutable-globals', '-ftls-model=local-exec']);
    run(cxx, [...link, '-Wl,--shared-memory', ...exports, '-o', out, ...threaded]);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return [out, single];
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`build-wasm: ${cmd} failed:\n${r.stderr}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--out');
  try {
    process.stdout.write(`wrote ${buildWasm(i >= 0 ? process.argv[i + 1] : undefined).join(' and ')}\n`);
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}
