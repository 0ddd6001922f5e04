// Declarations of web-judge.js (the npm package's `webjudge/web-judge`): importing it defines
// the <web-judge> element; its attributes are listed at the top of web-judge.js.

import type { Judge } from "./judge-client.js";
import type { CompareResult, PairwiseResult, ScoreResult, SingleResult } from "./pkg/webjudge.js";

/** The element's own methods (the class itself is not exported). */
export interface WebJudgeElement extends HTMLElement {
  /** Judges the element's item, as a click on its Judge button does. */
  judge(): Promise<void>;
  /** Loads the element's model ahead of the first judgement (shared with every element naming it). */
  load(): Promise<Judge>;
}

declare global {
  interface HTMLElementTagNameMap {
    "web-judge": WebJudgeElement;
  }
  interface HTMLElementEventMap {
    /** A judgement finished: the result of `pairwise`, `single`, `rubric` or `compare`. */
    judged: CustomEvent<PairwiseResult | SingleResult | ScoreResult | CompareResult>;
    /** Loading or judging failed, with the Error (its `name` as in the API reference: the package's API.md, docs/web-api.md here). */
    "judge-error": CustomEvent<Error>;
  }
}
