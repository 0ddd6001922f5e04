//! Perplexity and KL divergence of a text as llama.cpp's `llama-perplexity` scores them.
//!
//! The text is tokenized once (BOS as the model adds it) and cut into chunks of `context`
//! tokens; a trailing part shorter than a chunk is dropped. Each chunk's first token is
//! replaced by BOS where the model adds one, the chunk is evaluated from an empty context,
//! and only its second half is scored: the logits at positions `context / 2` to
//! `context - 2` predict the tokens after them, `context - 1 - context / 2` per chunk.
//! Perplexity is `exp` of the mean negative log-likelihood over all scored tokens.
//! With a reference model, each scored position also gives KL(reference ‖ model) over the
//! whole vocabulary and whether both put the same token first.

use std::ops::Range;

use crate::format::Architecture;
use crate::kernels::Sampling;
use crate::model::{DecodeRow, LlamaModel, StepError};
use crate::tokenizer::{Tokenizer, TokenizerError};

/// llama-perplexity's chunk size unless told otherwise.
pub const DEFAULT_CONTEXT: usize = 512;

/// The smallest chunk with a scored position: `context / 2 < context - 1`.
pub const MIN_CONTEXT: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum PerplexityError {
    #[error("text has {tokens} tokens; one chunk needs {context}: use --context {tokens} or less, or a longer text")]
    TooFewTokens { tokens: usize, context: usize },
    #[error("a chunk of {context} tokens scores none: the context must be at least {MIN_CONTEXT}")]
    ContextTooSmall { context: usize },
    #[error("the reference's vocabulary has {reference} ids and the model's {model}: both must share one tokenizer")]
    VocabularySize { model: usize, reference: usize },
    #[error(
        "the reference tokenizes the text into {reference} tokens and the model into {model}, first differing at \
         token {at}: both must share one tokenizer"
    )]
    DifferentTokens { model: usize, reference: usize, at: usize },
}

/// The ids llama-perplexity scores: `text` tokenized as text (special tokens' strings stay
/// text), after BOS where the model adds one.
pub fn text_tokens(tokenizer: &Tokenizer, architecture: &Architecture, text: &str) -> Result<Vec<u32>, TokenizerError> {
    Ok(added_bos(architecture).into_iter().chain(tokenizer.encode_text(text)?).collect())
}

/// The BOS id the model's tokenizer prepends, if it prepends one.
pub fn added_bos(architecture: &Architecture) -> Option<u32> {
    architecture.bos_id.filter(|_| architecture.add_bos)
}

/// Refuses a reference that does not share the model's vocabulary: another size, or other
/// ids for the text (`model` and `reference` from [`text_tokens`]).
pub fn check_same_tokens(
    model: &[u32],
    model_vocab: usize,
    reference: &[u32],
    reference_vocab: usize,
) -> Result<(), PerplexityError> {
    if model_vocab != reference_vocab {
        return Err(PerplexityError::VocabularySize { model: model_vocab, reference: reference_vocab });
    }
    if model != reference {
        let at = model.iter().zip(reference).take_while(|(a, b)| a == b).count();
        return Err(PerplexityError::DifferentTokens { model: model.len(), reference: reference.len(), at });
    }
    Ok(())
}

/// The whole chunks of `context` tokens of `tokens`, each starting with `bos` where the
/// model adds one (llama-perplexity overwrites the chunk's first token with it).
pub fn chunks(tokens: &[u32], context: usize, bos: Option<u32>) -> Result<Vec<Vec<u32>>, PerplexityError> {
    if context < MIN_CONTEXT {
        return Err(PerplexityError::ContextTooSmall { context });
    }
    if tokens.len() < context {
        return Err(PerplexityError::TooFewTokens { tokens: tokens.len(), context });
    }
    Ok(tokens
        .chunks_exact(context)
        .map(|ids| {
            let mut chunk = ids.to_vec();
            if let Some(bos) = bos {
                chunk[0] = bos;
            }
            chunk
        })
        .collect())
}

/// The positions of a chunk whose logits are scored, each against the token after it:
/// llama-perplexity's `first = n_ctx / 2` up to `n_ctx - 2`.
pub fn scored_positions(context: usize) -> Range<usize> {
    context / 2..context - 1
}

/// Evaluates `chunk` (at least [`MIN_CONTEXT`] tokens) from an empty slot 0 and hands `each`
/// the logits of every scored position, in order. The unscored first half is prefilled; the
/// rest runs as decode steps of up to the model's sequences consecutive tokens, every one
/// choosing, so the lm_head writes a logits row for each (the chunk's last token predicts
/// nothing and is skipped).
pub async fn chunk_logits(
    model: &mut LlamaModel,
    chunk: &[u32],
    each: &mut dyn FnMut(usize, &[f32]),
) -> Result<(), StepError> {
    let scored = scored_positions(chunk.len());
    let vocab = model.architecture().vocab;
    model.reset();
    model.append_slot(0, &chunk[..scored.start])?;
    let mut position = scored.start;
    for step in chunk[scored].chunks(model.sequences()) {
        let rows: Vec<DecodeRow> = step.iter().map(|&id| DecodeRow { slot: 0, id, choose: true }).collect();
        model.decode_batch(&rows, Sampling::Greedy).await?;
        for row in model.logits(rows.len()).await?.chunks_exact(vocab) {
            each(position, row);
            position += 1;
        }
    }
    Ok(())
}

/// Log-probabilities of `logits` (a log-softmax in f64).
pub fn log_probs(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let log_sum = logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln() + max;
    logits.iter().map(|&l| l as f64 - log_sum).collect()
}

/// The index of the largest value, the first of equals (llama.cpp's strict `>` scan).
pub fn argmax<T: PartialOrd + Copy>(values: &[T]) -> usize {
    (1..values.len()).fold(0, |best, i| if values[i] > values[best] { i } else { best })
}

/// The running negative log-likelihood of the scored tokens.
#[derive(Clone, Copy, Debug, Default)]
pub struct Nll {
    sum: f64,
    count: usize,
}

impl Nll {
    /// Adds the token `target` under the distribution of `log_probs`.
    pub fn add(&mut self, log_probs: &[f64], target: u32) {
        self.sum -= log_probs[target as usize];
        self.count += 1;
    }

    pub fn tokens(&self) -> usize {
        self.count
    }

    /// `exp` of the mean negative log-likelihood.
    pub fn perplexity(&self) -> f64 {
        (self.sum / self.count as f64).exp()
    }
}

/// KL(reference ‖ model) and top-token agreement over the scored positions.
#[derive(Clone, Debug, Default)]
pub struct KlDivergence {
    values: Vec<f64>,
    same_top: usize,
}

/// What `llama-perplexity --kl-divergence` reports of a [`KlDivergence`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct KlSummary {
    pub mean: f64,
    /// The 99th percentile, interpolated as llama.cpp does ([`percentile`]).
    pub p99: f64,
    pub max: f64,
    /// The share of positions where both models' most likely tokens are the same.
    pub same_top: f64,
}

impl KlDivergence {
    /// Adds one position: both distributions as log-probabilities over one vocabulary.
    pub fn add(&mut self, reference: &[f64], model: &[f64]) {
        let kl = reference.iter().zip(model).map(|(&p, &q)| p.exp() * (p - q)).sum();
        self.values.push(kl);
        self.same_top += usize::from(argmax(reference) == argmax(model));
    }

    /// None before any position.
    pub fn summary(&self) -> Option<KlSummary> {
        let n = self.values.len();
        if n == 0 {
            return None;
        }
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        Some(KlSummary {
            mean: self.values.iter().sum::<f64>() / n as f64,
            p99: percentile(&sorted, 0.99),
            max: sorted[n - 1],
            same_top: self.same_top as f64 / n as f64,
        })
    }
}

/// llama-perplexity's percentile of ascending `sorted` values: linear interpolation between
/// the values at `fraction * (n - 1)`'s floor and the next.
pub fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    let at = fraction.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (low, part) = (at.floor() as usize, at.fract());
    (1.0 - part) * sorted[low] + part * sorted[(low + 1).min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_drop_the_remainder_and_start_with_bos() {
        let tokens: Vec<u32> = (10..21).collect();
        assert_eq!(chunks(&tokens, 4, Some(1)).unwrap(), vec![vec![1, 11, 12, 13], vec![1, 15, 16, 17]]);
        assert_eq!(chunks(&tokens, 4, None).unwrap(), vec![vec![10, 11, 12, 13], vec![14, 15, 16, 17]]);
        let refusal = chunks(&tokens, 12, None).unwrap_err().to_string();
        assert_eq!(refusal, "text has 11 tokens; one chunk needs 12: use --context 11 or less, or a longer text");
        assert!(matches!(chunks(&tokens, 2, None), Err(PerplexityError::ContextTooSmall { context: 2 })));
    }

    #[test]
    fn a_reference_must_tokenize_the_text_alike() {
        assert!(check_same_tokens(&[1, 2, 3], 10, &[1, 2, 3], 10).is_ok());
        let size = check_same_tokens(&[1], 10, &[1], 12).unwrap_err().to_string();
        assert_eq!(size, "the reference's vocabulary has 12 ids and the model's 10: both must share one tokenizer");
        let ids = check_same_tokens(&[1, 2, 3], 10, &[1, 4], 10).unwrap_err().to_string();
        assert!(ids.contains("into 2 tokens and the model into 3, first differing at token 1"), "{ids}");
    }

    #[test]
    fn scored_positions_are_llama_perplexity_s() {
        // n_ctx 512: first = 256, and positions 256..=510 predict tokens 257..=511.
        assert_eq!(scored_positions(512), 256..511);
        assert_eq!(scored_positions(7), 3..6);
        assert_eq!(scored_positions(3), 1..2);
    }

    #[test]
    fn nll_of_uniform_and_peaked_distributions() {
        let mut nll = Nll::default();
        // Four equal logits: each token has probability 1/4.
        nll.add(&log_probs(&[2.0; 4]), 3);
        assert!((nll.perplexity() - 4.0).abs() < 1e-12);
        // Logits ln 1, ln 3: probabilities 1/4 and 3/4; the mean NLL of ln 4 and ln 4/3 is ln 4/sqrt 3.
        nll.add(&log_probs(&[0.0, 3f32.ln()]), 1);
        assert_eq!(nll.tokens(), 2);
        assert!((nll.perplexity() - 4.0 / 3f64.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn kl_of_known_distributions() {
        let mut kl = KlDivergence::default();
        let half = [0.5f64.ln(), 0.5f64.ln()];
        kl.add(&half, &half);
        // KL({1/2, 1/2} ‖ {1/4, 3/4}) = 1/2 ln 2 + 1/2 ln 2/3 = 1/2 ln 4/3; tops 0 and 1.
        kl.add(&half, &[0.25f64.ln(), 0.75f64.ln()]);
        let summary = kl.summary().unwrap();
        let expected = 0.5 * (4.0f64 / 3.0).ln();
        assert!((summary.max - expected).abs() < 1e-12);
        assert!((summary.mean - expected / 2.0).abs() < 1e-12);
        // Two values: p99 sits 0.99 of the way from the first to the second.
        assert!((summary.p99 - 0.99 * expected).abs() < 1e-12);
        assert_eq!(summary.same_top, 0.5);
        assert!(KlDivergence::default().summary().is_none());
    }

    #[test]
    fn percentile_interpolates_as_llama_cpp() {
        let sorted: Vec<f64> = (0..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert_eq!(percentile(&[1.0, 2.0, 4.0], 0.75), 3.0);
        assert_eq!(percentile(&[5.0], 0.99), 5.0);
    }

    #[test]
    fn argmax_takes_the_first_of_equals() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[7.0f32]), 0);
    }
}
