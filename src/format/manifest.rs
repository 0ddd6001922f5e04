//! The model directory: `manifest.json`, weight shards and `tokenizer.json`.
//!
//! Shards are small enough for a browser to fetch, verify and cache one by one; every
//! tensor part fits one WebGPU storage binding, so large tensors are split by rows.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::schema::{expected_tensors, layer_role, TensorCountError};
use super::{Architecture, ChatTemplate, DType, JudgeFamily};

/// The format of a model without input orders; older builds read it.
pub const FORMAT_VERSION: u32 = 1;
/// The format of a model whose weights have input orders
/// ([`TensorEntry::input_order`]), written only then: a build older than it refuses such
/// a model by its version instead of ignoring the orders and computing garbage.
pub const INPUT_ORDER_FORMAT_VERSION: u32 = 2;
/// The format of a model with a tensor in a dtype added with the K-quants (q5, q4_k, q5_k,
/// q6_k, bf16; [`DType::format_version`]), written only then, for the same reason.
pub const K_QUANT_FORMAT_VERSION: u32 = 3;
/// The format of a model whose chat template is a Jinja template, or that has none
/// ([`Manifest::chat_template`]), written only then: a build older than it would refuse such
/// a manifest as JSON it cannot read; the version says why.
pub const CHAT_TEMPLATE_FORMAT_VERSION: u32 = 4;
/// The format of a model whose RoPE is scaled ([`Architecture::rope_frequency_divisors`]),
/// written only then: a build older than it would ignore the scaling and rotate wrongly.
pub const ROPE_SCALING_FORMAT_VERSION: u32 = 5;
/// The format of a model with q/k/v biases ([`Architecture::qkv_bias`], Qwen2), written only
/// then: a build older than it would find tensors it does not know and refuse the model.
pub const QKV_BIAS_FORMAT_VERSION: u32 = 6;
/// The format of a model whose RoPE cos and sin are scaled
/// ([`Architecture::rope_attention_factor`], LongRoPE's), written only then: a build older
/// than it would ignore the factor and compute every attention score wrongly.
pub const ROPE_ATTENTION_FACTOR_FORMAT_VERSION: u32 = 7;
/// The newest format this build reads.
pub const LATEST_FORMAT_VERSION: u32 = ROPE_ATTENTION_FACTOR_FORMAT_VERSION;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Default largest shard a converter writes.
pub const DEFAULT_SHARD_BYTES: u64 = 64 << 20;
/// The WebGPU default `maxStorageBufferBindingSize`: no tensor part may exceed it.
pub const MAX_BINDING_BYTES: u64 = 128 << 20;
/// The largest `manifest.json` a reader accepts and a converter writes: a 70B model in the
/// smallest shards `convert` writes (1 MiB, about 42k of them) has a manifest of about 14 MB.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;
/// A shard may pad each tensor part up to this alignment (WebGPU's default
/// `minStorageBufferOffsetAlignment`), and hold nothing else: every byte of a shard is read
/// into memory, so each must be backed by the tensors that need it.
pub const PART_ALIGNMENT: u64 = 256;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub architecture: Architecture,
    /// How a conversation becomes the prompt; absent for a model converted without one
    /// (it generates from plain text; the judge protocols refuse it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<ChatTemplate>,
    /// The judge family the model was trained as, whose protocols it serves; absent for a
    /// model that is no known judge (any protocol runs, Auto-J's by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeFamily>,
    pub tensors: Vec<TensorEntry>,
    pub shards: Vec<ShardEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: DType,
    /// `[rows, cols]` for matrices (output features first), `[n]` for vectors.
    pub shape: Vec<usize>,
    /// Values per quantization group along a row; 0 when not quantized.
    pub group_size: usize,
    /// Consecutive row ranges, each stored contiguously in one shard.
    pub parts: Vec<TensorPart>,
    /// For a layer's linear weight whose columns are stored permuted (act-order GPTQ
    /// codes, columns sorted by group so each group is contiguous): the `u32` tensor
    /// `order` of `cols` indices, a permutation of the inputs; column `i` of the weight
    /// multiplies input `order[i]`. Absent: the inputs in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_order: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorPart {
    pub row_start: usize,
    pub rows: usize,
    pub shard: usize,
    pub offset: u64,
    pub length: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    pub file: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the shard's bytes.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON for format version {FORMAT_VERSION}: {0}")]
    Parse(#[from] serde_json::Error),
    #[error(
        "manifest format version {found} is not supported (this build reads versions {FORMAT_VERSION} to {LATEST_FORMAT_VERSION})"
    )]
    Version { found: u32 },
    #[error("invalid architecture: {0}")]
    Architecture(String),
    #[error("tensor {name}: {problem}")]
    Tensor { name: String, problem: String },
    #[error("tensor {0} is missing")]
    Missing(String),
    #[error(transparent)]
    TensorCount(#[from] TensorCountError),
    #[error("the chat template needs format version {needed}, not {found}")]
    ChatTemplateVersion { needed: u32, found: u32 },
    #[error("shard name {0:?} is not a plain file name (letters, digits, '-', '_' and '.', not starting with '.')")]
    ShardName(String),
    #[error("shard {0} holds no tensor part")]
    UnusedShard(String),
    #[error(
        "shard {file} is {size} bytes, more than the {needed} its tensor parts need \
         (each padded to {PART_ALIGNMENT} bytes at most)"
    )]
    ShardSize { file: String, size: u64, needed: u64 },
}

impl TensorEntry {
    pub fn rows(&self) -> usize {
        if self.shape.len() == 2 {
            self.shape[0]
        } else {
            1
        }
    }

    pub fn cols(&self) -> usize {
        *self.shape.last().unwrap_or(&0)
    }

    fn problem(&self, problem: impl Into<String>) -> ManifestError {
        ManifestError::Tensor { name: self.name.clone(), problem: problem.into() }
    }
}

impl Manifest {
    pub fn from_json(text: &str) -> Result<Self, ManifestError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            format_version: u32,
        }
        let version: VersionOnly = serde_json::from_str(text)?;
        if !(FORMAT_VERSION..=LATEST_FORMAT_VERSION).contains(&version.format_version) {
            return Err(ManifestError::Version { found: version.format_version });
        }
        let manifest: Manifest = serde_json::from_str(text)?;
        manifest.validate()?;
        Ok(manifest)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("manifest serializes")
    }

    pub fn tensor(&self, name: &str) -> Result<&TensorEntry, ManifestError> {
        self.tensors.iter().find(|t| t.name == name).ok_or_else(|| ManifestError::Missing(name.into()))
    }

    /// Total bytes of all shards (what a download fetches).
    pub fn total_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.size).sum()
    }

    /// Columns of the widest weight with an input order (0 when none has one): the width
    /// of the activation buffer its inputs are gathered into.
    pub fn widest_ordered_input(&self) -> usize {
        self.tensors.iter().filter(|t| t.input_order.is_some()).map(TensorEntry::cols).max().unwrap_or(0)
    }

    /// The format version `chat_template` needs: a `{input}` wrapper reads in every version.
    pub fn chat_template_format_version(chat_template: Option<&ChatTemplate>) -> u32 {
        match chat_template {
            Some(ChatTemplate::Wrapper { .. }) => FORMAT_VERSION,
            Some(ChatTemplate::Jinja(_)) | None => CHAT_TEMPLATE_FORMAT_VERSION,
        }
    }

    /// The format version `architecture` needs: a scaled RoPE, scaled cos and sin, and q/k/v
    /// biases each need their own.
    pub fn architecture_format_version(architecture: &Architecture) -> u32 {
        let needs = [
            (!architecture.rope_frequency_divisors.is_empty(), ROPE_SCALING_FORMAT_VERSION),
            (architecture.qkv_bias, QKV_BIAS_FORMAT_VERSION),
            (architecture.rope_attention_factor != 1.0, ROPE_ATTENTION_FACTOR_FORMAT_VERSION),
        ];
        needs.iter().filter(|(needed, _)| *needed).map(|(_, version)| *version).max().unwrap_or(FORMAT_VERSION)
    }

    /// Checks every size, offset, shape and name so loading never reads out of bounds or
    /// outside the model directory, and the architecture's sizes are backed by tensors.
    pub fn validate(&self) -> Result<(), ManifestError> {
        self.architecture.validate().map_err(ManifestError::Architecture)?;
        let needed = Self::chat_template_format_version(self.chat_template.as_ref());
        if needed > self.format_version {
            return Err(ManifestError::ChatTemplateVersion { needed, found: self.format_version });
        }
        let needed = Self::architecture_format_version(&self.architecture);
        if needed > self.format_version {
            return Err(ManifestError::Architecture(format!(
                "a scaled RoPE needs format version {needed}, not {}",
                self.format_version
            )));
        }
        if let Some(shard) = self.shards.iter().find(|s| !is_plain_file_name(&s.file)) {
            return Err(ManifestError::ShardName(shard.file.clone()));
        }
        let mut seen = HashMap::new();
        let mut shard_needs = vec![0u64; self.shards.len()];
        for tensor in &self.tensors {
            if seen.insert(tensor.name.as_str(), tensor).is_some() {
                return Err(tensor.problem("appears twice"));
            }
            if tensor.shape.is_empty() || tensor.shape.len() > 2 || tensor.shape.contains(&0) {
                return Err(tensor.problem(format!("unsupported shape {:?}", tensor.shape)));
            }
            if tensor.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64)).is_none_or(|n| n > MAX_ELEMENTS) {
                return Err(tensor.problem(format!("shape {:?} has more than 2^40 values", tensor.shape)));
            }
            let (rows, cols) = (tensor.rows() as u64, tensor.cols() as u64);
            let group = tensor.group_size as u64;
            tensor.dtype.check_shape(cols, group).map_err(|p| tensor.problem(p))?;
            if tensor.dtype.format_version() > self.format_version {
                return Err(tensor.problem(format!(
                    "is {}, which needs format version {}, not {}",
                    tensor.dtype.name(),
                    tensor.dtype.format_version(),
                    self.format_version
                )));
            }
            let mut next_row = 0;
            for part in &tensor.parts {
                if part.row_start != next_row || part.rows == 0 || part.rows as u64 > rows - next_row as u64 {
                    return Err(tensor.problem("parts do not cover the rows in order"));
                }
                next_row += part.rows;
                let expected = tensor.dtype.part_bytes(part.rows as u64, cols, group);
                if part.length != expected {
                    return Err(tensor.problem(format!(
                        "part at row {} is {} bytes, its shape needs {expected}",
                        part.row_start, part.length
                    )));
                }
                if part.length > MAX_BINDING_BYTES {
                    return Err(tensor.problem(format!(
                        "part of {} bytes exceeds the {MAX_BINDING_BYTES}-byte binding limit",
                        part.length
                    )));
                }
                let shard = self.shards.get(part.shard).ok_or_else(|| tensor.problem("names a missing shard"))?;
                if part.offset % 4 != 0 || part.offset.checked_add(part.length).is_none_or(|end| end > shard.size) {
                    return Err(tensor.problem(format!("part lies outside shard {}", shard.file)));
                }
                let padded = part.length.next_multiple_of(PART_ALIGNMENT);
                shard_needs[part.shard] = shard_needs[part.shard].saturating_add(padded);
            }
            if next_row as u64 != rows {
                return Err(tensor.problem(format!("parts cover {next_row} of {rows} rows")));
            }
        }
        for (shard, &needed) in self.shards.iter().zip(&shard_needs) {
            if needed == 0 {
                return Err(ManifestError::UnusedShard(shard.file.clone()));
            }
            if shard.size > needed {
                return Err(ManifestError::ShardSize { file: shard.file.clone(), size: shard.size, needed });
            }
        }
        for (name, shape) in expected_tensors(&self.architecture, self.tensors.len())? {
            let tensor = seen.get(name.as_str()).ok_or_else(|| ManifestError::Missing(name.clone()))?;
            if tensor.shape != shape {
                return Err(tensor.problem(format!("shape {:?}, the architecture needs {shape:?}", tensor.shape)));
            }
            if tensor.dtype == DType::U32 {
                return Err(tensor.problem("is u32: indices, not weights"));
            }
            if shape.len() == 1 && tensor.dtype != DType::F32 {
                return Err(tensor.problem(format!("is {}; the kernels read norm weights as f32", tensor.dtype.name())));
            }
        }
        self.validate_input_orders(&seen)
    }

    /// Input orders are named by layer weights only (the embedding has no input columns,
    /// the lm_head none permuted), need the newer format, and name a `u32` vector with
    /// one index per column. That the indices form a permutation is checked when the
    /// shard holding them arrives (the model's `ShardUploader`).
    fn validate_input_orders(&self, tensors: &HashMap<&str, &TensorEntry>) -> Result<(), ManifestError> {
        for tensor in &self.tensors {
            let Some(order_name) = &tensor.input_order else { continue };
            if self.format_version < INPUT_ORDER_FORMAT_VERSION {
                return Err(tensor.problem(format!(
                    "has an input order, which needs format version {INPUT_ORDER_FORMAT_VERSION}, not {}",
                    self.format_version
                )));
            }
            if layer_role(&tensor.name).is_none() || tensor.shape.len() != 2 || tensor.dtype == DType::U32 {
                return Err(tensor.problem("has an input order, which only a layer's weight matrix may have"));
            }
            let order = tensors
                .get(order_name.as_str())
                .ok_or_else(|| tensor.problem(format!("names input order {order_name}, which is missing")))?;
            if order.dtype != DType::U32 || order.shape != [tensor.cols()] {
                return Err(tensor.problem(format!(
                    "names input order {order_name} of {} {:?}; its {} columns need a u32 vector of as many",
                    order.dtype.name(),
                    order.shape,
                    tensor.cols()
                )));
            }
        }
        Ok(())
    }
}

/// A tensor larger than this is no model webjudge can run, and its byte count could
/// overflow once multiplied out.
const MAX_ELEMENTS: u64 = 1 << 40;

/// Shard names come from a file that may be hostile: they must name a file inside the model
/// directory (no separators, no `..`, no hidden files) and be safe in a URL.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 255
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
