// The entry of the package's single-script build (pkg/webjudge-standalone.js): one ES module
// for a <script type="module"> tag that needs only pkg/webjudge_bg.wasm beside it. In a page it
// is the main entry (Judge, pairwiseMetrics) and defines <web-judge>; started as a worker (by
// start-self.js, which takes start-worker.js's place in this build) it is the worker. The
// bundler inlines both dynamic imports, evaluating each only when reached, so neither side
// runs the other's code.

export { Judge, pairwiseMetrics } from "../www/judge-client.js";

if (typeof WorkerGlobalScope !== "undefined") await import("../www/worker.js");
else await import("../www/web-judge.js");
