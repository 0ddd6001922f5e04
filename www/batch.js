// Batch mode: every row of an Auto-J test-data JSONL file judged in this browser, one after the
// other, with progress and ETA, a results table, Auto-J's agreement/consistency where rows have
// labels, cancel, and export as JSONL (the CLI's record shape) or CSV.

import { download, el } from "./dom.js";
import { parseRows, record, toCsv, toJsonl } from "./batch-data.js";
import { pairwiseMetrics } from "./judge-client.js";
import { duration } from "./messages.js";

const $ = (id) => document.getElementById(id);

// Cells show the start of long texts; the full critique is one click away.
const PREVIEW_CHARS = 120;

export function setupBatch({ ensureJudge, readOptions, showError, clearError }) {
  let rows = [];
  let records = [];
  let controller = null;

  $("batch-file").addEventListener("change", async () => {
    clearError();
    rows = [];
    $("batch-start").disabled = true;
    const file = $("batch-file").files[0];
    if (!file) return;
    try {
      rows = parseRows(await file.text());
    } catch (error) {
      $("batch-summary").textContent = "";
      showError(Object.assign(error, { name: "InvalidInput", message: `${file.name}: ${error.message}` }));
      return;
    }
    const labelled = rows.filter((r) => r.label !== null).length;
    $("batch-summary").textContent =
      `${file.name}: ${rows.length} ${rows[0].kind} rows` + (labelled ? `, ${labelled} with a human label` : "");
    $("batch-start").disabled = false;
  });

  $("batch-start").addEventListener("click", async () => {
    clearError();
    const limit = Number($("batch-limit").value) || rows.length;
    const todo = rows.slice(0, limit);
    const options = readOptions();
    const swap = options.swap && todo[0].kind === "pairwise";
    records = [];
    controller = new AbortController();
    setRunning(true);
    $("results").tBodies[0].replaceChildren();
    $("results").hidden = false;
    $("metrics").hidden = true;
    $("batch-progress").hidden = false;
    const startedAt = performance.now();
    showProgress(0, todo.length, startedAt);
    try {
      const judge = await ensureJudge();
      for (const row of todo) {
        if (controller.signal.aborted) break;
        // The row being judged streams into the live preview.
        const live = document.createTextNode("");
        $("batch-current").replaceChildren(live);
        const settings = {
          onToken: (text) => live.appendData(text),
          signal: controller.signal,
          maxNewTokens: options.maxNewTokens,
          truncate: options.truncate,
          language: options.language,
        };
        let result = null;
        let failure = null;
        try {
          result =
            row.kind === "pairwise"
              ? await judge.pairwise(row.input, { ...settings, swap })
              : await judge.single(row.input, settings);
        } catch (error) {
          // A row that cannot be judged (too long for the context) is recorded; anything else
          // (a lost device, an unloaded model) stops the batch.
          if (error.name !== "InputTooLong" && error.name !== "InvalidInput") throw error;
          failure = error;
        }
        // A row cut short by Cancel is not a judgement.
        if (result && (result.finish === "cancelled" || result.swapped?.finish === "cancelled")) break;
        const judged = record(row, result, failure);
        records.push(judged);
        $("results").tBodies[0].append(resultRow(row, judged));
        showProgress(records.length, todo.length, startedAt);
      }
    } catch (error) {
      showError(error);
    } finally {
      controller = null;
      $("batch-current").replaceChildren();
      // Before the buttons come back, so a finished batch shows its figures.
      await showMetrics(records).catch(showError);
      setRunning(false);
    }
  });

  $("batch-cancel").addEventListener("click", () => controller?.abort());
  $("export-jsonl").addEventListener("click", () => download(toJsonl(records), "webjudge-results.jsonl", "application/jsonl"));
  $("export-csv").addEventListener("click", () => download(toCsv(records), "webjudge-results.csv", "text/csv"));

  function setRunning(running) {
    $("batch-start").disabled = running || rows.length === 0;
    $("batch-file").disabled = running;
    $("batch-cancel").disabled = !running;
    $("export-jsonl").disabled = running || records.length === 0;
    $("export-csv").disabled = running || records.length === 0;
  }
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

function preview(text) {
  return text.length > PREVIEW_CHARS ? text.slice(0, PREVIEW_CHARS) + "…" : text;
}

function resultRow(row, judged) {
  const verdict = judged.error ?? judged.winner ?? (judged.rating !== undefined ? judged.rating : null);
  const swapped =
    judged.swapped_winner_mapped === undefined
      ? ""
      : `${judged.swapped_winner_mapped ?? "none"}${judged.consistent ? "" : " (flips)"}`;
  // The full row, folded away: what the judge saw and what it said.
  const texts = Object.entries({ Query: row.input.query, "Response 1": row.input.response1,
    "Response 2": row.input.response2, Response: row.input.response, Critique: judged.critique });
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
    el("td", { title: row.input.query }, preview(row.input.query)),
    el("td", {}, row.label ?? ""),
    el("td", {}, verdict === null ? "none" : String(verdict)),
    el("td", {}, swapped),
    el("td", {}, details),
  );
}

// Auto-J's agreement and consistency, from the Rust pairwise_eval (the wasm pairwiseMetrics,
// run in the judge worker).
async function showMetrics(records) {
  const figures = records.length === 0 ? [] : (await pairwiseMetrics(records)).table;
  $("metrics").hidden = figures.length === 0;
  const percent = (x) => (x === null ? "–" : x.toFixed(2));
  $("metrics").tBodies[0].replaceChildren(
    ...figures.map((f) =>
      el("tr", {}, el("td", {}, f.name), el("td", {}, String(f.rows)), el("td", {}, percent(f.agreement)), el("td", {}, percent(f.consistency))),
    ),
  );
}
