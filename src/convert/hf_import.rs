//! Hugging Face import: a LLaMA (or LLaMA-compatible Yi, Mistral or Qwen2) checkpoint directory with
//! `config.json`, `tokenizer.json` (or only a SentencePiece `tokenizer.model`, converted by
//! [`crate::tokenizer::tokenizer_json_from_sentencepiece`]) and safetensors weights (or,
//! when there are none, PyTorch `.bin` weights, read by [`super::torch_pickle`]) becomes
//! a model directory.
//!
//! Unlike the GGUF importer this one quantizes: 2-D weights (embedding and lm_head
//! included) become the chosen [`Quant`] with the chosen group size, 1-D norm weights
//! stay f32 (the RMSNorm kernel reads f32).
//!
//! AutoGPTQ checkpoints (`quantize_config.json`, or a `gptq` `quantization_config`) hold
//! their linear layers as 4-bit `qweight`/`qzeros`/`scales`/`g_idx` tensors, decoded by
//! [`super::gptq`]. With a q4 choice (the default), a layer whose group size suits the
//! engine keeps its codes and scales (group size its own, not `--group`); an act-order
//! layer's columns are written sorted by group, with its input order (one `u32` tensor per
//! distinct order among the weights sharing an input: q/k/v, gate/up) for the engine to
//! gather the input by. Any other layer, or every layer when another quant is chosen, is
//! dequantized and requantized with the chosen quant and group, and
//! [`HfConversion::gptq_requantized`] says which and why.
//!
//! Qwen2 (and Qwen2.5) is the LLaMA layer with biases on the q, k and v projections
//! (`self_attn.{q,k,v}_proj.bias`, kept as f32 vectors, q's and k's permuted like their
//! weights' rows); its `sliding_window` counts only where `use_sliding_window` is set.
//!
//! Mistral is the LLaMA layer with the same tensor names; its sliding-window attention is
//! matched by the engine's full attention only within the window, so a `sliding_window`
//! shorter than the recorded context is refused ([`recorded_context`]).
//!
//! Phi-3 (`Phi3ForCausalLM`) is the LLaMA layer with fused projections, `qkv_proj` and
//! `gate_up_proj`, split here into the engine's tensors as row ranges of the checkpoint's
//! ([`fused_parts`]); its LongRoPE runs with the short factors within the original context,
//! to which the recorded context is capped ([`LongRopeCap`]).
//!
//! RoPE convention: Hugging Face's `rotate_half` rotates the pair `(x[i], x[i + d/2])`
//! of each head of dimension `d`; the engine rotates adjacent pairs `(x[2i], x[2i+1])`
//! (`shaders/rope.wgsl`). Attention scores are dot products over whole heads, so
//! permuting the Q and K rows of every head the same way gives identical results. This
//! importer is the one place the convention is settled for Hugging Face checkpoints:
//! row `j` of an engine head of `q_proj`/`k_proj` is Hugging Face row [`rope_source_row`]`(j)`
//! of the same head (for `i < d/2`, engine rows `2i` and `2i+1` are Hugging Face rows `i`
//! and `i + d/2`), which is the permutation llama.cpp's converter applies.

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::checkpoint::{Checkpoint, CheckpointError, CheckpointTensor};
use super::gptq::{self, GptqConfig, GptqError, GptqPlan};
use super::imatrix::{self, ImatrixError, ImportanceMatrix};
use super::import::OutputDir;
use super::io_error_at;
use super::quant::{Encoding, MixContext, Quant, WeightRole};
use super::safetensors::{self, SafetensorsError};
use super::torch_pickle::{self, TorchError};
use super::writer::ModelWriter;
use crate::format::checked_file::{self, ReadError};
use crate::format::manifest::{DEFAULT_SHARD_BYTES, TOKENIZER_FILE};
use crate::format::schema::{expected_tensors, input_order_name, GlobalWeight, LayerBias, LayerWeight, StackedWeight};
use crate::format::{Architecture, ChatTemplate, DType, Llama3RopeScaling, Manifest};
use crate::import::{
    chat_template_policy, longrope_attention_factor, recorded_context, rope_source_row, special_token_strings,
    ConvertError, JudgeChoice, LongRopeCap, TemplateText, MIN_SHARD_BYTES,
};

#[derive(Clone, Debug)]
pub struct HfOptions {
    /// How 2-D weights are stored.
    pub quant: Quant,
    /// Values per quantization group (a multiple of 32; ignored for f16/f32).
    pub group: usize,
    pub max_shard_bytes: u64,
    pub overwrite: bool,
    /// The context to record instead of `max_position_embeddings` (smaller; see
    /// [`recorded_context`]).
    pub context: Option<usize>,
    /// The judge family the manifest names.
    pub judge: JudgeChoice,
    /// Calibration text: when given, an importance matrix is collected from it and weighs
    /// the quantizers' searches ([`super::imatrix`]).
    pub imatrix_text: Option<String>,
    /// A chat template to record instead of the checkpoint's (`--chat-template FILE`).
    pub chat_template: Option<TemplateText>,
}

impl Default for HfOptions {
    fn default() -> Self {
        Self {
            quant: Quant::Q4,
            group: 32,
            max_shard_bytes: DEFAULT_SHARD_BYTES,
            overwrite: false,
            context: None,
            judge: JudgeChoice::Infer,
            imatrix_text: None,
            chat_template: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Safetensors(#[from] SafetensorsError),
    #[error(transparent)]
    Torch(#[from] TorchError),
    #[error(transparent)]
    Gptq(#[from] GptqError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("config.json: {0}")]
    Config(String),
    #[error("{0}")]
    Tokenizer(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("tensor {0} is missing")]
    MissingTensor(String),
    #[error("tensor {0} is not part of the llama architecture")]
    UnexpectedTensor(String),
    #[error("tensor {name}: shape {found:?}, the architecture needs {expected:?}")]
    Shape { name: String, found: Vec<usize>, expected: Vec<usize> },
    #[error("tensor {name}: {problem}")]
    Quant { name: String, problem: String },
    #[error(transparent)]
    Imatrix(#[from] ImatrixError),
}

impl From<std::io::Error> for HfError {
    fn from(error: std::io::Error) -> Self {
        HfError::Convert(ConvertError::Io(error))
    }
}

/// The engine's GGUF-style name of a Hugging Face tensor; `Ok(None)` for tensors that
/// carry nothing the engine needs (precomputed rotary frequencies).
pub fn engine_name(hf: &str) -> Option<Option<String>> {
    let global = match hf {
        "model.embed_tokens.weight" => Some(GlobalWeight::TokenEmbedding),
        "model.norm.weight" => Some(GlobalWeight::OutputNorm),
        "lm_head.weight" => Some(GlobalWeight::Output),
        _ => None,
    };
    if let Some(global) = global {
        return Some(Some(global.name().into()));
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let bias = match rest {
        "self_attn.q_proj.bias" => Some(LayerBias::Q),
        "self_attn.k_proj.bias" => Some(LayerBias::K),
        "self_attn.v_proj.bias" => Some(LayerBias::V),
        _ => None,
    };
    if let Some(bias) = bias {
        return Some(Some(bias.name(layer)));
    }
    let weight = match rest {
        "self_attn.q_proj.weight" => LayerWeight::AttnQ,
        "self_attn.k_proj.weight" => LayerWeight::AttnK,
        "self_attn.v_proj.weight" => LayerWeight::AttnV,
        "self_attn.o_proj.weight" => LayerWeight::AttnOutput,
        "mlp.gate_proj.weight" => LayerWeight::FfnGate,
        "mlp.up_proj.weight" => LayerWeight::FfnUp,
        "mlp.down_proj.weight" => LayerWeight::FfnDown,
        // Yi's first release named its norms ln1 / ln2.
        "input_layernorm.weight" | "ln1.weight" => LayerWeight::AttnNorm,
        "post_attention_layernorm.weight" | "ln2.weight" => LayerWeight::FfnNorm,
        "self_attn.rotary_emb.inv_freq" => return Some(None),
        _ => return None,
    };
    Some(Some(weight.name(layer)))
}

fn read_json(path: &Path) -> Result<Option<Value>, HfError> {
    let Some(text) = checked_file::read_to_string_if_present(path, checked_file::JSON_METADATA)? else {
        return Ok(None);
    };
    serde_json::from_str(&text).map(Some).map_err(|e| HfError::Config(format!("{}: invalid JSON: {e}", path.display())))
}

fn config_usize(config: &Value, key: &str) -> Result<Option<usize>, HfError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| HfError::Config(format!("{key} is not a non-negative integer"))),
    }
}

fn required(config: &Value, key: &str) -> Result<usize, HfError> {
    config_usize(config, key)?.ok_or_else(|| HfError::Config(format!("{key} is missing")))
}

fn config_f32(config: &Value, key: &str) -> Result<Option<f32>, HfError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(|v| Some(v as f32)).ok_or_else(|| HfError::Config(format!("{key} is not a number"))),
    }
}

fn token_ids(config: &Value, key: &str) -> Result<Vec<u32>, HfError> {
    let bad = || HfError::Config(format!("{key} is neither a token id nor a list of them"));
    let id = |v: &Value| v.as_u64().and_then(|v| u32::try_from(v).ok()).ok_or_else(bad);
    match config.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(ids)) => ids.iter().map(id).collect(),
        Some(v) => Ok(vec![id(v)?]),
    }
}

/// Reads the hyper-parameters of a LLaMA-family `config.json` (Phi-3's included). `tied`
/// says whether the checkpoint lacks `lm_head.weight`; `tokenizer_config` supplies
/// `add_bos_token`. A LongRoPE model's `context_length` is its extended one; the
/// [`LongRopeCap`] says what it may record.
pub fn architecture(
    config: &Value,
    tied: bool,
    tokenizer_config: Option<&Value>,
) -> Result<(Architecture, Option<LongRopeCap>), HfError> {
    let model_type = config.get("model_type").and_then(Value::as_str).unwrap_or_default();
    let architectures: Vec<&str> =
        config.get("architectures").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let qwen2 = model_type == "qwen2" || architectures.contains(&"Qwen2ForCausalLM");
    let phi3 = model_type == "phi3" || architectures.contains(&"Phi3ForCausalLM");
    let known = qwen2
        || phi3
        || ["llama", "Yi", "yi", "mistral"].contains(&model_type)
        || architectures.iter().any(|a| ["LlamaForCausalLM", "YiForCausalLM", "MistralForCausalLM"].contains(a));
    if !known {
        return Err(HfError::Unsupported(format!(
            "model_type {model_type:?} / architectures {architectures:?}: webjudge converts LlamaForCausalLM, \
             MistralForCausalLM, Qwen2ForCausalLM, Phi3ForCausalLM and Yi checkpoints"
        )));
    }
    if let Some(act) = config.get("hidden_act").and_then(Value::as_str).filter(|act| *act != "silu") {
        return Err(HfError::Unsupported(format!("hidden_act {act:?}: webjudge's feed-forward is SwiGLU (silu)")));
    }
    // transformers 5 writes `rope_parameters` (`rope_theta`, `rope_type` and the scaling's
    // parameters) instead of a top-level `rope_theta` and `rope_scaling`.
    let rope = config.get("rope_parameters").filter(|r| !r.is_null());
    let scaling = config.get("rope_scaling").filter(|s| !s.is_null()).or(rope);
    for place in [Some(config), scaling] {
        if let Some(partial) = place.map(|p| config_f32(p, "partial_rotary_factor")).transpose()?.flatten() {
            if partial != 1.0 {
                return Err(HfError::Unsupported(format!(
                    "partial_rotary_factor {partial}: the model rotates only part of each head (as Phi-4-mini); \
                     webjudge rotates whole heads"
                )));
            }
        }
    }
    let mut scaling_kind =
        scaling.and_then(|s| s.get("rope_type").or_else(|| s.get("type"))).and_then(Value::as_str).unwrap_or("default");
    if phi3 && ["su", "yarn"].contains(&scaling_kind) {
        // transformers' Phi3Config reads Phi-3's early names of LongRoPE as "longrope".
        scaling_kind = "longrope";
    }
    let rope_theta = match rope.map(|r| config_f32(r, "rope_theta")).transpose()?.flatten() {
        Some(theta) => theta,
        None => config_f32(config, "rope_theta")?.unwrap_or(10000.0),
    };
    let hidden = required(config, "hidden_size")?;
    let n_heads = required(config, "num_attention_heads")?;
    let head_dim = match config_usize(config, "head_dim")? {
        Some(d) => d,
        None if n_heads > 0 && hidden.is_multiple_of(n_heads) => hidden / n_heads,
        None => return Err(HfError::Config(format!("hidden_size {hidden} is not a multiple of {n_heads} heads"))),
    };
    let vocab = required(config, "vocab_size")?;
    let tie = config.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false);
    if tied && !tie {
        return Err(HfError::MissingTensor("lm_head.weight".into()));
    }
    let bos = token_ids(config, "bos_token_id")?;
    let mut architecture = Architecture {
        n_layers: required(config, "num_hidden_layers")?,
        hidden,
        n_heads,
        n_kv_heads: config_usize(config, "num_key_value_heads")?.unwrap_or(n_heads),
        head_dim,
        ffn: required(config, "intermediate_size")?,
        vocab,
        rope_theta,
        rope_frequency_divisors: Vec::new(),
        rope_attention_factor: 1.0,
        norm_eps: config_f32(config, "rms_norm_eps")?
            .ok_or_else(|| HfError::Config("rms_norm_eps is missing".into()))?,
        // Qwen2's q/k/v projections always have biases.
        qkv_bias: qwen2,
        context_length: required(config, "max_position_embeddings")?,
        tied_embeddings: tied,
        bos_id: bos.first().copied(),
        eos_ids: token_ids(config, "eos_token_id")?,
        // LLaMA's Hugging Face tokenizer prepends BOS unless its config says otherwise (where
        // the config is silent, `convert_hf` asks the tokenizer).
        add_bos: tokenizer_config.and_then(|t| t.get("add_bos_token")).and_then(Value::as_bool).unwrap_or(true),
    };
    let mut longrope = None;
    if let Some(scaling) = scaling {
        let scaled = rope_scaling(&architecture, scaling_kind, scaling, config, phi3)?;
        architecture.rope_frequency_divisors = scaled.divisors;
        architecture.rope_attention_factor = scaled.attention_factor;
        longrope = scaled.longrope;
    }
    architecture.validate().map_err(HfError::Config)?;
    if let Some(id) = architecture.bos_id.iter().chain(&architecture.eos_ids).find(|&&id| id as usize >= vocab) {
        return Err(HfError::Config(format!("special token id {id} is outside the vocabulary of {vocab}")));
    }
    Ok((architecture, longrope))
}

/// Adds the end-of-sequence ids of `generation_config.json` that `config.json` lacks, which
/// transformers' `generate` stops at too: Phi-3.5-mini's `<|end|>` (which ends each turn of
/// its template) and `<|assistant|>` are there only.
fn add_generation_eos(architecture: &mut Architecture, generation: &Value) -> Result<(), HfError> {
    let ids =
        token_ids(generation, "eos_token_id").map_err(|e| HfError::Config(format!("generation_config.json: {e}")))?;
    for id in ids {
        if id as usize >= architecture.vocab {
            return Err(HfError::Config(format!(
                "generation_config.json: eos_token_id {id} is outside the vocabulary of {}",
                architecture.vocab
            )));
        }
        if !architecture.eos_ids.contains(&id) {
            architecture.eos_ids.push(id);
        }
    }
    Ok(())
}

/// A config's RoPE scaling as the engine applies it.
#[derive(Debug, Default)]
struct RopeScaling {
    /// Each pair's frequency divisor ([`Architecture::rope_frequency_divisors`]).
    divisors: Vec<f32>,
    /// cos and sin's factor ([`Architecture::rope_attention_factor`]).
    attention_factor: f32,
    /// LongRoPE's original context, when shorter than the model's.
    longrope: Option<LongRopeCap>,
}

/// The attention window of a config: Mistral's `sliding_window`, or Qwen2's where
/// `use_sliding_window` turns it on (Qwen2 configs carry a window they do not use).
fn sliding_window(config: &Value) -> Result<Option<usize>, HfError> {
    if config.get("use_sliding_window").and_then(Value::as_bool) == Some(false) {
        return Ok(None);
    }
    config_usize(config, "sliding_window")
}

/// The RoPE scaling `kind` of a config's `rope_scaling` (or transformers 5's
/// `rope_parameters`): none for the default RoPE, the factor for linear scaling, Llama 3's
/// per-frequency blend, LongRoPE's short factors and attention factor (as transformers'
/// `_compute_longrope_parameters` computes them) within its original context. Scalings that
/// depend on the position reached otherwise (dynamic, YaRN) are refused by name.
fn rope_scaling(
    a: &Architecture,
    kind: &str,
    scaling: &Value,
    config: &Value,
    phi3: bool,
) -> Result<RopeScaling, HfError> {
    let parameter = |key: &str| {
        config_f32(scaling, key)?
            .ok_or_else(|| HfError::Config(format!("rope_type {kind:?} needs {key}, which is missing")))
    };
    let divisors = |divisors| Ok(RopeScaling { divisors, attention_factor: 1.0, longrope: None });
    match kind {
        "default" => divisors(Vec::new()),
        "linear" => divisors(vec![parameter("factor")?; a.head_dim / 2]),
        "llama3" => divisors(a.llama3_rope_divisors(Llama3RopeScaling {
            factor: parameter("factor")?,
            low_freq_factor: parameter("low_freq_factor")?,
            high_freq_factor: parameter("high_freq_factor")?,
            original_context: parameter("original_max_position_embeddings")?,
        })),
        "longrope" => {
            let factors = |key: &str| -> Result<Vec<f32>, HfError> {
                let bad = || {
                    HfError::Config(format!("rope_type \"longrope\" needs {key}, a list of {} numbers", a.head_dim / 2))
                };
                let list = scaling.get(key).and_then(Value::as_array).ok_or_else(bad)?;
                let factors: Vec<f32> =
                    list.iter().map(|v| v.as_f64().map(|v| v as f32)).collect::<Option<_>>().ok_or_else(bad)?;
                if factors.len() != a.head_dim / 2 {
                    return Err(bad());
                }
                Ok(factors)
            };
            let short = factors("short_factor")?;
            factors("long_factor")?;
            // transformers gives Phi-3's top-level original_max_position_embeddings (default
            // 4096) priority over rope_scaling's; other models' default to the context.
            let original = match config_usize(config, "original_max_position_embeddings")? {
                Some(original) => original,
                None => match config_usize(scaling, "original_max_position_embeddings")? {
                    Some(original) => original,
                    None if phi3 => 4096,
                    None => a.context_length,
                },
            };
            if original == 0 {
                return Err(HfError::Config("original_max_position_embeddings must be positive".into()));
            }
            let extended = a.context_length;
            // Phi-3's factor is the extension, when rope_scaling names none.
            let factor = match config_f32(scaling, "factor")? {
                Some(factor) => factor as f64,
                None => extended as f64 / original as f64,
            };
            let attention_factor = match config_f32(scaling, "attention_factor")? {
                Some(factor) => factor,
                None => longrope_attention_factor(factor, original),
            };
            let longrope = (original < extended).then_some(LongRopeCap { original, extended });
            Ok(RopeScaling { divisors: short, attention_factor, longrope })
        }
        other => Err(HfError::Unsupported(format!(
            "rope_type {other:?}: webjudge supports the default RoPE, \"linear\", Llama 3's \"llama3\" scaling and \
             \"longrope\" (within its original context)"
        ))),
    }
}

/// The names a Hugging Face model directory carries, for [`JudgeChoice::Infer`]: the
/// directory's name (for a Hugging Face cache snapshot, `…/models--org--name/snapshots/<hash>`,
/// the repository folder's), then `config.json`'s `_name_or_path`.
fn checkpoint_names(hf_dir: &Path, config: &Value) -> Vec<(&'static str, String)> {
    let dir = fs::canonicalize(hf_dir).unwrap_or_else(|_| hf_dir.to_owned());
    let name = |path: &Path| path.file_name().and_then(|n| n.to_str()).map(str::to_owned);
    let parent = dir.parent();
    let repository = parent.filter(|p| name(p).as_deref() == Some("snapshots")).and_then(Path::parent);
    let mut names: Vec<(&'static str, String)> = Vec::new();
    names.extend(name(repository.unwrap_or(&dir)).map(|n| ("directory name", n)));
    let name_or_path = config.get("_name_or_path").and_then(Value::as_str).filter(|n| !n.is_empty());
    names.extend(name_or_path.map(|n| ("config.json _name_or_path", n.to_owned())));
    names
}

/// The checkpoint's chat template under the importers' one policy
/// ([`chat_template_policy`]), as transformers 5 loads it: `chat_template.jinja` (`file`,
/// where transformers 4.43 and later save it) before `tokenizer_config.json`'s
/// `chat_template` (a string, or a list of named templates of which the "default" one);
/// `bos_token` and `eos_token` from the config (a string or an added token's `content`).
/// LLaMA's SentencePiece tokenizer is a `tokenizer.model` or a `LlamaTokenizer` class.
fn chat_template(
    tokenizer_config: Option<&Value>,
    file: Option<String>,
    has_sentencepiece_model: bool,
    given: Option<&TemplateText>,
    special_tokens: impl FnOnce((Option<String>, Option<String>)) -> (Option<String>, Option<String>),
) -> Result<Option<ChatTemplate>, HfError> {
    let field = |key: &str| tokenizer_config.and_then(|t| t.get(key));
    let class = field("tokenizer_class").and_then(Value::as_str);
    let llama = has_sentencepiece_model || class.is_some_and(|c| c.starts_with("LlamaTokenizer"));
    let configured = match field("chat_template") {
        Some(Value::Array(named)) => named
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template")),
        template => template,
    };
    let own = match (file, configured.and_then(Value::as_str)) {
        (Some(jinja), _) => Some(TemplateText { origin: "chat_template.jinja".into(), jinja }),
        (None, Some(jinja)) => {
            Some(TemplateText { origin: "tokenizer_config.json chat_template".into(), jinja: jinja.to_owned() })
        }
        (None, None) => None,
    };
    let token = |key: &str| {
        let value = field(key)?;
        value.as_str().or_else(|| value.get("content").and_then(Value::as_str)).map(str::to_owned)
    };
    let tokens = special_tokens((token("bos_token"), token("eos_token")));
    Ok(chat_template_policy(given, own, tokens, llama)?)
}

/// Where a tensor's values come from.
enum Source {
    /// A float tensor, read row range by row range.
    Dense(CheckpointTensor),
    /// A GPTQ linear layer, read whole when its turn comes.
    Gptq(Box<GptqPlan>),
}

/// One tensor to write.
struct Planned {
    source: Source,
    name: String,
    shape: Vec<usize>,
    encoding: Encoding,
    /// GPTQ codes copied as q4 instead of requantizing.
    keep_gptq_codes: bool,
    /// The name of the input order the kept codes' columns are in (act-order).
    input_order: Option<String>,
    /// Head dimension when the rows are Q or K and need the RoPE permutation.
    rope_head_dim: Option<usize>,
}

impl Planned {
    fn bytes(&self) -> u64 {
        match &self.source {
            Source::Dense(t) => t.range.end - t.range.start,
            Source::Gptq(layer) => layer.bytes(),
        }
    }

    /// The checkpoint rows that become the given rows of the written tensor.
    fn source_rows(&self, rows: Range<usize>) -> Vec<usize> {
        match self.rope_head_dim {
            None => rows.collect(),
            Some(d) => rows.map(|row| rope_source_row(row, d)).collect(),
        }
    }

    /// Reads rows of a dense tensor as f32, Q and K rows in the engine's RoPE order.
    fn dense_rows(
        &self,
        tensor: &CheckpointTensor,
        checkpoint: &mut Checkpoint,
        rows: Range<usize>,
    ) -> Result<Vec<f32>, HfError> {
        let Some(d) = self.rope_head_dim else { return Ok(checkpoint.read_rows(tensor, rows)?) };
        if self.shape.len() == 1 {
            // A bias: one value per row of its weight, permuted likewise.
            let bias = checkpoint.read_rows(tensor, rows)?;
            return Ok((0..bias.len()).map(|j| bias[rope_source_row(j, d)]).collect());
        }
        let mut values = Vec::with_capacity(rows.len() * tensor.cols());
        for row in self.source_rows(rows) {
            values.extend(checkpoint.read_rows(tensor, row..row + 1)?);
        }
        Ok(values)
    }

    /// The given rows (all where `None`) as f32, in the engine's order: what the importance
    /// matrix's forward pass reads.
    fn values(&self, checkpoint: &mut Checkpoint, rows: Option<&[usize]>) -> Result<Vec<f32>, HfError> {
        let all = 0..self.shape.first().copied().filter(|_| self.shape.len() == 2).unwrap_or(1);
        match (&self.source, rows) {
            (Source::Dense(tensor), None) => self.dense_rows(tensor, checkpoint, all),
            (Source::Dense(tensor), Some(rows)) => {
                let mut values = Vec::with_capacity(rows.len() * tensor.cols());
                for &row in rows {
                    values.extend(self.dense_rows(tensor, checkpoint, row..row + 1)?);
                }
                Ok(values)
            }
            (Source::Gptq(layer), rows) => {
                let source_rows = match rows {
                    Some(rows) => rows.iter().flat_map(|&row| self.source_rows(row..row + 1)).collect(),
                    None => self.source_rows(all),
                };
                Ok(layer.load(checkpoint)?.rows_f32(&source_rows))
            }
        }
    }
}

/// The importance matrix of the planned checkpoint, from the calibration text, the forward
/// pass reading each planned tensor through `progress` (bytes read, of `total`).
fn collect_importance(
    plan: &[Planned],
    checkpoint: &mut Checkpoint,
    architecture: &Architecture,
    chunks: &[Vec<u32>],
    progress: &mut dyn FnMut(u64),
) -> Result<ImportanceMatrix, HfError> {
    let mut read = |name: &str, rows: Option<&[usize]>| {
        let tensor = plan.iter().find(|t| t.name == name).expect("the forward pass reads planned tensors");
        let values = tensor.values(checkpoint, rows)?;
        progress(tensor.bytes());
        Ok::<_, HfError>(values)
    };
    imatrix::collect(architecture, chunks, &mut read)
}

/// Plans a 2-D weight's storage (`name` the engine's, `hf_name` the checkpoint's).
fn encoding_for(
    name: &str,
    hf_name: &str,
    cols: usize,
    options: &HfOptions,
    mix: MixContext,
) -> Result<Encoding, HfError> {
    let role = WeightRole::of(name).expect("planned tensors have engine names");
    options
        .quant
        .encoding(role, cols, options.group, mix)
        .map_err(|problem| HfError::Quant { name: hf_name.into(), problem })
}

fn plan(
    checkpoint: &mut Checkpoint,
    a: &Architecture,
    gptq: Option<&GptqConfig>,
    options: &HfOptions,
) -> Result<Vec<Planned>, HfError> {
    let expected = expected_tensors(a, checkpoint.tensors().count()).map_err(|e| HfError::Config(e.to_string()))?;
    let mut planned: Vec<Option<Planned>> = expected.iter().map(|_| None).collect();
    let mix = MixContext { n_layers: a.n_layers, tied_embeddings: a.tied_embeddings };
    let (layers, dense) = match gptq {
        Some(_) => gptq::split_layers(checkpoint.tensors())?,
        None => (Vec::new(), checkpoint.tensors().collect()),
    };
    let mut sources: Vec<(String, Result<CheckpointTensor, gptq::GptqLinear>)> = Vec::new();
    for tensor in dense {
        match fused_parts(&tensor.name, a) {
            Some(parts) => sources.extend(split_fused(tensor, &parts)?.into_iter().map(|(name, t)| (name, Ok(t)))),
            None => sources.push((tensor.name.clone(), Ok(tensor.clone()))),
        }
    }
    for layer in layers {
        let name = format!("{}.weight", layer.prefix);
        if fused_parts(&name, a).is_some() {
            return Err(HfError::Unsupported(format!(
                "{name} is a fused projection stored as GPTQ tensors: webjudge splits only float ones"
            )));
        }
        sources.push((name, Err(layer)));
    }
    for (hf_name, source) in sources {
        // A fused projection's part is named by its rows of the checkpoint's tensor.
        let shown = source.as_ref().map_or_else(|_| hf_name.clone(), |tensor| tensor.name.clone());
        let name = match engine_name(&hf_name) {
            Some(Some(name)) => name,
            Some(None) => continue,
            None if gptq.is_none() && gptq::is_gptq_tensor(&hf_name) => {
                return Err(HfError::Unsupported(format!(
                    "{hf_name} is a GPTQ tensor, but there is no {} (nor a gptq quantization_config in config.json)",
                    gptq::CONFIG_FILE
                )))
            }
            None => return Err(HfError::UnexpectedTensor(hf_name)),
        };
        let Some(index) = expected.iter().position(|(n, _)| *n == name) else {
            return Err(HfError::UnexpectedTensor(shown));
        };
        if planned[index].is_some() {
            return Err(HfError::Unsupported(format!(
                "{shown}: {name} is stored twice (as GPTQ tensors and as a weight, or fused and apart)"
            )));
        }
        let shape = expected[index].1.clone();
        let rope = LayerWeight::parse(&name).is_some_and(|(_, weight)| weight.is_rotated())
            || LayerBias::parse(&name).is_some_and(|(_, bias)| bias.weight().is_rotated());
        let (source, encoding, keep_gptq_codes) = match source {
            Ok(tensor) => {
                let hf_name = shown;
                if tensor.shape != shape {
                    return Err(HfError::Shape { name: hf_name, found: tensor.shape.clone(), expected: shape });
                }
                if !tensor.dtype.is_float() {
                    let problem = format!("holds {:?} values; only GPTQ layers may hold integers", tensor.dtype);
                    return Err(HfError::Quant { name: hf_name, problem });
                }
                let encoding = match shape[..] {
                    [_, cols] => encoding_for(&name, &hf_name, cols, options, mix)?,
                    _ => Encoding::new(DType::F32, 0),
                };
                (Source::Dense(tensor), encoding, false)
            }
            Err(layer) => {
                let Some(config) = gptq.filter(|_| shape.len() == 2) else {
                    return Err(HfError::UnexpectedTensor(hf_name));
                };
                let layer = layer.plan(config, checkpoint, shape[0], shape[1])?;
                match layer.q4_group() {
                    Ok(group) if options.quant.keeps_gptq_codes() => {
                        (Source::Gptq(Box::new(layer)), Encoding::new(DType::Q4, group), true)
                    }
                    _ => {
                        let encoding = encoding_for(&name, &hf_name, shape[1], options, mix)?;
                        (Source::Gptq(Box::new(layer)), encoding, false)
                    }
                }
            }
        };
        planned[index] = Some(Planned {
            source,
            name,
            shape,
            encoding,
            keep_gptq_codes,
            input_order: None,
            rope_head_dim: rope.then_some(a.head_dim),
        });
    }
    let mut planned: Vec<Planned> = planned
        .into_iter()
        .zip(expected)
        .map(|(p, (name, _))| p.ok_or_else(|| HfError::MissingTensor(hf_name(&name))))
        .collect::<Result<_, _>>()?;
    name_input_orders(&mut planned);
    Ok(planned)
}

/// The parts of a fused projection of Phi-3 (`Phi3ForCausalLM`), as the LLaMA names of the
/// projections they are and their rows ([`StackedWeight::part_rows`]), in order: `qkv_proj`
/// is the queries, keys and values (transformers' `Phi3Attention` slices it so),
/// `gate_up_proj` the gate and the up projections (`Phi3MLP` chunks it so). `None` for any
/// other tensor.
fn fused_parts(hf: &str, a: &Architecture) -> Option<Vec<(String, Range<usize>)>> {
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let stacked = match rest {
        "self_attn.qkv_proj.weight" => StackedWeight::Qkv,
        "mlp.gate_up_proj.weight" => StackedWeight::GateUp,
        _ => return None,
    };
    let hf_part = |part| match part {
        LayerWeight::AttnQ => "self_attn.q_proj",
        LayerWeight::AttnK => "self_attn.k_proj",
        LayerWeight::AttnV => "self_attn.v_proj",
        LayerWeight::FfnGate => "mlp.gate_proj",
        _ => "mlp.up_proj",
    };
    let parts = stacked.part_rows(a).into_iter();
    Some(parts.map(|(part, rows)| (format!("model.layers.{layer}.{}.weight", hf_part(part)), rows)).collect())
}

/// A fused projection's parts ([`fused_parts`]) as tensors of their own: each the LLaMA
/// name it maps by, and its rows of the checkpoint's tensor (named by those rows, for
/// messages), so the planning, the RoPE permutation and the quantizers (a mix's per-tensor
/// choices included) see ordinary q/k/v and gate/up weights.
fn split_fused(
    tensor: &CheckpointTensor,
    parts: &[(String, Range<usize>)],
) -> Result<Vec<(String, CheckpointTensor)>, HfError> {
    let rows = parts.last().map_or(0, |(_, rows)| rows.end);
    let cols = tensor.shape.get(1).copied().unwrap_or(0);
    if tensor.shape.len() != 2 || tensor.shape[0] != rows {
        return Err(HfError::Shape {
            name: tensor.name.clone(),
            found: tensor.shape.clone(),
            expected: vec![rows, cols],
        });
    }
    let split = parts.iter().map(|(name, rows)| {
        let part = name.rsplit('.').nth(1).expect("a projection's name");
        let shown = format!("{} rows {}..{} ({part})", tensor.name, rows.start, rows.end);
        (name.clone(), tensor.row_slice(rows.clone(), shown))
    });
    Ok(split.collect())
}

/// Names the input order of every kept act-order layer: `blk.N.attn_q.input_order` for
/// the first of the weights sharing an input (in the architecture's order: q/k/v, gate/up)
/// and for those sharing it with the same order (GPTQ orders them alike: they see the same
/// inputs), the weight's own name for one in a different order.
fn name_input_orders(planned: &mut [Planned]) {
    let mut named: Vec<(String, &[u32])> = Vec::new();
    for tensor in planned.iter_mut() {
        let Source::Gptq(layer) = &tensor.source else { continue };
        let Some(order) = layer.column_order().filter(|_| tensor.keep_gptq_codes) else { continue };
        let (layer, weight) = LayerWeight::parse(&tensor.name).expect("act-order weights are layer weights");
        let first_reader = weight.first_reader_of_input().name(layer);
        let candidates = [input_order_name(&first_reader), input_order_name(&tensor.name)];
        let name = candidates
            .iter()
            .find(|c| named.iter().all(|(n, o)| n != *c || *o == order))
            .expect("a weight's own order name is unique")
            .clone();
        if !named.iter().any(|(n, _)| *n == name) {
            named.push((name.clone(), order));
        }
        tensor.input_order = Some(name);
    }
}

/// The Hugging Face name of an engine tensor, for error messages.
fn hf_name(engine: &str) -> String {
    let names = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"];
    if let Some(name) = names.iter().find(|n| engine_name(n).flatten().as_deref() == Some(engine)) {
        return (*name).into();
    }
    engine.into()
}

/// The weights of a Hugging Face model directory: its safetensors files, or its PyTorch
/// `.bin` files when it has no safetensors (both read row range by row range).
pub fn open_checkpoint(dir: &Path) -> Result<Checkpoint, HfError> {
    let has_safetensors = fs::read_dir(dir)
        .map_err(|source| HfError::Io { path: dir.to_owned(), source })?
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".safetensors") || n.ends_with(".safetensors.index.json"))
        });
    if !has_safetensors && torch_pickle::has_weights(dir) {
        return Ok(torch_pickle::open_dir(dir)?);
    }
    Ok(safetensors::open_dir(dir)?)
}

/// What a conversion wrote.
#[derive(Debug)]
pub struct HfConversion {
    pub manifest: Manifest,
    /// GPTQ linear weights whose codes and scales were kept as q4.
    pub gptq_kept: usize,
    /// Of those, the act-order ones: columns sorted by group, inputs gathered at run time.
    pub gptq_reordered: usize,
    /// GPTQ linear weights dequantized and requantized: engine name and why.
    pub gptq_requantized: Vec<(String, String)>,
    /// Why the manifest names the judge family it does (or none).
    pub judge_reason: String,
    /// The importance matrix collected from the calibration text, if one was given.
    pub importance: Option<ImportanceMatrix>,
    /// A LongRoPE model's context, capped at its original one.
    pub longrope: Option<LongRopeCap>,
}

/// Converts the Hugging Face model directory `hf_dir` into a model directory at
/// `out_dir`. `progress` gets checkpoint bytes read so far and in total.
pub fn convert_hf(
    hf_dir: &Path,
    out_dir: &Path,
    options: &HfOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<HfConversion, HfError> {
    if options.max_shard_bytes < MIN_SHARD_BYTES {
        return Err(ConvertError::ShardSize(options.max_shard_bytes).into());
    }
    if options.quant.takes_group() {
        DType::Q4.check_group(options.group as u64).map_err(HfError::Unsupported)?;
    }
    let config = read_json(&hf_dir.join("config.json"))?
        .ok_or_else(|| HfError::Config(format!("{} has no config.json", hf_dir.display())))?;
    let tokenizer_config = read_json(&hf_dir.join("tokenizer_config.json"))?;
    let tokenizer_path = hf_dir.join(TOKENIZER_FILE);
    let tokenizer_json = match checked_file::read_to_string_if_present(&tokenizer_path, checked_file::TOKENIZER)? {
        Some(text) => text,
        None if hf_dir.join("tokenizer.model").is_file() => {
            // Only a SentencePiece model: build the tokenizer.json transformers would convert it to.
            let model_path = hf_dir.join("tokenizer.model");
            let model = checked_file::read(&model_path, checked_file::TOKENIZER)?;
            let (add_bos, add_eos) = crate::tokenizer::add_flags(tokenizer_config.as_ref());
            crate::tokenizer::tokenizer_json_from_sentencepiece(&model, add_bos, add_eos)
                .map_err(|e| HfError::Tokenizer(format!("{}: {e}", model_path.display())))?
        }
        None => return Err(HfError::Tokenizer(format!("{} has no tokenizer.json", hf_dir.display()))),
    };
    let tokenizer =
        crate::tokenizer::Tokenizer::from_json(&tokenizer_json).map_err(|e| HfError::Tokenizer(e.to_string()))?;

    let gptq = gptq::read_config(hf_dir, &config)?;
    let mut checkpoint = open_checkpoint(hf_dir)?;
    let tied = checkpoint.tensor("lm_head.weight").is_none();
    let (mut architecture, longrope) = architecture(&config, tied, tokenizer_config.as_ref())?;
    if tokenizer_config.as_ref().and_then(|t| t.get("add_bos_token")).is_none() {
        // As in transformers, the tokenizer's post-processor decides (Qwen2's adds none).
        let first = tokenizer.encode("").map_err(|e| HfError::Tokenizer(e.to_string()))?.first().copied();
        architecture.add_bos = first.is_some() && first == architecture.bos_id;
    }
    if let Some(generation) = read_json(&hf_dir.join("generation_config.json"))? {
        add_generation_eos(&mut architecture, &generation)?;
    }
    let sliding_window = sliding_window(&config)?;
    architecture.context_length =
        recorded_context(architecture.context_length, longrope, options.context, sliding_window)?;
    let names = checkpoint_names(hf_dir, &config);
    let names: Vec<(&str, &str)> = names.iter().map(|(what, name)| (*what, name.as_str())).collect();
    let judge = options.judge.decide(&names);
    let template_path = hf_dir.join("chat_template.jinja");
    let template_file = checked_file::read_to_string_if_present(&template_path, checked_file::CHAT_TEMPLATE)?;
    let has_sentencepiece_model = hf_dir.join("tokenizer.model").is_file();
    let chat_template = chat_template(
        tokenizer_config.as_ref(),
        template_file,
        has_sentencepiece_model,
        options.chat_template.as_ref(),
        |named| special_token_strings(named, &architecture, &tokenizer),
    )?;
    let plan = plan(&mut checkpoint, &architecture, gptq.as_ref(), options)?;
    let mut gptq_kept = 0;
    let gptq_reordered = plan.iter().filter(|t| t.input_order.is_some()).count();
    let mut gptq_requantized = Vec::new();
    for tensor in &plan {
        match &tensor.source {
            Source::Gptq(_) if tensor.keep_gptq_codes => gptq_kept += 1,
            Source::Gptq(layer) => {
                let why = layer
                    .q4_group()
                    .err()
                    .unwrap_or_else(|| format!("{} was chosen instead of q4", options.quant.name()));
                gptq_requantized.push((tensor.name.clone(), why));
            }
            Source::Dense(_) => {}
        }
    }

    let calibration = match &options.imatrix_text {
        Some(text) => Some(imatrix::calibration_chunks(&tokenizer, &architecture, text)?),
        None => None,
    };

    let output = OutputDir::prepare(out_dir, hf_dir, options.overwrite)?;
    let mut writer = ModelWriter::create(output.path(), options.max_shard_bytes)?;
    let checkpoint_bytes: u64 = plan.iter().map(Planned::bytes).sum();
    // The importance matrix's pass reads the checkpoint once more.
    let total = checkpoint_bytes * if calibration.is_some() { 2 } else { 1 };
    let mut done = 0;
    progress(done, total);
    let importance = match &calibration {
        Some(chunks) => collect_importance(&plan, &mut checkpoint, &architecture, chunks, &mut |bytes| {
            done += bytes;
            progress(done.min(checkpoint_bytes), total);
        })?,
        None => ImportanceMatrix::default(),
    };
    done = total - checkpoint_bytes;
    for tensor in &plan {
        let rows = if tensor.shape.len() == 2 { tensor.shape[0] } else { 1 };
        let bytes = tensor.bytes();
        let mut report = |end: usize| progress(done + bytes * end as u64 / rows as u64, total);
        let (dtype, group) = (tensor.encoding.dtype, tensor.encoding.group);
        match &tensor.source {
            Source::Dense(source) => writer.write_tensor(&tensor.name, dtype, &tensor.shape, group, |rows| {
                let values = tensor.dense_rows(source, &mut checkpoint, rows.clone())?;
                let words = tensor.encoding.encode(&values, importance.get(&tensor.name));
                report(rows.end);
                Ok::<_, HfError>(words)
            })?,
            Source::Gptq(layer) => {
                let weights = layer.load(&mut checkpoint)?;
                if let Some((order_name, order)) = tensor.input_order.as_ref().zip(layer.column_order()) {
                    if !writer.has_tensor(order_name) {
                        writer.write_tensor(order_name, DType::U32, &[order.len()], 0, |_| {
                            Ok::<_, HfError>(order.to_vec())
                        })?;
                    }
                }
                writer.write_tensor(&tensor.name, dtype, &tensor.shape, group, |rows| {
                    let source_rows = tensor.source_rows(rows.clone());
                    let words = if tensor.keep_gptq_codes {
                        weights.rows_q4(&source_rows, group)?
                    } else {
                        tensor.encoding.encode(&weights.rows_f32(&source_rows), importance.get(&tensor.name))
                    };
                    report(rows.end);
                    Ok::<_, HfError>(words)
                })?;
                if let Some(order_name) = &tensor.input_order {
                    writer.set_input_order(&tensor.name, order_name);
                }
            }
        }
        done += bytes;
    }
    let manifest = writer.finish(architecture, chat_template, judge.family)?;
    let written_tokenizer = output.path().join(TOKENIZER_FILE);
    fs::write(&written_tokenizer, tokenizer_json).map_err(|e| io_error_at(&written_tokenizer, e))?;
    output.commit()?;
    Ok(HfConversion {
        manifest,
        gptq_kept,
        gptq_reordered,
        gptq_requantized,
        judge_reason: judge.reason,
        importance: calibration.map(|_| importance),
        longrope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Message;

    fn config(extra: Value) -> Value {
        let mut config = serde_json::json!({
            "model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
            "intermediate_size": 128, "vocab_size": 96, "rms_norm_eps": 1e-5, "max_position_embeddings": 256,
            "bos_token_id": 1, "eos_token_id": 2,
        });
        config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        config
    }

    #[test]
    fn rope_theta_from_either_config_style() {
        let theta = |extra| architecture(&config(extra), false, None).map(|(a, _)| a.rope_theta);
        assert_eq!(theta(serde_json::json!({})).unwrap(), 10000.0);
        assert_eq!(theta(serde_json::json!({"rope_theta": 5e6})).unwrap(), 5e6);
        let v5 = serde_json::json!({"rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}});
        assert_eq!(theta(v5).unwrap(), 100000.0);
        let yarn = serde_json::json!({"rope_parameters": {"rope_theta": 1e4, "rope_type": "yarn"}});
        assert!(matches!(theta(yarn), Err(HfError::Unsupported(_))));
    }

    #[test]
    fn rope_scaling_from_either_config_style() {
        let divisors = |extra| architecture(&config(extra), false, None).map(|(a, _)| a.rope_frequency_divisors);
        let llama3 = serde_json::json!({"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64, "rope_type": "llama3"});
        let v4 = divisors(serde_json::json!({"rope_theta": 5e5, "rope_scaling": llama3})).unwrap();
        let mut parameters = llama3.clone();
        parameters["rope_theta"] = 5e5.into();
        let v5 = divisors(serde_json::json!({"rope_parameters": parameters})).unwrap();
        assert_eq!(v4, v5);
        assert_eq!(v4.len(), 8);
        let linear = serde_json::json!({"rope_scaling": {"type": "linear", "factor": 2.0}});
        assert_eq!(divisors(linear).unwrap(), vec![2.0; 8]);
        assert_eq!(divisors(serde_json::json!({"rope_scaling": null})).unwrap(), Vec::<f32>::new());
        for kind in ["dynamic", "yarn"] {
            let error = divisors(serde_json::json!({"rope_scaling": {"rope_type": kind, "factor": 4.0}})).unwrap_err();
            assert!(error.to_string().contains(&format!("rope_type \"{kind}\"")), "{error}");
        }
        let missing =
            divisors(serde_json::json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}})).unwrap_err();
        assert!(missing.to_string().contains("needs low_freq_factor"), "{missing}");
    }

    /// Phi-3.5-mini's LongRoPE: the short factors divide the frequencies, cos and sin are
    /// scaled by sqrt(1 + ln(32) / ln(4096)) (transformers' default for its 32-fold extension)
    /// or by the config's own `attention_factor`, and the context is capped at the original
    /// one; partial rotary (Phi-4-mini), another activation and a malformed LongRoPE are
    /// refused by name.
    #[test]
    fn phi3_longrope_and_what_is_refused() {
        let short: Vec<f32> = (0..8).map(|i| 1.0 + i as f32 / 4.0).collect();
        let phi35 = |extra: Value| {
            let mut config = config(serde_json::json!({
                "model_type": "phi3", "architectures": ["Phi3ForCausalLM"], "hidden_act": "silu",
                "max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
                "rope_scaling": {"type": "longrope", "short_factor": short, "long_factor": vec![8.0; 8]},
            }));
            config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            architecture(&config, false, None)
        };
        let (a, cap) = phi35(serde_json::json!({})).unwrap();
        assert_eq!(a.rope_frequency_divisors, short);
        assert_eq!(a.rope_attention_factor, 1.190_238_1_f32);
        assert_eq!(cap, Some(LongRopeCap { original: 4096, extended: 131072 }));
        assert_eq!(cap.unwrap().trained_context(None).unwrap(), 4096);
        assert!(matches!(cap.unwrap().trained_context(Some(4097)), Err(ConvertError::LongRope { .. })));
        let mut own = serde_json::json!({"rope_scaling": {"type": "su", "short_factor": short,
            "long_factor": vec![8.0; 8], "attention_factor": 1.5}});
        assert_eq!(phi35(own.clone()).unwrap().0.rope_attention_factor, 1.5);
        own["rope_scaling"]["long_factor"] = serde_json::json!([1.0]);
        let error = phi35(own).unwrap_err().to_string();
        assert!(error.contains("needs long_factor, a list of 8 numbers"), "{error}");
        let error = phi35(serde_json::json!({"partial_rotary_factor": 0.75})).unwrap_err().to_string();
        assert!(error.contains("partial_rotary_factor 0.75"), "{error}");
        let error = phi35(serde_json::json!({"hidden_act": "gelu"})).unwrap_err().to_string();
        assert!(error.contains("hidden_act \"gelu\""), "{error}");
        let error = phi35(serde_json::json!({"model_type": "phi3small", "architectures": []})).unwrap_err();
        assert!(error.to_string().contains("Phi3ForCausalLM"), "{error}");
        // Without an extension, the short factors apply everywhere and nothing is capped.
        let (a, cap) = phi35(serde_json::json!({"max_position_embeddings": 4096})).unwrap();
        assert_eq!((a.rope_attention_factor, cap), (1.0, None));
    }

    #[test]
    fn floats_must_be_finite_and_in_range() {
        let problem = |extra| architecture(&config(extra), false, None).unwrap_err().to_string();
        // 1e39 is infinity in f32.
        assert!(problem(serde_json::json!({"rms_norm_eps": 1e39})).contains("norm_eps inf is not within (0, 0.01]"));
        assert!(problem(serde_json::json!({"rms_norm_eps": 0.0})).contains("norm_eps 0 is not within"));
        assert!(problem(serde_json::json!({"rope_theta": 1e39})).contains("rope_theta inf is not within [1, 1e12]"));
        assert!(problem(serde_json::json!({"rope_theta": -1.0})).contains("rope_theta -1 is not within"));
    }

    /// transformers 5 writes the template to `chat_template.jinja`, which it reads before
    /// the config's `chat_template`.
    #[test]
    fn chat_template_from_its_own_file_or_the_config() {
        let chatml = "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
        let tokens = |named| named;
        let read = |config: &Value, file: Option<&str>| {
            chat_template(Some(config), file.map(str::to_owned), false, None, tokens).unwrap().unwrap()
        };
        let config = serde_json::json!({"tokenizer_class": "GPT2Tokenizer", "eos_token": {"content": "<|im_end|>"}});
        let from_file = read(&config, Some(chatml));
        assert_eq!(from_file.origin(), "chat_template.jinja");
        let ChatTemplate::Jinja(jinja) = &from_file else { panic!("{from_file:?}") };
        assert_eq!((jinja.bos_token.as_deref(), jinja.eos_token.as_deref()), (None, Some("<|im_end|>")));
        let mut with_field = config.clone();
        with_field["chat_template"] = chatml.into();
        assert_eq!(read(&with_field, Some(chatml)), from_file);
        assert_eq!(read(&with_field, None).origin(), "tokenizer_config.json chat_template");
        with_field["chat_template"] =
            serde_json::json!([{"name": "tool_use", "template": "x"}, {"name": "default", "template": chatml}]);
        assert_eq!(
            read(&with_field, None).render(&[Message::user("hi")]).unwrap().text,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            chat_template(Some(&config), None, false, None, tokens).unwrap(),
            None,
            "no template, no LLaMA tokenizer"
        );
    }
}
