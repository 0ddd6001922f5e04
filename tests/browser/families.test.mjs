// The newer judges in the page: tiny random checkpoints of their bases' structures
// (tests/fixtures/llama31_tiny: Llama-3.1; qwen2_tiny: Qwen2.5 with its q/k/v biases; phi3_tiny:
// Phi-3.5 with LongRoPE and fused projections) converted by the native CLI at the default
// --quant with each judge's family, loaded by the page in headless Chromium (WebGPU on
// SwiftShader), which picks the family's protocols from the manifest, judges an item and gives
// the critique the native CLI generates from the same directory: the judgement records equal.
// The weights are random: the critiques are gibberish and no verdict is expected, only the same
// tokens from the same rendered prompt (the chat template rendered in the wasm, its tokenizer,
// the kernels).
//
// Environment: WEBJUDGE_BIN (the native CLI, default target/release/webjudge).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { chromium } from "playwright-core";
import { CHROMIUM_OPTIONS } from "./chromium.mjs";
import { startServer } from "./server.mjs";

const run = promisify(execFile);
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = process.env.WEBJUDGE_BIN ?? join(REPO, "target/release/webjudge");
const ROOT = join(REPO, "www");
const FIXTURES = join(REPO, "tests/fixtures");
const MAX_NEW_TOKENS = 12;
const ITEM = {
  query: "Which planet is closest to the sun?",
  response1: "Mercury.",
  response2: "Venus, I think.",
  response: "Mercury is the closest planet to the sun.",
};
// Selene Mini grades against criteria the page's custom rubric fields give.
const SELENE_RUBRIC = {
  criteria: "Is the answer correct?",
  score1_description: "wrong",
  score2_description: "mostly wrong",
  score3_description: "partly right",
  score4_description: "mostly right",
  score5_description: "right",
};
// The Phi-3.5 fixture's original context (64 positions, to which LongRoPE caps the context) is
// too short for Flow-Judge's prompt: its copy here is extended 16-fold from 2048.
const LONGER_CONTEXT = { max_position_embeddings: 32768, original_max_position_embeddings: 2048, sliding_window: 2048 };
const FAMILIES = [
  { judge: "skywork", fixture: "llama31_tiny", pairwise: true },
  { judge: "selene", fixture: "llama31_tiny", pairwise: true, rubric: SELENE_RUBRIC },
  { judge: "compassjudger", fixture: "qwen2_tiny", pairwise: true },
  // Flow-Judge rates one response on a metric: the page's first preset, which compares it
  // with a reference answer.
  { judge: "flowjudge", fixture: "phi3_tiny", pairwise: false, config: LONGER_CONTEXT, reference: "Mercury." },
];
const SLOW = 5 * 60_000;

let workDir;
let context;

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), "webjudge-families-"));
  context = await chromium.launchPersistentContext(join(workDir, "profile"), CHROMIUM_OPTIONS);
});

after(async () => {
  await context?.close();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

async function nativeCritique(model, args) {
  const { stdout } = await run(BIN, ["judge", "--model", model, "--max-new-tokens", String(MAX_NEW_TOKENS), ...args]);
  return JSON.parse(stdout.trimEnd().split("\n").at(-1));
}

// The fixture's checkpoint, with `config` changes in a copy.
async function checkpoint(fixture, config) {
  if (!config) return join(FIXTURES, fixture);
  const copy = join(workDir, fixture);
  await cp(join(FIXTURES, fixture), copy, { recursive: true });
  const path = join(copy, "config.json");
  await writeFile(path, JSON.stringify({ ...JSON.parse(await readFile(path, "utf8")), ...config }));
  return copy;
}

for (const { judge, fixture, pairwise, rubric, config, reference } of FAMILIES) {
  test(`${judge}: the page judges with the family's protocol as the native CLI does`, { timeout: SLOW }, async () => {
    const model = join(workDir, judge);
    await run(BIN, ["convert", await checkpoint(fixture, config), "--out", model, "--judge", judge]);
    const server = await startServer({ root: ROOT, model });
    const page = await context.newPage();
    try {
      page.on("pageerror", (error) => console.error(`page error: ${error.message}`));
      await page.goto(`${server.origin}/index.html`);
      await page.click("#load");
      await page.waitForSelector("#model-info:not([hidden]), #error:not([hidden])");
      await assertNoPageError(page);
      // The model's manifest names its family: the page switches to it.
      assert.equal(await page.inputValue("#family"), judge);
      await page.click(`.tab[data-tab="${pairwise ? "pairwise" : "single"}"]`);
      await page.fill("#max-new-tokens", String(MAX_NEW_TOKENS));
      await page.fill("#query", ITEM.query);
      const args = ["--query", ITEM.query];
      if (pairwise) {
        await page.fill("#response1", ITEM.response1);
        await page.fill("#response2", ITEM.response2);
        args.push("--response1", ITEM.response1, "--response2", ITEM.response2);
      } else {
        await page.fill("#response", ITEM.response);
        args.push("--response", ITEM.response);
      }
      if (rubric) {
        await page.selectOption("#rubric-choice", "custom");
        await page.fill("#rubric-criteria", rubric.criteria);
        for (let score = 1; score <= 5; score++) await page.fill(`#rubric-score${score}`, rubric[`score${score}_description`]);
        args.push("--rubric", JSON.stringify(rubric));
      } else if (await page.locator("#rubric-choice").isVisible()) {
        args.push("--rubric", await page.inputValue("#rubric-choice"));
      }
      if (reference) {
        await page.fill("#reference-answer", reference);
        args.push("--reference-answer", reference);
      }
      await page.click("#judge");
      await page.waitForSelector("#verdict:not([hidden]), #error:not([hidden])");
      await assertNoPageError(page);
      const streamed = await page.textContent("#critique");
      const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download-result")]);
      const record = JSON.parse(await readFile(await download.path(), "utf8"));
      const native = await nativeCritique(model, args);
      console.log(`${judge} (${native.protocol}): page ${JSON.stringify(record.critique)}, native ${JSON.stringify(native.critique)}`);
      assert.ok(native.protocol.startsWith(judge), `the native CLI used ${native.protocol}`);
      assert.equal(record.protocol, native.protocol);
      assert.equal(record.critique, native.critique);
      // Streamed text is the record's, but where random weights emit invalid UTF-8 through
      // SentencePiece's byte tokens: complete characters already shown stay as they were
      // when later bytes turn the run invalid (src/tokenizer/stream.rs).
      if (!native.critique.includes("\uFFFD")) assert.equal(streamed, native.critique);
    } finally {
      await page.close();
      await server.close();
    }
  });
}

async function assertNoPageError(page) {
  const error = page.locator("#error:not([hidden])");
  if (await error.count()) assert.fail(`the page shows an error: ${await error.textContent()}`);
}
