//! The per-load choices: context, prefill chunk, sequences.

use super::load::LoadError;
use super::plan::{BufferPlan, CPU_PREFILL_CHUNK, GPU_PREFILL_CHUNK};
use crate::format::Architecture;
use crate::kernels::variants::MATVEC_MAX_TOKENS;
use crate::kernels::Gpu;

/// Per-load choices that trade GPU memory against capability.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    /// KV cache positions (prompt plus generated tokens); at most the model's context.
    pub context: usize,
    /// Prompt tokens processed per prefill submission.
    pub prefill_chunk: usize,
    /// Sequences that can be decoded together, each with a KV cache slot of `context`
    /// positions: the largest decode batch.
    pub sequences: usize,
}

/// The largest decode batch: the tokens a decode matvec multiplies per weight read.
pub const MAX_SEQUENCES: usize = MATVEC_MAX_TOKENS as usize;

impl LoadOptions {
    /// The model's full context, one sequence, and the adapter's prefill chunk:
    /// [`GPU_PREFILL_CHUNK`], or [`CPU_PREFILL_CHUNK`] on a CPU adapter, at most what the
    /// adapter's buffers hold for the model (`widest_ordered_input` as for
    /// [`BufferPlan::new`]).
    pub fn for_adapter(architecture: &Architecture, gpu: &Gpu, widest_ordered_input: usize) -> Self {
        let chunk = if gpu.cpu_adapter { CPU_PREFILL_CHUNK } else { GPU_PREFILL_CHUNK };
        let max = BufferPlan::max_step_tokens(architecture, widest_ordered_input, gpu.max_binding());
        Self { context: architecture.context_length, prefill_chunk: chunk.min(max), sequences: 1 }
    }

    /// These options for `sequences` decoded together, with `context` positions each when one
    /// is asked for (taken as given: one past the model's is refused when loading), else
    /// `fitting` (what a batch's prompts need, at most the model's), else these options' own.
    pub fn for_batch(self, sequences: usize, context: Option<usize>, fitting: Option<usize>) -> Self {
        let fitting = fitting.map(|fitting| fitting.min(self.context));
        LoadOptions { context: context.or(fitting).unwrap_or(self.context), sequences, ..self }
    }

    /// Refuses a context outside 1 to the model's, and a prefill chunk outside 1 to the
    /// most tokens a step can have on `gpu` ([`BufferPlan::max_step_tokens`]);
    /// `widest_ordered_input` as for [`BufferPlan::new`].
    pub fn check(&self, architecture: &Architecture, widest_ordered_input: usize, gpu: &Gpu) -> Result<(), LoadError> {
        check_context(architecture, self.context)?;
        let max = BufferPlan::max_step_tokens(architecture, widest_ordered_input, gpu.max_binding());
        if !(1..=max).contains(&self.prefill_chunk) {
            return Err(LoadError::PrefillChunk { chunk: self.prefill_chunk, max });
        }
        Ok(())
    }
}

/// Refuses a context outside 1 to the model's (needs no adapter: callers can refuse it
/// before anything else, as [`LoadOptions::check`] does when loading).
pub fn check_context(architecture: &Architecture, context: usize) -> Result<(), LoadError> {
    let max = architecture.context_length;
    match (1..=max).contains(&context) {
        true => Ok(()),
        false => Err(LoadError::Context { context, max }),
    }
}
