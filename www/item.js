// Judging one item: a pair (Auto-J's pairwise, Prometheus 2's relative grading, the newer judges'
// A-or-B) or one response (Auto-J's single rating, Prometheus 2's, Selene's or Flow-Judge's
// score), the critique streamed as it is
// generated, then the verdict badge and timings; the judgement record downloads as JSON. Text
// goes in through text nodes only.

import { download, el } from "./dom.js";
import { PAIRWISE, SINGLE } from "./examples.js";
import { statsText, verdictBadge } from "./messages.js";

const $ = (id) => document.getElementById(id);

export function setupItem({ ensureJudge, readOptions, showError, clearError }) {
  let controller = null;
  // The last judgement, as the API returned it (the CLI's record fields).
  let last = null;

  for (const example of [...PAIRWISE, ...SINGLE]) {
    const pairwise = "response1" in example;
    const button = el("button", { type: "button", className: "secondary" }, example.title);
    button.addEventListener("click", () => fill(example, pairwise));
    $("examples").append(button);
  }

  $("item-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const pairwise = document.body.dataset.mode === "pairwise";
    const options = readOptions();
    controller = new AbortController();
    last = null;
    setRunning(true);
    const forward = startOutput("critique", pairwise && options.swap);
    const swapped = $("critique-swapped").firstChild;
    try {
      const judge = await ensureJudge();
      const onToken = (text, order) => (order === "swapped" ? swapped : forward).appendData(text);
      const common = {
        onToken,
        signal: controller.signal,
        maxNewTokens: options.maxNewTokens,
        truncate: options.truncate,
      };
      const query = $("query").value;
      const responses = pairwise
        ? { response1: $("response1").value, response2: $("response2").value }
        : { response: $("response").value };
      let result;
      if (options.family !== "autoj") {
        // An empty (or hidden: a judge that takes none) reference answer is none.
        const reference = $("reference-answer").checkVisibility() ? $("reference-answer").value : "";
        const input = { query, ...responses, rubric: options.rubric, ...(reference ? { referenceAnswer: reference } : {}) };
        const rubricJudge = { ...common, family: options.family };
        // A Yes/No rubric asks for Selene Mini's classification.
        const classify = !pairwise && typeof options.rubric === "object" && "yes_description" in options.rubric;
        result = pairwise
          ? await judge.compare(input, { ...rubricJudge, swap: options.swap })
          : classify
            ? await judge.classify(input, rubricJudge)
            : await judge.rubric(input, rubricJudge);
      } else {
        const autoj = { ...common, language: options.language };
        result = pairwise
          ? await judge.pairwise({ query, ...responses }, { ...autoj, swap: options.swap })
          : await judge.single({ query, ...responses }, autoj);
      }
      last = result;
      showResult(result);
    } catch (error) {
      showError(error);
    } finally {
      controller = null;
      setRunning(false);
    }
  });

  $("cancel").addEventListener("click", () => controller?.abort());
  $("download-result").addEventListener("click", () => {
    if (last) download(JSON.stringify(last, null, 2) + "\n", "webjudge-judgement.json", "application/json");
  });
}

function fill(example, pairwise) {
  document.querySelector(`.tab[data-tab="${pairwise ? "pairwise" : "single"}"]`).click();
  $("language").value = example.language;
  $("query").value = example.query;
  if (pairwise) {
    $("response1").value = example.response1;
    $("response2").value = example.response2;
  } else {
    $("response").value = example.response;
  }
}

function setRunning(running) {
  $("judge").disabled = running;
  $("cancel").disabled = !running;
}

// Empties the output and returns the text node the forward critique streams into; the swapped
// critique gets its own node and section.
function startOutput(id, withSwapped) {
  const node = document.createTextNode("");
  $(id).replaceChildren(node);
  $("critique-swapped").replaceChildren(document.createTextNode(""));
  $("stats").textContent = "";
  $("stats-swapped").textContent = "";
  $("verdict").hidden = true;
  $("critique-heading").textContent = withSwapped ? "Critique with the responses as given" : "Critique";
  $("swapped-output").hidden = !withSwapped;
  $("output").hidden = false;
  return node;
}

function showResult(result) {
  const badge = verdictBadge(result);
  $("verdict").textContent = badge.text;
  $("verdict").dataset.kind = badge.kind;
  $("verdict").hidden = false;
  $("stats").textContent = statsText(result);
  if (result.swapped) $("stats-swapped").textContent = statsText(result.swapped);
}
