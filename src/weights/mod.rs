//! Weight formats: the model directory webjudge runs from, and importers into it.

// Reading files, and the importers (native only: the browser fetches the model directories
// they wrote).
#[cfg(not(target_arch = "wasm32"))]
pub mod checked_file;
#[cfg(not(target_arch = "wasm32"))]
pub mod checkpoint;
mod dtype;
pub mod gguf;
#[cfg(not(target_arch = "wasm32"))]
pub mod gguf_import;
#[cfg(not(target_arch = "wasm32"))]
pub mod gptq;
#[cfg(not(target_arch = "wasm32"))]
pub mod hf_import;
#[cfg(not(target_arch = "wasm32"))]
pub mod import;
pub mod manifest;
#[cfg(not(target_arch = "wasm32"))]
pub mod safetensors;
pub mod schema;
#[cfg(not(target_arch = "wasm32"))]
pub mod torch_pickle;
pub mod writer;

pub use dtype::{
    dequantize, encode, pack_f16_words, pack_q4, pack_q4_words, pack_q8, quantize_q4, quantize_q4_sym, quantize_q8,
    DType, Quant,
};
pub use manifest::{Manifest, ManifestError, ShardEntry, TensorEntry, TensorPart};

/// An I/O error that names the file it happened on ("Permission denied" alone tells a user
/// nothing).
pub(crate) fn io_error_at(path: &std::path::Path, error: std::io::Error) -> std::io::Error {
    std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}
