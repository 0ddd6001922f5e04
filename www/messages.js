// What each engine error means for the person in front of the page, and the display helpers
// the page and <web-judge> share. The engine's own message carries the numbers (bytes, tokens,
// limits); the hint says what to do about it. WebGPUUnavailable has no hint here: its message
// already says which browsers have WebGPU and how to turn it on (src/web/error.rs, WEBGPU_HINT).

const HINTS = {
  DoesNotFit:
    "The model does not fit this GPU's limits. Try a smaller context length, a smaller or more strongly " +
    "quantized model, or a machine with more GPU memory.",
  NetworkError:
    "Downloading the model failed. Check the model URL (a directory made by webjudge convert, with its " +
    "manifest.json) and that the server is up; loading again resumes where it stopped.",
  CorruptShard:
    "A downloaded shard kept failing its checksum, so it was not used. The files on the server may be " +
    "incomplete: convert or copy the model again.",
  DeviceLost: "The GPU was reset or taken away (driver update, sleep, another tab). Load the model again.",
  InputTooLong:
    "The input and the critique do not fit the model's context. Tick \"Shorten long responses\" to cut " +
    "them from the middle, or use shorter texts.",
  Unloaded: "The model is no longer loaded. Load it again.",
  InvalidInput: "Some input is missing or malformed.",
  ModelError: "The model directory could not be used (manifest, tokenizer or weights).",
};

// "Name: message" plus the hint for that name, as plain text.
export function explain(error) {
  const name = error?.name ?? "Error";
  const message = error?.message ?? String(error);
  const hint = HINTS[name];
  return hint ? `${name}: ${message}\n${hint}` : `${name}: ${message}`;
}

export function megabytes(bytes) {
  return (bytes / 1e6).toFixed(1);
}

// "12.3 of 98.4 MB, about 7 s left", the ETA from the average rate since `startedAt`.
export function progressText(loaded, total, startedAt) {
  const seconds = (performance.now() - startedAt) / 1000;
  let text = `${megabytes(loaded)} of ${megabytes(total)} MB`;
  if (loaded > 0 && loaded < total && seconds > 0.5) {
    const left = ((total - loaded) * seconds) / loaded;
    text += `, about ${duration(left)} left`;
  }
  return text;
}

export function duration(seconds) {
  if (seconds < 90) return `${Math.ceil(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// The verdict as a short label and a class for its colour.
export function verdictBadge(result) {
  if (result.finish === "cancelled" || result.swapped?.finish === "cancelled") return { text: "cancelled", kind: "none" };
  if ("rating" in result) {
    return result.rating === null
      ? { text: "no rating found", kind: "none" }
      : { text: `rating ${result.rating} / 10`, kind: "rating" };
  }
  // Selene Mini's classification.
  if ("answer" in result) {
    return result.answer === null ? { text: "no answer found", kind: "none" } : { text: result.answer, kind: "rating" };
  }
  // A rubric judge's score.
  if ("score" in result) {
    return result.score === null
      ? { text: "no score found", kind: "none" }
      : // Flow-Judge's scale is its metric's (0-1, 1-3, 1-5); the others' 1-5.
        { text: `score ${result.score}${result.protocol.startsWith("flowjudge") ? "" : " / 5"}`, kind: "rating" };
  }
  // Auto-J's winner, or a preference ("A", "B"; "tie" when two orders disagree, or for
  // compassjudger_arena's [[A=B]]).
  const winner = result.combined === undefined ? result.winner : result.combined;
  const verdicts = {
    response1: ["Response 1 wins", "response1"],
    response2: ["Response 2 wins", "response2"],
    A: ["Response A wins", "response1"],
    B: ["Response B wins", "response2"],
    tie: ["Tie", "tie"],
  };
  const [text, kind] = verdicts[winner] ?? ["no decision found", "none"];
  if (result.consistent === false) return { text: `${text} (orders disagree)`, kind: "inconsistent" };
  return { text, kind };
}

// Two significant digits below 10 tok/s (software GPUs manage a fraction of one), one decimal above.
function rate(tokensPerSecond) {
  return tokensPerSecond < 10 ? tokensPerSecond.toPrecision(2) : tokensPerSecond.toFixed(1);
}

// Time to first token and speeds, from a judgement's timing fields.
export function statsText(result) {
  const parts = [];
  if (result.time_to_first_token_s != null) parts.push(`first token ${result.time_to_first_token_s.toFixed(2)} s`);
  if (result.prefill_tok_s) parts.push(`prefill ${rate(result.prefill_tok_s)} tok/s`);
  if (result.decode_tok_s) parts.push(`decode ${rate(result.decode_tok_s)} tok/s`);
  parts.push(`${result.prompt_tokens} prompt tokens`);
  if (result.reused_tokens) parts.push(`${result.reused_tokens} reused`);
  parts.push(`${result.generated_tokens} generated`);
  if (result.truncated) parts.push("responses shortened");
  if (result.finish === "length") parts.push("stopped at the token limit");
  if (result.finish === "cancelled") parts.push("cancelled");
  return parts.join(" · ");
}
