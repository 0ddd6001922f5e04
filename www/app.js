// The page: the model panel (load with progress, info, clear cache), the mode tabs and the
// shared options; the one-item judge lives in item.js and the batch judge in batch.js.

import { Judge } from "./judge-client.js";
import { el } from "./dom.js";
import { explain, megabytes, progressText } from "./messages.js";
import { setupItem } from "./item.js";
import { setupBatch } from "./batch.js";

const $ = (id) => document.getElementById(id);

// The judge for the model URL currently in the field: { url, promise }.
let current = null;

// Loads the model named in the field (once; a failed load is retried on the next call).
function ensureJudge() {
  const url = $("model-url").value.trim() || "./models/default/";
  if (current?.url === url) return current.promise;
  // A different model replaces the old one in GPU memory.
  current?.promise.then((judge) => judge.unload()).catch(() => {});
  const startedAt = performance.now();
  $("load-progress").hidden = false;
  $("model-info").hidden = true;
  $("model-status").textContent = `Loading ${url} …`;
  const promise = Judge.load(url, {
    onProgress(loaded, total) {
      $("progress-bar").max = total || 1;
      $("progress-bar").value = loaded;
      $("progress-text").textContent = progressText(loaded, total, startedAt);
    },
  });
  current = { url, promise };
  promise.then(
    async (judge) => {
      $("load-progress").hidden = true;
      const seconds = ((performance.now() - startedAt) / 1000).toFixed(1);
      $("model-status").textContent = `Model loaded in ${seconds} s.`;
      showInfo(await judge.info(), await isFallbackAdapter());
    },
    (error) => {
      if (current?.promise === promise) current = null;
      $("load-progress").hidden = true;
      $("model-status").textContent = "No model loaded.";
      showError(error);
    },
  );
  return promise;
}

// A software (fallback) adapter runs WebGPU on the CPU; the worker's adapter is the same kind.
async function isFallbackAdapter() {
  const adapter = await navigator.gpu?.requestAdapter();
  return Boolean(adapter?.info?.isFallbackAdapter ?? adapter?.isFallbackAdapter);
}

// Measured with the small test model in headless Chromium on SwiftShader, two cores (2026-11-29).
const FALLBACK_SPEED =
  "a software (fallback) adapter: WebGPU runs on the CPU. Expect about 5 prompt and 0.8 critique " +
  "tokens per second for the 135M test model, and far less for Auto-J; a GPU is needed for real use.";

function showInfo(info, fallback) {
  const a = info.architecture;
  const rows = [
    ["Adapter", fallback ? `${info.adapter} — ${FALLBACK_SPEED}` : info.adapter],
    ["Subgroups", info.subgroups ? "yes" : "no"],
    ["Model", `${a.layers} layers, hidden ${a.hidden}, ${a.heads} heads (${a.kvHeads} KV), FFN ${a.ffn}, vocabulary ${a.vocab}`],
    ["Context", `${info.contextLength} tokens (the model allows ${a.context})`],
    ["Batch", `${info.batchSize} ${info.batchSize === 1 ? "sequence" : "sequences"} at a time`],
    ["Weights", `${megabytes(info.weightBytes)} MB`],
    ["KV cache", `${megabytes(info.kvCacheBytes)} MB`],
    ["From cache", info.fromCache ? "yes" : `no (downloaded ${megabytes(info.downloadedBytes)} MB)`],
  ];
  $("model-info").replaceChildren(...rows.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
  $("model-info").hidden = false;
}

function showError(error) {
  $("error").textContent = explain(error);
  $("error").hidden = false;
  // The model is gone with the device (or was unloaded): the next judgement loads it again.
  if (error?.name === "DeviceLost" || error?.name === "Unloaded") {
    current = null;
    $("model-info").hidden = true;
    $("model-status").textContent = "No model loaded: it loads again on the next judgement.";
  }
}

function clearError() {
  $("error").hidden = true;
}

function readOptions() {
  return {
    maxNewTokens: Math.max(1, Number($("max-new-tokens").value) || 1024),
    language: $("language").value,
    swap: $("swap").checked,
    truncate: $("truncate").checked,
  };
}

$("model-form").addEventListener("submit", (event) => {
  event.preventDefault();
  clearError();
  ensureJudge().catch(() => {});
});

$("clear-cache").addEventListener("click", async () => {
  clearError();
  const url = $("model-url").value.trim() || "./models/default/";
  try {
    await Judge.clearCache(url);
    $("model-status").textContent = `Cached copy of ${url} removed: the next load downloads it again.`;
  } catch (error) {
    showError(error);
  }
});

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    document.body.dataset.mode = tab.dataset.tab;
    for (const other of document.querySelectorAll(".tab")) other.setAttribute("aria-pressed", String(other === tab));
  });
}

const shared = { ensureJudge, readOptions, showError, clearError };
setupItem(shared);
setupBatch(shared);

// The app shell works offline after the first visit (sw.js); the model is cached by the loader.
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("./sw.js").catch((error) => console.warn("no offline support:", error));
}
