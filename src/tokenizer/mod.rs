//! Text to token ids and back, on the Hugging Face `tokenizers` library.
//!
//! A model directory carries a `tokenizer.json`; converters that start from a GGUF file
//! build one from its metadata with [`tokenizer_json_from_gguf`]. Generation streams text
//! through [`TextStream`], which only ever emits complete characters.

mod from_gguf;
mod sentencepiece;
mod stream;

pub use from_gguf::tokenizer_json_from_gguf;
pub use sentencepiece::{add_flags, tokenizer_json_from_sentencepiece, SentencePieceModel};
pub use stream::TextStream;

use crate::weights::gguf::GgufError;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("invalid tokenizer.json: {0}")]
    InvalidJson(String),
    #[error("reading {path}: {message}")]
    Io { path: String, message: String },
    #[error("GGUF metadata has no {0}, which the tokenizer needs")]
    MissingKey(String),
    /// A key of the wrong type (the GGUF reader's error names the key and both types).
    #[error(transparent)]
    WrongType(#[from] GgufError),
    #[error("GGUF metadata {key}: {problem}")]
    InvalidMetadata { key: String, problem: String },
    #[error("tokenizer.ggml.model {0:?} is not supported: webjudge reads \"gpt2\" (byte-level BPE) and \"llama\" (SentencePiece) vocabularies")]
    UnknownModel(String),
    #[error("tokenizer.ggml.pre {0:?} is not supported: webjudge knows the byte-level pre-tokenizers \"default\", \"gpt-2\", \"smollm\", \"llama-bpe\", \"llama3\" and \"llama-v3\"")]
    UnknownPreTokenizer(String),
    #[error("invalid SentencePiece model: {0}")]
    SentencePiece(String),
    #[error("encoding failed: {0}")]
    Encode(String),
    #[error("decoding failed: {0}")]
    Decode(String),
}

/// A loaded `tokenizer.json`.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    pub fn from_json(json: &str) -> Result<Self, TokenizerError> {
        let inner = json.parse::<tokenizers::Tokenizer>().map_err(|e| TokenizerError::InvalidJson(e.to_string()))?;
        Ok(Self { inner })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let json = std::fs::read_to_string(path)
            .map_err(|e| TokenizerError::Io { path: path.display().to_string(), message: e.to_string() })?;
        Self::from_json(&json)
    }

    /// Ids of `text` as Hugging Face's `add_special_tokens=True` gives them: special tokens
    /// written in the text become their ids, and BOS/EOS are added only where the
    /// tokenizer's post-processor adds them.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        // `encode_fast` skips offset tracking, which nothing here uses.
        let encoding = self.inner.encode_fast(text, true).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens included, so a decoded prompt shows what the model saw.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner.decode(ids, false).map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
