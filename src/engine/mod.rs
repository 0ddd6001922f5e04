//! A loaded model with its tokenizer, and the generation loop that streams text.
//!
//! Everything here runs unchanged natively and in the browser; only where the model
//! directory's bytes come from differs ([`native`] reads files, the web module fetches).

pub mod bench;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;

use web_time::Instant;

use crate::kernels::Sampling;
use crate::model::{LlamaModel, StepError};
use crate::tokenizer::{TextStream, Tokenizer, TokenizerError};
use crate::weights::Manifest;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Load(#[from] crate::model::LoadError),
    #[error(
        "the prompt has {prompt_tokens} tokens; with {max_tokens} new tokens that exceeds the {context}-token \
         context"
    )]
    PromptTooLong { prompt_tokens: usize, max_tokens: usize, context: usize },
}

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Most tokens to generate (EOS included).
    pub max_tokens: usize,
    pub sampling: Sampling,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self { max_tokens: 256, sampling: Sampling::Greedy }
    }
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// The model produced an end-of-sequence token (included in `ids`).
    Eos,
    /// `max_tokens` were generated.
    Length,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Generation {
    /// Generated ids, EOS included when produced.
    pub ids: Vec<u32>,
    /// The decoded generated text (special tokens kept).
    pub text: String,
    pub prompt_tokens: usize,
    pub finish: Finish,
    /// Prompt processing up to and including the first generated token.
    pub prefill_seconds: f64,
    /// The remaining generated tokens.
    pub decode_seconds: f64,
}

impl Generation {
    pub fn prefill_tokens_per_second(&self) -> f64 {
        rate(self.prompt_tokens, self.prefill_seconds)
    }

    pub fn decode_tokens_per_second(&self) -> f64 {
        rate(self.ids.len().saturating_sub(1), self.decode_seconds)
    }
}

fn rate(tokens: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        tokens as f64 / seconds
    } else {
        0.0
    }
}

pub struct Engine {
    pub model: LlamaModel,
    pub tokenizer: Tokenizer,
    pub manifest: Manifest,
}

impl Engine {
    /// Tokenizes `prompt` exactly as given (BOS only if the model adds one) and generates,
    /// calling `on_text` with each newly completed piece of text.
    pub async fn generate(
        &mut self,
        prompt: &str,
        options: &GenerateOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation, EngineError> {
        let prompt_ids = self.tokenizer.encode(prompt)?;
        self.generate_ids(&prompt_ids, options, on_text).await
    }

    /// Generation from prompt ids; the KV cache starts empty.
    pub async fn generate_ids(
        &mut self,
        prompt_ids: &[u32],
        options: &GenerateOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation, EngineError> {
        let context = self.model.context();
        let max_tokens = options.max_tokens.max(1);
        // The last generated token is never fed back, so it needs no cache position.
        if prompt_ids.len() + max_tokens - 1 > context {
            return Err(EngineError::PromptTooLong { prompt_tokens: prompt_ids.len(), max_tokens, context });
        }
        let eos = self.model.architecture().eos_ids.clone();
        self.model.reset();
        let mut stream = TextStream::new();
        let mut ids = Vec::with_capacity(max_tokens);

        let started = Instant::now();
        let mut id = self.model.prefill(prompt_ids, options.sampling).await?;
        let prefill_seconds = started.elapsed().as_secs_f64();
        let decoding = Instant::now();
        let finish = loop {
            ids.push(id);
            on_text(&stream.push(&self.tokenizer, id)?);
            if eos.contains(&id) {
                break Finish::Eos;
            }
            if ids.len() >= max_tokens {
                break Finish::Length;
            }
            id = self.model.decode(options.sampling).await?;
        };
        let decode_seconds = decoding.elapsed().as_secs_f64();
        on_text(&stream.finish(&self.tokenizer)?);
        Ok(Generation {
            text: self.tokenizer.decode(&ids)?,
            ids,
            prompt_tokens: prompt_ids.len(),
            finish,
            prefill_seconds,
            decode_seconds,
        })
    }
}
