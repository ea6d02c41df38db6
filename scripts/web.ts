/**
 * `npm run web`: builds what the web app needs and serves it on 127.0.0.1 with COOP/COEP (the
 * page is cross-origin isolated): the library bundle (dist/web/index.js), the wasm kernels when
 * dist/wasm/convnextv2.wasm is missing (needs the toolchain of the README's apt-get line;
 * without it the app runs on the slow reference kernels and says so), and the app
 * (dist/web/app/). The npm script runs tsc for dist/ first. Everything is local: it works
 * offline. Ctrl-C stops it.
 *
 *   npm run web [-- --port 8080]
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { appRoutes, buildApp } from './build-app.js';
import { buildWeb } from './build-web.js';
import { serve, type Served } from './serve.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const argv = process.argv.slice(2);

function fail(msg: string): never {
  process.stderr.write(`web: ${msg}\n`);
  process.exit(2);
}

let port = 8080;
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--port') {
    port = Number(argv[++i]);
    if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) fail(`--port ${argv[i]}: must be an integer from 0 to 65535`);
  } else if (argv[i] === '--help' || argv[i] === '-h') {
    process.stdout.write('npm run web [-- --port 8080]: builds and serves the web app on 127.0.0.1\n');
    process.exit(0);
  } else {
    fail(`unknown argument ${argv[i]} (usage: npm run web [-- --port 8080])`);
  }
}

const webDir = join(ROOT, 'dist', 'web');
const wasmDir = join(ROOT, 'dist', 'wasm');
await buildWeb(webDir);
if (!existsSync(join(wasmDir, 'convnextv2.wasm'))) {
  process.stdout.write('web: dist/wasm/convnextv2.wasm is missing: building it (npm run build:wasm)\n');
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'build-wasm.ts')], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) process.stderr.write('web: warning: no wasm kernels (see above); the app will run on the slow TypeScript reference kernels\n');
}
try {
  await buildApp(join(webDir, 'app'));
} catch (e) {
  fail(e instanceof Error ? e.message : String(e));
}
let served: Served;
try {
  served = await serve(appRoutes(webDir, wasmDir), { port });
} catch (e) {
  fail(e instanceof Error ? e.message : String(e));
}
process.stdout.write(`web: the ConvNeXt V2 app is at ${served.origin}/ (Ctrl-C stops it)\n`);
const stop = () => {
  void served.close().then(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
