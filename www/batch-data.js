// Batch output: the records judgeBatch reports (the Rust record type, `webjudge judge
// --output`'s fields, so results from the page and the CLI can be compared or scored by the
// same scripts) as JSONL or CSV. Rows come in through the wasm parseRows (judge-client.js),
// the CLI's own Auto-J test-data reader.

export function toJsonl(records) {
  return records.map((r) => JSON.stringify(r) + "\n").join("");
}

const CSV_COLUMNS = [
  "index",
  "scenario",
  "label",
  "winner",
  "rating",
  "score",
  "answer",
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
