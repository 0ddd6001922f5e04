//! The LLaMA forward pass on the GPU.
//!
//! Per layer: `x += Wo·attn(rope(Wq·n), rope(Wk·n), Wv·n)` with `n = rmsnorm(x)`, then
//! `x += Wdown·(silu(Wgate·n) * Wup·n)` with `n = rmsnorm(x)`; after the last layer a
//! final norm, the lm_head and the token choice. The projections that read one input are
//! stacked at load into one weight each (q/k/v, gate/up: [`stack_projections`]), and RoPE
//! runs in the pass that stores keys and values in the cache, so a decode layer is seven
//! dispatches (plus attention's merge where it splits the keys). Every launch is built once here; a step
//! writes the `Step` uniform and its tokens' places (and the ids when they come from the
//! CPU), replays one list into one compute pass, and reads back only the chosen ids. The
//! chosen id stays on the GPU as the next step's input, so a decode step can be submitted
//! before the previous step's id has been read ([`LlamaModel::submit_decode`]).
//!
//! Several sequences can be decoded together: the KV cache has a slot per sequence
//! ([`LoadOptions::sequences`]), every token of a step carries its slot and position, and a
//! batched decode step ([`LlamaModel::decode_batch`]) reads each weight once for all of its
//! sequences. Slot 0 is the one the single-sequence methods use.

use std::collections::{HashMap, VecDeque};

use crate::kernels::variants::{MATMUL_TILE_TOKENS, MATVEC_MAX_TOKENS};
use crate::kernels::{
    attention, choose_token, embedding, gather, linear, record_all, rmsnorm, rope_and_store, rope_table,
    time_dispatches, AttentionMode, Clock, Dispatch, Epilogue, Gpu, GpuTensor, Heads, KvCache, LinearMode, Sampling,
    SplitScratch, Step, StepBuffers, TokenPlace, TopP,
};

use super::load::LoadError;
use super::plan::{BufferPlan, DEFAULT_PREFILL_CHUNK};
use super::Architecture;
use crate::weights::schema::{GlobalWeight, LayerWeight, StackedWeight};

/// Per-load choices that trade GPU memory against capability.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// KV cache positions (prompt plus generated tokens); at most the model's context.
    pub context: usize,
    /// Prompt tokens processed per prefill submission.
    pub prefill_chunk: usize,
    /// Sequences that can be decoded together, each with a KV cache slot of `context`
    /// positions: the largest decode batch.
    pub sequences: usize,
}

/// One token of a [`LlamaModel::decode_batch`] step: appended to `slot`'s context, and with
/// `choose`, the token after it is chosen.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    pub slot: usize,
    pub id: u32,
    pub choose: bool,
}

/// The largest decode batch: the tokens a decode matvec multiplies per weight read.
pub const MAX_SEQUENCES: usize = MATVEC_MAX_TOKENS as usize;

impl LoadOptions {
    /// The model's full context, the default prefill chunk, one sequence.
    pub fn for_model(architecture: &Architecture) -> Self {
        Self { context: architecture.context_length, prefill_chunk: DEFAULT_PREFILL_CHUNK, sequences: 1 }
    }

    /// Refuses a context outside 1 to the model's, and a prefill chunk outside 1 to the
    /// most tokens a step can have on an adapter with `limits`
    /// ([`BufferPlan::max_step_tokens`]); `widest_ordered_input` as for [`BufferPlan::new`].
    pub fn check(
        &self,
        architecture: &Architecture,
        widest_ordered_input: usize,
        limits: &wgpu::Limits,
    ) -> Result<(), LoadError> {
        self.check_context(architecture)?;
        let max_binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        let max = BufferPlan::max_step_tokens(architecture, widest_ordered_input, max_binding);
        if !(1..=max).contains(&self.prefill_chunk) {
            return Err(LoadError::PrefillChunk { chunk: self.prefill_chunk, max });
        }
        Ok(())
    }

    /// Refuses a context outside 1 to the model's (needs no adapter: callers can refuse it
    /// before anything else, as [`Self::check`] does when loading).
    pub fn check_context(&self, architecture: &Architecture) -> Result<(), LoadError> {
        let max = architecture.context_length;
        match (1..=max).contains(&self.context) {
            true => Ok(()),
            false => Err(LoadError::Context { context: self.context, max }),
        }
    }

    /// The options a model loads with: a context of at least one position and at most the
    /// model's, a prefill chunk of at least one token, 1 to [`MAX_SEQUENCES`] sequences.
    pub fn fitted(self, architecture: &Architecture) -> Self {
        Self {
            context: self.context.clamp(1, architecture.context_length),
            prefill_chunk: self.prefill_chunk.max(1),
            sequences: self.sequences.clamp(1, MAX_SEQUENCES),
        }
    }
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

/// Activations for up to `chunk` tokens, reused by every layer.
struct Activations {
    x: wgpu::Buffer,
    normed: wgpu::Buffer,
    /// Per token: the q/k/v projection's queries, keys and values.
    qkv: wgpu::Buffer,
    /// The rotated queries.
    q: wgpu::Buffer,
    attended: wgpu::Buffer,
    /// The gate projection, then SwiGLU's output (the up projection's epilogue).
    gate: wgpu::Buffer,
    /// A layer input gathered into an act-order weight's column order.
    gathered: wgpu::Buffer,
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
    /// The staging buffer and slot of each submitted step whose id is unread, oldest first.
    pending: VecDeque<(usize, usize)>,
    next_staging: usize,
    /// Embedding and layers for one token per sequence (matrix-vector kernels).
    decode: Vec<Dispatch>,
    /// The same for a step of one token (one sequence), with [`LinearMode::Single`]'s
    /// matrix-vector kernels; its lm_head is `head_last`'s.
    decode_one: Vec<Dispatch>,
    /// Embedding and layers for a chunk of one sequence's prompt (tiled matrix-matrix kernels).
    prefill: Vec<Dispatch>,
    /// Final norm, lm_head on the step's last token, token choice (after a prefill chunk).
    head_last: Head,
    /// The same for every token of the step (a decode step, one token per sequence).
    head_each: Head,
    weights: HashMap<String, GpuTensor>,
    caches: Vec<KvCache>,
    /// Where a shared prefix passes between slots: one slot of one layer's keys or values
    /// (WebGPU copies only between distinct buffers).
    prefix_scratch: wgpu::Buffer,
    _rope: wgpu::Buffer,
    /// Positions cached in each sequence slot.
    positions: Vec<usize>,
}

impl LlamaModel {
    /// Builds the forward pass over uploaded weights (see [`super::ShardUploader`]).
    pub fn new(
        gpu: Gpu,
        architecture: Architecture,
        weights: HashMap<String, GpuTensor>,
        options: LoadOptions,
    ) -> Result<Self, LoadError> {
        let a = &architecture;
        let widest_ordered_input =
            weights.values().filter(|t| t.input_order.is_some()).map(|t| t.cols).max().unwrap_or(0);
        options.check(a, widest_ordered_input, &gpu.limits)?;
        let mut options = options.fitted(a);
        let weights = stack_projections(&gpu, a.n_layers, weights);
        let heads = Heads { n_heads: a.n_heads, n_kv_heads: a.n_kv_heads, head_dim: a.head_dim };
        // A layer's cache is one binding: as many sequence slots as it can hold, at least one.
        let limit = gpu.limits.max_storage_buffer_binding_size;
        let slot_bytes = KvCache::layer_bytes(heads, options.context, 1);
        if slot_bytes > limit {
            return Err(LoadError::ContextTooLong {
                context: options.context,
                sequences: 1,
                needed: slot_bytes,
                limit,
            });
        }
        options.sequences = options.sequences.min((limit / slot_bytes) as usize);
        let plan = BufferPlan::new(a, &options, widest_ordered_input);

        let act = Activations {
            x: gpu.storage("residual", plan.residual),
            normed: gpu.storage("normed", plan.normed),
            qkv: gpu.storage("qkv", plan.qkv),
            q: gpu.storage("q", plan.q),
            attended: gpu.storage("attended", plan.attended),
            gate: gpu.storage("gate", plan.gate),
            gathered: gpu.storage("gathered input", plan.gathered),
        };
        let step = StepBuffers::new(&gpu, plan.step_tokens);
        let tokens = gpu.storage("tokens", plan.tokens);
        let logits = gpu.storage("logits", plan.logits);
        let token_staging = std::array::from_fn(|_| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("token readback"),
                size: plan.tokens,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        let rope_buffer = gpu
            .storage_with("rope table", bytemuck::cast_slice(&rope_table(options.context, a.head_dim, a.rope_theta)));
        let caches: Vec<_> =
            (0..a.n_layers).map(|_| KvCache::new(&gpu, heads, options.context, options.sequences)).collect();
        let prefix_scratch = gpu.storage("shared prefix", plan.prefix_scratch);
        let split_scratch = SplitScratch::new(&gpu, heads, options.sequences);

        let w = |name: &str| &weights[name];
        let norm = |name: &str| &weights[name].parts[0].buffer;
        let body = |mode: LinearMode| {
            let mut list = embedding(&gpu, &step, w(GlobalWeight::TokenEmbedding.name()), &tokens, &act.x);
            for (layer, cache) in caches.iter().enumerate() {
                // The weights reading one input, each `(name, y, epilogue)`. An
                // act-order weight reads the input gathered into its column order, once
                // per distinct order (q/k/v, like gate/up, normally share one).
                let linears =
                    |list: &mut Vec<Dispatch>, x: &wgpu::Buffer, outputs: &[(String, &wgpu::Buffer, Epilogue)]| {
                        let mut gathered_order = None;
                        for (name, y, epilogue) in outputs {
                            let weight = w(name);
                            let input = match weight.input_order.as_deref() {
                                None => x,
                                Some(order) => {
                                    if gathered_order != Some(order) {
                                        list.push(gather(&gpu, &step, w(order), x, &act.gathered));
                                        gathered_order = Some(order);
                                    }
                                    &act.gathered
                                }
                            };
                            list.extend(linear(&gpu, &step, weight, input, y, mode, *epilogue));
                        }
                    };
                let attn_norm = norm(&LayerWeight::AttnNorm.name(layer));
                list.push(rmsnorm(&gpu, &step, &act.x, attn_norm, &act.normed, a.hidden, a.norm_eps));
                // Stacked or apart, the projections write each token's queries, keys and
                // values side by side (see `stack_projections`).
                let qkv = StackedWeight::Qkv.name(layer);
                let qkv = match weights.contains_key(&qkv) {
                    true => vec![(qkv, &act.qkv, Epilogue::Store)],
                    false => StackedWeight::Qkv
                        .parts()
                        .iter()
                        .map(|part| (part.name(layer), &act.qkv, Epilogue::Store))
                        .collect(),
                };
                linears(&mut list, &act.normed, &qkv);
                list.push(rope_and_store(&gpu, &step, &rope_buffer, heads, &act.qkv, &act.q, cache));
                let attention_mode = match mode {
                    LinearMode::Decode | LinearMode::Single => AttentionMode::Decode(&split_scratch),
                    _ => AttentionMode::Prefill,
                };
                list.extend(attention(&gpu, &step, heads, attention_mode, &act.q, cache, &act.attended));
                let attn_output = LayerWeight::AttnOutput.name(layer);
                linears(&mut list, &act.attended, &[(attn_output, &act.x, Epilogue::Accumulate)]);
                let ffn_norm = norm(&LayerWeight::FfnNorm.name(layer));
                list.push(rmsnorm(&gpu, &step, &act.x, ffn_norm, &act.normed, a.hidden, a.norm_eps));
                let gate_up = StackedWeight::GateUp.name(layer);
                if weights.contains_key(&gate_up) {
                    linears(&mut list, &act.normed, &[(gate_up, &act.gate, Epilogue::GateUp)]);
                } else {
                    // The up projection's epilogue applies SwiGLU to the gate projection in place.
                    let gate = (LayerWeight::FfnGate.name(layer), &act.gate, Epilogue::Store);
                    let up = (LayerWeight::FfnUp.name(layer), &act.gate, Epilogue::SwiGlu);
                    linears(&mut list, &act.normed, &[gate, up]);
                }
                let ffn_down = LayerWeight::FfnDown.name(layer);
                linears(&mut list, &act.gate, &[(ffn_down, &act.x, Epilogue::Accumulate)]);
            }
            list
        };
        let decode = body(LinearMode::Decode);
        let decode_one = body(LinearMode::Single);
        let prefill = body(LinearMode::Prefill);
        let lm_head = GlobalWeight::lm_head(a).name();
        let head = |last_token_only: bool, greedy: bool| {
            let mode = if last_token_only { LinearMode::LastToken } else { LinearMode::Choosing };
            let mut list = vec![rmsnorm(
                &gpu,
                &step,
                &act.x,
                norm(GlobalWeight::OutputNorm.name()),
                &act.normed,
                a.hidden,
                a.norm_eps,
            )];
            list.extend(linear(&gpu, &step, w(lm_head), &act.normed, &logits, mode, Epilogue::Store));
            list.push(choose_token(&gpu, &step, &logits, &tokens, a.vocab, greedy, last_token_only));
            list
        };
        let head_last = Head { greedy: head(true, true), sampled: head(true, false) };
        let head_each = Head { greedy: head(false, true), sampled: head(false, false) };
        gpu.check()?;
        Ok(Self {
            gpu,
            architecture,
            step,
            tokens,
            logits,
            token_staging,
            pending: VecDeque::new(),
            next_staging: 0,
            decode,
            decode_one,
            prefill,
            head_last,
            head_each,
            weights,
            caches,
            prefix_scratch,
            _rope: rope_buffer,
            positions: vec![0; options.sequences],
            options,
        })
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// An uploaded weight tensor by its manifest name.
    pub fn weight(&self, name: &str) -> Option<&GpuTensor> {
        self.weights.get(name)
    }

    pub fn architecture(&self) -> &Architecture {
        &self.architecture
    }

    /// Positions each sequence slot holds.
    pub fn context(&self) -> usize {
        self.options.context
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
        for (_, slot) in self.pending.drain(..) {
            self.positions[slot] -= 1;
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
        let staging = self.take_staging(slot);
        self.submit_prefill_chunk(slot, last, Some((staging, sampling)));
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
    fn submit_prefill_chunk(&mut self, slot: usize, chunk: &[u32], choose: Option<(usize, Sampling)>) {
        self.gpu.queue.write_buffer(&self.tokens, 0, bytemuck::cast_slice(chunk));
        let body = if chunk.len() == 1 { &self.decode_one } else { &self.prefill };
        let places = TokenPlace::run(slot, self.positions[slot], chunk.len());
        let sampling = choose.map_or(Sampling::Greedy, |(_, sampling)| sampling);
        let head = choose.map(|_| self.head_last.get(sampling));
        self.submit(body, head, &places, sampling, choose.map(|(staging, _)| (staging, 1)));
        self.positions[slot] += chunk.len();
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
        let staging = self.take_staging(0);
        let places = TokenPlace::run(0, self.positions[0], 1);
        self.submit(&self.decode_one, Some(self.head_last.get(sampling)), &places, sampling, Some((staging, 1)));
        self.positions[0] += 1;
        Ok(())
    }

    /// Prompt tokens one prefill matmul tile holds: batched generation runs a shorter rest of
    /// a prompt as decode rows instead of a tile left partly empty.
    pub fn prefill_tile(&self) -> usize {
        MATMUL_TILE_TOKENS as usize
    }

    /// The id chosen by the oldest submitted, unread step.
    pub async fn next_token(&mut self) -> Result<u32, StepError> {
        let (staging, _) = self.pending.pop_front().expect("a submitted step to read");
        Ok(self.read_ids(staging, 1).await?[0])
    }

    /// One step of single-token rows, up to the model's sequences: each [`Row`] appends its
    /// id to its slot's context; returns the token chosen after each row that chooses one, in
    /// order. Every weight is read once for all rows. A slot may have several rows, in
    /// context order (a prompt's last tokens): each attends to those before it, stored in the
    /// same step. Only choosing rows pay for the lm_head.
    pub async fn decode_batch(&mut self, rows: &[Row], sampling: Sampling) -> Result<Vec<u32>, StepError> {
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
        self.submit(body, Some(head.get(sampling)), &places, sampling, Some((staging, choosing)));
        self.positions = positions;
        self.read_ids(staging, choosing).await
    }

    /// The first `n` ids a step copied into staging buffer `staging`.
    async fn read_ids(&self, staging: usize, n: usize) -> Result<Vec<u32>, StepError> {
        let bytes = self.gpu.read_staging(&self.token_staging[staging]).await?;
        let ids: Vec<u32> = bytemuck::cast_slice(&bytes[..n * 4]).to_vec();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.architecture.vocab) {
            return Err(StepError::TokenOutOfRange { id, vocab: self.architecture.vocab });
        }
        Ok(ids)
    }

    /// The staging buffer for the next step.
    fn rotate_staging(&mut self) -> usize {
        let staging = self.next_staging;
        self.next_staging = (staging + 1) % STEPS_IN_FLIGHT;
        staging
    }

    /// The staging buffer for the next step of `slot`, registered as pending.
    fn take_staging(&mut self, slot: usize) -> usize {
        let staging = self.rotate_staging();
        self.pending.push_back((staging, slot));
        staging
    }

    /// The lm_head output of the last step's first row (for tests and diagnostics).
    pub async fn logits(&self) -> Result<Vec<f32>, StepError> {
        let bytes = self.gpu.read(&self.logits, (self.architecture.vocab * 4) as u64).await?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
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
    ) {
        self.write_step(places, staging.map_or(places.len(), |(_, n)| n), sampling);
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        record_all(&mut encoder, body.iter().chain(head.unwrap_or_default()), places.len() as u32);
        if let Some((staging, n)) = staging {
            encoder.copy_buffer_to_buffer(&self.tokens, 0, &self.token_staging[staging], 0, n as u64 * 4);
        }
        self.gpu.queue.submit([encoder.finish()]);
    }
}

/// Stacks the projections of each layer that read one input into one tensor read by one
/// dispatch ([`StackedWeight`]), one layer at a time, so the copies never hold more
/// than one layer's weights twice. Those that cannot stack ([`GpuTensor::stack`]) stay
/// apart; q, k and v then write their rows of the stack's output
/// ([`GpuTensor::into_rows_of`]), so what follows reads the same buffer either way.
fn stack_projections(
    gpu: &Gpu,
    n_layers: usize,
    mut weights: HashMap<String, GpuTensor>,
) -> HashMap<String, GpuTensor> {
    for layer in 0..n_layers {
        for stack in StackedWeight::ALL {
            let parts: Vec<String> = stack.parts().iter().map(|part| part.name(layer)).collect();
            let tensors: Vec<&GpuTensor> = parts.iter().map(|part| &weights[part]).collect();
            // `Epilogue::GateUp` pairs the gate's rows with the up's: an even count.
            let pairs_whole = stack != StackedWeight::GateUp || tensors[0].rows.is_multiple_of(2);
            if let Some(stacked) = pairs_whole.then(|| GpuTensor::stack(gpu, &stack.name(layer), &tensors)).flatten() {
                for part in &parts {
                    weights.remove(part);
                }
                weights.insert(stacked.name.clone(), stacked);
            } else if stack == StackedWeight::Qkv {
                let rows = tensors.iter().map(|t| t.rows).sum();
                let mut first_row = 0;
                for part in &parts {
                    let tensor = weights.remove(part).expect("present");
                    let own_rows = tensor.rows;
                    weights.insert(part.clone(), tensor.into_rows_of(first_row, rows));
                    first_row += own_rows;
                }
            }
        }
    }
    weights
}
