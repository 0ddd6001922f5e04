//! The LLaMA forward pass on the GPU.
//!
//! Per layer: `x += Wo·attn(rope(Wq·n), rope(Wk·n), Wv·n)` with `n = rmsnorm(x)`, then
//! `x += Wdown·(silu(Wgate·n) * Wup·n)` with `n = rmsnorm(x)`; after the last layer a
//! final norm, the lm_head and the token choice. The projections that read one input are
//! stacked at load into one weight each (q/k/v, gate/up: `model/stack.rs`), RoPE runs in
//! the pass that stores keys and values in the cache, and on a GPU the decode matvecs apply
//! each rmsnorm as they read the residual (`normed_linear`), so a decode layer is six
//! dispatches (q/k/v, RoPE and store, attention, output, gate/up, down; plus attention's merge
//! where it splits the keys); a prefill layer eight, with its two norms, as is a decode layer
//! on a CPU adapter (`Gpu::cpu_adapter`: measured faster there). Every launch is built once
//! at load (`llama/graph.rs`); a step writes the `Step` uniform and its tokens' places (and
//! the ids when they come from the CPU), replays one list into one compute pass, and reads
//! back only the chosen ids (`llama/readback.rs`). The chosen id stays on the GPU as the
//! next step's input, so a decode step can be submitted before the previous step's id has
//! been read ([`LlamaModel::submit_decode`]).
//!
//! Several sequences can be decoded together: the KV cache has a slot per sequence
//! ([`LoadOptions::sequences`]), every token of a step carries its slot and position, and a
//! batched decode step ([`LlamaModel::decode_batch`]) reads each weight once for all of its
//! sequences. Slot 0 is the one the single-sequence methods use.

use std::collections::{HashMap, VecDeque};

use crate::kernels::variants::MATMUL_TILE_TOKENS;
use crate::kernels::{
    record_all, Dispatch, Gpu, GpuTensor, Heads, KvCache, Sampling, Step, StepBuffers, TokenPlace, TopP,
};

use super::stack::StackedLayer;
use super::LoadOptions;
use crate::format::Architecture;

mod graph;
mod profile;
mod readback;

use readback::PendingStep;

pub use profile::{ProfiledStep, StepProfile};

/// One token of a [`LlamaModel::decode_batch`] step: appended to `slot`'s context, and with
/// `choose`, the token after it is chosen.
#[derive(Clone, Copy, Debug)]
pub struct DecodeRow {
    pub slot: usize,
    pub id: u32,
    pub choose: bool,
}

/// Decode steps that may be submitted before the oldest one's id is read: two keep the GPU
/// busy while the CPU reads one id and submits the next step.
pub const STEPS_IN_FLIGHT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("{needed} positions are needed but the context holds {context}")]
    ContextFull { needed: usize, context: usize },
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error(transparent)]
    Gpu(#[from] crate::kernels::GpuError),
}

/// The lm_head and token choice, for greedy and for sampled steps.
struct Head {
    greedy: Vec<Dispatch>,
    sampled: Vec<Dispatch>,
}

impl Head {
    fn get(&self, sampling: Sampling) -> &[Dispatch] {
        match sampling {
            Sampling::Greedy => &self.greedy,
            Sampling::TopP(_) => &self.sampled,
        }
    }
}

pub struct LlamaModel {
    gpu: Gpu,
    architecture: Architecture,
    options: LoadOptions,
    step: StepBuffers,
    tokens: wgpu::Buffer,
    logits: wgpu::Buffer,
    /// Readback buffers of the steps in flight, used in turn; each holds a batch's ids.
    token_staging: [wgpu::Buffer; STEPS_IN_FLIGHT],
    /// Each submitted step whose id is unread, oldest first.
    pending: VecDeque<PendingStep>,
    next_staging: usize,
    /// Embedding and layers for one token per sequence (matrix-vector kernels).
    decode: Vec<Dispatch>,
    /// The same for a step of one token (one sequence), with
    /// [`LinearKernel::MatvecOneToken`](crate::kernels::LinearKernel)'s matrix-vector kernels; its lm_head is `head_last`'s.
    decode_one: Vec<Dispatch>,
    /// Dispatches of each layer in `decode_one`.
    decode_layer_dispatches: Vec<usize>,
    /// Embedding and layers for a chunk of one sequence's prompt (tiled matrix-matrix kernels).
    prefill: Vec<Dispatch>,
    /// Final norm, lm_head on the step's last token, token choice (after a prefill chunk).
    head_last: Head,
    /// The same for every token of the step (a decode step, one token per sequence).
    head_each: Head,
    layers: Vec<StackedLayer>,
    /// The tensors outside the layers and the input orders, held like the layers'.
    _weights: HashMap<String, GpuTensor>,
    caches: Vec<KvCache>,
    /// Where a shared prefix passes between slots: one slot of one layer's keys or values
    /// (WebGPU copies only between distinct buffers).
    prefix_scratch: wgpu::Buffer,
    _rope: wgpu::Buffer,
    /// Positions cached in each sequence slot.
    positions: Vec<usize>,
}

impl LlamaModel {
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Layer `layer`'s down projection (never stacked).
    pub fn down_projection(&self, layer: usize) -> &GpuTensor {
        &self.layers[layer].down
    }

    pub fn architecture(&self) -> &Architecture {
        &self.architecture
    }

    /// Positions each sequence slot holds.
    pub fn context(&self) -> usize {
        self.options.context
    }

    /// Dispatches of each layer of a one-token decode step.
    pub fn decode_layer_dispatches(&self) -> &[usize] {
        &self.decode_layer_dispatches
    }

    /// Prompt tokens per prefill submission.
    pub fn prefill_chunk(&self) -> usize {
        self.options.prefill_chunk
    }

    /// Sequence slots: the largest decode batch.
    pub fn sequences(&self) -> usize {
        self.options.sequences
    }

    /// Positions already in slot 0's KV cache.
    pub fn position(&self) -> usize {
        self.positions[0]
    }

    /// Positions already in `slot`'s KV cache.
    pub fn slot_position(&self, slot: usize) -> usize {
        self.positions[slot]
    }

    /// Forgets slot 0's conversation: the next prefill starts at position 0.
    pub fn reset(&mut self) {
        self.truncate(0);
    }

    /// Keeps only the first `position` cached positions of slot 0 (a shared prompt
    /// prefix); later steps overwrite the rest.
    pub fn truncate(&mut self, position: usize) {
        self.truncate_slot(0, position);
    }

    /// Keeps only the first `position` cached positions of `slot`.
    pub fn truncate_slot(&mut self, slot: usize, position: usize) {
        self.discard_pending();
        self.positions[slot] = self.positions[slot].min(position);
    }

    /// Makes `to` hold the first `len` cached positions of `from` (a prompt prefix two
    /// sequences share), so that `to` prefills only from there.
    pub fn copy_prefix(&mut self, from: usize, to: usize, len: usize) {
        assert!(len <= self.positions[from], "slot {from} holds {} positions, not {len}", self.positions[from]);
        self.discard_pending();
        let heads =
            Heads { n_heads: 0, n_kv_heads: self.architecture.n_kv_heads, head_dim: self.architecture.head_dim };
        let slot_bytes = KvCache::layer_bytes(heads, self.options.context, 1);
        if len > 0 && from != to {
            let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
            for cache in &self.caches {
                // The keys' last tile goes whole: the positions past `len` it brings are
                // overwritten before `to` reads them, as they would be anyway.
                for (buffer, bytes) in [&cache.k, &cache.v].into_iter().zip(KvCache::prefix_bytes(heads, len)) {
                    encoder.copy_buffer_to_buffer(buffer, from as u64 * slot_bytes, &self.prefix_scratch, 0, bytes);
                    encoder.copy_buffer_to_buffer(&self.prefix_scratch, 0, buffer, to as u64 * slot_bytes, bytes);
                }
            }
            self.gpu.queue.submit([encoder.finish()]);
        }
        self.positions[to] = len;
    }

    /// Forgets the submitted steps whose ids were not read: their positions are given
    /// back (later steps overwrite what they stored) and their ids are never read.
    pub fn discard_pending(&mut self) {
        for step in self.pending.drain(..) {
            self.positions[step.slot] -= 1;
        }
    }

    /// Appends `ids` to slot 0's context in chunks and returns the token chosen after the last.
    pub async fn prefill(&mut self, ids: &[u32], sampling: Sampling) -> Result<u32, StepError> {
        self.prefill_slot(0, ids, sampling).await
    }

    /// Appends `ids` to `slot`'s context in chunks and returns the token chosen after the last.
    pub async fn prefill_slot(&mut self, slot: usize, ids: &[u32], sampling: Sampling) -> Result<u32, StepError> {
        if ids.is_empty() {
            return Err(StepError::EmptyPrompt);
        }
        self.reserve(slot, ids.len())?;
        self.check_ids(ids)?;
        // Whole chunks, then the rest (at least one id), whose step chooses the next token.
        let chunk = self.options.prefill_chunk;
        let (leading, last) = ids.split_at((ids.len() - 1) / chunk * chunk);
        self.append_slot(slot, leading)?;
        let staging = self.rotate_staging();
        let submission = self.submit_prefill_chunk(slot, last, Some((staging, sampling)));
        self.pending.push_back(PendingStep { staging, slot, submission });
        self.next_token().await
    }

    /// Appends `ids` to `slot`'s context in chunks without choosing a next token: no
    /// readback, nothing awaited (a prompt's leading chunks).
    pub fn append_slot(&mut self, slot: usize, ids: &[u32]) -> Result<(), StepError> {
        self.discard_pending();
        self.reserve(slot, ids.len())?;
        self.check_ids(ids)?;
        for chunk in ids.chunks(self.options.prefill_chunk) {
            self.submit_prefill_chunk(slot, chunk, None);
        }
        Ok(())
    }

    /// Appends one chunk of at most the prefill chunk's tokens to `slot` without waiting;
    /// with `choose`, the step also chooses the next token into that staging buffer.
    fn submit_prefill_chunk(
        &mut self,
        slot: usize,
        chunk: &[u32],
        choose: Option<(usize, Sampling)>,
    ) -> wgpu::SubmissionIndex {
        self.gpu.queue.write_buffer(&self.tokens, 0, bytemuck::cast_slice(chunk));
        let body = if chunk.len() == 1 { &self.decode_one } else { &self.prefill };
        let places = TokenPlace::run(slot, self.positions[slot], chunk.len());
        let sampling = choose.map_or(Sampling::Greedy, |(_, sampling)| sampling);
        let head = choose.map(|_| self.head_last.get(sampling));
        let submission = self.submit(body, head, &places, sampling, choose.map(|(staging, _)| (staging, 1)));
        self.positions[slot] += chunk.len();
        submission
    }

    /// Feeds the token chosen by the previous step and returns the next one.
    pub async fn decode(&mut self, sampling: Sampling) -> Result<u32, StepError> {
        self.submit_decode(sampling)?;
        self.next_token().await
    }

    /// Submits a slot-0 decode step that feeds the token chosen by the previous submitted
    /// step, without waiting for it: the GPU computes it while the CPU reads and examines
    /// the previous id. At most [`STEPS_IN_FLIGHT`] steps may be unread; read them in
    /// order with [`Self::next_token`], or give them back with [`Self::discard_pending`].
    pub fn submit_decode(&mut self, sampling: Sampling) -> Result<(), StepError> {
        assert!(self.pending.len() < STEPS_IN_FLIGHT, "{STEPS_IN_FLIGHT} steps are already unread");
        self.reserve(0, 1)?;
        let staging = self.rotate_staging();
        let places = TokenPlace::run(0, self.positions[0], 1);
        let head = Some(self.head_last.get(sampling));
        let submission = self.submit(&self.decode_one, head, &places, sampling, Some((staging, 1)));
        self.pending.push_back(PendingStep { staging, slot: 0, submission });
        self.positions[0] += 1;
        Ok(())
    }

    /// Prompt tokens one prefill matmul tile holds: batched generation runs a shorter rest of
    /// a prompt as decode rows instead of a tile left partly empty.
    pub fn prefill_tile(&self) -> usize {
        MATMUL_TILE_TOKENS as usize
    }

    /// One step of single-token rows, up to the model's sequences: each [`DecodeRow`] appends its
    /// id to its slot's context; returns the token chosen after each row that chooses one, in
    /// order. Every weight is read once for all rows. A slot may have several rows, in
    /// context order (a prompt's last tokens): each attends to those before it, stored in the
    /// same step. Only choosing rows pay for the lm_head.
    pub async fn decode_batch(&mut self, rows: &[DecodeRow], sampling: Sampling) -> Result<Vec<u32>, StepError> {
        assert!(!rows.is_empty() && rows.len() <= self.options.sequences, "1 to {} rows", self.options.sequences);
        self.discard_pending();
        // Choosing rows lead the step: the lm_head multiplies only them.
        let order: Vec<usize> =
            (0..rows.len()).filter(|&i| rows[i].choose).chain((0..rows.len()).filter(|&i| !rows[i].choose)).collect();
        let choosing = rows.iter().filter(|row| row.choose).count();
        let ids: Vec<u32> = order.iter().map(|&i| rows[i].id).collect();
        self.check_ids(&ids)?;
        // Positions in context order, whatever the order of the step.
        let mut positions = self.positions.clone();
        let mut places = Vec::with_capacity(rows.len());
        for row in rows {
            self.reserve(row.slot, positions[row.slot] - self.positions[row.slot] + 1)?;
            places.push(TokenPlace { slot: row.slot as u32, position: positions[row.slot] as u32 });
            positions[row.slot] += 1;
        }
        let places: Vec<TokenPlace> = order.iter().map(|&i| places[i]).collect();
        self.gpu.queue.write_buffer(&self.tokens, 0, bytemuck::cast_slice(&ids));
        let staging = self.rotate_staging();
        let (body, head) = match (rows.len(), choosing) {
            (1, 1) => (&self.decode_one, &self.head_last),
            _ => (&self.decode, &self.head_each),
        };
        let submission = self.submit(body, Some(head.get(sampling)), &places, sampling, Some((staging, choosing)));
        self.positions = positions;
        self.read_ids(staging, submission, choosing).await
    }

    fn check_ids(&self, ids: &[u32]) -> Result<(), StepError> {
        match ids.iter().find(|&&id| id as usize >= self.architecture.vocab) {
            Some(&id) => Err(StepError::TokenOutOfRange { id, vocab: self.architecture.vocab }),
            None => Ok(()),
        }
    }

    fn reserve(&self, slot: usize, tokens: usize) -> Result<(), StepError> {
        let needed = self.positions[slot] + tokens;
        if needed > self.options.context {
            return Err(StepError::ContextFull { needed, context: self.options.context });
        }
        Ok(())
    }

    /// Writes the step's uniform and token places; the first `choosing` tokens choose a
    /// next token.
    fn write_step(&self, places: &[TokenPlace], choosing: usize, sampling: Sampling) {
        let (temperature, top_p, seed) = match sampling {
            Sampling::Greedy => (0.0, 1.0, 0),
            Sampling::TopP(TopP { temperature, top_p, seed }) => (temperature, top_p, seed),
        };
        let step = Step { n_tokens: places.len() as u32, seed, temperature, top_p, choosing: choosing as u32 };
        self.step.write(&self.gpu, &step, places);
    }

    /// Records and submits one step of `places.len()` tokens; with `staging`, the first
    /// `n` tokens choose a next token and their ids are copied into that staging buffer.
    fn submit(
        &self,
        body: &[Dispatch],
        head: Option<&[Dispatch]>,
        places: &[TokenPlace],
        sampling: Sampling,
        staging: Option<(usize, usize)>,
    ) -> wgpu::SubmissionIndex {
        self.write_step(places, staging.map_or(places.len(), |(_, n)| n), sampling);
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        record_all(&mut encoder, body.iter().chain(head.unwrap_or_default()), places.len() as u32);
        if let Some((staging, n)) = staging {
            encoder.copy_buffer_to_buffer(&self.tokens, 0, &self.token_staging[staging], 0, n as u64 * 4);
        }
        self.gpu.queue.submit([encoder.finish()])
    }
}
