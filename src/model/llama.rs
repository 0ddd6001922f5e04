//! The LLaMA forward pass on the GPU.
//!
//! Per layer: `x += Wo·attn(rope(Wq·n), rope(Wk·n), Wv·n)` with `n = rmsnorm(x)`, then
//! `x += Wdown·(silu(Wgate·n) * Wup·n)` with `n = rmsnorm(x)`; after the last layer a
//! final norm, the lm_head on the last token and the token choice. Every launch is built
//! once here; a step writes the `Step` uniform (and the prompt ids when prefilling),
//! replays one list into one compute pass, and reads back only the chosen id. The chosen
//! id stays on the GPU as the next step's input, so a decode step can be submitted before
//! the previous step's id has been read ([`LlamaModel::submit_decode`]).

use std::collections::{HashMap, VecDeque};

use crate::kernels::{
    attention, choose_token, embedding, linear, record_all, rmsnorm, rope, rope_table, swiglu, time_dispatches,
    AttentionMode, Clock, Dispatch, Gpu, GpuTensor, Heads, KvCache, LinearMode, Sampling, SplitScratch, Step,
};

use super::config::TENSORS_PER_LAYER;
use super::load::LoadError;
use super::Architecture;
use crate::weights::DType;

/// Per-load choices that trade GPU memory against capability.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// KV cache positions (prompt plus generated tokens); at most the model's context.
    pub context: usize,
    /// Prompt tokens processed per prefill submission.
    pub prefill_chunk: usize,
}

impl LoadOptions {
    /// The model's full context and 128-token prefill chunks.
    pub fn for_model(architecture: &Architecture) -> Self {
        Self { context: architecture.context_length, prefill_chunk: 128 }
    }

    /// The options a model loads with: a context of at least one position and at most the
    /// model's, a prefill chunk of at least one token.
    pub fn fitted(self, architecture: &Architecture) -> Self {
        Self { context: self.context.clamp(1, architecture.context_length), prefill_chunk: self.prefill_chunk.max(1) }
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
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    attended: wgpu::Buffer,
    gate: wgpu::Buffer,
    up: wgpu::Buffer,
}

pub struct LlamaModel {
    gpu: Gpu,
    architecture: Architecture,
    options: LoadOptions,
    step: wgpu::Buffer,
    tokens: wgpu::Buffer,
    logits: wgpu::Buffer,
    /// Readback buffers of the steps in flight, used in turn.
    token_staging: [wgpu::Buffer; STEPS_IN_FLIGHT],
    /// Which staging buffer each submitted, unread step copies its id into, oldest first.
    pending: VecDeque<usize>,
    next_staging: usize,
    /// Embedding and layers for one token (matrix-vector kernels).
    decode: Vec<Dispatch>,
    /// Embedding and layers for a chunk of prompt tokens (tiled matrix-matrix kernels).
    prefill: Vec<Dispatch>,
    /// Final norm, lm_head on the last token, greedy choice.
    head_greedy: Vec<Dispatch>,
    /// The same with temperature / top-p sampling.
    head_sampled: Vec<Dispatch>,
    weights: HashMap<String, GpuTensor>,
    _caches: Vec<KvCache>,
    _rope: wgpu::Buffer,
    position: usize,
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
        let options = options.fitted(a);
        check_shapes(a, &weights)?;
        let heads = Heads { n_heads: a.n_heads, n_kv_heads: a.n_kv_heads, head_dim: a.head_dim };
        let cache_bytes = options.context as u64 * a.kv_dim() as u64 * 2;
        let limit = gpu.limits.max_storage_buffer_binding_size;
        if cache_bytes > limit {
            return Err(LoadError::ContextTooLong { context: options.context, needed: cache_bytes, limit });
        }

        let chunk = options.prefill_chunk;
        let f32_buffer = |label: &str, width: usize| gpu.storage(label, (chunk * width * 4) as u64);
        let act = Activations {
            x: f32_buffer("residual", a.hidden),
            normed: f32_buffer("normed", a.hidden),
            q: f32_buffer("q", a.q_dim()),
            k: f32_buffer("k", a.kv_dim()),
            v: f32_buffer("v", a.kv_dim()),
            attended: f32_buffer("attended", a.q_dim()),
            gate: f32_buffer("gate", a.ffn),
            up: f32_buffer("up", a.ffn),
        };
        let step = gpu.uniform("step", &Step::default());
        let tokens = gpu.storage("tokens", (chunk * 4) as u64);
        let logits = gpu.storage("logits", (a.vocab * 4) as u64);
        let token_staging = std::array::from_fn(|_| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("token readback"),
                size: 4,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        let rope_buffer = gpu
            .storage_with("rope table", bytemuck::cast_slice(&rope_table(options.context, a.head_dim, a.rope_theta)));
        let caches: Vec<_> = (0..a.n_layers).map(|_| KvCache::new(&gpu, heads, options.context)).collect();
        let split_scratch = SplitScratch::new(&gpu, heads);

        let w = |name: &str| &weights[name];
        let norm = |name: &str| &weights[name].parts[0].buffer;
        let body = |mode: LinearMode| {
            let mut list = embedding(&gpu, &step, w("token_embd.weight"), &tokens, &act.x);
            for (layer, cache) in caches.iter().enumerate() {
                let t = |suffix: &str| format!("blk.{layer}.{suffix}.weight");
                let lin = |suffix: &str, x: &wgpu::Buffer, y: &wgpu::Buffer, accumulate: bool| {
                    linear(&gpu, &step, w(&t(suffix)), x, y, mode, accumulate)
                };
                list.push(rmsnorm(&gpu, &step, &act.x, norm(&t("attn_norm")), &act.normed, a.hidden, a.norm_eps));
                list.extend(lin("attn_q", &act.normed, &act.q, false));
                list.extend(lin("attn_k", &act.normed, &act.k, false));
                list.extend(lin("attn_v", &act.normed, &act.v, false));
                list.push(rope(&gpu, &step, &rope_buffer, &act.q, &act.k, a.n_heads, a.n_kv_heads, a.head_dim));
                let attention_mode = match mode {
                    LinearMode::Decode => AttentionMode::Decode(&split_scratch),
                    _ => AttentionMode::Prefill,
                };
                list.extend(attention(
                    &gpu,
                    &step,
                    heads,
                    attention_mode,
                    &act.q,
                    &act.k,
                    &act.v,
                    cache,
                    &act.attended,
                ));
                list.extend(lin("attn_output", &act.attended, &act.x, true));
                list.push(rmsnorm(&gpu, &step, &act.x, norm(&t("ffn_norm")), &act.normed, a.hidden, a.norm_eps));
                list.extend(lin("ffn_gate", &act.normed, &act.gate, false));
                list.extend(lin("ffn_up", &act.normed, &act.up, false));
                list.push(swiglu(&gpu, &step, &act.gate, &act.up, a.ffn));
                list.extend(lin("ffn_down", &act.gate, &act.x, true));
            }
            list
        };
        let decode = body(LinearMode::Decode);
        let prefill = body(LinearMode::Prefill);
        let lm_head = if a.tied_embeddings { "token_embd.weight" } else { "output.weight" };
        let head = |greedy: bool| {
            let mut list =
                vec![rmsnorm(&gpu, &step, &act.x, norm("output_norm.weight"), &act.normed, a.hidden, a.norm_eps)];
            list.extend(linear(&gpu, &step, w(lm_head), &act.normed, &logits, LinearMode::LastToken, false));
            list.push(choose_token(&gpu, &step, &logits, &tokens, a.vocab, greedy));
            list
        };
        let head_greedy = head(true);
        let head_sampled = head(false);
        gpu.check()?;
        Ok(Self {
            gpu,
            architecture,
            options,
            step,
            tokens,
            logits,
            token_staging,
            pending: VecDeque::new(),
            next_staging: 0,
            decode,
            prefill,
            head_greedy,
            head_sampled,
            weights,
            _caches: caches,
            _rope: rope_buffer,
            position: 0,
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

    pub fn context(&self) -> usize {
        self.options.context
    }

    /// Positions already in the KV cache.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Forgets the conversation: the next prefill starts at position 0.
    pub fn reset(&mut self) {
        self.discard_pending();
        self.position = 0;
    }

    /// Keeps only the first `position` cached positions (a shared prompt prefix); later
    /// steps overwrite the rest.
    pub fn truncate(&mut self, position: usize) {
        self.discard_pending();
        self.position = self.position.min(position);
    }

    /// Forgets the submitted steps whose ids were not read: their positions are given
    /// back (later steps overwrite what they stored) and their ids are never read.
    pub fn discard_pending(&mut self) {
        self.position -= self.pending.len();
        self.pending.clear();
    }

    /// Appends `ids` to the context in chunks and returns the token chosen after the last.
    pub async fn prefill(&mut self, ids: &[u32], sampling: Sampling) -> Result<u32, StepError> {
        if ids.is_empty() {
            return Err(StepError::EmptyPrompt);
        }
        self.discard_pending();
        self.reserve(ids.len())?;
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.architecture.vocab) {
            return Err(StepError::TokenOutOfRange { id, vocab: self.architecture.vocab });
        }
        let chunks: Vec<_> = ids.chunks(self.options.prefill_chunk).collect();
        for (index, chunk) in chunks.iter().enumerate() {
            self.gpu.queue.write_buffer(&self.tokens, 0, bytemuck::cast_slice(chunk));
            let last = index + 1 == chunks.len();
            let staging = last.then(|| self.take_staging());
            let mode = if chunk.len() == 1 { &self.decode } else { &self.prefill };
            let head = if last { Some(self.head(sampling)) } else { None };
            self.submit(mode, head, chunk.len(), sampling, staging);
            self.position += chunk.len();
        }
        self.next_token().await
    }

    /// Feeds the token chosen by the previous step and returns the next one.
    pub async fn decode(&mut self, sampling: Sampling) -> Result<u32, StepError> {
        self.submit_decode(sampling)?;
        self.next_token().await
    }

    /// Submits a decode step that feeds the token chosen by the previous submitted step,
    /// without waiting for it: the GPU computes it while the CPU reads and examines the
    /// previous id. At most [`STEPS_IN_FLIGHT`] steps may be unread; read them in order
    /// with [`Self::next_token`], or give them back with [`Self::discard_pending`].
    pub fn submit_decode(&mut self, sampling: Sampling) -> Result<(), StepError> {
        assert!(self.pending.len() < STEPS_IN_FLIGHT, "{STEPS_IN_FLIGHT} steps are already unread");
        self.reserve(1)?;
        let staging = self.take_staging();
        self.submit(&self.decode, Some(self.head(sampling)), 1, sampling, Some(staging));
        self.position += 1;
        Ok(())
    }

    /// The id chosen by the oldest submitted, unread step.
    pub async fn next_token(&mut self) -> Result<u32, StepError> {
        let staging = self.pending.pop_front().expect("a submitted step to read");
        let bytes = self.gpu.read_staging(&self.token_staging[staging]).await?;
        let id = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        if id as usize >= self.architecture.vocab {
            return Err(StepError::TokenOutOfRange { id, vocab: self.architecture.vocab });
        }
        Ok(id)
    }

    /// The staging buffer for the next step, registered as pending.
    fn take_staging(&mut self) -> usize {
        let staging = self.next_staging;
        self.next_staging = (staging + 1) % STEPS_IN_FLIGHT;
        self.pending.push_back(staging);
        staging
    }

    /// The lm_head output of the last step (for tests and diagnostics).
    pub async fn logits(&self) -> Result<Vec<f32>, StepError> {
        let bytes = self.gpu.read(&self.logits, (self.architecture.vocab * 4) as u64).await?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    fn reserve(&self, tokens: usize) -> Result<(), StepError> {
        let needed = self.position + tokens;
        if needed > self.options.context {
            return Err(StepError::ContextFull { needed, context: self.options.context });
        }
        Ok(())
    }

    fn head(&self, sampling: Sampling) -> &[Dispatch] {
        match sampling {
            Sampling::Greedy => &self.head_greedy,
            Sampling::TopP { .. } => &self.head_sampled,
        }
    }

    /// Times every dispatch of one step at the current position, leaving the context as it
    /// was: a decode step, or a prefill chunk of as many prompt tokens as a chunk holds and
    /// the context has room for (whatever ids the token buffer holds). Each dispatch is
    /// timed on its own.
    pub async fn profile_step(&self, prefill: bool, sampling: Sampling) -> Result<StepProfile<'_>, StepError> {
        let room = self.options.context - self.position;
        let n_tokens = if prefill { self.options.prefill_chunk.min(room) } else { 1 };
        self.reserve(n_tokens.max(1))?;
        let body = if n_tokens == 1 { &self.decode } else { &self.prefill };
        let dispatches: Vec<&Dispatch> = body.iter().chain(self.head(sampling)).collect();
        self.write_step(n_tokens, sampling);
        let (seconds, clock) = time_dispatches(&self.gpu, &dispatches, n_tokens as u32).await?;
        Ok(StepProfile { n_tokens, clock, dispatches: dispatches.into_iter().zip(seconds).collect() })
    }

    fn write_step(&self, n_tokens: usize, sampling: Sampling) {
        let (temperature, top_p, seed) = match sampling {
            Sampling::Greedy => (0.0, 1.0, 0),
            Sampling::TopP { temperature, top_p, seed } => (temperature, top_p, seed),
        };
        let step =
            Step { n_tokens: n_tokens as u32, position: self.position as u32, seed, temperature, top_p, _pad: [0; 3] };
        self.gpu.queue.write_buffer(&self.step, 0, bytemuck::bytes_of(&step));
    }

    /// Records and submits one step; with `staging`, the chosen id is copied there.
    fn submit(
        &self,
        body: &[Dispatch],
        head: Option<&[Dispatch]>,
        n_tokens: usize,
        sampling: Sampling,
        staging: Option<usize>,
    ) {
        self.write_step(n_tokens, sampling);
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        record_all(&mut encoder, body.iter().chain(head.unwrap_or_default()), n_tokens as u32);
        if let Some(staging) = staging {
            encoder.copy_buffer_to_buffer(&self.tokens, 0, &self.token_staging[staging], 0, 4);
        }
        self.gpu.queue.submit([encoder.finish()]);
    }
}

/// The tensor names and shapes the forward pass reads (GGUF naming). `present` is how many
/// tensors the checkpoint or model directory holds: a layer count read from a file is
/// believed only as far as its tensors can back it (each layer has tensors of its own),
/// before anything is allocated for it. Which tensor is missing is for the caller to name.
pub fn expected_tensors(a: &Architecture, present: usize) -> Result<Vec<(String, Vec<usize>)>, TensorCountError> {
    let needed = a.tensor_count().filter(|_| a.n_layers <= present);
    let Some(needed) = needed else {
        return Err(TensorCountError { n_layers: a.n_layers, present });
    };
    let mut expected = Vec::with_capacity(needed);
    expected.extend([
        ("token_embd.weight".to_string(), vec![a.vocab, a.hidden]),
        ("output_norm.weight".to_string(), vec![a.hidden]),
    ]);
    if !a.tied_embeddings {
        expected.push(("output.weight".into(), vec![a.vocab, a.hidden]));
    }
    for layer in 0..a.n_layers {
        let shapes: [_; TENSORS_PER_LAYER] = [
            ("attn_norm", vec![a.hidden]),
            ("attn_q", vec![a.q_dim(), a.hidden]),
            ("attn_k", vec![a.kv_dim(), a.hidden]),
            ("attn_v", vec![a.kv_dim(), a.hidden]),
            ("attn_output", vec![a.hidden, a.q_dim()]),
            ("ffn_norm", vec![a.hidden]),
            ("ffn_gate", vec![a.ffn, a.hidden]),
            ("ffn_up", vec![a.ffn, a.hidden]),
            ("ffn_down", vec![a.hidden, a.ffn]),
        ];
        expected.extend(shapes.into_iter().map(|(name, shape)| (format!("blk.{layer}.{name}.weight"), shape)));
    }
    Ok(expected)
}

/// A layer count that the tensors present cannot back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{n_layers} layers, but only {present} tensors are present")]
pub struct TensorCountError {
    pub n_layers: usize,
    pub present: usize,
}

fn check_shapes(a: &Architecture, weights: &HashMap<String, GpuTensor>) -> Result<(), LoadError> {
    for (name, shape) in expected_tensors(a, weights.len()).map_err(|e| LoadError::Manifest(e.into()))? {
        let tensor = weights.get(&name).ok_or_else(|| crate::weights::ManifestError::Missing(name.clone()))?;
        let found = if shape.len() == 1 { vec![tensor.cols] } else { vec![tensor.rows, tensor.cols] };
        if found != shape {
            return Err(LoadError::Shape { name, expected: shape, found });
        }
        if shape.len() == 1 && tensor.dtype != DType::F32 {
            return Err(LoadError::NormDType { name, found: tensor.dtype });
        }
    }
    Ok(())
}
