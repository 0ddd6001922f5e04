// The page: the model panel (load with progress, info, clear cache), the mode tabs, the judge
// family (Auto-J, or Prometheus 2 with its rubric) and the shared options; the one-item judge
// lives in item.js and the batch judge in batch.js.

import { Judge, builtInRubrics, defaults } from "./judge-client.js";
import { el } from "./dom.js";
import { explain, megabytes, progressText } from "./messages.js";
import { setupItem } from "./item.js";
import { setupBatch } from "./batch.js";
import { fitEstimate, loadCatalog, menuText } from "./catalog.js";

const $ = (id) => document.getElementById(id);

// The judge for the model URL currently in the field: { url, promise }.
let current = null;

// The catalog's sha256 of each of its URLs: passed to the load, which checks the file against it
// (whether or not the host's own hash can be read).
const catalogHashes = new Map();

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
  // Cancel stops a GGUF's download (a model directory's load runs to its end: no button).
  const cancel = new AbortController();
  $("load-cancel").onclick = () => cancel.abort();
  $("load-cancel").hidden = !url.split(/[?#]/)[0].toLowerCase().endsWith(".gguf");
  const promise = Judge.load(url, {
    signal: cancel.signal,
    sha256: catalogHashes.get(url),
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
      const info = await judge.info();
      showInfo(info, await isFallbackAdapter());
      showKept();
      // A judge model's own protocols by default (a model of no known family runs either).
      if (info.judge) setFamily(info.judge);
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
    ["Matvec", info.matvec === "int8" ? "int8 (x quantized to 8 bits)" : "exact"],
    ["Model", `${a.layers} layers, hidden ${a.hidden}, ${a.heads} heads (${a.kvHeads} KV), FFN ${a.ffn}, vocabulary ${a.vocab}`],
    ["Context", `${info.contextLength} tokens (the model allows ${a.context})`],
    ["Batch", `${info.batchSize} ${info.batchSize === 1 ? "sequence" : "sequences"} at a time`],
    ["Weights", `${megabytes(info.weightBytes)} MB`],
    ["KV cache", `${megabytes(info.kvCacheBytes)} MB`],
    ["From cache", info.fromCache ? "yes" : `no (downloaded ${megabytes(info.downloadedBytes)} MB)`],
    // A GGUF file: what its bytes were checked against (a model directory's shards are always
    // checked against its manifest).
    ...(info.sha256 === null ? [] : [["File", fileHash(info)]]),
    ["Judge", JUDGE_TITLES[info.judge] ?? "no known judge (every protocol runs)"],
  ];
  $("model-info").replaceChildren(...rows.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
  $("model-info").hidden = false;
}

function fileHash(info) {
  return info.sha256Verified
    ? `verified sha256 ${info.sha256}`
    : `not verified (the host offered no hash): this browser computed sha256 ${info.sha256}`;
}

// The catalog of known judge GGUFs as a menu (catalog.js); choosing one fills in the model URL.
async function showCatalog() {
  let models;
  try {
    models = await loadCatalog();
  } catch (error) {
    console.warn("no catalog of judges:", error);
    return;
  }
  const storage = await navigator.storage?.estimate?.().catch(() => null);
  const limits = {
    deviceMemoryGiB: navigator.deviceMemory,
    freeStorageBytes: storage ? storage.quota - storage.usage : undefined,
  };
  const options = models.map((model) => {
    catalogHashes.set(model.url, model.sha256);
    return el("option", { value: model.url }, menuText(model, fitEstimate(model.bytes, limits)));
  });
  $("catalog").append(...options);
}

$("catalog").addEventListener("change", () => {
  if ($("catalog").value) $("model-url").value = $("catalog").value;
});

// The GGUF models this browser keeps, each with the storage it takes and a button deleting it.
async function showKept() {
  let kept;
  try {
    kept = await Judge.keptModels();
  } catch (error) {
    console.warn("no list of kept models:", error);
    return;
  }
  const items = kept.map((model) => {
    const remove = el("button", { type: "button", className: "secondary" }, "Delete");
    remove.addEventListener("click", async () => {
      clearError();
      try {
        await Judge.clearCache(model.url);
      } catch (error) {
        showError(error);
      }
      showKept();
    });
    const hash = model.sha256Verified ? "verified" : "not verified";
    return el("li", {}, `${model.url}: ${megabytes(model.bytes)} MB, sha256 ${hash} `, remove);
  });
  $("kept-models").replaceChildren(...items);
  $("kept").hidden = items.length === 0;
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
    // Empty (or 0): the wasm's default.
    maxNewTokens: Number($("max-new-tokens").value) ? Math.max(1, Number($("max-new-tokens").value)) : undefined,
    language: $("language").value,
    swap: $("swap").checked,
    truncate: $("truncate").checked,
    family: document.body.dataset.family,
    rubric: readRubric(),
  };
}

// The rubric chosen: a built-in one's name (the wasm knows its text), the custom fields, or
// (Selene Mini) a Yes/No rubric's.
function readRubric() {
  const choice = $("rubric-choice").value;
  if (choice === YES_NO) {
    return { criteria: $("rubric-criteria").value, yes_description: $("rubric-yes").value, no_description: $("rubric-no").value };
  }
  if (choice !== "custom") return choice;
  const rubric = { criteria: $("rubric-criteria").value };
  for (let score = 1; score <= 5; score++) rubric[`score${score}_description`] = $(`rubric-score${score}`).value;
  return rubric;
}

// The rubric menu's choice of a Yes/No rubric (Selene Mini's classification).
const YES_NO = "yes-no";

// The judge families' names for people (the family menu's values are the wasm's).
const JUDGE_TITLES = Object.fromEntries([...$("family").options].map((o) => [o.value, o.textContent.split(" (")[0]]));

// Each family's built-in rubrics by name → text, from the wasm (prometheus-eval's texts,
// flow-judge's preset metrics; none for Selene Mini, which grades against custom criteria),
// fetched once per family.
const rubrics = new Map();
// The texts of the family shown, for the rubric menu's change handler.
let shownTexts = new Map();

function setFamily(family) {
  $("family").value = family;
  document.body.dataset.family = family;
  if (["prometheus", "selene", "flowjudge"].includes(family)) showRubrics(family);
}

async function showRubrics(family) {
  if (!rubrics.has(family)) rubrics.set(family, builtInRubrics(family));
  let list;
  try {
    list = await rubrics.get(family);
  } catch (error) {
    rubrics.delete(family);
    showError(error);
    return;
  }
  if (document.body.dataset.family !== family) return; // another family was chosen meanwhile
  shownTexts = new Map(list.map(({ name, text }) => [name, text]));
  const options = list.map(({ name }) => el("option", { value: name }, name.replaceAll("_", " ")));
  const custom = [el("option", { value: "custom" }, "Custom rubric")];
  if (family === "selene") custom.push(el("option", { value: YES_NO }, "Yes/No (classification)"));
  $("rubric-choice").replaceChildren(...options, ...custom);
  $("rubric-choice").value = list[0]?.name ?? "custom";
  showRubric();
}

// A built-in rubric's text as the judge sees it, or the custom rubric's fields.
function showRubric() {
  const choice = $("rubric-choice").value;
  $("rubric-text").textContent = shownTexts.get(choice) ?? "";
  $("custom-rubric").hidden = choice !== "custom" && choice !== YES_NO;
  for (const field of document.querySelectorAll(".score-field")) field.hidden = choice === YES_NO;
  for (const field of document.querySelectorAll(".answer-field")) field.hidden = choice !== YES_NO;
}

$("rubric-choice").addEventListener("change", showRubric);

$("family").addEventListener("change", () => setFamily($("family").value));

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
  showKept();
});

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    document.body.dataset.mode = tab.dataset.tab;
    for (const other of document.querySelectorAll(".tab")) other.setAttribute("aria-pressed", String(other === tab));
  });
}

// The choice the browser restored with the form, until a model names its own.
setFamily($("family").value);

// The critique limit shown is the wasm's default (the CLI's), unless one is typed first.
defaults().then(
  ({ maxNewTokens }) => {
    if ($("max-new-tokens").value === "") $("max-new-tokens").value = String(maxNewTokens);
  },
  (error) => console.warn("no defaults from the wasm:", error),
);

showKept();
showCatalog();

const shared = { ensureJudge, readOptions, showError, clearError, setFamily };
setupItem(shared);
setupBatch(shared);

// The app shell works offline after the first visit (sw.js); the model is cached by the loader.
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("./sw.js").catch((error) => console.warn("no offline support:", error));
}
