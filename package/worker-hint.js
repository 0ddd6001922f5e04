// www/worker-hint.js for the npm package (tools/build_package.mjs puts it in that file's place):
// why a bundled page's worker does not start, as the package README's Bundling section says.

export const WORKER_START_HINT =
  "Its script, the package's worker.js, must be served from the page's origin where the client " +
  "looks for it: new URL(\"./worker.js\", import.meta.url), with pkg/ beside it. " +
  "With esbuild (which leaves that URL as it is), copy node_modules/webjudge/worker.js and pkg/ " +
  "beside your bundle; with Vite 7's dev server, exclude the package from pre-bundling " +
  "(optimizeDeps: { exclude: [\"webjudge\"] }); with webjudge-standalone.js, the page and the worker load " +
  "that same file. A Content-Security-Policy must allow it (worker-src 'self'), and a CDN cannot " +
  "serve it: browsers start workers from the page's origin only.";
