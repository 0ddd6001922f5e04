// The page's modules under Node, no browser: the wasm pairwiseMetrics export the page's batch
// metrics come from (www/pkg, run here without a worker) against the same independent reference
// the native metrics are checked with (golden-metrics.mjs), Auto-J and Prometheus 2 test-data
// parsing (the wasm parseRows, the CLI's reader), the built-in rubrics the page offers, the
// export formats, the advice the page shows without WebGPU, and the service worker's list of
// the page's modules, and the catalog of judge GGUFs the page offers (its entries, and the menu's
// first estimate of their fit).

import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import init, { Judge, builtInRubrics, pairwiseMetrics, parseRows, preferenceMetrics, scoreMetrics } from "../../www/pkg/webjudge.js";
import { toCsv, toJsonl } from "../../www/batch-data.js";
import { explain } from "../../www/messages.js";
import { fitEstimate, menuText } from "../../www/catalog.js";
import { assertMatchesGolden, goldenCases } from "./golden-metrics.mjs";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
// Auto-J's original files, as the Rust tests find them (tests/autoj): WEBJUDGE_AUTOJ_DIR when
// set (then required), else ../shared/autoj beside the checkout when present.
const AUTOJ_DIR = process.env.WEBJUDGE_AUTOJ_DIR || join(REPO, "../shared/autoj");
const AUTOJ_DATA = join(AUTOJ_DIR, "data");
const AUTOJ_MISSING = !process.env.WEBJUDGE_AUTOJ_DIR && !existsSync(AUTOJ_DIR);

await init({ module_or_path: readFileSync(join(REPO, "www/pkg/webjudge_bg.wasm")) });

test("the wasm pairwiseMetrics matches Auto-J's pairwise_eval reference", () => {
  for (const { name, records, expected } of goldenCases()) {
    assertMatchesGolden(name, pairwiseMetrics(records), expected);
  }
});

test("rows that could not be judged are left out of the metrics", () => {
  const metrics = pairwiseMetrics([
    { scenario: "chitchat", label: "tie", winner: "tie", critique: "ignored" },
    { scenario: "chitchat", label: "tie", error: "InputTooLong: 5000 tokens" },
    { scenario: "chitchat", label: null, winner: "tie" },
  ]);
  assert.deepEqual(metrics.table.at(-1), { name: "Overall", rows: 1, agreement: 100, consistency: null, unparsed: 0, swapped: 0 });
  assert.equal(metrics.unlabelled, 1);
  assert.deepEqual(pairwiseMetrics([{ label: null, winner: "tie" }]).table, []);
  assert.throws(() => pairwiseMetrics([3]), (error) => error.name === "InvalidInput");
});

test("Prometheus 2's metrics of batch records: accuracy, and correlations with gold scores", () => {
  const preference = preferenceMetrics([
    { label: "A", winner: "A" },
    { label: "B", winner: "A", combined: "tie", consistent: false },
    { label: "B", winner: null },
    { label: null, winner: "B" },
    { label: "A", error: "InputTooLong: 5000 tokens" },
  ]);
  assert.deepEqual(preference, { rows: 3, accuracy: 100 / 3, consistency: 0, unparsed: 1, unlabelled: 1 });
  const scores = scoreMetrics([
    { label: 1, score: 1 }, { label: 3, score: 2 }, { label: 5, score: 5 }, { label: 4, score: null }, { label: null, score: 3 },
  ]);
  assert.equal(scores.rows, 3);
  assert.ok(Math.abs(scores.pearson - 0.9607689228305226) < 1e-12, `pearson ${scores.pearson}`);
  assert.ok(Math.abs(scores.spearman - 1) < 1e-12, `spearman ${scores.spearman}`);
  assert.equal(scores.kendall_tau_b, 1);
  assert.deepEqual([scores.unparsed, scores.unlabelled], [1, 1]);
  assert.throws(() => scoreMetrics([3]), (error) => error.name === "InvalidInput" && /^scoreMetrics: record 0/.test(error.message));
});

test("Auto-J's test files parse, with their labels", { skip: AUTOJ_MISSING && `needs Auto-J's original files, not found in ${AUTOJ_DIR} (set WEBJUDGE_AUTOJ_DIR)` }, () => {
  const pairs = parseRows(readFileSync(join(AUTOJ_DATA, "testdata_pairwise.jsonl"), "utf8"));
  assert.equal(pairs.length, 1392);
  assert.deepEqual(pairs[781], {
    index: 781,
    scenario: "text_to_text_translation",
    label: "response1",
    query: 'translate "good day, how are you" to swiss german',
    response1: '"Guete Tag, wie geits dir?"',
    response2: "Guten Tag, wie geht's?",
    protocol: "pairwise_tie",
  });
  const singles = parseRows(readFileSync(join(AUTOJ_DATA, "testdata_critique.jsonl"), "utf8"));
  assert.equal(singles.length, 232);
  assert.equal(singles[83].response, "One pound of bricks.");
  assert.equal(singles[83].response1, undefined);
});

test("malformed batch files are refused with the line", () => {
  const refused = (text, message) =>
    assert.throws(() => parseRows(text), (error) => error.name === "InvalidInput" && message.test(error.message));
  refused('{"prompt": "q", "response": "a"}\n\nnot json\n', /^line 3 \(row 1\): not valid JSON/);
  refused('{"prompt": "q", "response 1": "a", "response 2": "b", "label": 3}', /^line 1 \(row 0\): field "label" must be 0/);
  refused('{"prompt": "q", "response 1": "a"}', /^line 1 \(row 0\): field "response 2" is missing/);
  refused('{"prompt": "q", "response": "a"}\n{"prompt": "q", "response 1": "a", "response 2": "b"}', /row 1 is a pair, but row 0 is a single response/);
  refused("\n", /no rows/);
  const [row] = parseRows('\ufeff{"scenario": "chitchat", "label": 1, "prompt": "q", "response 1": "a", "response 2": "b"}');
  assert.deepEqual(row, { index: 0, scenario: "chitchat", label: "response2", query: "q", response1: "a", response2: "b", protocol: "pairwise_tie" });
  refused('{"instruction": "q", "response": "a", "label": 6}', /^line 1 \(row 0\): field "label" must be a score from 1 to 5/);
  refused('{"instruction": "q", "response": "a"}\n{"prompt": "q", "response": "a"}', /row 1 is a single response, but row 0 is a Prometheus single response/);
});

test("Prometheus 2 rows parse by prometheus-eval's names, with the protocol judgeBatch takes", () => {
  const rubric = { criteria: "c", score1_description: "1", score2_description: "2", score3_description: "3", score4_description: "4", score5_description: "5" };
  const rows = parseRows([
    JSON.stringify({ instruction: "q", response_A: "a", response_B: "b", label: "B", rubric: "honesty", reference_answer: "r" }),
    JSON.stringify({ instruction: "q2", response_A: "a2", response_B: "b2", rubric }),
  ].join("\n"));
  assert.deepEqual(rows, [
    { index: 0, query: "q", response1: "a", response2: "b", rubric: "honesty", reference_answer: "r", label: "B", scenario: null, protocol: "prometheus_relative_ref" },
    { index: 1, query: "q2", response1: "a2", response2: "b2", rubric, label: null, scenario: null, protocol: "prometheus_relative_ref" },
  ]);
  const [single] = parseRows('{"instruction": "q", "response": "a", "label": 4}');
  assert.deepEqual(single, { index: 0, query: "q", response: "a", label: 4, scenario: null, protocol: "prometheus_absolute" });
});

test("the newer judges' rows parse by their references' names", () => {
  const [skywork] = parseRows(JSON.stringify({ question: "q", response_A: "a", response_B: "b", label: "A" }));
  assert.deepEqual(skywork, { index: 0, query: "q", response1: "a", response2: "b", label: "A", scenario: null, protocol: "skywork" });
  const answer = { criteria: "c", yes_description: "y", no_description: "n" };
  const [selene] = parseRows(JSON.stringify({ user_input: "q", assistant_response: "a", rubric: answer, label: "No" }));
  assert.deepEqual(selene, { index: 0, query: "q", response: "a", rubric: answer, label: "No", scenario: null, protocol: "selene_classification" });
  const [flow] = parseRows(JSON.stringify({ query: "q", response: "a", reference_answer: "r", label: 0 }));
  assert.equal(flow.protocol, "flowjudge_ref");
  assert.deepEqual(builtInRubrics("flowjudge").map((preset) => preset.name),
    ["response_correctness_binary", "response_correctness_3point", "response_correctness_5point"]);
});

test("the built-in rubrics come from the wasm, named as the declarations name them", () => {
  const rubrics = builtInRubrics();
  const names = rubrics.map((rubric) => rubric.name);
  assert.deepEqual(names, ["helpfulness", "harmlessness", "honesty", "factual_validity", "reasoning"]);
  assert.match(rubrics[0].text, /^\[Does the model provide relevant and useful responses/);
  assert.match(rubrics[0].text, /Score 5: /);
  // The BuiltInRubric union of webjudge.d.ts lists the same names.
  const declarations = readFileSync(join(REPO, "www/pkg/webjudge.d.ts"), "utf8");
  const union = declarations.match(/export type BuiltInRubric = ([^;]+);/)[1];
  assert.deepEqual(union.split("|").map((name) => JSON.parse(name.trim())), names);
});

test("exports: records as JSONL, and CSV that a spreadsheet cannot run", () => {
  // judgeBatch's records (the CLI's record type; tests/judge.rs pins its fields).
  const timing = { prompt_tokens: 9, reused_tokens: 0, generated_tokens: 3, truncated: false, finish: "eos",
    time_to_first_token_s: 1.5, prefill_tok_s: 50, decode_tok_s: 5 };
  const judged = {
    index: 0, scenario: "chitchat", label: "response2", protocol: "pairwise_tie", ...timing,
    winner: "response2",
    critique: '=HYPERLINK("x"), "quoted"\nfinal decision is Response 2',
    swapped: { protocol: "pairwise_tie", ...timing, winner: "response2", critique: "c" },
    swapped_winner_mapped: "response1",
    consistent: false,
    combined: "tie",
  };
  const failed = { index: 1, scenario: null, label: null, error: "the judge input has 6000 tokens" };
  assert.deepEqual(toJsonl([judged, failed]).trim().split("\n").map((line) => JSON.parse(line)), [judged, failed]);

  const csv = toCsv([judged, failed]);
  const lines = csv.split("\r\n");
  assert.equal(lines[0], "index,scenario,label,winner,rating,score,answer,swapped_winner_mapped,consistent,finish,prompt_tokens,generated_tokens,decode_tok_s,error,critique");
  assert.ok(csv.includes(`"'=HYPERLINK(""x""), ""quoted""\nfinal decision is Response 2"`));
  assert.ok(csv.includes("the judge input has 6000 tokens"));
});

test("without WebGPU the page shows the wasm's advice, once", async () => {
  // Node has no navigator.gpu: Judge.load fails as in a browser without WebGPU, before any fetch.
  const error = await Judge.load("http://127.0.0.1:9/model/").then(() => assert.fail("loaded"), (e) => e);
  assert.equal(error.name, "WebGPUUnavailable");
  assert.match(error.message, /navigator\.gpu is missing; use Chrome or Edge 113\+ .* Firefox 141\+ on Windows/);
  assert.equal(explain(error), `WebGPUUnavailable: ${error.message}`);
});

// The service worker keeps the page working offline only if its list holds every module the
// page, its worker and <web-judge> import (e2e.test.mjs's offline test loads them from there).
test("the service worker's shell lists every module the page imports", () => {
  const shell = readFileSync(join(REPO, "www/sw.js"), "utf8");
  const listed = new Set([...shell.matchAll(/^\s*"\.\/([\w/.-]+)",$/gm)].map(([, path]) => path));
  const pending = ["app.js", "worker.js", "web-judge.js"];
  const imported = new Set();
  while (pending.length) {
    const module = pending.pop();
    if (imported.has(module)) continue;
    imported.add(module);
    const source = readFileSync(join(REPO, "www", module), "utf8");
    for (const [, path] of source.matchAll(/^(?:import|export)\b[^;]*?from "\.\/([\w/.-]+)";/gms)) pending.push(path);
  }
  assert.deepEqual([...imported].filter((module) => !listed.has(module)), []);
});

// Every entry names a GGUF on the Hub pinned to a commit (so its size and hash stay those of the
// file), a judge family as webjudge names them (src/format/judge_family.rs), its quantization as
// its file name says, and a source page on the Hub at that commit.
test("the catalog lists judge GGUFs on the Hub, each pinned, with its size, hash, family and source", () => {
  const catalog = JSON.parse(readFileSync(join(REPO, "www/catalog.json"), "utf8"));
  assert.match(catalog.retrieved, /^\d{4}-\d{2}-\d{2}$/);
  assert.ok(catalog.models.length > 0);
  const familySource = readFileSync(join(REPO, "src/format/judge_family.rs"), "utf8");
  const families = new Set([...familySource.matchAll(/JudgeFamily::\w+ => "(\w+)"/g)].map(([, name]) => name));
  assert.equal(families.size, 6);
  const keys = ["name", "family", "quantization", "url", "bytes", "sha256", "context", "licence", "source"];
  for (const model of catalog.models) {
    assert.deepEqual(Object.keys(model).sort(), [...keys].sort(), model.name);
    const url = /^https:\/\/huggingface\.co\/[\w.-]+\/[\w.-]+\/resolve\/([0-9a-f]{40})\/([\w.-]+\.gguf)$/.exec(model.url);
    assert.ok(url, `${model.name}: ${model.url} is no pinned Hub resolve URL of a .gguf`);
    const [, commit, file] = url;
    assert.ok(families.has(model.family), `${model.name}: family ${model.family}`);
    assert.ok(file.toLowerCase().includes(model.quantization.toLowerCase()), `${model.name}: ${model.quantization} in ${file}`);
    assert.ok(Number.isSafeInteger(model.bytes) && model.bytes > 1e8, `${model.name}: bytes ${model.bytes}`);
    assert.match(model.sha256, /^[0-9a-f]{64}$/);
    assert.ok(Number.isInteger(model.context) && model.context >= 2048, `${model.name}: context ${model.context}`);
    assert.ok(model.licence.length > 0);
    assert.ok(model.source.startsWith(`${model.url.split("/resolve/")[0]}/commit/${commit} `), `${model.name}: ${model.source}`);
  }
  assert.equal(new Set(catalog.models.map((model) => model.url)).size, catalog.models.length, "no entry twice");
});

test("the catalog menu's first fit estimate: the device's reported memory, and the storage that keeps it", () => {
  const gib = 2 ** 30;
  assert.deepEqual(fitEstimate(5e9, { deviceMemoryGiB: 4, freeStorageBytes: 1e12 }), {
    fits: false,
    note: "does not fit: more than this device's 4 GiB of memory",
  });
  // 8 GiB is as much as navigator.deviceMemory reports: the device may have more.
  assert.equal(fitEstimate(10 * gib, { deviceMemoryGiB: 8 }).fits, null);
  assert.deepEqual(fitEstimate(2e9, { deviceMemoryGiB: 4, freeStorageBytes: 1e9 }), {
    fits: null,
    note: "fit checked from its header when loaded; too large to keep here (1000.0 MB of storage free)",
  });
  assert.equal(fitEstimate(2e9).note, "fit checked from its header when loaded", "a browser that tells nothing");
  const model = { name: "Flow-Judge v0.1", quantization: "Q4_0", bytes: 2176177632 };
  assert.equal(menuText(model, fitEstimate(model.bytes)), "Flow-Judge v0.1, Q4_0: 2.18 GB download (fit checked from its header when loaded)");
});
