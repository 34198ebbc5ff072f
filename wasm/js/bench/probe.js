// Startup timestamps of the benchmark's worker, taken before the package's worker module runs
// (worker.js imports this module first): when the worker's modules began to run, and when
// SQLite's wasm started downloading and was compiled and instantiated (wasm-bindgen's glue calls
// WebAssembly.instantiateStreaming, or instantiate without streaming). Absolute times
// (timeOrigin + now), so the page can put them on its own clock.

const at = () => performance.timeOrigin + performance.now();

/** Name -> absolute timestamp in ms. */
export const marks = { workerStart: at() };

for (const name of ["instantiateStreaming", "instantiate"]) {
  const original = WebAssembly[name];
  WebAssembly[name] = async function (...args) {
    marks.wasmStart ??= at();
    const result = await original.apply(this, args);
    marks.wasmReady ??= at();
    return result;
  };
}
