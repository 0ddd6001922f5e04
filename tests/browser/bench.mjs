// The browser benchmark (tools/bench_browser.sh runs it): in one headless Chromium on
// SwiftShader, webjudge's Judge.generate and wllama (llama.cpp in wasm) on the same GGUF, the
// same prompt and greedy decoding, alternating RUNS times in one page (bench-page/), then
// webjudge's decode profile in the same page.
//   node bench.mjs PROMPT_TOKENS DECODE_TOKENS RUNS RESULTS_FILE PROFILE_FILE
// RESULTS_FILE gets one JSON line per run ({"engine", "result"}, as tools/peers/record_peers.py
// reads them); PROFILE_FILE the profile's markdown under a title naming the adapter and NOTE.
// Environment: WEBJUDGE_BIN, WEBJUDGE_MODEL (the converted model), WEBJUDGE_GGUF (the GGUF it
// was converted from), WLLAMA_ESM (wllama's esm/ directory), WEBJUDGE_WWW (for pkg/), NOTE.

import { execFileSync } from "node:child_process";
import { mkdtemp, rm, symlink, writeFile, appendFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { CHROMIUM_OPTIONS } from "./chromium.mjs";
import { startServer } from "./server.mjs";
import { PROMPT_TEXT } from "../../tools/peers/prompt.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "../..");
const BIN = process.env.WEBJUDGE_BIN ?? join(REPO, "target/release/webjudge");
const MODEL = process.env.WEBJUDGE_MODEL ?? join(REPO, "target/models/smollm2-135m-instruct");
const GGUF = process.env.WEBJUDGE_GGUF;
const WLLAMA_ESM = process.env.WLLAMA_ESM ?? join(REPO, "target/peers/node_modules/@wllama/wllama/esm");
const WWW = process.env.WEBJUDGE_WWW ?? join(REPO, "www");
// A short prompt whose first token differs from the benchmark's: run before each timed run,
// it compiles and warms every pipeline and leaves no prompt prefix in either engine's cache.
// Several tokens, so that the prefill kernels (not only decode's) are compiled too.
const WARM_UP = "Hello, how are you today?";

const [promptTokens, decodeTokens, runs] = process.argv.slice(2, 5).map(Number);
const [resultsFile, profileFile] = process.argv.slice(5, 7);
if (!GGUF || !profileFile) throw new Error("usage: see the header of tests/browser/bench.mjs");

const tokenCount = (text) =>
  JSON.parse(execFileSync(BIN, ["tokenize", "--model", MODEL, "--text", text], { encoding: "utf8" })).length;

// The longest run of the text's words (cycled) with at most `tokens` tokens; both engines
// tokenize it with the GGUF's own vocabulary and report their counts.
function promptOf(tokens) {
  const words = PROMPT_TEXT.split(" ");
  const text = (n) => Array.from({ length: n }, (_, i) => words[i % words.length]).join(" ");
  let [low, high] = [1, 4 * tokens];
  while (low < high) {
    const middle = Math.ceil((low + high) / 2);
    if (tokenCount(text(middle)) <= tokens) low = middle;
    else high = middle - 1;
  }
  return text(low);
}

const prompt = promptOf(promptTokens);
const site = await mkdtemp(join(tmpdir(), "webjudge-bench-site-"));
const userDataDir = await mkdtemp(join(tmpdir(), "webjudge-bench-profile-"));
await symlink(join(HERE, "bench-page/index.html"), join(site, "index.html"));
await symlink(join(HERE, "bench-page/bench.js"), join(site, "bench.js"));
await symlink(resolve(WWW, "pkg"), join(site, "pkg"));
await symlink(resolve(WLLAMA_ESM), join(site, "wllama"));
await symlink(resolve(GGUF), join(site, "model.gguf"));
const server = await startServer({ root: site, model: MODEL });
const context = await chromium.launchPersistentContext(userDataDir, CHROMIUM_OPTIONS);
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30 * 60_000);
  page.on("console", (m) => m.type() === "error" && console.error(`console error: ${m.text()}`));
  page.on("pageerror", (error) => console.error(`page error: ${error.message}`));
  await page.goto(`${server.origin}/index.html`);
  await page.waitForFunction(() => window.bench);
  const { adapter, wllamaBackend, backendLog } = await page.evaluate(
    (contextLength) => window.bench.load({ contextLength }),
    promptTokens + decodeTokens + 16,
  );
  console.error(`adapter: ${adapter}; wllama ran on: ${wllamaBackend}; its log:\n  ${backendLog.join("\n  ")}`);
  const engines = {
    webjudge: { name: "webjudge (Judge.generate, WebGPU)", adapter },
    wllama: { name: "wllama 3.8.1 (llama.cpp in wasm)", adapter: wllamaBackend },
  };
  const firstRun = {};
  await writeFile(resultsFile, "");
  for (let run = 1; run <= runs; run++) {
    for (const engine of Object.keys(engines)) {
      await page.evaluate(([e, p]) => window.bench[e](p, 2), [engine, WARM_UP]);
      const r = await page.evaluate(([e, p, n]) => window.bench[e](p, n), [engine, prompt, decodeTokens]);
      console.error(`run ${run}/${runs} ${engine}: ${r.promptTokens} prompt tokens at ${r.prefillTokS.toFixed(2)} tok/s, ` +
        `${r.decodeTokens} decoded at ${r.decodeTokS.toFixed(2)} tok/s`);
      firstRun[engine] ??= r;
      const result = { engine: engines[engine].name, adapter: engines[engine].adapter, prompt_tokens: r.promptTokens,
        prefill_tok_s: r.prefillTokS, decode_tokens: r.decodeTokens, decode_tok_s: r.decodeTokS };
      await appendFile(resultsFile, JSON.stringify({ engine, result }) + "\n");
    }
  }
  const [ours, theirs] = [firstRun.webjudge, firstRun.wllama];
  // Rows are comparable only for the same work (an early end of sequence shortens a decode).
  if (ours.promptTokens !== theirs.promptTokens || ours.decodeTokens !== theirs.decodeTokens) {
    throw new Error(`webjudge read ${ours.promptTokens} prompt tokens and decoded ${ours.decodeTokens} ` +
      `(ids ${JSON.stringify(ours.ids)}), wllama ${theirs.promptTokens} and ${theirs.decodeTokens}`);
  }
  const theirIds = await page.evaluate(([p, n]) => window.bench.wllamaIds(p, n), [prompt, decodeTokens]);
  console.error(`greedy ids: webjudge ${JSON.stringify(ours.ids)}, wllama ${JSON.stringify(theirIds)}`);
  let agree = 0;
  while (agree < ours.ids.length && ours.ids[agree] === theirIds[agree]) agree++;
  console.log(`greedy ids agree on the first ${agree} of ${ours.ids.length} tokens`);
  const profile = await page.evaluate((n) => window.bench.profile(n), promptTokens);
  const date = new Date().toISOString().slice(0, 10);
  const note = process.env.NOTE ? `; ${process.env.NOTE}` : "";
  const title = `Browser profile, ${date} (${basename(MODEL)} in ${adapter}; judge.profile${note}):`;
  await writeFile(profileFile, `${title}\n\n${profile.markdown}`);
  console.error(profile.markdown);
} finally {
  await context.close();
  await server.close();
  await rm(site, { recursive: true, force: true });
  await rm(userDataDir, { recursive: true, force: true });
}
