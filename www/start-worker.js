// Starts the engine's worker (worker.js) for judge-client.js. Written in the one form bundlers
// recognise (Vite, webpack, Parcel: `new Worker(new URL(literal, import.meta.url))`), so that
// a page bundling the npm package gets the worker and its wasm bundled too. The package's
// single-script build swaps this module for package/start-self.js: that bundle is its own
// worker.

export function startWorker() {
  return new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
}
