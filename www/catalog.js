// The catalog of known judge GGUFs on the Hugging Face Hub (catalog.json) as the page's menu:
// each entry with its download size and a first, size-based estimate of whether it fits. WebGPU
// tells a page no memory size, so the estimate compares the download (about the weights' size on
// the GPU: the GGUF's tensors are repacked bit for bit or nearly) with what the browser does tell:
// the device's memory (navigator.deviceMemory, Chromium only, reported up to 8 GiB) and the
// origin's free storage, where the model is kept. The load itself checks the fit exactly, from
// the GGUF's header, and allocates every GPU buffer before any weight is fetched.

import { megabytes } from "./messages.js";

// navigator.deviceMemory reports no more than this many GiB, however much the device has.
const DEVICE_MEMORY_CAP_GIB = 8;

// The catalog's entries (catalog.json's `models`).
export async function loadCatalog(url = new URL("./catalog.json", import.meta.url)) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return (await response.json()).models;
}

// A first estimate of whether `bytes` of weights fit: { fits: false | null, note }, false where
// the download alone exceeds the device's reported memory, null (unknown until loaded) otherwise;
// the note also says when the origin's free storage cannot keep it (it then loads, but is
// downloaded again on the next visit).
export function fitEstimate(bytes, { deviceMemoryGiB, freeStorageBytes } = {}) {
  const gib = 2 ** 30;
  const notes = [];
  let fits = null;
  if (deviceMemoryGiB > 0 && deviceMemoryGiB < DEVICE_MEMORY_CAP_GIB && bytes > deviceMemoryGiB * gib) {
    fits = false;
    notes.push(`does not fit: more than this device's ${deviceMemoryGiB} GiB of memory`);
  } else {
    notes.push("fit checked from its header when loaded");
  }
  if (freeStorageBytes !== undefined && bytes > freeStorageBytes) {
    notes.push(`too large to keep here (${megabytes(freeStorageBytes)} MB of storage free)`);
  }
  return { fits, note: notes.join("; ") };
}

// The menu line of a catalog entry.
export function menuText(model, fit) {
  return `${model.name}, ${model.quantization}: ${(model.bytes / 1e9).toFixed(2)} GB download (${fit.note})`;
}
