// <web-judge>: a compact judge (Auto-J, Prometheus 2 or a newer judge) for docs and tutorials. One
// script include:
//
//   <script type="module" src="web-judge.js"></script>
//   <web-judge mode="pairwise" query="…" response1="…" response2="…" max-new-tokens="256"></web-judge>
//   <web-judge mode="single" query="…" response="…" model="https://host/models/autoj/"></web-judge>
//   <web-judge protocol="prometheus_absolute" rubric="helpfulness" query="…" response="…"></web-judge>
//
// Attributes: model (the model directory URL, default ./models/default/ relative to the page, or
// a GGUF file's URL: a Hugging Face Hub .../resolve/main/NAME.gguf link, or any part's of
// llama.cpp's split files), sha256 (a GGUF's expected sha256, where its host publishes none the
// page can read; for split files each part's, in order, separated by commas),
// mode (pairwise | single: Auto-J's protocols), or protocol (any protocol's name:
// prometheus_absolute grades one response, prometheus_relative compares two; skywork,
// compassjudger and selene_pairwise compare two, selene_absolute and flowjudge grade one), query
// (or instruction), response1 and response2 or response, max-new-tokens, language (en | zh,
// Auto-J); for Prometheus 2 rubric (a built-in rubric's name: helpfulness, harmlessness, honesty,
// factual_validity, reasoning; or a rubric's text), for Selene Mini's pairwise protocol its
// criteria, for Flow-Judge a preset metric's name, or any rubric as JSON (starting with "{": a
// rubric's fields, a Flow-Judge metric, a Yes/No rubric for selene_classification), and
// reference-answer (optional; the _ref protocols need it). The model loads on the first click of Judge; elements naming the same
// model share one worker, one download and one copy in GPU memory (judge-client.js). When a
// judgement finishes the element fires a "judged" event whose detail is the result; a failure
// fires "judge-error" with the Error. element.load() loads the model ahead of the first click.

import { Judge, protocols } from "./judge-client.js";
import { el } from "./dom.js";
import { explain, progressText, statsText, verdictBadge } from "./messages.js";

const DEFAULT_MODEL = "./models/default/";

// The protocols by name (the `protocol` attribute), from the wasm once: each with the Judge
// method that runs it, whether it judges a pair, and Auto-J's language. The API picks
// Prometheus' _ref protocols itself when a reference answer is given. Asked of the worker of
// the first element's model, which its loads then share.
let protocolTable = null;
function protocolsByName(modelUrl) {
  protocolTable ??= protocols(modelUrl).then(
    (list) => new Map(list.map((protocol) => [protocol.name, protocol])),
    (error) => {
      protocolTable = null;
      throw error;
    },
  );
  return protocolTable;
}

// A constructed stylesheet: unlike a <style> element it is not blocked by a strict style-src.
const sheet = new CSSStyleSheet();
sheet.replaceSync(`
  :host { display: block; border: 1px solid #d6dbe1; border-radius: 6px; padding: 0.75rem; margin: 1rem 0;
          font: 15px/1.45 system-ui, sans-serif; }
  [hidden] { display: none !important; }
  .label { font-weight: 600; font-size: 0.85em; color: #5d6875; margin-top: 0.4rem; }
  .text { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0.1rem 0 0; }
  .bar { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; margin-top: 0.6rem; }
  button { font: inherit; padding: 0.3rem 0.8rem; border-radius: 4px; border: 1px solid #2457c5;
           background: #2457c5; color: white; cursor: pointer; }
  button.cancel { background: transparent; color: #2457c5; }
  .badge { font-weight: 600; padding: 0.1rem 0.6rem; border-radius: 999px; border: 2px solid currentColor; }
  .badge[data-kind="response1"], .badge[data-kind="response2"], .badge[data-kind="rating"] { color: #1f7a3d; }
  .badge[data-kind="tie"], .badge[data-kind="inconsistent"] { color: #9a5b00; }
  .badge[data-kind="none"] { color: #5d6875; }
  .critique { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0.6rem 0 0; padding: 0.5rem;
              background: rgba(127, 127, 127, 0.08); border-radius: 4px; font: inherit; }
  .muted { color: #5d6875; font-size: 0.85em; }
  .error { color: #b3261e; white-space: pre-wrap; }
`);

class WebJudge extends HTMLElement {
  static observedAttributes = [
    "mode", "protocol", "query", "instruction", "response", "response1", "response2", "rubric", "reference-answer",
  ];

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    root.adoptedStyleSheets = [sheet];
    this.inputs = el("div");
    this.button = el("button", { type: "button", part: "button" }, "Judge");
    this.cancelButton = el("button", { type: "button", className: "cancel", hidden: true }, "Cancel");
    this.progress = el("progress", { max: 1, value: 0, hidden: true });
    this.status = el("span", { className: "muted" });
    this.badge = el("span", { className: "badge", hidden: true });
    this.critique = el("pre", { className: "critique", hidden: true });
    this.stats = el("div", { className: "muted" });
    this.error = el("div", { className: "error", hidden: true });
    root.append(
      this.inputs,
      el("div", { className: "bar" }, this.button, this.cancelButton, this.badge, this.progress, this.status),
      this.critique,
      this.stats,
      this.error,
    );
    this.button.addEventListener("click", () => this.judge());
    this.cancelButton.addEventListener("click", () => this.controller?.abort());
  }

  connectedCallback() {
    this.renderInputs();
  }

  attributeChangedCallback() {
    if (this.isConnected) this.renderInputs();
  }

  // The `protocol` attribute's entry in the wasm's table; null without one (Auto-J, by mode and
  // language), undefined for an unknown name.
  async protocol() {
    const name = this.getAttribute("protocol");
    return name === null ? null : (await protocolsByName(this.model)).get(name);
  }

  get model() {
    return this.getAttribute("model") || DEFAULT_MODEL;
  }

  pairwise(protocol) {
    return protocol?.pairwise ?? this.getAttribute("mode") !== "single";
  }

  // The item being judged, shown as text so a docs reader sees what the judge sees (as Auto-J's
  // until the protocol table arrives, if it cannot: judging then says why).
  async renderInputs() {
    const turn = (this.renders = (this.renders ?? 0) + 1);
    const protocol = await this.protocol().catch(() => null);
    if (turn !== this.renders) return; // a later change renders instead
    const autoj = !protocol || protocol.family === "autoj";
    const [first, second] = autoj ? ["Response 1", "Response 2"] : ["Response A", "Response B"];
    const fields = [
      [autoj ? "Query" : "Instruction", this.hasAttribute("query") ? "query" : "instruction"],
      ...(this.pairwise(protocol) ? [[first, "response1"], [second, "response2"]] : [["Response", "response"]]),
      ...(!autoj && this.hasAttribute("rubric") ? [["Rubric", "rubric"]] : []),
      ...(!autoj && this.hasAttribute("reference-answer") ? [["Reference answer", "reference-answer"]] : []),
    ];
    this.inputs.replaceChildren(
      ...fields.flatMap(([title, name]) => [
        el("div", { className: "label" }, title),
        el("div", { className: "text" }, this.getAttribute(name) ?? ""),
      ]),
    );
  }

  // The Judge call for the element's attributes: [method, input, options without callbacks].
  async call() {
    const protocol = await this.protocol();
    if (protocol === undefined) {
      const names = [...(await protocolsByName(this.model)).keys()].join(", ");
      throw Object.assign(new Error(`protocol must be one of ${names}`), { name: "InvalidInput" });
    }
    const pairwise = this.pairwise(protocol);
    const text = (name) => this.getAttribute(name) ?? "";
    const query = this.getAttribute("query") ?? text("instruction");
    const responses = pairwise
      ? { response1: text("response1"), response2: text("response2") }
      : { response: text("response") };
    const maxNewTokens = Number(this.getAttribute("max-new-tokens")) || undefined;
    if (!protocol || protocol.family === "autoj") {
      const language = protocol?.language ?? (this.getAttribute("language") === "zh" ? "zh" : "en");
      return [pairwise ? "pairwise" : "single", { query, ...responses }, { maxNewTokens, language }];
    }
    const reference = this.getAttribute("reference-answer");
    if (protocol.reference && reference === null) {
      const error = new Error(`protocol ${this.getAttribute("protocol")} needs a reference-answer attribute`);
      throw Object.assign(error, { name: "InvalidInput" });
    }
    // The rubric attribute as given (JSON when it starts with "{": a rubric's fields, a
    // Flow-Judge metric, a Yes/No rubric, as the CLI's --rubric): the API names the built-ins
    // when it is missing.
    const rubric = this.getAttribute("rubric");
    const input = { query, ...responses, rubric: rubric?.trimStart().startsWith("{") ? JSON.parse(rubric) : (rubric ?? undefined) };
    if (reference !== null) input.referenceAnswer = reference;
    return [protocol.method, input, { maxNewTokens, family: protocol.family }];
  }

  async judge() {
    this.controller = new AbortController();
    this.button.disabled = true;
    this.cancelButton.hidden = false;
    this.error.hidden = true;
    this.badge.hidden = true;
    this.stats.textContent = "";
    const text = document.createTextNode("");
    this.critique.replaceChildren(text);
    try {
      const [method, input, options] = await this.call();
      const judge = await this.load();
      this.critique.hidden = false;
      this.status.textContent = "judging…";
      const result = await judge[method](input, {
        ...options,
        onToken: (piece) => text.appendData(piece),
        signal: this.controller.signal,
      });
      const badge = verdictBadge(result);
      this.badge.textContent = badge.text;
      this.badge.dataset.kind = badge.kind;
      this.badge.hidden = false;
      this.stats.textContent = statsText(result);
      this.status.textContent = "";
      this.dispatchEvent(new CustomEvent("judged", { detail: result }));
    } catch (error) {
      this.status.textContent = "";
      this.error.textContent = explain(error);
      this.error.hidden = false;
      this.dispatchEvent(new CustomEvent("judge-error", { detail: error }));
    } finally {
      this.controller = null;
      this.button.disabled = false;
      this.cancelButton.hidden = true;
    }
  }

  // Loads the model, shared with every element on the page naming it, showing the progress.
  // Judge calls it; a page may call it early so the model is ready before the first click.
  async load() {
    const startedAt = performance.now();
    this.status.textContent = "loading the model…";
    try {
      const judge = await Judge.load(this.model, {
        sha256: this.getAttribute("sha256") || undefined,
        onProgress: (loaded, total) => {
          this.progress.hidden = false;
          this.progress.max = total || 1;
          this.progress.value = loaded;
          this.status.textContent = progressText(loaded, total, startedAt);
        },
      });
      this.status.textContent = "";
      return judge;
    } finally {
      this.progress.hidden = true;
    }
  }
}

customElements.define("web-judge", WebJudge);
