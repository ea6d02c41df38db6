/**
 * The WebAssembly kernels: native/wasm/exports.cc and the portable kernel sources
 * (native/{gemm,dwconv,norm,misc}.cc, the same ones the addon compiles) built with clang for
 * wasm32 with SIMD128 into dist/wasm/convnextv2.wasm (no imports: no WASI calls are made).
 * Needs Debian's clang and WASI sysroot:
 *   apt-get install -y --no-install-recommends clang lld wasi-libc libc++-dev-wasm32 libc++abi-14-dev-wasm32 libclang-rt-dev-wasm32
 *
 *   npm run build:wasm        (node --import tsx scripts/build-wasm.ts [--out FILE])
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const WASM_PATH = join(ROOT, 'dist', 'wasm', 'convnextv2.wasm');
const APT = 'apt-get install -y --no-install-recommends clang lld wasi-libc libc++-dev-wasm32 libc++abi-14-dev-wasm32 libclang-rt-dev-wasm32';

/** Compiles the wasm kernels to `out`; throws with the apt-get line when the toolchain is missing. */
export function buildWasm(out = WASM_PATH): string {
  const cxx = process.env.CXX_WASM ?? 'clang++';
  const libcxx = '/usr/lib/llvm-14/include/wasm32-wasi/c++/v1';
  if (spawnSync(cxx, ['--version']).status !== 0 || !existsSync('/usr/include/wasm32-wasi') || !existsSync(libcxx)) {
    throw new Error(`build-wasm: needs clang and the WASI sysroot (${APT})`);
  }
  mkdirSync(dirname(out), { recursive: true });
  const n = join(ROOT, 'native');
  const args = [
    '--target=wasm32-wasi', '--sysroot=/usr', '-isystem', '/usr/include/wasm32-wasi', '-isystem', libcxx,
    '-O3', '-msimd128', '-fno-exceptions', '-std=c++17', `-I${n}`, '-nostartfiles', '-Wl,--no-entry', '-L/usr/lib/wasm32-wasi',
    '-Wl,--initial-memory=67108864', '-Wl,--max-memory=4294967296',
    '-o', out, join(n, 'wasm', 'exports.cc'), ...['gemm', 'dwconv', 'norm', 'misc'].map((f) => join(n, `${f}.cc`)),
  ];
  const r = spawnSync(cxx, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`build-wasm: ${cxx} failed:\n${r.stderr}`);
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--out');
  try {
    process.stdout.write(`wrote ${buildWasm(i >= 0 ? process.argv[i + 1] : undefined)}\n`);
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}
