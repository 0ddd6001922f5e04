// The page end to end in headless Chromium with WebGPU on SwiftShader (issue 4 §6): judge a pair
// and match the native CLI token for token, show markup as text, grade a response against a
// rubric (Prometheus 2, in the page and in <web-judge>), load again from the cache (and
// offline), reject a corrupted shard, stay on the origin, and share one model between
// <web-judge> elements.
//
// The tests run in order and build on each other: the first load fills the cache the later ones
// read, and the batch test judges in the first test's page so the engine reuses the pair's
// prompt prefix. SwiftShader takes seconds per token (measured 2026-11-29 on two cores: about
// 2 s per decoded token and 2.4 prompt tokens/s), so every judgement here is short. Settings
// come from the environment (run.sh sets the first two):
//   WEBJUDGE_BIN           native CLI, default target/release/webjudge
//   WEBJUDGE_MODEL         converted test model, default target/models/smollm2-135m-instruct
//   WEBJUDGE_WWW           the site to serve, default www/
//   WEBJUDGE_NATIVE_FLAGS  extra flags for the native judge (e.g. --no-subgroups)
//   WEBJUDGE_E2E_TOKENS    critique tokens compared with the native CLI, default 32
//   CHROMIUM               default /usr/bin/chromium

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { CHROMIUM_OPTIONS } from "./chromium.mjs";
import { assertMatchesGolden, goldenCases } from "./golden-metrics.mjs";
import { startServer } from "./server.mjs";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = process.env.WEBJUDGE_BIN ?? join(REPO, "target/release/webjudge");
const MODEL = process.env.WEBJUDGE_MODEL ?? join(REPO, "target/models/smollm2-135m-instruct");
const ROOT = process.env.WEBJUDGE_WWW ?? join(REPO, "www");
const NATIVE_FLAGS = (process.env.WEBJUDGE_NATIVE_FLAGS ?? "").split(" ").filter(Boolean);

// Short enough for SwiftShader on two cores, long enough for a critique's first sentence.
const MAX_NEW_TOKENS = Number(process.env.WEBJUDGE_E2E_TOKENS ?? 32);
// testdata_pairwise.jsonl line 782 of Auto-J's test set, also the page's first example button.
const PAIR = {
  query: 'translate "good day, how are you" to swiss german',
  response1: '"Guete Tag, wie geits dir?"',
  response2: "Guten Tag, wie geht's?",
};
const XSS = '<img src=x onerror="window.__xss = true">';
// Graded with Prometheus 2's absolute protocol and the helpfulness rubric: a 381-token prompt,
// prefilled once (the element's judgement reuses the page's). The test model is no judge: a
// few tokens of feedback name no score, which is fine.
const RUBRIC_ITEM = { instruction: "What is 2 + 2?", response: "4" };
const RUBRIC_TOKENS = 4;
// Software WebGPU is slow: one load plus one judgement can take minutes.
const SLOW = 8 * 60_000;

let server;
let userDataDir;
let context;
let page;
// Every request any page, worker or service worker of the browser made, as URLs.
const browserRequests = [];
let manifest;
let native;

before(async () => {
  manifest = JSON.parse(await readFile(join(MODEL, "manifest.json"), "utf8"));
  server = await startServer({ root: ROOT, model: MODEL });
  userDataDir = await mkdtemp(join(tmpdir(), "webjudge-e2e-"));
  // The native reference runs beside the browser; the first test waits for it.
  native = runNative();
  native.catch(() => {}); // reported where it is awaited
  await launch();
});

after(async () => {
  await context?.close();
  await server?.close();
  if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
});

// A fresh browser on the same profile directory: what a user closing and reopening it sees.
async function launch() {
  await context?.close();
  context = await chromium.launchPersistentContext(userDataDir, CHROMIUM_OPTIONS);
  context.on("request", (request) => browserRequests.push(request.url()));
  context.on("weberror", (error) => console.error("page error:", error.error().message));
  page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (message) => {
    if (message.type() === "error" || message.type() === "warning") console.error(`console ${message.type()}: ${message.text()}`);
  });
  page.setDefaultTimeout(2 * SLOW); // the tests' own timeouts are the limit
}

function runNative() {
  const args = ["judge", "--model", MODEL, "--query", PAIR.query, "--response1", PAIR.response1,
    "--response2", PAIR.response2, "--max-new-tokens", String(MAX_NEW_TOKENS), ...NATIVE_FLAGS];
  return new Promise((done, fail) => {
    const child = spawn(BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("error", fail);
    child.on("close", (code) => {
      if (code !== 0) return fail(new Error(`${BIN} ${args.join(" ")} exited ${code}:\n${stderr}`));
      // The last line is the record; the critique streamed before it.
      done(JSON.parse(stdout.trimEnd().split("\n").at(-1)));
    });
  });
}

const shardPath = (shard) => `/models/default/${shard.file}`;
const isShard = (path) => manifest.shards.some((shard) => shardPath(shard) === path);

// Opens the page fresh and loads the model; resolves with the info panel's text.
async function openAndLoad() {
  await page.goto(`${server.origin}/index.html`);
  await page.click("#load");
  await page.waitForSelector("#model-info:not([hidden]), #error:not([hidden])");
  await failOnPageError();
  return page.textContent("#model-info");
}

async function failOnPageError() {
  const error = page.locator("#error:not([hidden])");
  if (await error.count()) assert.fail(`the page shows an error: ${await error.textContent()}`);
}

test("a pair judged in the page streams exactly the native CLI's critique", { timeout: 2 * SLOW }, async () => {
  await page.goto(`${server.origin}/index.html`);
  await page.click("#examples button >> nth=0");
  assert.equal(await page.inputValue("#query"), PAIR.query);
  assert.equal(await page.inputValue("#response1"), PAIR.response1);
  assert.equal(await page.inputValue("#response2"), PAIR.response2);
  await page.fill("#max-new-tokens", String(MAX_NEW_TOKENS));
  // The engine runs in a worker: the page's timers keep firing while it judges.
  await page.evaluate(() => {
    window.__gap = 0;
    let last = performance.now();
    setInterval(() => {
      const now = performance.now();
      window.__gap = Math.max(window.__gap, now - last);
      last = now;
    }, 50);
  });
  const started = Date.now();
  await page.click("#judge");
  await page.waitForSelector("#verdict:not([hidden]), #error:not([hidden])");
  await failOnPageError();
  const streamed = await page.textContent("#critique");
  const gap = await page.evaluate(() => window.__gap);
  console.log(`page: load and judge in ${((Date.now() - started) / 1000).toFixed(1)} s (${await page.textContent("#stats")}); longest main-thread gap ${gap.toFixed(0)} ms`);
  console.log(`page critique:   ${JSON.stringify(streamed)}`);
  const reference = await native;
  console.log(`native critique: ${JSON.stringify(reference.critique)}`);
  assert.equal(streamed, reference.critique);
  assert.ok(gap < 3000, `the page was blocked for ${gap} ms`);
  assert.match(await page.textContent("#model-info"), /From cacheno/);
  assert.match(await page.textContent("#model-info"), /Matvecexact/);
  // SwiftShader is a fallback adapter: the page says so and what speed to expect.
  assert.match(await page.textContent("#model-info"), /software \(fallback\) adapter: WebGPU runs on the CPU/);
  for (const shard of manifest.shards) {
    assert.ok(server.requests(0, (p) => p === shardPath(shard)).length >= 1, `${shard.file} was downloaded`);
  }
});

test("markup in a batch row shows as text, and the results export", { timeout: SLOW }, async () => {
  // The first test's pair with markup as response 2: the engine prefills only what follows
  // response 1.
  const row = { scenario: "chitchat", label: 0, prompt: PAIR.query, "response 1": PAIR.response1, "response 2": XSS };
  await page.click('.tab[data-tab="batch"]');
  await page.fill("#max-new-tokens", "1");
  await page.setInputFiles("#batch-file", {
    name: "rows.jsonl",
    mimeType: "application/jsonl",
    buffer: Buffer.from(JSON.stringify(row) + "\n"),
  });
  await page.click("#batch-start");
  await page.waitForSelector("#export-jsonl:not([disabled]), #error:not([hidden])");
  await failOnPageError();
  await page.click("#results tbody tr summary");
  assert.ok((await page.textContent("#results tbody tr details")).includes(XSS));
  assert.equal(await page.locator("img").count(), 0);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.match(await page.textContent("#metrics"), /Overall/);
  // The page's metrics path (judge-client → worker → the wasm pairwiseMetrics) against the
  // reference the native metrics are checked with.
  for (const { name, records, expected } of goldenCases()) {
    const metrics = await page.evaluate(async (records) => (await import("./judge-client.js")).pairwiseMetrics(records), records);
    assertMatchesGolden(name, metrics, expected);
  }

  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export-jsonl")]);
  const exported = (await readFile(await download.path(), "utf8")).trim().split("\n").map((line) => JSON.parse(line));
  assert.equal(exported.length, 1);
  assert.equal(exported[0].label, "response1");
  assert.equal(exported[0].generated_tokens, 1);
  assert.ok(exported[0].reused_tokens > 0, "the pair's prompt prefix was reused");
});

test("a response graded against a rubric in the page and in <web-judge>", { timeout: SLOW }, async () => {
  const started = Date.now();
  await page.click('.tab[data-tab="single"]');
  await page.selectOption("#family", "prometheus");
  // The menu's built-in rubrics come from the wasm; the first is chosen.
  await page.waitForSelector('#rubric-choice option[value="helpfulness"]', { state: "attached" });
  assert.equal(await page.inputValue("#rubric-choice"), "helpfulness");
  assert.match(await page.textContent("#rubric-text"), /^\[Does the model provide relevant and useful responses/);
  await page.fill("#query", RUBRIC_ITEM.instruction);
  await page.fill("#response", RUBRIC_ITEM.response);
  await page.fill("#max-new-tokens", String(RUBRIC_TOKENS));
  await page.click("#judge");
  await page.waitForSelector("#verdict:not([hidden]), #error:not([hidden])");
  await failOnPageError();
  const critique = await page.textContent("#critique");
  assert.ok(critique.length > 0, "the feedback streamed");
  assert.match(await page.textContent("#verdict"), /^(score [1-5] \/ 5|no score found)$/);
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download-result")]);
  const record = JSON.parse(await readFile(await download.path(), "utf8"));
  assert.equal(record.protocol, "prometheus_absolute");
  assert.ok("score" in record, `a score field: ${JSON.stringify(record)}`);
  assert.equal(record.critique, critique);
  console.log(`page: graded in ${((Date.now() - started) / 1000).toFixed(1)} s (${await page.textContent("#stats")})`);

  // The element on the same page shares its worker, and the page's prompt: only the feedback
  // is generated again.
  const result = await page.evaluate(async ({ item, tokens }) => {
    await import("./web-judge.js");
    const element = document.createElement("web-judge");
    const attributes = { protocol: "prometheus_absolute", rubric: "helpfulness", instruction: item.instruction,
      response: item.response, "max-new-tokens": String(tokens) };
    for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
    document.body.append(element);
    return new Promise((done, fail) => {
      element.addEventListener("judged", (e) => done(e.detail), { once: true });
      element.addEventListener("judge-error", (e) => fail(new Error(`${e.detail.name}: ${e.detail.message}`)), { once: true });
      element.shadowRoot.querySelector("button").click();
    });
  }, { item: RUBRIC_ITEM, tokens: RUBRIC_TOKENS });
  assert.equal(result.protocol, "prometheus_absolute");
  assert.ok("score" in result);
  assert.equal(result.critique, critique, "greedy: the page's feedback again");
  assert.ok(result.reused_tokens > 0, "the page's prompt was reused");
  assert.equal(await page.locator("web-judge >> .critique").textContent(), result.critique);
  assert.equal(await page.locator("web-judge >> .badge:not([hidden])").count(), 1);
  assert.match(await page.locator("web-judge >> div").first().textContent(), /Instruction/);

  // A rubric call without a rubric is refused before it waits its turn, naming the built-ins.
  const refusal = await page.evaluate(async () => {
    const { Judge } = await import("./judge-client.js");
    const judge = await Judge.load("./models/default/");
    return judge.rubric({ instruction: "q", response: "a" }).then(() => null, (e) => ({ name: e.name, message: e.message }));
  });
  assert.equal(refusal?.name, "InvalidInput");
  assert.match(refusal.message, /grades against a rubric: give "rubric" \(a built-in name: helpfulness, harmlessness, honesty, factual_validity or reasoning/);
  console.log(`rubric test: ${((Date.now() - started) / 1000).toFixed(1)} s`);
});

test("reopened, the browser loads the model with no shard request", { timeout: SLOW }, async () => {
  await launch();
  const mark = server.log.length;
  assert.match(await openAndLoad(), /From cacheyes/);
  assert.deepEqual(server.requests(mark, isShard), [], "no shard reached the server");
});

test("with the server gone, the page and the model still load", { timeout: SLOW }, async () => {
  await server.goOffline();
  try {
    assert.match(await openAndLoad(), /From cacheyes/);
  } finally {
    await server.goOnline();
  }
});

test("a corrupted shard is rejected, fetched again and never cached", { timeout: SLOW }, async () => {
  await page.click("#clear-cache");
  await page.waitForFunction(() => document.querySelector("#model-status").textContent.includes("removed"));
  const victim = manifest.shards[0];
  server.corruptOnce(victim.file);
  const mark = server.log.length;
  // A fresh page: a new worker, with nothing in memory.
  assert.match(await openAndLoad(), /From cacheno/);
  const fetches = server.requests(mark, (p) => p === shardPath(victim));
  assert.equal(fetches.length, 2, `${victim.file} fetched twice: ${JSON.stringify(fetches)}`);
  assert.equal(fetches[0].corrupted, true);
  assert.ok(!fetches[1].corrupted);

  const again = server.log.length;
  assert.match(await openAndLoad(), /From cacheyes/);
  assert.deepEqual(server.requests(again, isShard), [], "the good copy was cached");
  assert.equal(await cachedSha256(victim.file), victim.sha256);
});

// The sha256 of the copy of a shard in the loader's Cache API cache (src/web/loader.rs keeps
// shards in "webjudge-v1" under their URL plus a hash query); null when there is none.
function cachedSha256(file) {
  return page.evaluate(async (file) => {
    const cache = await caches.open("webjudge-v1");
    const key = (await cache.keys()).find((request) => new URL(request.url).pathname.endsWith(`/${file}`));
    if (!key) return null;
    const digest = await crypto.subtle.digest("SHA-256", await (await cache.match(key)).arrayBuffer());
    return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  }, file);
}

test("the <web-judge> elements on the docs page share one model load", { timeout: SLOW }, async () => {
  const mark = server.log.length;
  await page.goto(`${server.origin}/docs-example.html`);
  // All load at once; they must end up with one worker and one download of the manifest.
  const models = await page.evaluate(async () => {
    const judges = await Promise.all([...document.querySelectorAll("web-judge")].map((element) => element.load()));
    return Promise.all(judges.map(async (judge) => (await judge.info()).modelUrl));
  });
  assert.deepEqual(models, Array(3).fill(`${server.origin}/models/default/`));
  assert.equal(server.requests(mark, (p) => p === "/models/default/manifest.json").length, 1);
  assert.equal(server.requests(mark, (p) => p === "/worker.js").length, 1);

  // One of them judges (each judgement costs minutes on SwiftShader): the single-response one.
  const result = await page.evaluate(() => {
    const element = document.querySelector("#single-example");
    element.setAttribute("max-new-tokens", "1");
    return new Promise((done, fail) => {
      element.addEventListener("judged", (e) => done(e.detail), { once: true });
      element.addEventListener("judge-error", (e) => fail(new Error(e.detail.message)), { once: true });
      element.shadowRoot.querySelector("button").click();
    });
  });
  assert.ok("rating" in result);
  assert.equal(result.generated_tokens, 1);
  assert.equal(await page.locator("#single-example >> .badge:not([hidden])").count(), 1);
  assert.equal(await page.locator("#single-example >> .critique").textContent(), result.critique);
});

// Last, so that it covers every request the tests above made.
test("nothing left the origin, and the CSP would have stopped it", async () => {
  const foreign = browserRequests.filter((url) => !url.startsWith(`${server.origin}/`) && !/^(data|blob):/.test(url));
  assert.deepEqual(foreign, []);
  assert.ok(server.log.length > 0);
  await page.goto(`${server.origin}/index.html`);
  const outcome = await page.evaluate(async () => {
    const violations = [];
    document.addEventListener("securitypolicyviolation", (e) => violations.push(e.violatedDirective));
    const fetched = await fetch("https://example.com/").then(() => "fetched", (e) => e.name);
    await new Promise((r) => setTimeout(r, 100));
    return { fetched, violations };
  });
  assert.equal(outcome.fetched, "TypeError");
  assert.deepEqual(outcome.violations, ["connect-src"]);
});
