// The batch metrics' reference (tests/golden/autoj_metrics.json, from
// tools/reference/pairwise_eval.py, the one the native metrics are checked with) as the page's
// batch records, and the check of a pairwiseMetrics result against it. Used by units.test.mjs
// (the wasm export under Node) and e2e.test.mjs (the page's path: judge-client → worker → wasm).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const GOLDEN = JSON.parse(readFileSync(join(REPO, "tests/golden/autoj_metrics.json"), "utf8"));

// Auto-J's codes (0, 1, 2; -1 unparsed) as the page's verdicts.
const CODES = { 0: "response1", 1: "response2", 2: "tie" };
const SWAP = { response1: "response2", response2: "response1", tie: "tie" };
const verdict = (code) => CODES[code] ?? null;

// [{ name, records, expected }], records in batch-data.js's record shape.
export function goldenCases() {
  assert.equal(GOLDEN.cases.length, 3);
  return GOLDEN.cases.map(({ name, rows, expected }) => ({
    name,
    expected,
    records: rows.map((row) => ({
      scenario: row.scenario ?? null,
      label: verdict(row.label),
      winner: verdict(row.output),
      // The reference stores the verdict on the swapped order; the page's records map it back.
      ...("output_exchange" in row ? { swapped_winner_mapped: SWAP[verdict(row.output_exchange)] ?? null } : {}),
    })),
  }));
}

// `metrics`: what pairwiseMetrics returned for the case's records.
export function assertMatchesGolden(name, metrics, expected) {
  const overall = metrics.table.at(-1);
  assert.equal(overall.name, "Overall");
  const groups = metrics.table.slice(0, -1);
  assert.deepEqual(groups.map((f) => f.name), expected.group_order, `${name}: group order`);
  for (const [f, want] of [[overall, expected], ...groups.map((f) => [f, expected.groups[f.name]])]) {
    assert.equal(f.rows, want.rows, `${name} ${f.name} rows`);
    assert.ok(Math.abs(f.agreement - want.agreement) < 1e-9, `${name} ${f.name} agreement ${f.agreement} vs ${want.agreement}`);
    if (want.consistency === null) assert.equal(f.consistency, null, `${name} ${f.name} consistency`);
    else assert.ok(Math.abs(f.consistency - want.consistency) < 1e-9, `${name} ${f.name} consistency`);
  }
}
