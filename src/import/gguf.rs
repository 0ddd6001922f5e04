//! A GGUF file's plan: how a `llama`, `qwen2` or `phi3` GGUF becomes the model format,
//! losslessly, from its header (metadata and tensor table) and its tensors' bytes, whoever
//! reads them: `convert` writes a model directory by it, `engine::native` loads the file
//! directly, the browser streams a URL.
//!
//! Tensor data maps onto the model directory's dtypes without requantizing
//! ([`GgmlType::dtype`]; see [`DType`] for the layouts): F32, F16 and BF16 stay as they are,
//! Q8_0 becomes q8 with groups of 32, Q4_0 and Q4_1 q4 with `(d, -8d)` and `(d, m)`, Q5_0 and
//! Q5_1 q5 likewise, and Q4_K, Q5_K and Q6_K keep their super-blocks as q4_k, q5_k and q6_k,
//! so a Q4_K_M or Q5_K_M file keeps every tensor in its own type. Every converted value
//! equals the value llama.cpp's dequantization gives ([`GgmlType::pack`]). Vectors (the norm
//! weights) become f32, dequantized if needed, because the RMSNorm kernel reads f32. Any
//! other ggml type is an error naming it: converting it would need requantizing, which this
//! importer never does silently.
//!
//! RoPE convention: the engine rotates adjacent pairs `(x[2i], x[2i+1])` of each head
//! (`shaders/rope.wgsl`, [`crate::model::reference::rope`]). For `llama` files,
//! llama.cpp's converter already permuted the Q and K rows of a Hugging Face checkpoint into
//! exactly that convention, so they are copied with no permutation. For `qwen2` and `phi3`
//! files it did not (llama.cpp rotates `(x[i], x[i + head_dim/2])` for them, as Hugging Face
//! does), so
//! their Q and K rows, and the values of their biases, are permuted here with the Hugging
//! Face importer's [`super::rope_source_row`]; quantized rows move whole. This is the one place a
//! GGUF's RoPE convention is settled.
//!
//! Qwen2's q/k/v biases (`blk.N.attn_{q,k,v}.bias`) become f32 vectors like the norms.
//!
//! Phi-3's fused projections (`blk.N.attn_qkv.weight`: q, k, then v rows; `blk.N.ffn_up.weight`:
//! gate, then up rows) are planned as the LLaMA layer's weights, each its rows of the fused
//! tensor ([`StackedWeight::part_rows`], the split the Hugging Face importer makes), so the
//! writer gets what a `llama` file gives. Its LongRoPE runs with the short factors within the
//! original context, to which the recorded context is capped ([`longrope`]); its EOS ids add
//! `<|end|>`, which llama.cpp stops at by its text ([`end_of_generation_by_text`]). A file
//! whose RoPE rotates part of each head (Phi-4-mini's) is refused by name.
//!
//! Mistral checkpoints arrive as `llama` GGUF files (llama.cpp's converter writes them so);
//! a `llama.attention.sliding_window` shorter than the recorded context is refused as for
//! Hugging Face checkpoints ([`recorded_context`]).
//!
//! The error type, the chat-template policy, the recorded context and the judge family are
//! shared with the Hugging Face importer ([`super::policy`]).

use std::collections::BTreeMap;
use std::ops::Range;

use super::policy::{
    chat_template_policy, longrope_attention_factor, recorded_context, special_token_strings, ConvertError,
    JudgeChoice, JudgeDecision, LongRopeCap, TemplateText,
};
use super::rope_source_row;
use crate::format::ggml_blocks::GgmlType;
use crate::format::gguf::{GgufFile, GgufMetadataExt};
use crate::format::layout::ShardLayout;
use crate::format::manifest::TensorEntry;
use crate::format::schema::{
    expected_tensors, GlobalWeight, LayerBias, LayerWeight, StackedWeight, ROPE_FACTORS_LONG, ROPE_FACTORS_SHORT,
    ROPE_FREQUENCIES,
};
use crate::format::{Architecture, ChatTemplate, DType};
use crate::tokenizer::Tokenizer;

/// What an import of a GGUF may choose instead of what the file says.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportOptions<'a> {
    /// The context to record instead of the file's `*.context_length` (smaller; see
    /// [`recorded_context`]).
    pub context: Option<usize>,
    /// The judge family the manifest names.
    pub judge: JudgeChoice,
    /// A chat template to record instead of the file's (`--chat-template FILE`).
    pub chat_template: Option<&'a TemplateText>,
}

/// The small tensors a plan reads whole, by name, before planning the rest (RoPE's factors):
/// the bytes of each of [`GgufPlan::apart_ranges`].
pub type ApartTensors = BTreeMap<String, Vec<u8>>;

/// Everything a GGUF file becomes, decided from its header and the small tensors read apart.
pub struct GgufPlan {
    pub architecture: Architecture,
    /// A LongRoPE model's context, capped at its original one.
    pub longrope: Option<LongRopeCap>,
    /// The judge family the manifest names, and why.
    pub judge: JudgeDecision,
    /// The `tokenizer.json` built from the metadata, and the tokenizer it makes.
    pub tokenizer_json: String,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
    /// The format's tensors in the order of its schema ([`expected_tensors`]).
    pub tensors: Vec<PlannedTensor>,
}

impl GgufPlan {
    /// The tensors the plan reads into the architecture instead of planning them (RoPE's
    /// factors), those the file has, with their byte ranges in it.
    pub fn apart_ranges(gguf: &GgufFile) -> Result<Vec<(String, Range<u64>)>, ConvertError> {
        let family = ArchitectureName::of(gguf)?;
        let present = family.read_apart().iter().filter_map(|name| gguf.tensor(name));
        present.map(|info| Ok((info.name.clone(), gguf.tensor_range(info)?))).collect()
    }

    /// The tensors of [`Self::apart_ranges`], each read by `read`.
    pub fn read_apart<E: Into<ConvertError>>(
        gguf: &GgufFile,
        mut read: impl FnMut(Range<u64>) -> Result<Vec<u8>, E>,
    ) -> Result<ApartTensors, ConvertError> {
        let ranges = Self::apart_ranges(gguf)?;
        ranges.into_iter().map(|(name, range)| Ok((name, read(range).map_err(Into::into)?))).collect()
    }

    /// Plans `gguf` (whose file is called `file_name`, a place the judge family may be
    /// named), given the bytes of the tensors [`Self::apart_ranges`] names: checks the
    /// architecture, every tensor's name, shape and type, the tokenizer and the chat
    /// template before any weight is read.
    pub fn new(
        gguf: &GgufFile,
        file_name: Option<&str>,
        options: &ImportOptions,
        apart: &ApartTensors,
    ) -> Result<Self, ConvertError> {
        let family = ArchitectureName::of(gguf)?;
        let mut architecture = architecture(gguf, family)?;
        architecture.rope_frequency_divisors = rope_frequency_divisors(gguf, apart, &architecture)?;
        let longrope = match family {
            ArchitectureName::Phi3 => longrope(gguf, apart, &mut architecture)?,
            _ => None,
        };
        architecture.validate().map_err(ConvertError::InvalidArchitecture)?;
        // llama.cpp's converter writes 0 for no window (Phi-4's).
        let sliding_window =
            gguf.metadata.get_u32(&family.key("attention.sliding_window"))?.filter(|&w| w > 0).map(|w| w as usize);
        architecture.context_length =
            recorded_context(architecture.context_length, longrope, options.context, sliding_window)?;
        let judge = options.judge.decide(&checkpoint_names(gguf, file_name)?);
        let tensors = plan_tensors(gguf, &architecture, family)?;
        let tokenizer_json = crate::tokenizer::tokenizer_json_from_gguf(&gguf.metadata)?;
        let tokenizer = Tokenizer::from_json(&tokenizer_json)?;
        let chat_template = chat_template(gguf, options.chat_template, &architecture, &tokenizer)?;
        Ok(Self { architecture, longrope, judge, tokenizer_json, tokenizer, chat_template, tensors })
    }

    /// The file's bytes the planned tensors read.
    pub fn source_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.range.end - t.range.start).sum()
    }

    /// Each planned tensor's entry in a model directory of shards of at most
    /// `max_shard_bytes`, in plan order: where `convert` writes its parts.
    pub fn layout(&self, max_shard_bytes: u64) -> Vec<TensorEntry> {
        let mut layout = ShardLayout::new(max_shard_bytes);
        self.tensors.iter().map(|t| layout.place(&t.name, t.dtype, &t.shape, t.group_size())).collect()
    }
}

/// The names a GGUF file carries, for [`JudgeChoice::Infer`]: `general.name`, then the
/// file's name.
fn checkpoint_names<'a>(
    gguf: &'a GgufFile,
    file_name: Option<&'a str>,
) -> Result<Vec<(&'static str, &'a str)>, ConvertError> {
    let general_name = gguf.metadata.get_str("general.name")?.map(|n| ("general.name", n));
    Ok(general_name.into_iter().chain(file_name.map(|n| ("file name", n))).collect())
}

fn required<T>(key: &str, value: Option<T>) -> Result<T, ConvertError> {
    value.ok_or_else(|| ConvertError::MissingKey(key.into()))
}

fn required_usize(gguf: &GgufFile, key: &str) -> Result<usize, ConvertError> {
    Ok(required(key, gguf.metadata.get_u32(key)?)? as usize)
}

/// The llama.cpp architectures this importer reads (`general.architecture`), each the
/// LLaMA layer with its own metadata prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArchitectureName {
    /// LLaMA, and Mistral and Yi as llama.cpp's converter writes them.
    Llama,
    /// Qwen2 and Qwen2.5: q/k/v biases, and RoPE over the halves of each head.
    Qwen2,
    /// Phi-3 and Phi-3.5-mini: q/k/v fused into `attn_qkv` and gate/up into `ffn_up`, split
    /// here into the LLaMA layer's weights ([`StackedWeight::part_rows`]); LongRoPE's
    /// factors; RoPE over the halves of each head.
    Phi3,
}

impl ArchitectureName {
    fn of(gguf: &GgufFile) -> Result<Self, ConvertError> {
        let name = required("general.architecture", gguf.metadata.get_str("general.architecture")?)?;
        match name {
            "llama" => Ok(Self::Llama),
            "qwen2" => Ok(Self::Qwen2),
            "phi3" => Ok(Self::Phi3),
            other => Err(ConvertError::Architecture(other.into())),
        }
    }

    /// The metadata key `suffix` of this architecture: `qwen2.embedding_length`.
    fn key(self, suffix: &str) -> String {
        let prefix = match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Phi3 => "phi3",
        };
        format!("{prefix}.{suffix}")
    }

    /// llama.cpp rotates `(x[i], x[i + d/2])` for this architecture (its NEOX RoPE), so its
    /// converter left the Q and K rows in Hugging Face's order: this importer permutes them
    /// into the engine's (see the module documentation). For `llama` the converter did.
    fn rotates_halves(self) -> bool {
        matches!(self, Self::Qwen2 | Self::Phi3)
    }

    /// Where this architecture's GGUF holds the engine's layer weight `weight` of `layer`:
    /// the tensor's name, its rows there and the tensor's shape. `phi3` files hold q/k/v and
    /// gate/up fused, their parts' rows one after another (llama.cpp's `attn_qkv`, and
    /// `ffn_up` with the gate's rows first); the others hold each apart under its own name.
    fn source(self, a: &Architecture, layer: usize, weight: LayerWeight) -> (String, Range<usize>, Vec<usize>) {
        let fused = StackedWeight::ALL.into_iter().find(|s| s.parts().contains(&weight));
        match fused.filter(|_| self == Self::Phi3) {
            Some(stacked) => {
                let parts = stacked.part_rows(a);
                let rows = parts.iter().find(|(part, _)| *part == weight).expect("a part of its stack").1.clone();
                let name = match stacked {
                    StackedWeight::Qkv => stacked.name(layer),
                    StackedWeight::GateUp => LayerWeight::FfnUp.name(layer),
                };
                (name, rows, vec![parts.last().expect("parts").1.end, a.hidden])
            }
            None => {
                let shape = weight.shape(a);
                (weight.name(layer), 0..rows(&shape), shape)
            }
        }
    }

    /// The tensors read into the architecture, not written as tensors.
    fn read_apart(self) -> &'static [&'static str] {
        match self {
            Self::Phi3 => &[ROPE_FREQUENCIES, ROPE_FACTORS_SHORT, ROPE_FACTORS_LONG],
            _ => &[ROPE_FREQUENCIES],
        }
    }
}

/// Reads the hyper-parameters from the architecture's (`llama.*`, `qwen2.*`) and
/// `tokenizer.ggml.*` metadata; the vocabulary size and tied embeddings come from the
/// tensors themselves.
fn architecture(gguf: &GgufFile, family: ArchitectureName) -> Result<Architecture, ConvertError> {
    let m = &gguf.metadata;
    let key = |suffix: &str| family.key(suffix);
    let linear_scaling = match m.get_str(&key("rope.scaling.type"))? {
        None | Some("none") => None,
        Some("linear") => Some(required(&key("rope.scaling.factor"), m.get_f32(&key("rope.scaling.factor"))?)?),
        Some(scaling) => {
            return Err(ConvertError::Unsupported(format!(
                "RoPE scaling {scaling:?} is not supported (webjudge supports \"linear\" and Llama 3's rope_freqs)"
            )))
        }
    };
    let hidden = required_usize(gguf, &key("embedding_length"))?;
    let n_heads = required_usize(gguf, &key("attention.head_count"))?;
    // llama.cpp's head dimension: the key length, else the hidden size per head; RoPE
    // rotates `rope.dimension_count` of it, which must be all of it here.
    let head_dim = match m.get_u32(&key("attention.key_length"))? {
        Some(d) => d as usize,
        None if n_heads > 0 && hidden % n_heads == 0 => hidden / n_heads,
        None => {
            return Err(ConvertError::InvalidArchitecture(format!(
                "hidden size {hidden} is not a multiple of {n_heads} heads and {} is missing",
                key("attention.key_length")
            )))
        }
    };
    if let Some(length) = m.get_u32(&key("attention.value_length"))?.filter(|&l| l as usize != head_dim) {
        return Err(ConvertError::Unsupported(format!(
            "{} {length} differs from the key length {head_dim}",
            key("attention.value_length")
        )));
    }
    if let Some(rotated) = m.get_u32(&key("rope.dimension_count"))?.filter(|&d| d as usize != head_dim) {
        return Err(ConvertError::Unsupported(format!(
            "{} {rotated}: the model rotates only part of each head of {head_dim} (partial RoPE, as Phi-4-mini's); \
             webjudge rotates whole heads",
            key("rope.dimension_count")
        )));
    }
    let embedding_name = GlobalWeight::TokenEmbedding.name();
    let embedding = gguf.tensor(embedding_name).ok_or_else(|| ConvertError::MissingTensor(embedding_name.into()))?;
    let vocab = match embedding.dims[..] {
        [_, rows] => rows as usize,
        _ => 0, // the shape check of every tensor names the problem
    };
    if let Some(declared) = m.get_u32(&key("vocab_size"))?.filter(|&v| v as usize != vocab) {
        return Err(ConvertError::InvalidArchitecture(format!(
            "{} {declared} differs from the {vocab} rows of {embedding_name}",
            key("vocab_size")
        )));
    }
    let eos = m.get_u32("tokenizer.ggml.eos_token_id")?;
    let eot = m.get_u32("tokenizer.ggml.eot_token_id")?.filter(|&id| Some(id) != eos);
    let tokenizer_model = m.get_str("tokenizer.ggml.model")?;
    let mut architecture = Architecture {
        n_layers: required_usize(gguf, &key("block_count"))?,
        hidden,
        n_heads,
        n_kv_heads: m.get_u32(&key("attention.head_count_kv"))?.map_or(n_heads, |n| n as usize),
        head_dim,
        ffn: required_usize(gguf, &key("feed_forward_length"))?,
        vocab,
        rope_theta: m.get_f32(&key("rope.freq_base"))?.unwrap_or(10000.0),
        rope_frequency_divisors: linear_scaling.map(|factor| vec![factor; head_dim / 2]).unwrap_or_default(),
        // llama.cpp multiplies RoPE's cos and sin by it, whatever the scaling.
        rope_attention_factor: m.get_f32(&key("rope.scaling.attn_factor"))?.unwrap_or(1.0),
        norm_eps: required(
            &key("attention.layer_norm_rms_epsilon"),
            m.get_f32(&key("attention.layer_norm_rms_epsilon"))?,
        )?,
        qkv_bias: family == ArchitectureName::Qwen2,
        context_length: required_usize(gguf, &key("context_length"))?,
        tied_embeddings: gguf.tensor(GlobalWeight::Output.name()).is_none(),
        bos_id: m.get_u32("tokenizer.ggml.bos_token_id")?,
        eos_ids: eos.into_iter().chain(eot).collect(),
        // SentencePiece LLaMA tokenizers prepend BOS unless told otherwise; byte-level
        // BPE ones do not.
        add_bos: m.get_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(tokenizer_model == Some("llama")),
    };
    if family == ArchitectureName::Phi3 {
        for id in end_of_generation_by_text(gguf)? {
            if !architecture.eos_ids.contains(&id) {
                architecture.eos_ids.push(id);
            }
        }
    }
    architecture.validate().map_err(ConvertError::InvalidArchitecture)?;
    if let Some(id) = architecture.bos_id.iter().chain(&architecture.eos_ids).find(|&&id| id as usize >= vocab) {
        return Err(ConvertError::InvalidArchitecture(format!(
            "special token id {id} is outside the vocabulary of {vocab}"
        )));
    }
    Ok(architecture)
}

/// The texts of the tokens llama.cpp ends generation at whatever the file's EOS id
/// (llama-vocab.cpp's `special_eog_ids`, found "by the token text").
const END_OF_GENERATION_TEXTS: [&str; 12] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

/// The ids llama.cpp stops at by their text ([`END_OF_GENERATION_TEXTS`]). Read for `phi3`
/// files: llama.cpp's converter records `<|endoftext|>` as their EOS, while their template
/// ends each turn with `<|end|>`, which llama.cpp (by its text) and transformers (by
/// `generation_config.json`) both stop at.
fn end_of_generation_by_text(gguf: &GgufFile) -> Result<Vec<u32>, ConvertError> {
    let tokens = gguf.metadata.get_str_array("tokenizer.ggml.tokens")?.unwrap_or_default();
    let ids = tokens.iter().enumerate().filter(|(_, token)| END_OF_GENERATION_TEXTS.contains(token));
    Ok(ids.map(|(id, _)| id as u32).collect())
}

/// The GGUF's chat template, `tokenizer.chat_template`, under [`chat_template_policy`],
/// with the tokens of its BOS and EOS ids; the SentencePiece tokenizer
/// (`tokenizer.ggml.model` "llama") is LLaMA's.
fn chat_template(
    gguf: &GgufFile,
    given: Option<&TemplateText>,
    architecture: &Architecture,
    tokenizer: &Tokenizer,
) -> Result<Option<ChatTemplate>, ConvertError> {
    let key = "tokenizer.chat_template";
    let own =
        gguf.metadata.get_str(key)?.map(|jinja| TemplateText { origin: format!("GGUF {key}"), jinja: jinja.into() });
    let llama = gguf.metadata.get_str("tokenizer.ggml.model")? == Some("llama");
    chat_template_policy(given, own, special_token_strings((None, None), architecture, tokenizer), llama)
}

/// One tensor of the format: where its bytes are in the file and what it becomes.
pub struct PlannedTensor {
    /// The engine's name.
    pub name: String,
    /// What messages call it: its name, or a fused tensor's rows and the part they are.
    shown: String,
    ggml_type: GgmlType,
    /// `[rows, cols]` or `[n]`.
    pub shape: Vec<usize>,
    /// The dtype written: the one the GGUF type maps onto without loss (f32 for vectors).
    pub dtype: DType,
    /// Its bytes in the file (a fused tensor's rows of this part).
    pub range: Range<u64>,
    /// GGUF bytes of one row.
    row_bytes: u64,
    /// Head dimension when the rows (a bias's values) are Q's or K's in Hugging Face's
    /// order, to be permuted into the engine's ([`ArchitectureName::rotates_halves`]).
    rope_head_dim: Option<usize>,
}

/// The divisor of each rotated pair's frequency that llama.cpp's converter writes as the
/// `rope_freqs.weight` tensor for Llama 3's RoPE scaling (f32, one per pair); without it,
/// the linear scaling's the metadata gave, if any.
fn rope_frequency_divisors(gguf: &GgufFile, apart: &ApartTensors, a: &Architecture) -> Result<Vec<f32>, ConvertError> {
    let Some(divisors) = pair_factors(gguf, apart, a, ROPE_FREQUENCIES)? else {
        return Ok(a.rope_frequency_divisors.clone());
    };
    if !a.rope_frequency_divisors.is_empty() {
        return Err(ConvertError::Unsupported(format!("both linear RoPE scaling and {ROPE_FREQUENCIES}")));
    }
    Ok(divisors)
}

/// A `phi3` file's LongRoPE: within the original context
/// (`phi3.rope.scaling.original_context_length`, else the whole context) llama.cpp rotates
/// by `rope_factors_short.weight`, the engine's frequency divisors, with cos and sin
/// multiplied by `phi3.rope.scaling.attn_factor` (which the architecture read; where a file
/// lacks it, the value llama.cpp's converter and transformers compute). The recorded context
/// is capped at the original one, as for the Hugging Face checkpoint ([`LongRopeCap`]).
/// `None` without factors (Phi-3-mini-4k).
fn longrope(gguf: &GgufFile, apart: &ApartTensors, a: &mut Architecture) -> Result<Option<LongRopeCap>, ConvertError> {
    let short = pair_factors(gguf, apart, a, ROPE_FACTORS_SHORT)?;
    let long = pair_factors(gguf, apart, a, ROPE_FACTORS_LONG)?;
    let short = match (short, long) {
        (Some(short), Some(_)) => short,
        (None, None) => return Ok(None),
        (Some(_), None) => return Err(ConvertError::MissingTensor(ROPE_FACTORS_LONG.into())),
        (None, Some(_)) => return Err(ConvertError::MissingTensor(ROPE_FACTORS_SHORT.into())),
    };
    if !a.rope_frequency_divisors.is_empty() {
        return Err(ConvertError::Unsupported(format!("both {ROPE_FREQUENCIES} or linear RoPE scaling and LongRoPE")));
    }
    let key = ArchitectureName::Phi3.key("rope.scaling.original_context_length");
    let original = gguf.metadata.get_u32(&key)?.map_or(a.context_length, |o| o as usize);
    if original == 0 {
        return Err(ConvertError::InvalidArchitecture(format!("{key} must be positive")));
    }
    a.rope_frequency_divisors = short;
    if gguf.metadata.get_f32(&ArchitectureName::Phi3.key("rope.scaling.attn_factor"))?.is_none() {
        a.rope_attention_factor = longrope_attention_factor(a.context_length as f64 / original as f64, original);
    }
    Ok((original < a.context_length).then_some(LongRopeCap { original, extended: a.context_length }))
}

/// An f32 tensor of one value per rotated pair, read apart; `None` where the file lacks it.
fn pair_factors(
    gguf: &GgufFile,
    apart: &ApartTensors,
    a: &Architecture,
    name: &str,
) -> Result<Option<Vec<f32>>, ConvertError> {
    let Some(info) = gguf.tensor(name) else { return Ok(None) };
    let pairs = a.head_dim / 2;
    if info.ggml_type != GgmlType::F32.id() || info.dims[..] != [pairs as u64] {
        return Err(ConvertError::Shape {
            name: name.into(),
            dims: info.dims.clone(),
            found: info.dims.clone(),
            expected: vec![pairs],
        });
    }
    let raw = apart.get(name).map_or(&[][..], Vec::as_slice);
    if raw.len() != pairs * 4 {
        return Err(ConvertError::SourceBytes {
            tensor: name.into(),
            expected: pairs as u64 * 4,
            found: raw.len() as u64,
        });
    }
    Ok(Some(raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()))
}

/// Checks that the file holds exactly the tensors the architecture needs, with their
/// shapes and convertible types, before anything is written; a fused tensor (`phi3`'s)
/// becomes a planned tensor per part, each its rows ([`ArchitectureName::source`]).
fn plan_tensors(
    gguf: &GgufFile,
    architecture: &Architecture,
    family: ArchitectureName,
) -> Result<Vec<PlannedTensor>, ConvertError> {
    let expected = expected_tensors(architecture, gguf.tensors.len())
        .map_err(|e| ConvertError::InvalidArchitecture(e.to_string()))?;
    // Each expected tensor's source: the GGUF tensor, its rows there and its whole shape.
    let sources: Vec<(String, Range<usize>, Vec<usize>)> = expected
        .iter()
        .map(|(name, shape)| match LayerWeight::parse(name) {
            Some((layer, weight)) => family.source(architecture, layer, weight),
            None => (name.clone(), 0..rows(shape), shape.clone()),
        })
        .collect();
    let read = |name: &str| family.read_apart().contains(&name) || sources.iter().any(|(source, ..)| source == name);
    if let Some(extra) = gguf.tensors.iter().find(|t| !read(&t.name)) {
        return Err(ConvertError::UnexpectedTensor(extra.name.clone()));
    }
    expected
        .into_iter()
        .zip(sources)
        .map(|((name, shape), (source, part, source_shape))| {
            let info = gguf.tensor(&source).ok_or_else(|| ConvertError::MissingTensor(source.clone()))?;
            let found: Vec<u64> = info.dims.iter().rev().copied().collect();
            if found.len() != source_shape.len() || found.iter().zip(&source_shape).any(|(&f, &e)| f != e as u64) {
                return Err(ConvertError::Shape {
                    name: source,
                    dims: info.dims.clone(),
                    found,
                    expected: source_shape,
                });
            }
            let ggml_type = GgmlType::from_id(info.ggml_type).ok_or_else(|| ConvertError::UnsupportedType {
                tensor: source.clone(),
                ggml_type: info.ggml_type,
                type_name: info.type_name(),
            })?;
            let range = gguf.tensor_range(info)?;
            let row_bytes = (range.end - range.start) / rows(&source_shape) as u64;
            let shown = match source == name {
                true => name.clone(),
                false => format!(
                    "{source} rows {}..{} ({})",
                    part.start,
                    part.end,
                    LayerWeight::parse(&name).map_or("", |(_, w)| w.suffix())
                ),
            };
            let rotated = LayerWeight::parse(&name).is_some_and(|(_, weight)| weight.is_rotated())
                || LayerBias::parse(&name).is_some_and(|(_, bias)| bias.weight().is_rotated());
            Ok(PlannedTensor {
                rope_head_dim: (rotated && family.rotates_halves()).then_some(architecture.head_dim),
                name,
                shown,
                ggml_type,
                dtype: if shape.len() == 1 { DType::F32 } else { ggml_type.dtype() },
                range: range.start + part.start as u64 * row_bytes..range.start + part.end as u64 * row_bytes,
                row_bytes,
                shape,
            })
        })
        .collect()
}

/// The rows of a tensor of `shape`: a vector is one.
fn rows(shape: &[usize]) -> usize {
    if shape.len() == 2 {
        shape[0]
    } else {
        1
    }
}

impl PlannedTensor {
    pub fn group_size(&self) -> usize {
        if self.dtype.is_quantized() {
            self.ggml_type.group()
        } else {
            0
        }
    }

    /// The file's bytes that `rows` of the tensor are repacked from: those rows, or for Q
    /// and K rows the whole heads they lie in (each row comes from a row of its head).
    pub fn source_range(&self, rows: Range<usize>) -> Range<u64> {
        let rows = match self.rope_head_dim {
            Some(d) if self.shape.len() == 2 => rows.start / d * d..rows.end.div_ceil(d) * d,
            _ => rows,
        };
        self.range.start + rows.start as u64 * self.row_bytes..self.range.start + rows.end as u64 * self.row_bytes
    }

    /// The file's bytes of `rows` of the tensor (what progress counts).
    pub fn source_bytes(&self, rows: &Range<usize>) -> u64 {
        rows.len() as u64 * self.row_bytes
    }

    /// `rows` packed in the written dtype from `bytes`, the file's [`Self::source_range`] of
    /// them; Q and K rows (and their biases' values) in the engine's RoPE order.
    pub fn repack(&self, rows: Range<usize>, bytes: &[u8]) -> Result<Vec<u32>, ConvertError> {
        let source = self.source_range(rows.clone());
        if bytes.len() as u64 != source.end - source.start {
            let (expected, found) = (source.end - source.start, bytes.len() as u64);
            return Err(ConvertError::SourceBytes { tensor: self.shown.clone(), expected, found });
        }
        let row_bytes = self.row_bytes as usize;
        let gathered;
        let raw = match self.rope_head_dim {
            Some(d) if self.shape.len() == 2 => {
                // Whole rows are whole blocks: gather them in the engine's order, then pack.
                let first = rows.start / d * d;
                gathered = rows
                    .flat_map(|row| {
                        let at = (rope_source_row(row, d) - first) * row_bytes;
                        &bytes[at..at + row_bytes]
                    })
                    .copied()
                    .collect::<Vec<u8>>();
                &gathered[..]
            }
            _ => bytes,
        };
        let words = if self.dtype != self.ggml_type.dtype() {
            self.ggml_type.dequantize(raw).iter().map(|v| v.to_bits()).collect()
        } else {
            let packed = self.ggml_type.pack(raw);
            packed.map_err(|problem| ConvertError::Value { tensor: self.shown.clone(), problem })?
        };
        match self.rope_head_dim {
            // A bias (f32, a word per value) permuted like its weight's rows.
            Some(d) if self.shape.len() == 1 => Ok((0..words.len()).map(|j| words[rope_source_row(j, d)]).collect()),
            _ => Ok(words),
        }
    }
}
