/**
 * The WebAssembly kernels in a page or a Web Worker: fetches the build that fits (threads with a
 * shared memory where the page is cross-origin isolated, else the single-thread build) and
 * starts kernel threads as Web Workers from a Blob URL (nothing else to serve).
 */
import { ConvNextError } from '../errors.js';
import { WASM_THREAD_MAIN, type WasmThreadHost, WasmKernels } from './wasm.js';

interface BrowserGlobals {
  crossOriginIsolated?: boolean;
  location?: { href: string };
  navigator?: { hardwareConcurrency?: number };
  fetch(url: string | URL): Promise<{ ok: boolean; status: number; arrayBuffer(): Promise<ArrayBuffer> }>;
  Blob: new (parts: string[], opts: { type: string }) => object;
  URL: { createObjectURL(b: object): string; new (url: string, base?: string | URL): URL };
  Worker: new (url: string) => { postMessage(m: unknown): void; terminate(): void; onerror: ((e: { message?: string }) => void) | null };
}

export interface LoadWasmOptions {
  /** Folder of convnextv2.wasm and convnextv2-single.wasm (default: ../wasm/ next to this bundle, as in dist/). */
  baseUrl?: string | URL;
  /** Threads (default: the cores when cross-origin isolated, else 1). */
  threads?: number;
}

/** Kernel threads as Web Workers. */
export const browserThreadHost: WasmThreadHost = {
  spawn(init, onError) {
    const g = globalThis as unknown as BrowserGlobals;
    const url = g.URL.createObjectURL(new g.Blob([`onmessage = (e) => (${WASM_THREAD_MAIN})(e.data);`], { type: 'text/javascript' }));
    const w = new g.Worker(url);
    w.onerror = (e) => onError(e.message ?? 'worker error');
    w.postMessage(init);
    return { terminate: () => w.terminate() };
  },
};

/** Fetches and starts the wasm kernels for this page (see LoadWasmOptions). */
export async function loadWasmKernels(opts: LoadWasmOptions = {}): Promise<WasmKernels> {
  const g = globalThis as unknown as BrowserGlobals;
  const isolated = g.crossOriginIsolated === true;
  const threads = opts.threads ?? (isolated ? Math.max(1, g.navigator?.hardwareConcurrency ?? 1) : 1);
  if (threads > 1 && !isolated) throw new ConvNextError('wasm kernels: threads need a cross-origin-isolated page (COOP: same-origin, COEP: require-corp)');
  // A relative baseUrl is taken against the page (or worker) location, like fetch would.
  const base = opts.baseUrl !== undefined ? new g.URL(String(opts.baseUrl), g.location?.href ?? import.meta.url) : new g.URL('../wasm/', import.meta.url);
  const url = new g.URL(isolated ? 'convnextv2.wasm' : 'convnextv2-single.wasm', base);
  const res = await g.fetch(url);
  if (!res.ok) throw new ConvNextError(`wasm kernels: ${url.href}: HTTP ${res.status}`);
  const module = await WebAssembly.compile(await res.arrayBuffer());
  return WasmKernels.create(module, { threads, host: browserThreadHost });
}
