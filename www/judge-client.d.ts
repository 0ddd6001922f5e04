// Declarations of judge-client.js (the npm package's main entry, `webjudge`): the wasm API of
// pkg/webjudge.d.ts run in a worker, so every call is asynchronous, `info()` included.

import type {
  AnswerResult,
  BatchOptions,
  BatchRecord,
  BatchRow,
  BuiltInRubric,
  ClassifyInput,
  CompareInput,
  CompareOptions,
  CompareResult,
  Defaults,
  FlowPreset,
  GenerateOptions,
  GenerateResult,
  JudgeFamily,
  JudgeOptions,
  KeptModel,
  LoadOptions,
  ModelInfo,
  PairInput,
  PairwiseMetrics,
  PairwiseResult,
  PreferenceMetrics,
  ProtocolInfo,
  RubricInput,
  RubricOptions,
  ScoreMetrics,
  ScoreResult,
  SingleInput,
  SingleResult,
} from "./pkg/webjudge.js";

export type * from "./pkg/webjudge.js";

/** A model loaded in a worker, shared by everything on the page that loads the same URL. */
export declare class Judge {
  private constructor();
  /** The first load of a URL decides its options (for a GGUF, its `signal` cancels the shared
   *  download); later loads join it. */
  static load(modelUrl: string, options?: LoadOptions): Promise<Judge>;
  static clearCache(modelUrl?: string): Promise<void>;
  /** The GGUF models kept in the origin's Origin Private File System. */
  static keptModels(): Promise<KeptModel[]>;
  pairwise(input: PairInput, options?: JudgeOptions): Promise<PairwiseResult>;
  single(input: SingleInput, options?: JudgeOptions): Promise<SingleResult>;
  /** Prometheus 2's absolute grading (or a Selene Mini or Flow-Judge model's): one response
   *  against a rubric, 1 to 5 (Flow-Judge: the metric's scale). */
  rubric(input: RubricInput, options?: RubricOptions): Promise<ScoreResult>;
  /** Prometheus 2's relative grading (or a Skywork-Critic, CompassJudger-1 or Selene Mini
   *  model's): the better of two responses. */
  compare(input: CompareInput, options?: CompareOptions): Promise<CompareResult>;
  /** Selene Mini's classification: Yes or No for one response against criteria. */
  classify(input: ClassifyInput, options?: RubricOptions): Promise<AnswerResult>;
  /** Judges many items together (up to the load's batch size at a time); each row's record
   * reaches `options.onJudged` as it finishes, in any order. */
  judgeBatch(items: (PairInput | SingleInput | RubricInput | CompareInput | BatchRow)[], options: BatchOptions): Promise<void>;
  generate(prompt: string, options?: GenerateOptions): Promise<GenerateResult>;
  info(): Promise<ModelInfo>;
  /** Unloads the model for everything on the page that shares it, and stops its worker. */
  unload(): Promise<void>;
}

/** Auto-J's pairwise metrics of batch records, computed in a worker by the wasm export. */
export declare function pairwiseMetrics(records: BatchRecord[]): Promise<PairwiseMetrics>;

/** Prometheus 2's relative-grading accuracy of batch records, computed in a worker by the wasm export. */
export declare function preferenceMetrics(records: BatchRecord[]): Promise<PreferenceMetrics>;

/** Prometheus 2's absolute-grading correlations of batch records, computed in a worker by the wasm export. */
export declare function scoreMetrics(records: BatchRecord[]): Promise<ScoreMetrics>;

/** The rows of a test-data JSONL file (Auto-J's or Prometheus 2's), read in a worker by the wasm export. */
export declare function parseRows(text: string): Promise<BatchRow[]>;

/** A judge's built-in rubrics with their texts (by default prometheus-eval's; Flow-Judge's preset
 *  metrics for "flowjudge"), from the wasm export. */
export declare function builtInRubrics(family?: JudgeFamily): Promise<{ name: BuiltInRubric | FlowPreset; text: string }[]>;

/** The settings a call gets when it names none, from the wasm export. */
export declare function defaults(): Promise<Defaults>;

/** Every protocol with the `Judge` method (and Auto-J's `language`) that runs it, from the wasm export
 *  (in the worker of `modelUrl`'s model when given, started for it if none runs). */
export declare function protocols(modelUrl?: string): Promise<ProtocolInfo[]>;
