// The engine's home: a dedicated module worker, so that tokenizing, GPU submission and
// detokenizing never stall the page. judge-client.js starts one per model URL and talks to it
// with the messages below; every request carries an id that its replies repeat.
//
//   page → worker  { id, op: "load", modelUrl, options }        options without callbacks
//                  { id, op: "pairwise" | "single" | "rubric" | "compare", input, options }
//                  { id, op: "judgeBatch", items, options }
//                  { id, op: "generate", prompt, options }
//                  { id, op: "info" | "unload" }
//                  { id, op: "clearCache", modelUrl }
//                  { id, op: "keptModels" }
//                  { id, op: "pairwiseMetrics" | "preferenceMetrics" | "scoreMetrics", records }
//                                                                needs no model
//                  { id, op: "parseRows", text }                 needs no model
//                  { id, op: "builtInRubrics", family }          needs no model
//                  { id, op: "defaults" | "protocols" }          needs no model
//                  { op: "cancel", target }                      aborts request `target` (a
//                                                                GGUF's load, a judgement)
//   worker → page  { id, type: "progress", loaded, total }
//                  { id, type: "token", text, order }            judgeBatch's also carry index
//                  { id, type: "judged", index, record, error }  judgeBatch: one row's record
//                  { id, type: "result", value }
//                  { id, type: "error", name, message }

import init, {
  Judge, builtInRubrics, defaults, pairwiseMetrics, parseRows, preferenceMetrics, protocols, scoreMetrics,
} from "./pkg/webjudge.js";

// init() compiles the wasm once per worker; every request waits for it.
const ready = init();
let judge = null;
// Abort controllers of requests not yet answered, by id, so a cancel can reach them.
const running = new Map();

self.onmessage = (event) => {
  const message = event.data;
  if (message.op === "cancel") {
    running.get(message.target)?.abort();
    return;
  }
  const controller = new AbortController();
  running.set(message.id, controller);
  handle(message, controller.signal)
    .then((value) => self.postMessage({ id: message.id, type: "result", value }))
    .catch((error) => {
      // A lost device takes the loaded model with it; the next load starts afresh.
      if (error?.name === "DeviceLost") judge = null;
      self.postMessage({
        id: message.id,
        type: "error",
        name: error?.name ?? "Error",
        message: error?.message ?? String(error),
      });
    })
    .finally(() => running.delete(message.id));
};

async function handle(message, signal) {
  await ready;
  const { id, op, options = {} } = message;
  const onToken = (text, order) => self.postMessage({ id, type: "token", text, order });
  switch (op) {
    case "load":
      if (!judge) {
        // A GGUF's load can be cancelled (a model directory's refuses the option).
        const gguf = new URL(message.modelUrl).pathname.toLowerCase().endsWith(".gguf");
        judge = await Judge.load(message.modelUrl, {
          ...options,
          ...(gguf ? { signal } : {}),
          onProgress: (loaded, total) => self.postMessage({ id, type: "progress", loaded, total }),
        });
      }
      return judge.info();
    case "clearCache":
      return Judge.clearCache(message.modelUrl);
    case "keptModels":
      return Judge.keptModels();
    case "pairwiseMetrics":
      return pairwiseMetrics(message.records);
    case "preferenceMetrics":
      return preferenceMetrics(message.records);
    case "scoreMetrics":
      return scoreMetrics(message.records);
    case "parseRows":
      return parseRows(message.text);
    case "builtInRubrics":
      return builtInRubrics(message.family);
    case "defaults":
      return defaults();
    case "protocols":
      return protocols();
    case "pairwise":
    case "single":
    case "rubric":
    case "compare":
    case "classify":
      return loaded()[op](message.input, { ...options, onToken, signal });
    case "judgeBatch":
      return loaded().judgeBatch(message.items, {
        ...options,
        signal,
        onToken: (index, text, order) => self.postMessage({ id, type: "token", index, text, order }),
        onJudged: (index, record, error) =>
          self.postMessage({ id, type: "judged", index, record, error: error && { name: error.name, message: error.message } }),
      });
    case "generate":
      return loaded().generate(message.prompt, { ...options, onToken, signal });
    case "info":
      return loaded().info();
    case "unload": {
      const unloading = judge;
      judge = null;
      return unloading?.unload();
    }
    default:
      throw Object.assign(new Error(`unknown request "${op}"`), { name: "InvalidInput" });
  }
}

function loaded() {
  if (judge) return judge;
  throw Object.assign(new Error("no model is loaded in this worker: load one first"), { name: "Unloaded" });
}
