// Batch input and output: Auto-J test-data rows in, the native `webjudge judge --output`
// record shape out (snake_case, same fields), so results from the page and the CLI can be
// compared or scored by the same scripts.

// Auto-J's label encoding (testdata_pairwise.jsonl): 0 = response 1 better, 1 = response 2, 2 = tie.
const LABELS = ["response1", "response2", "tie"];

// One JSON object per line; blank lines skipped. Pairwise rows have "prompt", "response 1",
// "response 2" (and "label", "scenario"); single rows have "prompt", "response". Every row of a
// file must be of one kind. Throws with the line number on the first bad line.
export function parseRows(text) {
  const rows = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].trim()) continue;
    const where = `line ${i + 1}`;
    let object;
    try {
      object = JSON.parse(lines[i]);
    } catch (error) {
      throw new Error(`${where} is not JSON: ${error.message}`);
    }
    rows.push(row(object, where, rows.length));
  }
  if (rows.length === 0) throw new Error("the file has no rows");
  if (rows.some((r) => r.kind !== rows[0].kind)) throw new Error("the file mixes pairwise and single rows");
  return rows;
}

function row(object, where, index) {
  const text = (key) => {
    const value = object[key];
    if (typeof value !== "string") throw new Error(`${where}: field "${key}" must be a string`);
    return value;
  };
  if (object === null || typeof object !== "object") throw new Error(`${where} is not a JSON object`);
  const scenario = typeof object.scenario === "string" ? object.scenario : null;
  if ("response 1" in object || "response 2" in object) {
    const label = object.label ?? null;
    if (label !== null && LABELS[label] === undefined) {
      throw new Error(`${where}: "label" must be 0 (response 1 better), 1 (response 2), 2 (tie) or null`);
    }
    return {
      kind: "pairwise",
      index,
      scenario,
      label: label === null ? null : LABELS[label],
      input: { query: text("prompt"), response1: text("response 1"), response2: text("response 2") },
    };
  }
  return { kind: "single", index, scenario, label: null, input: { query: text("prompt"), response: text("response") } };
}

// The native batch record for one judged row (src/cli/judge.rs), or { error } when it failed.
export function record(row, result, error) {
  const base = { index: row.index, scenario: row.scenario, label: row.label };
  if (error) return { ...base, error: `${error.name}: ${error.message}` };
  const out = { ...base, ...judgement(result) };
  if (result.swapped) {
    out.swapped = judgement(result.swapped);
    out.swapped_winner_mapped = result.swapped.winnerMapped ?? null;
    out.consistent = result.consistent;
    out.combined = result.combined ?? null;
  }
  return out;
}

function judgement(result) {
  const verdict = "rating" in result ? { rating: result.rating ?? null } : { winner: result.winner ?? null };
  return {
    ...verdict,
    critique: result.critique,
    prompt_tokens: result.promptTokens,
    reused_tokens: result.reusedTokens,
    generated_tokens: result.generatedTokens,
    truncated: result.truncated,
    finish: result.finish,
    time_to_first_token_s: result.timeToFirstTokenMs / 1000,
    prefill_tok_s: result.prefillTokensPerSecond,
    decode_tok_s: result.decodeTokensPerSecond,
  };
}

export function toJsonl(records) {
  return records.map((r) => JSON.stringify(r) + "\n").join("");
}

const CSV_COLUMNS = [
  "index",
  "scenario",
  "label",
  "winner",
  "rating",
  "swapped_winner_mapped",
  "consistent",
  "finish",
  "prompt_tokens",
  "generated_tokens",
  "decode_tok_s",
  "error",
  "critique",
];

export function toCsv(records) {
  const lines = [CSV_COLUMNS.join(",")];
  for (const r of records) lines.push(CSV_COLUMNS.map((c) => csvCell(r[c])).join(","));
  return lines.join("\r\n") + "\r\n";
}

// RFC 4180 quoting; text that a spreadsheet would run as a formula gets a leading apostrophe.
function csvCell(value) {
  if (value === undefined || value === null) return "";
  let text = String(value);
  if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = "'" + text;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}
