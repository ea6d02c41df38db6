/**
 * `npm run gpu:carry`: packs what the WebGPU benchmark needs on a bare GPU machine with no Node
 * and no network (the `device` machines): into `.gpu/` (git-ignored, about 35 MB):
 * - `node.xz`: this Node binary, xz-compressed;
 * - `dist/cli/main.mjs`, `bench-gpu.mjs`: the CLI and scripts/bench-gpu.ts bundled by esbuild
 *   (one file each, no node_modules), and the native addon built here;
 * - `node_modules/webgpu/`: the optional package's JavaScript and its linux-x64 dawn.node (xz);
 * - `gl/*.deb`: the Vulkan loader (libvulkan1), for a machine that has the NVIDIA driver but no
 *   loader (unpacked with dpkg -x there).
 * Then `.gpu/run.sh` on that machine unpacks them and prints the table (`bash .gpu/run.sh
 * [bench-gpu flags]`, the table also in $OUT/bench-gpu.md when OUT is set). Checked here by running
 * `bash .gpu/run.sh --quick` on a software adapter.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

const ROOT = new URL('..', import.meta.url).pathname;
const OUT = join(ROOT, '.gpu');
rmSync(OUT, { recursive: true, force: true });
mkdirSync(join(OUT, 'gl'), { recursive: true });

// The CLI and the benchmark as single ES modules; 'webgpu' stays an import resolved from .gpu/node_modules.
const common = { bundle: true, platform: 'node' as const, format: 'esm' as const, target: 'node20', external: ['webgpu', 'sharp'], logLevel: 'warning' as const,
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" } };
// At dist/cli/ as in the package: the CLI finds package.json and the addon from its own path.
await build({ ...common, entryPoints: [join(ROOT, 'src/cli/main.ts')], outfile: join(OUT, 'dist', 'cli', 'main.mjs') });
await build({ ...common, entryPoints: [join(ROOT, 'scripts/bench-gpu.ts')], outfile: join(OUT, 'bench-gpu.mjs') });
copyFileSync(join(ROOT, 'package.json'), join(OUT, 'package.json'));
const addon = join(ROOT, 'build', 'Release', 'convnextv2.node');
if (existsSync(addon)) {
  mkdirSync(join(OUT, 'build', 'Release'), { recursive: true });
  copyFileSync(addon, join(OUT, 'build', 'Release', 'convnextv2.node'));
}

const pkg = join(ROOT, 'node_modules', 'webgpu');
if (!existsSync(pkg)) throw new Error('node_modules/webgpu is missing (npm ci installs it where a prebuilt dawn.node exists)');
const dst = join(OUT, 'node_modules', 'webgpu');
mkdirSync(join(dst, 'dist', 'linux-x64'), { recursive: true });
for (const f of ['package.json', 'index.js']) copyFileSync(join(pkg, f), join(dst, f));
cpSync(join(pkg, 'dist', 'linux-x64', 'dawn.node'), join(dst, 'dist', 'linux-x64', 'dawn.node'));
execFileSync('xz', ['-6', '-T0', '-f', join(dst, 'dist', 'linux-x64', 'dawn.node')]);
copyFileSync(process.execPath, join(OUT, 'node'));
execFileSync('xz', ['-6', '-T0', '-f', join(OUT, 'node')]);
execFileSync('apt-get', ['download', 'libvulkan1'], { cwd: join(OUT, 'gl'), stdio: 'inherit' });

writeFileSync(join(OUT, 'run.sh'), `#!/bin/bash
# On the GPU machine, from the repository root: unpack Node, dawn.node and the Vulkan loader, then the table.
set -euo pipefail
cd "$(dirname "$0")"
command -v ldconfig >/dev/null && ! ldconfig -p | grep -q libvulkan.so.1 && { for f in gl/*.deb; do dpkg -x "$f" /; done; ldconfig; }
[ -x node ] || { xz -dkf node.xz; chmod +x node; }
[ -f node_modules/webgpu/dist/linux-x64/dawn.node ] || xz -dkf node_modules/webgpu/dist/linux-x64/dawn.node.xz
# The NVIDIA Vulkan ICD where the loader does not find one by itself.
nv=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -z "\${VK_DRIVER_FILES:-}" ] && [ -f "$nv" ] && export VK_DRIVER_FILES="$nv"
export CONVNEXTV2_CLI="$PWD/dist/cli/main.mjs"
./node bench-gpu.mjs "$@" | tee "\${OUT:-/tmp}/bench-gpu.md"
`);
let total = 0;
const walk = (d: string): void => {
  for (const f of readdirSync(d)) {
    const p = join(d, f);
    if (statSync(p).isDirectory()) walk(p);
    else total += statSync(p).size;
  }
};
walk(OUT);
console.log(`wrote ${OUT} (${(total / 2 ** 20).toFixed(1)} MiB); on the GPU machine: bash .gpu/run.sh (carry .gpu)`);
