/**
 * The web app's build: type-checks web/ (web/tsconfig.json: strict, DOM + WebWorker; a type
 * error fails the build), then bundles the page (web/app.ts) and the Worker (web/worker.ts)
 * with esbuild into dist/web/app/ and copies index.html and app.css there. The library is not
 * bundled again: the app imports the library bundle, dist/web/index.js, as `../index.js`
 * (`npm run build:web` makes it). {@link appRoutes} is how the files are served (`npm run web`,
 * the browser test).
 *
 *   npm run build:app            (node --import tsx scripts/build-app.ts [--outdir dist/web/app])
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';
import { BROWSER_BUNDLE } from './build-web.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const WEB = join(ROOT, 'web');

/** `../src/web.js` from the app's sources -> the library bundle beside the app's folder; nothing else of src/ may be bundled. */
const libraryExternal: Plugin = {
  name: 'convnextv2-app-library',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/src\// }, (args) => {
      if (args.path === '../src/web.js') return { path: '../index.js', external: true };
      return { errors: [{ text: `${args.path} imported by ${relative(ROOT, args.importer)}: the app reaches the library only through ../src/web.js (the library bundle)` }] };
    });
  },
};

/** Type-checks web/ with tsc; throws with tsc's report on any error. */
export function checkAppTypes(): void {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(WEB, 'tsconfig.json')], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`build-app: web/ does not type-check:\n${(r.stdout + r.stderr).trim()}`);
}

/** Type-checks and bundles the app into `outdir`; returns it. */
export async function buildApp(outdir = join(ROOT, 'dist', 'web', 'app')): Promise<string> {
  checkAppTypes();
  mkdirSync(outdir, { recursive: true });
  await build({
    entryPoints: [join(WEB, 'app.ts'), join(WEB, 'worker.ts')],
    outdir,
    ...BROWSER_BUNDLE,
    plugins: [libraryExternal],
  });
  for (const f of ['index.html', 'app.css']) copyFileSync(join(WEB, f), join(outdir, f));
  return outdir;
}

/**
 * The URL layout of the app: the page at `/`, the app's files under `/app/`, the library
 * bundle at `/index.js`, the wasm kernels under `/wasm/`. `webDir` holds index.js and app/
 * (dist/web), `wasmDir` the .wasm files (dist/wasm).
 */
export function appRoutes(webDir: string, wasmDir: string): Record<string, string> {
  return {
    '/': join(webDir, 'app', 'index.html'),
    '/app/': join(webDir, 'app'),
    '/index.js': join(webDir, 'index.js'),
    '/index.js.map': join(webDir, 'index.js.map'),
    '/wasm/': wasmDir,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--outdir');
  const out = await buildApp(i >= 0 ? process.argv[i + 1] : undefined);
  process.stdout.write(`wrote ${out}\n`);
}
