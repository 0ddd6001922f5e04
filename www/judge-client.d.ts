// Declarations of judge-client.js (the npm package's main entry, `webjudge`): the wasm API of
// pkg/webjudge.d.ts run in a worker, so every call is asynchronous, `info()` included.

import type {
  BatchRecord,
  GenerateOptions,
  GenerateResult,
  JudgeOptions,
  LoadOptions,
  ModelInfo,
  PairwiseMetrics,
  PairwiseResult,
  SingleResult,
} from "./pkg/webjudge.js";

export type * from "./pkg/webjudge.js";

/** A model loaded in a worker, shared by everything on the page that loads the same URL. */
export declare class Judge {
  private constructor();
  /** The first load of a URL decides its options; later loads join it. */
  static load(modelUrl: string, options?: LoadOptions): Promise<Judge>;
  static clearCache(modelUrl?: string): Promise<void>;
  pairwise(input: { query: string; response1: string; response2: string }, options?: JudgeOptions): Promise<PairwiseResult>;
  single(input: { query: string; response: string }, options?: JudgeOptions): Promise<SingleResult>;
  generate(prompt: string, options?: GenerateOptions): Promise<GenerateResult>;
  info(): Promise<ModelInfo>;
  /** Unloads the model for everything on the page that shares it, and stops its worker. */
  unload(): Promise<void>;
}

/** Auto-J's pairwise metrics of batch records, computed in a worker by the wasm export. */
export declare function pairwiseMetrics(records: BatchRecord[]): Promise<PairwiseMetrics>;
