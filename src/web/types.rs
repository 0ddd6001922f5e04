//! What the JavaScript API returns, as serde types (camelCase, `null` for a missing
//! verdict), and their TypeScript declarations, which wasm-bindgen writes into
//! `webjudge.d.ts` next to the generated `Judge` class. docs/web-api.md documents both.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::engine::bench::Profile;
use crate::engine::{Finish, Generation};
use crate::judge::autoj_metrics::{GroupMetrics, Metrics};
use crate::judge::dataset::Row;
use crate::judge::{JudgeFamily, Protocol};
use crate::kernels::MatvecPath;

/// The declarations, kept beside this file as TypeScript; tests/web.rs checks every result
/// the API returns against them, so a field added here must be declared there.
#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = include_str!("types.d.ts");

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateResult {
    pub ids: Vec<u32>,
    pub text: String,
    pub prompt_tokens: usize,
    pub reused_tokens: usize,
    pub finish: Finish,
    pub time_to_first_token_ms: f64,
    pub prefill_tokens_per_second: f64,
    pub decode_tokens_per_second: f64,
}

impl GenerateResult {
    pub fn from_generation(g: &Generation) -> Self {
        Self {
            ids: g.ids.clone(),
            text: g.text.clone(),
            prompt_tokens: g.prompt_tokens,
            reused_tokens: g.reused_tokens,
            finish: g.finish,
            time_to_first_token_ms: g.prefill_seconds * 1000.0,
            prefill_tokens_per_second: g.prefill_tokens_per_second(),
            decode_tokens_per_second: g.decode_tokens_per_second(),
        }
    }
}

#[derive(Serialize)]
pub struct ProfileResult {
    #[serde(flatten)]
    pub profile: Profile,
    pub markdown: String,
}

impl ProfileResult {
    pub fn new(profile: Profile) -> Self {
        Self { markdown: profile.markdown(), profile }
    }
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchitectureInfo {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub context: usize,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    pub model_url: String,
    /// A GGUF model's sha256 (a split model's parts', in order, separated by commas; `None`
    /// for a model directory, whose shards the manifest's hashes verify).
    pub sha256: Option<String>,
    /// Whether `sha256` matched the host's or the page's, rather than being only what this
    /// browser computed.
    pub sha256_verified: bool,
    pub adapter: String,
    pub subgroups: bool,
    /// How the decode matvecs multiply x: "exact" or "int8".
    pub matvec: MatvecPath,
    pub context_length: usize,
    pub batch_size: usize,
    /// Prompt tokens per prefill submission (the adapter's: `LoadOptions::for_adapter`).
    pub prefill_chunk: usize,
    pub weight_bytes: u64,
    pub kv_cache_bytes: u64,
    pub from_cache: bool,
    pub downloaded_bytes: u64,
    pub judge: Option<JudgeFamily>,
    pub architecture: ArchitectureInfo,
}

/// A GGUF model kept in the Origin Private File System, as `keptModels` lists it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptModel {
    pub url: String,
    /// What its files take in the origin's storage.
    pub bytes: u64,
    /// The GGUF model's sha256 (a split model's parts', separated by commas), and whether it
    /// matched the host's or the page's.
    pub sha256: String,
    pub sha256_verified: bool,
}

/// A `parseRows` row: the row and the protocol it was read for.
#[derive(Serialize)]
pub struct BatchRow<'a> {
    #[serde(flatten)]
    pub row: &'a Row,
    pub protocol: Protocol,
}

/// A built-in rubric (or Flow-Judge preset metric) for `builtInRubrics`.
#[derive(Serialize)]
pub struct BuiltInRubric {
    pub name: String,
    pub text: String,
}

#[derive(Serialize)]
pub struct MetricsRow {
    pub name: String,
    #[serde(flatten)]
    pub figures: GroupMetrics,
}

#[derive(Serialize)]
pub struct PairwiseMetrics {
    pub table: Vec<MetricsRow>,
    pub unlabelled: usize,
    pub ungrouped: usize,
}

impl PairwiseMetrics {
    pub fn new(metrics: &Metrics) -> Self {
        let table = if metrics.rows == 0 {
            Vec::new()
        } else {
            metrics.table_rows().map(|(name, figures)| MetricsRow { name: name.to_string(), figures }).collect()
        };
        Self { table, unlabelled: metrics.unlabelled, ungrouped: metrics.ungrouped }
    }
}

/// Plain JS objects and arrays (not Maps), `null` for `None`.
pub fn to_js<T: Serialize>(value: &T) -> JsValue {
    value.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).expect("result types serialize to JS")
}
