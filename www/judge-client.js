// The page's side of worker.js: the same async API as the wasm Judge (load, pairwise, single,
// rubric, compare, judgeBatch, generate, info, unload, clearCache, keptModels) and its pairwiseMetrics,
// parseRows, builtInRubrics, defaults and protocols, with the engine running in a
// dedicated worker so the page stays responsive while a model loads or a critique streams.
//
// One worker per model URL serves everything on the page: two <web-judge> elements, or the page
// and an element, asking for the same model share one download and one copy in GPU memory. The
// first load's options (contextLength, parallel, retries, and for a GGUF its signal, which
// cancels the download for every load that joined it) decide; later loads of the same URL
// join it and get its progress too.

import { startWorker } from "./start-worker.js";
import { WORKER_START_HINT } from "./worker-hint.js";

// Absolute model URL → Session.
const sessions = new Map();

// A model URL names a directory (the loader appends file names to it) or a GGUF file.
function modelBase(modelUrl) {
  const url = new URL(modelUrl, document.baseURI);
  if (!url.pathname.endsWith("/") && !url.pathname.toLowerCase().endsWith(".gguf")) url.pathname += "/";
  return url.href;
}

// Rebuilds a worker-side error so callers can switch on error.name as they would with the wasm
// API (WebGPUUnavailable, DoesNotFit, NetworkError, CorruptShard, DeviceLost, ...).
function remoteError(name, message) {
  const error = new Error(message);
  error.name = name;
  return error;
}

// Rejects a pending request with what its callback threw when one did, else with `error`.
function rejectRequest(request, error) {
  request.reject(request.threw ? request.thrown : error);
}

class Session {
  constructor(modelUrl) {
    this.modelUrl = modelUrl;
    this.worker = startWorker();
    this.nextId = 1;
    // id → { id, resolve, reject, onToken, onProgress, onJudged, threw, thrown }
    this.pending = new Map();
    this.loading = null;
    this.closed = false;
    this.progressListeners = new Set();
    this.worker.onmessage = (event) => this.receive(event.data);
    // An error event without a message is a worker that could not start (its script or a
    // module it imports not found or refused); with one, an error thrown inside it. Either fails
    // every request.
    this.worker.onerror = (event) => {
      event.preventDefault();
      const why = event.message || `it could not start. ${WORKER_START_HINT}`;
      this.failAll(remoteError("ModelError", `the judge worker failed: ${why}`));
    };
  }

  receive(message) {
    const request = this.pending.get(message.id);
    if (!request) return;
    switch (message.type) {
      case "progress":
        request.onProgress?.(message.loaded, message.total);
        break;
      case "token": {
        const piece = [message.text, message.order];
        this.callBack(request, request.onToken, ...(message.index === undefined ? piece : [message.index, ...piece]));
        break;
      }
      case "judged": {
        const error = message.error && remoteError(message.error.name, message.error.message);
        this.callBack(request, request.onJudged, message.index, message.record, error);
        break;
      }
      case "result":
        this.pending.delete(message.id);
        if (request.threw) request.reject(request.thrown);
        else request.resolve(message.value);
        break;
      case "error":
        this.pending.delete(message.id);
        if (message.name === "DeviceLost") this.loading = null;
        rejectRequest(request, remoteError(message.name, message.message));
        break;
    }
  }

  // Calls a streaming callback (onToken, onJudged) of `request` under the wasm API's contract
  // (docs/web-api.md, src/web/callbacks.rs): the first one to throw cancels the request in the
  // worker, no callback of it runs again, and the call rejects with what it threw once the
  // worker has stopped.
  callBack(request, callback, ...args) {
    if (!callback || request.threw) return;
    try {
      callback(...args);
    } catch (error) {
      Object.assign(request, { threw: true, thrown: error });
      this.cancel(request.id);
    }
  }

  cancel(id) {
    this.worker.postMessage({ op: "cancel", target: id });
  }

  failAll(error) {
    for (const request of this.pending.values()) rejectRequest(request, error);
    this.pending.clear();
    this.loading = null;
  }

  // Sends one request; `signal` aborting sends a cancel for it. Options must be structured-
  // cloneable, so callbacks and the signal stay on this side.
  request(fields, { onToken, onProgress, onJudged, signal } = {}) {
    if (this.closed) return Promise.reject(remoteError("Unloaded", "the model was unloaded: load it again"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { id, resolve, reject, onToken, onProgress, onJudged, threw: false });
      this.worker.postMessage({ id, ...fields });
      if (!signal) return;
      const cancel = () => this.cancel(id);
      if (signal.aborted) cancel();
      else signal.addEventListener("abort", cancel, { once: true });
    });
  }

  load(options) {
    if (!this.loading) {
      const { onProgress, signal, ...rest } = options;
      this.loading = this.request(
        { op: "load", modelUrl: this.modelUrl, options: rest },
        { onProgress: (loaded, total) => this.progressListeners.forEach((listener) => progress(listener, loaded, total)), signal },
      );
      // A failed load is not remembered: the next attempt starts over (after a network error,
      // or with a different context length after DoesNotFit).
      this.loading.catch(() => (this.loading = null));
    }
    return this.loading;
  }

  close() {
    this.closed = true;
    this.failAll(remoteError("Unloaded", "the model was unloaded"));
    this.worker.terminate();
    sessions.delete(this.modelUrl);
  }
}

// One load's onProgress, as the wasm API calls it (src/web/load.rs): one that throws is logged
// and loading goes on, for it and for every other load sharing the model.
function progress(listener, loaded, total) {
  try {
    listener(loaded, total);
  } catch (error) {
    console.error("webjudge: onProgress threw", error);
  }
}

// The session of the model at `modelUrl`: its worker, started (not loaded) when none runs.
function sessionFor(modelUrl) {
  const base = modelBase(modelUrl);
  let session = sessions.get(base);
  if (!session) {
    session = new Session(base);
    sessions.set(base, session);
  }
  return session;
}

// Splits the callbacks and the signal from the options that travel to the worker.
function split(options = {}) {
  const { onToken, signal, ...rest } = options;
  return [rest, { onToken, signal }];
}

// Sends a request that needs no model to the worker of `modelUrl` when one is running (any
// worker when undefined), else to a short-lived one.
async function anyWorker(modelUrl, fields) {
  const existing = modelUrl === undefined ? sessions.values().next().value : sessions.get(modelUrl);
  const session = existing ?? new Session(modelUrl);
  try {
    return await session.request(fields);
  } finally {
    if (!existing) session.worker.terminate();
  }
}

// Auto-J's pairwise metrics of batch records (judgeBatch's), computed by the wasm export of
// the same name (the Rust the CLI uses): { table, unlabelled, ungrouped }.
export function pairwiseMetrics(records) {
  return anyWorker(undefined, { op: "pairwiseMetrics", records });
}

// The rows of a test-data file (Auto-J's or Prometheus 2's), read by the wasm export of the
// same name (the CLI's reader), each with the protocol it was read for; rejects with
// InvalidInput naming the line.
export function parseRows(text) {
  return anyWorker(undefined, { op: "parseRows", text });
}

// Prometheus 2's metrics of batch records, by the wasm exports of the same names (the CLI's
// Rust): accuracy against "A"/"B" labels, and Pearson/Spearman/Kendall against gold scores.
export function preferenceMetrics(records) {
  return anyWorker(undefined, { op: "preferenceMetrics", records });
}

export function scoreMetrics(records) {
  return anyWorker(undefined, { op: "scoreMetrics", records });
}

// prometheus-eval's built-in rubrics, [{ name, text }], from the wasm export of the same name.
export function builtInRubrics(family) {
  return anyWorker(undefined, { op: "builtInRubrics", family });
}

// The settings a call gets when it names none ({ maxNewTokens, generateMaxNewTokens }, the
// CLI's too), from the wasm export of the same name.
export function defaults() {
  return anyWorker(undefined, { op: "defaults" });
}

// Every protocol, [{ name, family, pairwise, reference, language, method }], from the wasm
// export of the same name: the Judge method (and Auto-J's language) that runs each. With
// `modelUrl`, asked of that model's worker, started for it (not loaded) when none runs: a
// caller that will load the model (<web-judge>) starts one worker, not two.
export function protocols(modelUrl) {
  if (modelUrl === undefined) return anyWorker(undefined, { op: "protocols" });
  return sessionFor(modelUrl).request({ op: "protocols" });
}

export class Judge {
  constructor(session) {
    this.session = session;
  }

  static async load(modelUrl, options = {}) {
    const session = sessionFor(modelUrl);
    const { onProgress } = options;
    if (onProgress) session.progressListeners.add(onProgress);
    try {
      await session.load(options);
    } finally {
      if (onProgress) session.progressListeners.delete(onProgress);
    }
    return new Judge(session);
  }

  // The cache belongs to the origin, not to a worker.
  static clearCache(modelUrl) {
    const base = modelUrl === undefined ? undefined : modelBase(modelUrl);
    return anyWorker(base, { op: "clearCache", modelUrl: base });
  }

  // The GGUF models kept in the origin's storage: [{ url, bytes, sha256, sha256Verified }].
  static keptModels() {
    return anyWorker(undefined, { op: "keptModels" });
  }

  pairwise(input, options) {
    return this.#judge("pairwise", input, options);
  }

  single(input, options) {
    return this.#judge("single", input, options);
  }

  rubric(input, options) {
    return this.#judge("rubric", input, options);
  }

  compare(input, options) {
    return this.#judge("compare", input, options);
  }

  classify(input, options) {
    return this.#judge("classify", input, options);
  }

  // One item, judged in the worker by the wasm method `op`.
  #judge(op, input, options) {
    const [rest, callbacks] = split(options);
    return this.session.request({ op, input, options: rest }, callbacks);
  }

  // onJudged runs on this side for each item as the worker reports it; the promise settles
  // after the last.
  judgeBatch(items, options) {
    const { onJudged, ...others } = options;
    if (typeof onJudged !== "function") {
      return Promise.reject(remoteError("InvalidInput", "onJudged must be a function"));
    }
    const [rest, callbacks] = split(others);
    return this.session.request({ op: "judgeBatch", items, options: rest }, { ...callbacks, onJudged });
  }

  generate(prompt, options) {
    const [rest, callbacks] = split(options);
    return this.session.request({ op: "generate", prompt, options: rest }, callbacks);
  }

  info() {
    return this.session.request({ op: "info" });
  }

  // Unloads the model for everything on the page that shares it, and stops its worker.
  async unload() {
    try {
      await this.session.request({ op: "unload" });
    } finally {
      this.session.close();
    }
  }
}
