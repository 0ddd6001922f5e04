// Declarations of judge-client.js (the npm package's main entry, `webjudge`): the wasm API of
// pkg/webjudge.d.ts run in a worker, so every call is asynchronous, `info()` included.

import type {
  BatchOptions,
  BatchRecord,
  BatchRow,
  GenerateOptions,
  GenerateResult,
  JudgeOptions,
  LoadOptions,
  ModelInfo,
  PairInput,
  PairwiseMetrics,
  PairwiseResult,
  SingleInput,
  SingleResult,
} from "./pkg/webjudge.js";

export type * from "./pkg/webjudge.js";

/** A model loaded in a worker, shared by everything on the page that loads the same URL. */
export declare class Judge {
  private constructor();
  /** The first load of a URL decides its options; later loads join it. */
  static load(modelUrl: string, options?: LoadOptions): Promise<Judge>;
  static clearCache(modelUrl?: string): Promise<void>;
  pairwise(input: PairInput, options?: JudgeOptions): Promise<PairwiseResult>;
  single(input: SingleInput, options?: JudgeOptions): Promise<SingleResult>;
  /** Judges many items together (up to the load's batch size at a time); each row's record
   * reaches `options.onJudged` as it finishes, in any order. */
  judgeBatch(items: (PairInput | SingleInput | BatchRow)[], options: BatchOptions): Promise<void>;
  generate(prompt: string, options?: GenerateOptions): Promise<GenerateResult>;
  info(): Promise<ModelInfo>;
  /** Unloads the model for everything on the page that shares it, and stops its worker. */
  unload(): Promise<void>;
}

/** Auto-J's pairwise metrics of batch records, computed in a worker by the wasm export. */
export declare function pairwiseMetrics(records: BatchRecord[]): Promise<PairwiseMetrics>;

/** The rows of an Auto-J test-data JSONL file, read in a worker by the wasm export. */
export declare function parseRows(text: string): Promise<BatchRow[]>;
