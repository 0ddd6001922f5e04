// The benchmarks' prompt text, cycled to the prompt length: the same as `webjudge bench`'s
// (src/engine/bench.rs, PROMPT_TEXT).
export const PROMPT_TEXT =
  "Evaluate the two responses to the user's query. Compare their helpfulness, accuracy, depth and " +
  "clarity, point out the flaws of each, and then give a final decision.";
