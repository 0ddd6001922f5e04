// The browser benchmark's page: webjudge (Judge.generate on WebGPU) and wllama (llama.cpp in
// wasm) loaded side by side, each run on the same prompt text with greedy decoding and timed by
// its own engine. Served by tests/browser/bench.mjs with the wasm package at ./pkg/, wllama's
// esm build at ./wllama/, the converted model at ./models/default/ and its GGUF at ./model.gguf.
import init, { Judge } from "./pkg/webjudge.js";
import { Wllama } from "./wllama/index.js";

let judge;
let wllama;
// llama.cpp's log lines, for the backend it chose.
const wllamaLog = [];

window.bench = {
  async load({ contextLength }) {
    await init();
    judge = await Judge.load("./models/default/", { contextLength });
    const keep = (...parts) => wllamaLog.push(parts.join(" "));
    const logger = { debug: keep, log: keep, warn: keep, error: keep };
    wllama = new Wllama({ default: "./wllama/wasm/wllama.wasm" }, { logger });
    // Defaults otherwise: every layer offered to WebGPU, threads as the page allows.
    await wllama.loadModelFromUrl(new URL("./model.gguf", location.href).href, { n_ctx: contextLength });
    const backendLog = wllamaLog.filter((line) => /webgpu|offloaded|buffer size/i.test(line));
    return { adapter: await adapterName(), wllamaBackend: wllamaBackend(), backendLog };
  },

  // Prefill tok/s counts the prompt up to the first sampled token; decode tok/s the tokens after it.
  async webjudge(prompt, maxNewTokens) {
    const r = await judge.generate(prompt, { maxNewTokens });
    if (r.reusedTokens !== 0) throw new Error(`webjudge reused ${r.reusedTokens} cached prompt tokens`);
    return { promptTokens: r.promptTokens, prefillTokS: r.prefillTokensPerSecond, decodeTokens: r.ids.length,
      decodeTokS: r.decodeTokensPerSecond, ids: r.ids };
  },

  async wllama(prompt, maxNewTokens) {
    const t = (await complete(prompt, maxNewTokens)).timings;
    // llama.cpp's prompt time ends at the first sampled token, as webjudge's does; its
    // predicted_n counts that first token but predicted_ms starts after it.
    return { promptTokens: t.prompt_n, prefillTokS: (t.prompt_n * 1000) / t.prompt_ms, decodeTokens: t.predicted_n,
      decodeTokS: ((t.predicted_n - 1) * 1000) / t.predicted_ms };
  },

  // wllama's greedy ids, from an untimed run: the ids come with each token's top probability,
  // whose softmax and sort over the vocabulary the timed runs are spared.
  async wllamaIds(prompt, maxNewTokens) {
    const r = await complete(prompt, maxNewTokens, { n_probs: 1 });
    return r.choices[0].logprobs.content.map((token) => token.id);
  },

  // judge.profile's decode table at `contextTokens` (its markdown, as `bench --profile` prints it).
  async profile(contextTokens) {
    return judge.profile({ contextTokens, runs: 1, prefill: false });
  },
};

// Greedy, and nothing taken from the previous request's prompt.
function complete(prompt, maxNewTokens, extra = {}) {
  return wllama.createCompletion({ prompt, max_tokens: maxNewTokens, temperature: 0, cache_prompt: false, ...extra });
}

// The adapter as wgpu names it, with what the browser says of it (wgpu's name is empty on the web).
async function adapterName() {
  const adapter = await navigator.gpu.requestAdapter();
  const info = adapter.info;
  const browser = /(?:Headless)?Chrome\/\d+/.exec(navigator.userAgent)?.[0] ?? navigator.userAgent;
  const fallback = info.isFallbackAdapter ? ", fallback adapter" : "";
  return `${info.vendor} ${info.architecture}${fallback} (${judge.info().adapter}), ${browser}`;
}

// Which backend llama.cpp ran on, from the compute buffers its load log lists ("CPU compute
// buffer size = ..." when no WebGPU device was usable).
function wllamaBackend() {
  const buffers = wllamaLog.map((line) => /(\S+) compute buffer size/.exec(line)?.[1]).filter(Boolean);
  const devices = [...new Set(buffers)].filter((device) => device !== "CPU");
  const threads = wllama.getNumThreads();
  const cpu = `CPU (wasm, ${threads} thread${threads === 1 ? "" : "s"})`;
  return devices.length ? `WebGPU (${devices.join(", ")}) and ${cpu}` : cpu;
}
