//! A loaded model with its tokenizer, and the generation loop that streams text.
//!
//! Everything here runs unchanged natively and in the browser; only where the model
//! directory's bytes come from differs ([`native`] reads files, the web module fetches).

mod batch;
pub mod bench;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
pub mod perplexity;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use web_time::Instant;

use crate::format::Manifest;
use crate::kernels::Sampling;
use crate::model::{LlamaModel, StepError};
use crate::tokenizer::{TextStream, Tokenizer, TokenizerError};

pub use batch::BatchEvent;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Load(#[from] crate::model::LoadError),
    /// A GGUF file loaded directly that the import refuses.
    #[error(transparent)]
    Import(#[from] crate::import::ConvertError),
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
    /// Checked between tokens.
    pub cancel: Option<Cancel>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self { max_tokens: 256, sampling: Sampling::Greedy, cancel: None }
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
    /// Stopped through [`Cancel`].
    Cancelled,
}

#[derive(Clone, Debug)]
pub struct Generation {
    /// Generated ids, EOS included when produced.
    pub ids: Vec<u32>,
    /// The decoded generated text (special tokens kept).
    pub text: String,
    /// The decoded text before the end-of-sequence token (all of it without one): what a
    /// judge's critique is.
    pub content: String,
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys and values were already cached (not prefilled again).
    pub reused_tokens: usize,
    pub finish: Finish,
    /// Prompt processing up to and including the first generated token: the time to
    /// first token.
    pub prefill_seconds: f64,
    /// The remaining generated tokens.
    pub decode_seconds: f64,
}

impl Generation {
    /// Prefilled (not reused) prompt tokens per second.
    pub fn prefill_tokens_per_second(&self) -> f64 {
        rate(self.prompt_tokens - self.reused_tokens, self.prefill_seconds)
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

/// Stops a generation between tokens when set; clones share the flag (another thread,
/// or JavaScript while the generation awaits the GPU).
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

pub struct Engine {
    model: LlamaModel,
    pub tokenizer: Tokenizer,
    pub manifest: Manifest,
    /// For each sequence slot, the ids whose keys and values its cache holds, in order: a
    /// later prompt that starts with them is prefilled only from where it differs. Slot 0
    /// serves single generations.
    cached: Vec<Vec<u32>>,
}

impl Engine {
    pub fn new(model: LlamaModel, tokenizer: Tokenizer, manifest: Manifest) -> Self {
        let cached = vec![Vec::new(); model.sequences()];
        Self { model, tokenizer, manifest, cached }
    }

    pub fn model(&self) -> &LlamaModel {
        &self.model
    }

    /// Direct access to the model; the cache may change, so nothing is reused afterwards.
    pub fn model_mut(&mut self) -> &mut LlamaModel {
        self.cached.iter_mut().for_each(Vec::clear);
        &mut self.model
    }

    /// Tokens a prompt may have to leave room for `max_tokens` new ones.
    pub fn prompt_budget(&self, max_tokens: usize) -> usize {
        (self.model.context() + 1).saturating_sub(max_tokens.max(1))
    }

    /// The decoded text of generated `ids` before an end-of-sequence token.
    fn content(&self, ids: &[u32], finish: Finish) -> Result<String, TokenizerError> {
        let before_eos = if finish == Finish::Eos { &ids[..ids.len() - 1] } else { ids };
        self.tokenizer.decode(before_eos)
    }

    /// Refuses a prompt that is empty or leaves no room for `max_tokens` new tokens.
    fn check_prompt(&self, prompt_ids: &[u32], max_tokens: usize) -> Result<(), EngineError> {
        if prompt_ids.is_empty() {
            return Err(StepError::EmptyPrompt.into());
        }
        if prompt_ids.len() > self.prompt_budget(max_tokens) {
            let context = self.model.context();
            return Err(EngineError::PromptTooLong { prompt_tokens: prompt_ids.len(), max_tokens, context });
        }
        Ok(())
    }

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

    /// Generation from prompt ids. The part of the prompt already in the KV cache (a
    /// common prefix with the previous generation's context) is not computed again.
    pub async fn generate_ids(
        &mut self,
        prompt_ids: &[u32],
        options: &GenerateOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation, EngineError> {
        let max_tokens = options.max_tokens.max(1);
        self.check_prompt(prompt_ids, max_tokens)?;
        // Cancelled before it starts (a second judging order after a cancelled first one,
        // an already aborted signal): nothing is computed and the cache stays as it is.
        if options.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
            return Ok(batch::cancelled(prompt_ids.len()));
        }
        let eos = self.model.architecture().eos_ids.clone();
        // At least one prompt token must be prefilled to produce logits.
        let reused = reusable_prefix(&self.cached[0], prompt_ids);
        self.model.truncate(reused);
        self.cached[0].truncate(reused);
        let mut stream = TextStream::new();
        let mut ids = Vec::with_capacity(max_tokens);

        let started = Instant::now();
        let mut id = self.model.prefill(&prompt_ids[reused..], options.sampling).await?;
        self.cached[0].extend_from_slice(&prompt_ids[reused..]);
        let prefill_seconds = started.elapsed().as_secs_f64();
        let decoding = Instant::now();
        // The step that computes the next token is always submitted before the current
        // one is examined, and the one after it before the next is awaited: the GPU never
        // waits for the CPU. A stop leaves one step unread, which is discarded.
        if max_tokens > 1 {
            self.model.submit_decode(options.sampling)?;
        }
        let finish = loop {
            ids.push(id);
            on_text(&stream.push(&self.tokenizer, id)?);
            if eos.contains(&id) {
                break Finish::Eos;
            }
            if ids.len() >= max_tokens {
                break Finish::Length;
            }
            if options.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
                break Finish::Cancelled;
            }
            self.cached[0].push(id);
            // Token `ids.len()` is being computed; queue the one after it.
            if ids.len() + 1 < max_tokens {
                self.model.submit_decode(options.sampling)?;
            }
            id = self.model.next_token().await?;
        };
        self.model.discard_pending();
        let decode_seconds = decoding.elapsed().as_secs_f64();
        on_text(&stream.finish(&self.tokenizer)?);
        Ok(Generation {
            text: self.tokenizer.decode(&ids)?,
            content: self.content(&ids, finish)?,
            ids,
            prompt_tokens: prompt_ids.len(),
            reused_tokens: reused,
            finish,
            prefill_seconds,
            decode_seconds,
        })
    }
}

/// How much of `prompt` a cache holding `cached` can keep: their common prefix, leaving
/// at least one prompt token to prefill (the step that computes the next token's logits).
fn reusable_prefix(cached: &[u32], prompt: &[u32]) -> usize {
    let common = cached.iter().zip(prompt).take_while(|(a, b)| a == b).count();
    common.min(prompt.len().saturating_sub(1))
}
