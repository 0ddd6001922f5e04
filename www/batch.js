// Batch mode: every row of a test-data JSONL file (Auto-J's, Prometheus 2's by prometheus-eval's
// field names, or a newer judge's by its reference's: docs/judges.md) judged in this browser, several rows at a time (the engine's
// batching: as many as the model was loaded for, each swapped pair as two sequences), with
// progress and ETA, a results table in input order, Auto-J's agreement/consistency where rows
// have labels, cancel, and export as JSONL (the CLI's records) or CSV.

import { download, el } from "./dom.js";
import { toCsv, toJsonl } from "./batch-data.js";
import { pairwiseMetrics, parseRows, preferenceMetrics, protocols, scoreMetrics } from "./judge-client.js";
import { duration } from "./messages.js";

const $ = (id) => document.getElementById(id);

// Cells show the start of long texts; the full critique is one click away.
const PREVIEW_CHARS = 120;

// Protocols by name → { family, pairwise, … }, from the wasm once.
let protocolTable = null;
async function protocolInfo(name) {
  protocolTable ??= protocols().then((list) => new Map(list.map((info) => [info.name, info])));
  return (await protocolTable).get(name);
}

export function setupBatch({ ensureJudge, readOptions, showError, clearError, setFamily }) {
  let rows = [];
  // By input position; rows finish out of order, so positions not yet judged are empty.
  let records = [];
  let controller = null;

  $("batch-file").addEventListener("change", async () => {
    clearError();
    rows = [];
    $("batch-start").disabled = true;
    const file = $("batch-file").files[0];
    if (!file) return;
    try {
      rows = await parseRows(await file.text());
    } catch (error) {
      $("batch-summary").textContent = "";
      showError(Object.assign(error, { message: `${file.name}: ${error.message}` }));
      return;
    }
    const labelled = rows.filter((r) => r.label !== null).length;
    const protocol = rows[0].protocol;
    // A rubric judge's rows show the rubric for those without their own.
    const { family } = await protocolInfo(protocol);
    if (family !== "autoj") setFamily(family);
    $("batch-summary").textContent =
      `${file.name}: ${rows.length} ${kind(rows[0])} rows (${protocol})` +
      (labelled ? `, ${labelled} with a human label` : "");
    $("batch-start").disabled = false;
  });

  $("batch-start").addEventListener("click", async () => {
    clearError();
    const limit = Number($("batch-limit").value) || rows.length;
    const todo = rows.slice(0, limit);
    const options = readOptions();
    const swap = options.swap && kind(todo[0]) === "pairwise";
    // The rows' protocol (parseRows read them for it; judgeBatch takes it from the first),
    // Auto-J's in the language chosen; Prometheus' with the rubric chosen for rows without one.
    const { family } = await protocolInfo(todo[0].protocol);
    const protocolOptions = family === "autoj" ? { language: options.language } : { rubric: options.rubric };
    records = [];
    controller = new AbortController();
    setRunning(true);
    $("results").tBodies[0].replaceChildren();
    $("results").hidden = false;
    $("metrics").hidden = true;
    $("batch-progress").hidden = false;
    const startedAt = performance.now();
    let done = 0;
    showProgress(done, todo.length, startedAt);
    // The rows being judged stream into the live preview, a line per row and order.
    const live = new Map();
    const liveText = (position, order) => {
      const key = `${position} ${order}`;
      if (!live.has(key)) {
        const text = document.createTextNode("");
        const label = `row ${todo[position].index + 1}${order === "swapped" ? ", swapped" : ""}: `;
        const line = el("div", {}, label, text);
        $("batch-current").append(line);
        live.set(key, { line, text });
      }
      return live.get(key).text;
    };
    try {
      const judge = await ensureJudge();
      await judge.judgeBatch(
        todo,
        {
          onToken: (position, text, order) => liveText(position, order).appendData(text),
          // A row that cannot be judged (too long for the context) comes with its `error`.
          onJudged: (position, judged) => {
            for (const order of ["forward", "swapped"]) {
              live.get(`${position} ${order}`)?.line.remove();
              live.delete(`${position} ${order}`);
            }
            // A row cut short by Cancel is not a judgement.
            if (judged.finish === "cancelled" || judged.swapped?.finish === "cancelled") return;
            records[position] = judged;
            insertInOrder($("results").tBodies[0], position, resultRow(todo[position], judged));
            showProgress(++done, todo.length, startedAt);
          },
          signal: controller.signal,
          maxNewTokens: options.maxNewTokens,
          truncate: options.truncate,
          ...protocolOptions,
          swap,
        },
      );
    } catch (error) {
      // A lost device or an unloaded model stops the batch.
      showError(error);
    } finally {
      controller = null;
      $("batch-current").replaceChildren();
      // Before the buttons come back, so a finished batch shows its figures.
      await showMetrics(judgedRecords(), todo[0].protocol).catch(showError);
      setRunning(false);
    }
  });

  $("batch-cancel").addEventListener("click", () => controller?.abort());
  $("export-jsonl").addEventListener("click", () => download(toJsonl(judgedRecords()), "webjudge-results.jsonl", "application/jsonl"));
  $("export-csv").addEventListener("click", () => download(toCsv(judgedRecords()), "webjudge-results.csv", "text/csv"));

  // The records of the rows judged, in input order.
  function judgedRecords() {
    return records.filter(Boolean);
  }

  function setRunning(running) {
    const none = judgedRecords().length === 0;
    $("batch-start").disabled = running || rows.length === 0;
    $("batch-file").disabled = running;
    $("batch-cancel").disabled = !running;
    $("export-jsonl").disabled = running || none;
    $("export-csv").disabled = running || none;
  }
}

// Puts a result row at its input position among those already shown.
function insertInOrder(body, position, tr) {
  tr.dataset.position = String(position);
  const next = [...body.rows].find((other) => Number(other.dataset.position) > position);
  body.insertBefore(tr, next ?? null);
}

function showProgress(done, total, startedAt) {
  $("batch-bar").max = total;
  $("batch-bar").value = done;
  let text = `${done} of ${total} rows`;
  if (done > 0 && done < total) {
    const seconds = ((performance.now() - startedAt) / 1000 / done) * (total - done);
    text += `, about ${duration(seconds)} left`;
  }
  $("batch-progress-text").textContent = text;
}

function kind(row) {
  return row.response1 === undefined ? "single" : "pairwise";
}

function preview(text) {
  return text.length > PREVIEW_CHARS ? text.slice(0, PREVIEW_CHARS) + "…" : text;
}

function resultRow(row, judged) {
  // Auto-J's winner or rating, the rubric judges' preference, score or Yes/No (null: unparsed).
  const verdict =
    judged.error ?? ["winner", "rating", "score", "answer"].map((key) => judged[key]).find((v) => v !== undefined) ?? null;
  const swapped =
    judged.swapped_winner_mapped === undefined
      ? ""
      : `${judged.swapped_winner_mapped ?? "none"}${judged.consistent ? "" : " (flips)"}`;
  // The full row, folded away: what the judge saw and what it said.
  const texts = Object.entries({ Query: row.query, "Response 1": row.response1,
    "Response 2": row.response2, Response: row.response, Critique: judged.critique });
  const details = el(
    "details",
    {},
    el("summary", {}, preview(judged.critique ?? "")),
    ...texts.filter(([, text]) => text !== undefined).flatMap(([title, text]) => [
      el("h3", {}, title),
      el("pre", { className: "critique" }, text),
    ]),
  );
  return el(
    "tr",
    { className: judged.error ? "failed" : "" },
    el("td", {}, String(row.index + 1)),
    el("td", {}, row.scenario ?? ""),
    el("td", { title: row.query }, preview(row.query)),
    el("td", {}, row.label ?? ""),
    el("td", {}, verdict === null ? "none" : String(verdict)),
    el("td", {}, swapped),
    el("td", {}, details),
  );
}

// Auto-J's agreement and consistency, from the Rust pairwise_eval (the wasm pairwiseMetrics,
// run in the judge worker); the rubric judges' accuracy or correlations likewise.
async function showMetrics(records, protocol) {
  $("rubric-metrics").hidden = true;
  const { family, method } = await protocolInfo(protocol);
  if (family !== "autoj") {
    $("metrics").hidden = true;
    // Yes/No answers are scored as choices, by accuracy (preferenceMetrics reads them).
    if (records.length > 0) await showRubricMetrics(records, method === "compare" || method === "classify");
    return;
  }
  const figures = records.length === 0 ? [] : (await pairwiseMetrics(records)).table;
  $("metrics").hidden = figures.length === 0;
  const percent = (x) => (x === null ? "–" : x.toFixed(2));
  $("metrics").tBodies[0].replaceChildren(
    ...figures.map((f) =>
      el("tr", {}, el("td", {}, f.name), el("td", {}, String(f.rows)), el("td", {}, percent(f.agreement)), el("td", {}, percent(f.consistency))),
    ),
  );
}

// One line: accuracy for preferences and Yes/No answers, correlations for scores (rows with a gold
// label only; none: nothing shown).
async function showRubricMetrics(records, byAccuracy) {
  const m = byAccuracy ? await preferenceMetrics(records) : await scoreMetrics(records);
  if (m.rows === 0) return;
  const figure = (x) => (x === null ? "undefined" : x.toFixed(4));
  $("rubric-metrics").textContent = byAccuracy
    ? `Accuracy ${m.accuracy.toFixed(2)}% over ${m.rows} labelled rows (${m.unparsed} unparsed)` +
      (m.consistency === null ? "" : `, consistency ${m.consistency.toFixed(2)}%`)
    : `Over ${m.rows} rows with gold and parsed scores: Pearson ${figure(m.pearson)}, Spearman ` +
      `${figure(m.spearman)}, Kendall tau-b ${figure(m.kendall_tau_b)} (${m.unparsed} unparsed)`;
  $("rubric-metrics").hidden = false;
}
