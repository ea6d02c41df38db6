/**
 * Stands in for ./native.ts in the browser bundle (scripts/build-web.ts maps it): there is no
 * native addon in a page, so constructing one throws and kernels/index.ts picks the
 * TypeScript reference kernels.
 */
export class NativeKernels {
  constructor() {
    const e = new Error('the native addon is Node-only');
    e.name = 'BrowserBuild';
    throw e;
  }
}

/** Stands in for ./wasm_node.ts (which reads the .wasm file from disk): a page fetches and compiles the module itself. */
export async function loadWasmBackend(o: import('./wasm.js').WasmLocation & { threads?: number }): Promise<import('./wasm.js').WasmKernels> {
  return (await import('./wasm_browser.js')).loadWasmKernels({ baseUrl: o.baseUrl, threads: o.threads });
}
