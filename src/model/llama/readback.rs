//! Reading chosen ids and logits back: the staging buffers of the steps in flight.

use super::{LlamaModel, StepError, STEPS_IN_FLIGHT};

impl LlamaModel {
    /// The id chosen by the oldest submitted, unread step.
    pub async fn next_token(&mut self) -> Result<u32, StepError> {
        let (staging, _) = self.pending.pop_front().expect("a submitted step to read");
        Ok(self.read_ids(staging, 1).await?[0])
    }

    /// The first `n` ids a step copied into staging buffer `staging`.
    pub(super) async fn read_ids(&self, staging: usize, n: usize) -> Result<Vec<u32>, StepError> {
        let bytes = self.gpu.read_staging(&self.token_staging[staging]).await?;
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

    /// The staging buffer for the next step of `slot`, registered as pending.
    pub(super) fn take_staging(&mut self, slot: usize) -> usize {
        let staging = self.rotate_staging();
        self.pending.push_back((staging, slot));
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
