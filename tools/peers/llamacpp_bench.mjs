// llama.cpp's prefill and decode speed on a GGUF, through node-llama-cpp's prebuilt
// Vulkan build, measured the way `webjudge bench` measures: a prompt of N tokens (the
// text's tokens cycled) prefilled at once, then M tokens decoded greedily one by one.
// Prints one JSON line. Usage: node llamacpp_bench.mjs MODEL.gguf PROMPT_TOKENS DECODE_TOKENS
// On a CPU-type Vulkan device (lavapipe) set GGML_VK_VISIBLE_DEVICES=0, or the backend hides it.
import { getLlama } from "node-llama-cpp";
import { PROMPT_TEXT } from "./prompt.mjs";

const [modelPath, promptArg, decodeArg] = process.argv.slice(2);
const promptTokens = Number(promptArg ?? 256);
const decodeTokens = Number(decodeArg ?? 64);

const llama = await getLlama({ gpu: "vulkan", build: "never" });
const devices = await llama.getGpuDeviceNames();
const model = await llama.loadModel({ modelPath, gpuLayers: "max" });
const textTokens = model.tokenize(PROMPT_TEXT);
const prompt = Array.from({ length: promptTokens }, (_, i) => textTokens[i % textTokens.length]);
const context = await model.createContext({ contextSize: promptTokens + decodeTokens + 8, batchSize: promptTokens });

async function run() {
  const sequence = context.getSequence();
  let started = performance.now();
  await sequence.evaluateWithoutGeneratingNewTokens(prompt);
  const prefillSeconds = (performance.now() - started) / 1000;
  started = performance.now();
  let generated = 0;
  for await (const token of sequence.evaluate([prompt[prompt.length - 1]], { temperature: 0 })) {
    void token;
    if (++generated >= decodeTokens) break;
  }
  const decodeSeconds = (performance.now() - started) / 1000;
  sequence.dispose();
  return { prefillSeconds, decodeSeconds };
}

await run(); // warm-up, as webjudge bench does
const { prefillSeconds, decodeSeconds } = await run();
console.log(
  JSON.stringify({
    engine: "llama.cpp (node-llama-cpp 3.21.1, Vulkan)",
    adapter: devices.join(", ") || "(no GPU device: the CPU backend ran)",
    prompt_tokens: promptTokens,
    prefill_tok_s: promptTokens / prefillSeconds,
    decode_tokens: decodeTokens,
    decode_tok_s: decodeTokens / decodeSeconds,
  })
);
await context.dispose();
await model.dispose();
