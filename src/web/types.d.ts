/** Options of `Judge.load`. */
export interface LoadOptions {
  /** Called as shard bytes arrive or are read from the cache (at most about every MiB). */
  onProgress?: (loadedBytes: number, totalBytes: number) => void;
  /** KV cache positions (prompt + critique) per sequence; default and maximum: the model's context. */
  contextLength?: number;
  /** Sequences decoded together at most (a KV cache slot of `contextLength` each), 1 to 8; default:
   *  as many as keep the KV cache within the weights' size. Fewer are loaded when the adapter's
   *  buffer limits or memory hold fewer (`ModelInfo.batchSize` says how many). */
  batchSize?: number;
  /** Shards downloaded at once (and held in memory at once); default 3. */
  parallel?: number;
  /** Further attempts per shard after a network error or a bad hash; default 4. */
  retries?: number;
  /** A transfer that delivers no bytes for this many milliseconds is aborted and resumed (a
   *  stalled connection reports no error by itself); default 30000. */
  stallMs?: number;
  /** Use subgroup reductions where the adapter has them; default true. */
  subgroups?: boolean;
  /** How decode matvecs multiply x: "exact" (f32; the default) or "int8" (q4 and q8 weights
   *  times x quantized to 8 bits per block by WGSL's packed integer dot product: adds a small
   *  error, measured in docs/quantization.md; rejects with `InvalidInput` where the browser
   *  lacks `packed_4x8_integer_dot_product`). */
  matvec?: "exact" | "int8";
  /** A GGUF's expected sha256 (64 hex digits), checked over the whole file; wins over the host's
   *  `X-Linked-Etag`. For llama.cpp's split files, each part's in order, separated by commas. */
  sha256?: string;
  /** Aborting it cancels a GGUF file's load (the load rejects with `AbortError`, nothing of the
   *  file kept); a model directory's load refuses it (`InvalidInput`). */
  signal?: AbortSignal;
}

export type Order = "forward" | "swapped";
export type Winner = "response1" | "response2" | "tie";
/** A preference (Prometheus 2's, and Skywork-Critic's, CompassJudger-1's and Selene Mini's
 *  pairwise verdicts): response A (the first) or B; "tie" only where two orders disagree. */
export type Preference = "A" | "B";
export type Finish = "eos" | "length" | "cancelled";
export type JudgeFamily = "autoj" | "prometheus" | "skywork" | "selene" | "compassjudger" | "flowjudge";
/** The protocols `rubric` runs: one response, scored. */
export type ScoreProtocol =
  | "prometheus_absolute" | "prometheus_absolute_ref" | "selene_absolute" | "selene_absolute_ref"
  | "flowjudge" | "flowjudge_ref";
/** The protocols `classify` runs: Yes or No. */
export type AnswerProtocol = "selene_classification" | "selene_classification_ref";
/** The protocols `compare` runs: response A or B. */
export type PreferenceProtocol =
  | "prometheus_relative" | "prometheus_relative_ref" | "skywork" | "selene_pairwise" | "compassjudger"
  | "compassjudger_arena";
export type Protocol =
  | "pairwise_tie" | "single" | "zh_pairwise_tie" | "zh_single" | ScoreProtocol | PreferenceProtocol | AnswerProtocol;

/** prometheus-eval's built-in rubrics (`builtInRubrics()` gives their texts). */
export type BuiltInRubric = "helpfulness" | "harmlessness" | "honesty" | "factual_validity" | "reasoning";
/** A custom rubric's fields, as prometheus-eval's SCORE_RUBRIC_TEMPLATE names them. */
export interface ScoreRubric {
  criteria: string;
  score1_description: string;
  score2_description: string;
  score3_description: string;
  score4_description: string;
  score5_description: string;
}
/** Flow-Judge's preset metrics (flow-judge's, for a query and a reference answer). */
export type FlowPreset = "response_correctness_binary" | "response_correctness_3point" | "response_correctness_5point";
/** A Flow-Judge metric: criteria and the description of each score. */
export interface FlowMetric {
  criteria: string;
  rubric: { score: number; description: string }[];
}
/** A Yes/No rubric (Selene Mini's classification): the criteria and what each answer means. */
export interface BinaryRubric {
  criteria: string;
  yes_description: string;
  no_description: string;
}
/** What a rubric judge grades against. Prometheus 2: a built-in rubric by name, a rubric's text
 *  as the prompt shows it, or a custom rubric's fields. Selene Mini: the fields (its pairwise
 *  protocol also the criteria's text). Flow-Judge: a preset's name, a metric, or the fields as a
 *  1-5 metric; its classification a `BinaryRubric`. Skywork-Critic and CompassJudger-1 take none. */
export type Rubric = BuiltInRubric | FlowPreset | (string & {}) | ScoreRubric | FlowMetric | BinaryRubric;

/** Options of `pairwise` and `single` (Auto-J); `rubric` and `compare` take them without `language`. */
export interface JudgeOptions {
  /** Each newly completed piece of critique text, with the order it belongs to. */
  onToken?: (text: string, order: Order) => void;
  /** Aborting resolves the call with the partial critique and `finish: "cancelled"`. */
  signal?: AbortSignal;
  /** pairwise only: judge the pair in both orders (together, as one batch, when the model was
   *  loaded with `batchSize` 2 or more). */
  swap?: boolean;
  /** Critique tokens at most; default 1024 (Auto-J's; the CLI's for Prometheus too). */
  maxNewTokens?: number;
  /** Cut the responses from the middle when the input does not fit the context. */
  truncate?: boolean;
  /** Auto-J's English or Chinese prompt; default "en". */
  language?: "en" | "zh";
}

export interface PairInput { query: string; response1: string; response2: string }
export interface SingleInput { query: string; response: string }

/** Options of `rubric` (Prometheus 2's absolute grading, or the model's own: Selene Mini's,
 *  Flow-Judge's). */
export type RubricOptions = Omit<JudgeOptions, "language" | "swap"> & RubricJudge;
/** Options of `compare` (Prometheus 2's relative grading, or the model's own: Skywork-Critic's,
 *  CompassJudger-1's, Selene Mini's). */
export type CompareOptions = Omit<JudgeOptions, "language"> & RubricJudge;
interface RubricJudge {
  /** The judge whose protocol runs (not "autoj"); default: the model's family when it is a
   *  rubric judge, else "prometheus". */
  family?: Exclude<JudgeFamily, "autoj">;
}

/** The instruction (prometheus-eval's name; `query` works too). */
type Instruction = { instruction: string } | { query: string };
interface Graded {
  /** Required but for Skywork-Critic and CompassJudger-1, which take none. */
  rubric?: Rubric;
  /** A response that would score 5: picks the `_ref` protocol. */
  referenceAnswer?: string;
}
/** `rubric`'s input: one response to grade 1 to 5. */
export type RubricInput = Instruction & Graded & { response: string };
/** `classify`'s input: one response to answer Yes or No about (`rubric`: a `BinaryRubric`). */
export type ClassifyInput = Instruction & Graded & { response: string };
/** `compare`'s input: responses A and B (`response1`, `response2` work too). */
export type CompareInput = Instruction & Graded & ({ responseA: string; responseB: string } | { response1: string; response2: string });

/** Options of `judgeBatch`: `JudgeOptions` apply to every item, with per-item callbacks. */
export interface BatchOptions extends Omit<JudgeOptions, "onToken"> {
  /** Default: the first item's (`parseRows`' rows carry it; Auto-J's in `language`), else the
   *  model's judge family's for the first item's kind (Auto-J's for a model of no known family;
   *  Prometheus' `_ref` protocols when the first item has a reference answer). */
  protocol?: Protocol;
  /** Prometheus: the rubric of items without their own. */
  rubric?: Rubric;
  /** Each item's record as soon as it is judged (items finish in any order; `position` is the
   *  item's place in the array, `record.index` the row's own index), and for an item that could
   *  not be judged (`InputTooLong`: too long for the context) the typed error too. Items cut
   *  short by the signal are reported with `finish: "cancelled"`. */
  onJudged: (position: number, record: BatchRecord, error: Error | null) => void;
  /** Each newly completed piece of an item's critique, with the order it belongs to. */
  onToken?: (position: number, text: string, order: Order) => void;
}

/** Options of `generate`. */
export interface GenerateOptions {
  onToken?: (text: string) => void;
  signal?: AbortSignal;
  /** Tokens at most; default 256. */
  maxNewTokens?: number;
}

/** A judgement, with the field names of `webjudge judge --output`'s records (one Rust type
 *  serializes both), so results can be stored, exported and scored as they are. */
export interface Judgement {
  protocol: Protocol;
  critique: string;
  prompt_tokens: number;
  /** Prompt tokens taken from the KV cache instead of being computed again. */
  reused_tokens: number;
  generated_tokens: number;
  /** The responses were shortened from the middle to fit the context. */
  truncated: boolean;
  finish: Finish;
  time_to_first_token_s: number;
  prefill_tok_s: number;
  decode_tok_s: number;
}

export interface PairJudgement extends Judgement {
  /** As the model saw the pair; null when the critique names no decision. */
  winner: Winner | null;
}

export interface PairwiseResult extends PairJudgement {
  /** With `swap: true` only: the pair judged with the responses exchanged. */
  swapped?: PairJudgement;
  /** With `swap: true` only: the swapped verdict in the original order. */
  swapped_winner_mapped?: Winner | null;
  /** With `swap: true` only: both verdicts parsed and equal in the original order. */
  consistent?: boolean;
  /** With `swap: true` only: the agreed winner; a tie when the orders disagree. */
  combined?: Winner | null;
  /** With `swap: true` only: prompt tokens the swapped order took from the forward one. */
  shared_prefix_tokens?: number;
  /** With `swap: true` only: prefill time that sharing saved, at the forward prefill rate. */
  prefill_saved_s?: number;
}

export interface SingleResult extends Judgement {
  /** 1 to 10; null when the critique names no rating. */
  rating: number | null;
}

/** A score (`rubric`). */
export interface ScoreResult extends Judgement {
  protocol: ScoreProtocol;
  /** 1 to 5 (Flow-Judge: on its metric's scale); null when the feedback names no score. */
  score: number | null;
}

/** A Yes/No answer (`classify`). */
export interface AnswerResult extends Judgement {
  protocol: AnswerProtocol;
  /** null when the feedback names no answer. */
  answer: "Yes" | "No" | null;
}

export interface PreferenceJudgement extends Judgement {
  protocol: PreferenceProtocol;
  /** As the model saw the pair; null when the feedback names no choice; "tie" for
   *  compassjudger_arena's `[[A=B]]`. */
  winner: Preference | "tie" | null;
}

/** A preference (`compare`); the swap fields as for `PairwiseResult`. */
export interface CompareResult extends PreferenceJudgement {
  swapped?: PreferenceJudgement;
  swapped_winner_mapped?: Preference | null;
  consistent?: boolean;
  /** "tie" when the two orders disagree. */
  combined?: Preference | "tie" | null;
  shared_prefix_tokens?: number;
  prefill_saved_s?: number;
}

/** A row of a test-data file as `parseRows` reads it: a pair or a single response, and what
 *  identifies and labels it. */
export type BatchRow = (PairInput | SingleInput) & {
  /** 0-based among the file's non-empty lines. */
  index: number;
  scenario: string | null;
  /** The human label: Auto-J's 0, 1, 2 as names; Prometheus' "A"/"B" or score 1 to 5. */
  label: Winner | Preference | "Yes" | "No" | number | null;
  /** Prometheus rows: their own rubric and reference answer, where they have them. */
  rubric?: Rubric;
  reference_answer?: string;
  /** The protocol the row was read for (`judgeBatch` takes it). */
  protocol: Protocol;
};

export interface GenerateResult {
  /** Generated ids, the end-of-sequence id included when produced. */
  ids: number[];
  text: string;
  promptTokens: number;
  /** Prompt tokens taken from the KV cache (a common prefix with the previous call's). */
  reusedTokens: number;
  finish: Finish;
  timeToFirstTokenMs: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
}

/** Options of `profile`. */
export interface ProfileOptions {
  /** Prompt tokens prefilled before the timed steps (the KV cache position); default 256. */
  contextTokens?: number;
  /** Timed runs of each step, averaged after one warm-up run; default 3. */
  runs?: number;
  /** Also time a prefill chunk after the decode step; default true. */
  prefill?: boolean;
}

/** One kernel's share of a step: its dispatches with the same label together. */
export interface KernelTime {
  kernel: string;
  /** Fractions in prefill, where one dispatch serves the chunk's tokens. */
  callsPerToken: number;
  msPerToken: number;
  /** Share of the step's time, 0 to 1. */
  share: number;
  /** Weight GB read per second; null for kernels without weights. */
  weightGbPerSecond: number | null;
}

export interface Profile {
  adapter: string;
  /** GPU timestamps around each dispatch, or the wall-clock time of one submission each
   *  (an upper bound: the submission's fixed cost included). */
  clock: "timestamps" | "wall_per_submit";
  contextTokens: number;
  /** Sequences in the timed decode step: the loaded `batchSize` (one token each). */
  sequences: number;
  /** The kernels of one decode step, most expensive first. */
  decode: KernelTime[];
  /** Dispatches of the decode step. */
  decodeDispatches: number;
  /** Dispatches of a decode layer (the most any layer has). */
  decodeLayerDispatches: number;
  /** The kernels of one prefill chunk; null with `prefill: false`. */
  prefill: { tokens: number; kernels: KernelTime[] } | null;
  /** The same tables in markdown, as `webjudge bench --profile` prints them. */
  markdown: string;
}

export interface Architecture {
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  vocab: number;
  /** The model's own context; `ModelInfo.contextLength` is what was loaded. */
  context: number;
}

/** A judged row: a line of `webjudge judge --output` (which adds `run`, the options it was made
 *  with) and of the page's export, as `judgeBatch` reports it and `pairwiseMetrics` reads it. */
export type BatchRecord = {
  /** The row's `index` (an item without one: its position in the batch). */
  index: number;
  scenario: string | null;
  /** The human label; rows without one are not scored. */
  label: Winner | Preference | "Yes" | "No" | number | null;
} & (PairwiseResult | SingleResult | ScoreResult | CompareResult | {
  /** Why the row could not be judged: it is left out of every figure. */
  error: string;
});

/** One line of Auto-J's pairwise_eval table: a scenario group, or "Overall". */
export interface MetricsRow {
  name: string;
  /** Labelled rows scored. */
  rows: number;
  /** Percent of rows whose verdict matches the label (in both orders, for swapped rows). */
  agreement: number;
  /** Percent of swapped rows whose two verdicts agree; null when no row was swapped. */
  consistency: number | null;
  /** Rows with an unparsed verdict (in either order). */
  unparsed: number;
  /** Rows judged in both orders. */
  swapped: number;
}

export interface PairwiseMetrics {
  /** The groups that have rows, in Auto-J's order, then "Overall"; empty when no row has a label. */
  table: MetricsRow[];
  /** Rows without a label, left out of every figure. */
  unlabelled: number;
  /** Scored rows whose scenario is in no group (counted in "Overall" only). */
  ungrouped: number;
}

/** `preferenceMetrics`: Prometheus 2's relative grading against gold "A"/"B" labels. */
export interface PreferenceMetrics {
  /** Labelled rows scored. */
  rows: number;
  /** Percent of them whose verdict (the combined one, for rows judged in both orders) is the label. */
  accuracy: number;
  /** Percent of rows judged in both orders whose two verdicts agree; null when none was. */
  consistency: number | null;
  unparsed: number;
  unlabelled: number;
}

/** `scoreMetrics`: Prometheus 2's absolute grading against gold scores (as scipy computes them). */
export interface ScoreMetrics {
  /** Rows with both a gold and a parsed score: the correlations' sample. */
  rows: number;
  /** null when undefined: fewer than two rows, or one side constant. */
  pearson: number | null;
  spearman: number | null;
  kendall_tau_b: number | null;
  /** Labelled rows whose score did not parse. */
  unparsed: number;
  unlabelled: number;
}

export interface ModelInfo {
  /** The model directory's absolute URL, ending in "/"; a GGUF file's absolute URL (split files:
   *  the first part's). */
  modelUrl: string;
  /** A GGUF file's sha256 (lowercase hex), of the bytes the model was made from (split files:
   *  each part's in order, separated by commas); null for a model directory (its manifest's
   *  hashes verify each shard). */
  sha256: string | null;
  /** `sha256` matched the `sha256` option or the host's (`X-Linked-Etag`, or for a Hub
   *  `resolve` link the Hub API's `lfs.oid`); false: no hash was offered, and `sha256` is only
   *  what this browser computed. */
  sha256Verified: boolean;
  adapter: string;
  subgroups: boolean;
  /** How the decode matvecs multiply x (the `matvec` load option). */
  matvec: "exact" | "int8";
  /** KV cache positions per sequence. */
  contextLength: number;
  /** Sequences decoded together: `swap` judges a pair's two orders at once from 2, and
   *  `judgeBatch` runs this many at a time. */
  batchSize: number;
  /** Prompt tokens per prefill submission: 512 on a GPU, 128 on a CPU adapter such as
   *  SwiftShader (fewer where the adapter's buffers hold fewer). */
  prefillChunk: number;
  weightBytes: number;
  kvCacheBytes: number;
  /** No shard was downloaded: every one came from the cache. */
  fromCache: boolean;
  downloadedBytes: number;
  /** The judge family the model was converted as (its manifest's `judge`), whose protocols it
   *  serves: `pairwise`/`single` for Auto-J, `rubric`/`compare` for Prometheus; the other
   *  family's calls reject with `WrongJudge`. null: no known judge, every protocol runs. */
  judge: JudgeFamily | null;
  architecture: Architecture;
}

/** A GGUF model kept in the origin's Origin Private File System (`Judge.keptModels()`). */
export interface KeptModel {
  /** The GGUF file's absolute URL (split files: the first part's), as `Judge.load` and
   *  `Judge.clearCache` take it. */
  url: string;
  /** What the kept files (the repacked shards, tokenizer, manifest) take in the origin's storage. */
  bytes: number;
  /** The GGUF file's sha256 (lowercase hex; split files: each part's in order, separated by
   *  commas). */
  sha256: string;
  /** `sha256` matched the host's or the page's when the file was downloaded; false: it is only
   *  what this browser computed. */
  sha256Verified: boolean;
}

/** `defaults()`: the settings a call gets when it names none (the CLI's defaults too). */
export interface Defaults {
  /** `maxNewTokens` of the judging calls: 1024 (Auto-J's own limit). */
  maxNewTokens: number;
  /** `maxNewTokens` of `generate`: 256. */
  generateMaxNewTokens: number;
}

/** One of `protocols()`: a protocol and the `Judge` call that runs it. */
export interface ProtocolInfo {
  name: Protocol;
  family: JudgeFamily;
  pairwise: boolean;
  /** Shows the judge a reference answer (the `_ref` protocols, picked when one is given). */
  reference: boolean;
  /** Auto-J's: the `language` option that picks it; null for Prometheus'. */
  language: "en" | "zh" | null;
  method: "pairwise" | "single" | "rubric" | "compare" | "classify";
}

declare global {
  /** Explicit resource management's symbol, for the `[Symbol.dispose]()` that wasm-bindgen
   *  declares on `Judge`: declared here too so that these declarations check under TypeScript's
   *  default libs, not only with `lib: ["esnext"]` (the same declaration as that lib's). */
  interface SymbolConstructor {
    readonly dispose: unique symbol;
  }
}
