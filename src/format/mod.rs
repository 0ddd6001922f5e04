//! The model directory format both engines read: the manifest and its validation, weight
//! dtypes, the tensor schema, the architecture, chat template and judge family a manifest
//! records, the GGUF reader and GGML's block types. It imports nothing else of the crate; the converters that
//! write it live above it, in `convert/` (native only).

mod architecture;
mod block;
mod chat_template;
// Reading files (native only: the browser fetches a model directory's files).
#[cfg(not(target_arch = "wasm32"))]
pub mod checked_file;
mod dtype;
pub mod ggml_blocks;
pub mod gguf;
mod jinja;
mod judge_family;
pub mod k_quants;
pub mod layout;
pub mod manifest;
mod quantize;
pub mod schema;

pub use architecture::{Architecture, Llama3RopeScaling};
pub use block::{BLOCK_VALUES, K_SUB_BLOCKS, Q4_K_PARAM_WORDS, Q5_K_PARAM_WORDS, Q6_K_PARAM_WORDS, SUPER_BLOCK_VALUES};
pub use chat_template::{ChatTemplate, ChatTemplateError, JinjaTemplate, Message, RenderedChat, Role};
pub use dtype::{dequantize, pack_f16_words, pack_q4, pack_q4_words, pack_q8, DType};
pub use jinja::is_python_space;
pub use judge_family::JudgeFamily;
pub use manifest::{Manifest, ManifestError, ShardEntry, TensorEntry, TensorPart};
pub use quantize::{encode, encode_weighted, quantize_q4, quantize_q4_sym, quantize_q5, quantize_q8, AffineRule};

/// Lowercase hex, as the manifest records a shard's sha256.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
