//! Reading chosen ids and logits back: the staging buffers of the steps in flight.

use super::{LlamaModel, StepError, STEPS_IN_FLIGHT};

/// A submitted step whose chosen id is unread.
pub(super) struct PendingStep {
    /// The staging buffer its id is copied into.
    pub staging: usize,
    /// The sequence slot it appended a token to.
    pub slot: usize,
    /// Its submission: reading its id waits for it alone, never for the steps after it.
    pub submission: wgpu::SubmissionIndex,
}

impl LlamaModel {
    /// The id chosen by the oldest submitted, unread step.
    pub async fn next_token(&mut self) -> Result<u32, StepError> {
        let step = self.pending.pop_front().expect("a submitted step to read");
        Ok(self.read_ids(step.staging, step.submission, 1).await?[0])
    }

    /// The first `n` ids the step of `submission` copied into staging buffer `staging`.
    pub(super) async fn read_ids(
        &self,
        staging: usize,
        submission: wgpu::SubmissionIndex,
        n: usize,
    ) -> Result<Vec<u32>, StepError> {
        let bytes = self.gpu.read_staging(&self.token_staging[staging], submission).await?;
        let ids: Vec<u32> = bytemuck::cast_slice(&bytes[..n * 4]).to_vec();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.architecture.vocab) {
            return Err(StepError::TokenOutOfRange { id, vocab: self.architecture.vocab });
        }
        Ok(ids)
    }

    /// The staging buffer for the next step.
    pub(super) fn rotate_staging(&mut self) -> usize {
        let staging = self.next_staging;
        self.next_staging = (staging + 1) % STEPS_IN_FLIGHT;
        staging
    }

    /// The lm_head output of the last step's first `rows` choosing rows, row after row in
    /// the step's row order (choosing rows lead a step): one row after a prefill chunk or a
    /// single decode token, up to one per row of a [`Self::decode_batch`] step.
    pub async fn logits(&self, rows: usize) -> Result<Vec<f32>, StepError> {
        assert!((1..=self.options.sequences).contains(&rows), "1 to {} logits rows", self.options.sequences);
        let bytes = self.gpu.read(&self.logits, (rows * self.architecture.vocab * 4) as u64).await?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }
}
