/**
 * A static file server for the browser suites, the benchmarks and the web app (`npm run web`):
 * 127.0.0.1 on a free port (or the one asked for), URL prefixes mapped to folders or files,
 * every response with COOP/COEP so the page is cross-origin isolated (SharedArrayBuffer,
 * threads). Nothing outside the mapped paths is served.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize } from 'node:path';

const TYPES: Record<string, string> = {
  '.js': 'text/javascript', '.mjs': 'text/javascript', '.html': 'text/html', '.map': 'application/json',
  '.wasm': 'application/wasm', '.json': 'application/json', '.css': 'text/css', '.png': 'image/png',
  '.svg': 'image/svg+xml', '.ico': 'image/x-icon',
};

export interface Served {
  origin: string;
  close(): Promise<void>;
}

export interface ServeOptions {
  /** Port on 127.0.0.1 (default 0: a free one). A port in use is an error naming it. */
  port?: number;
}

/** Serves `routes` ({'/fixtures/': folder, '/index.js': file, '/': the page}); the longest folder prefix wins. */
export async function serve(routes: Record<string, string>, opts: ServeOptions = {}): Promise<Served> {
  const prefixes = Object.keys(routes).sort((a, b) => b.length - a.length);
  const server: Server = createServer((req, res) => {
    let url: string;
    try {
      url = decodeURIComponent((req.url ?? '/').split('?')[0]);
    } catch {
      res.writeHead(400).end(); // a malformed %-escape
      return;
    }
    // A key ending in '/' (but '/' itself) maps a folder; any other key one URL.
    const isDir = (p: string) => p.endsWith('/') && p !== '/';
    const prefix = prefixes.find((p) => (isDir(p) ? url.startsWith(p) : url === p));
    let file = '';
    if (prefix !== undefined) {
      const target = routes[prefix];
      file = isDir(prefix) ? normalize(join(target, url.slice(prefix.length))) : target;
      if (isDir(prefix) && !file.startsWith(normalize(target) + '/')) file = '';
    }
    if (!file || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      // A rebuilt bundle must not meet a stale copy in the browser's cache.
      'Cache-Control': 'no-cache',
    });
    res.end(readFileSync(file));
  });
  const port = opts.port ?? 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(new Error(e.code === 'EADDRINUSE' ? `port ${port} on 127.0.0.1 is in use (choose another with --port)` : `cannot listen on 127.0.0.1:${port}: ${e.message}`)));
    server.listen(port, '127.0.0.1', resolve);
  });
  const addr = server.address();
  const origin = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  return { origin, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}
