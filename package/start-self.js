// start-worker.js for the single-script build (standalone.js): the bundle is its own worker.

export function startWorker() {
  return new Worker(import.meta.url, { type: "module" });
}
