//! Timing every dispatch of one step.

use super::LlamaModel;
use crate::kernels::{time_dispatches, Clock, Dispatch, Sampling, TokenPlace};
use crate::model::StepError;

/// A step [`LlamaModel::profile_step`] times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfiledStep {
    /// One token for each of `sequences` sequences.
    Decode { sequences: usize },
    /// A prefill chunk.
    Prefill,
}

/// One step's dispatches with the seconds each took (see [`LlamaModel::profile_step`]).
pub struct StepProfile<'a> {
    pub n_tokens: usize,
    pub clock: Clock,
    pub dispatches: Vec<(&'a Dispatch, f64)>,
}

impl LlamaModel {
    /// Times every dispatch of one step at slot 0's current position, leaving the context
    /// as it was: a decode step of `sequences` tokens (one per slot, each slot taken at that
    /// position, whatever it holds), or a prefill chunk of as many prompt tokens as a chunk
    /// holds and the context has room for (whatever ids the token buffer holds). Each
    /// dispatch is timed on its own.
    pub async fn profile_step(&self, step: ProfiledStep, sampling: Sampling) -> Result<StepProfile<'_>, StepError> {
        let position = self.positions[0];
        let (places, body, head) = match step {
            ProfiledStep::Decode { sequences } => {
                self.reserve(0, 1)?;
                let sequences = sequences.clamp(1, self.options.sequences);
                let places = (0..sequences).map(|slot| TokenPlace::run(slot, position, 1)[0]).collect();
                match sequences {
                    1 => (places, &self.decode_one, &self.head_last),
                    _ => (places, &self.decode, &self.head_each),
                }
            }
            ProfiledStep::Prefill => {
                let n_tokens = self.options.prefill_chunk.min(self.options.context - position).max(1);
                self.reserve(0, n_tokens)?;
                let body = if n_tokens == 1 { &self.decode_one } else { &self.prefill };
                (TokenPlace::run(0, position, n_tokens), body, &self.head_last)
            }
        };
        let places: Vec<TokenPlace> = places;
        let dispatches: Vec<&Dispatch> = body.iter().chain(head.get(sampling)).collect();
        self.write_step(&places, places.len(), sampling);
        let (seconds, clock) = time_dispatches(&self.gpu, &dispatches, places.len() as u32).await?;
        Ok(StepProfile { n_tokens: places.len(), clock, dispatches: dispatches.into_iter().zip(seconds).collect() })
    }
}
