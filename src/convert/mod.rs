//! The converters (native only): GGUF and Hugging Face checkpoints into the model directory
//! format ([`crate::format`]). They sit above the tokenizer, whose `tokenizer.json` they build
//! and check, and write the directory the browser fetches.

pub mod checkpoint;
pub mod gguf_import;
pub mod gptq;
pub mod hf_import;
pub mod imatrix;
pub mod import;
pub mod quant;
pub mod safetensors;
pub mod torch_pickle;
pub mod writer;

/// An I/O error that names the file it happened on ("Permission denied" alone tells a user
/// nothing).
pub(crate) fn io_error_at(path: &std::path::Path, error: std::io::Error) -> std::io::Error {
    std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}
