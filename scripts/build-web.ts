/**
 * The browser bundle: src/web.ts (the platform-neutral core) bundled by esbuild into one ES
 * module, dist/web/index.js (+ a source map). The native addon module is swapped for
 * src/kernels/native_browser.ts; anything else from Node (`node:*`, sharp, worker_threads)
 * reaching the bundle is a build error, so the core stays neutral.
 *
 *   npm run build:web            (node --import tsx scripts/build-web.ts [--outdir dist/web])
 */
import { build, type Plugin } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Swaps kernels/native for its browser stand-in; refuses Node built-ins and Node-only packages. */
const browserEdges: Plugin = {
  name: 'convnextv2-browser-edges',
  setup(b) {
    // The Node loaders of the addon and of the wasm file: a stand-in that throws (the page gets the reference kernels).
    b.onResolve({ filter: /\/(native|wasm_node)\.js$/ }, (args) =>
      args.importer.endsWith(join('src', 'kernels', 'index.ts')) ? { path: join(ROOT, 'src/kernels/native_browser.ts') } : undefined);
    b.onResolve({ filter: /^(node:|sharp$|onnxruntime-node$|@huggingface\/hub$)/ }, (args) => ({
      errors: [{ text: `${args.path} imported by ${args.importer.replace(ROOT, '')}: the browser bundle must not reach Node-only modules` }],
    }));
  },
};

/** The esbuild options every browser bundle here shares (the library's, the app's). */
export const BROWSER_BUNDLE = {
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  sourcemap: true,
  logLevel: 'warning',
} as const;

/** Builds the bundle; returns the output file. */
export async function buildWeb(outdir = join(ROOT, 'dist/web')): Promise<string> {
  const outfile = join(outdir, 'index.js');
  await build({
    entryPoints: [join(ROOT, 'src/web.ts')],
    outfile,
    ...BROWSER_BUNDLE,
    plugins: [browserEdges],
  });
  return outfile;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--outdir');
  const out = await buildWeb(i >= 0 ? process.argv[i + 1] : undefined);
  process.stdout.write(`wrote ${out}\n`);
}
