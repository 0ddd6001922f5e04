//! Every GPU buffer the forward pass allocates besides the weights, sized from the
//! architecture and the load options. [`super::LlamaModel`] allocates from this plan and
//! the browser's fit check (src/web/fit.rs) adds it up, so the two cannot disagree.

use super::LoadOptions;
use crate::format::Architecture;
use crate::kernels::{storage_size, Heads, KvCache, SplitScratch, TokenPlace, MAX_WORKGROUPS_PER_DIM};

/// Prompt tokens per prefill submission on a GPU unless asked otherwise: in chunks of 128,
/// Auto-J-13B's 5120-row projections are 0.95-1.4 waves of matmul tiles on a 28-SM GPU, in
/// chunks of 512 3.8-5.7 waves, 95% busy (shaders/matmul.wgsl; llama.cpp's default batch is
/// 512 too). 13B's activations grow to about 100 MiB, which the fit estimate counts.
pub const GPU_PREFILL_CHUNK: usize = 512;

/// The same on a CPU adapter ([`crate::kernels::Gpu::cpu_adapter`]), where a longer chunk
/// gains nothing: lavapipe prefilled 512 tokens at 16.1-18.2 tok/s in chunks of 128 and
/// 15.4-17.1 in chunks of 512, alternating (BENCH.md).
pub const CPU_PREFILL_CHUNK: usize = 128;

/// The most tokens one step (a prefill chunk) may have on any adapter: kernels dispatch
/// a row of workgroups per token.
pub const MAX_STEP_TOKENS: usize = MAX_WORKGROUPS_PER_DIM as usize;

/// Bytes of each buffer, as asked of the GPU (before [`storage_size`]'s rounding).
#[derive(Clone, Debug, PartialEq)]
pub struct BufferPlan {
    /// f32 activations for a step's tokens (a prefill chunk, or one token per sequence),
    /// each `tokens x width`.
    pub residual: u64,
    pub normed: u64,
    /// The q/k/v projection's output: each token's queries, keys and values.
    pub qkv: u64,
    /// The rotated queries.
    pub q: u64,
    pub attended: u64,
    /// The gate projection, then SwiGLU's output.
    pub gate: u64,
    /// A layer input gathered into an act-order weight's column order (empty without one).
    pub gathered: u64,
    /// Most tokens in one step: a prefill chunk or a decode batch.
    pub step_tokens: usize,
    /// The step's token ids (then the chosen ids).
    pub tokens: u64,
    /// The step's token places (sequence slot, position).
    pub places: u64,
    pub logits: u64,
    /// cos and sin of every (position, pair).
    pub rope_table: u64,
    /// Each of a layer's key and value cache buffers (f16, a slot per sequence).
    pub kv_layer: u64,
    /// Two per layer.
    pub kv_buffers: u64,
    /// Attention's key-range partials for decode, at most (the adapter sets the count).
    pub split_scratch: u64,
    /// One sequence slot of one layer's keys (or values): where shared prefixes pass.
    pub prefix_scratch: u64,
}

impl BufferPlan {
    /// `widest_ordered_input`: the columns of the widest weight with an input order (0
    /// when none has one; see [`crate::format::Manifest::widest_ordered_input`]).
    pub fn new(a: &Architecture, options: &LoadOptions, widest_ordered_input: usize) -> Self {
        let step_tokens = options.prefill_chunk.max(options.sequences);
        // In u64: a step's buffers may exceed a 32-bit usize (wasm), and are refused then.
        let f32s = |width: usize| step_tokens as u64 * width as u64 * 4;
        let heads = Heads { n_heads: a.n_heads, n_kv_heads: a.n_kv_heads, head_dim: a.head_dim };
        Self {
            residual: f32s(a.hidden),
            normed: f32s(a.hidden),
            qkv: f32s(a.q_dim() + 2 * a.kv_dim()),
            q: f32s(a.q_dim()),
            attended: f32s(a.q_dim()),
            gate: f32s(a.ffn),
            gathered: f32s(widest_ordered_input),
            step_tokens,
            tokens: step_tokens as u64 * 4,
            places: step_tokens as u64 * std::mem::size_of::<TokenPlace>() as u64,
            logits: a.vocab as u64 * options.sequences as u64 * 4,
            rope_table: options.context as u64 * a.head_dim as u64 * 4,
            kv_layer: KvCache::layer_bytes(heads, options.context, options.sequences),
            kv_buffers: 2 * a.n_layers as u64,
            split_scratch: SplitScratch::max_bytes(heads, options.sequences),
            prefix_scratch: KvCache::layer_bytes(heads, options.context, 1),
        }
    }

    /// The most tokens a step may have when each of its activation buffers (one binding
    /// each) may take at most `max_binding` bytes as allocated, and at most
    /// [`MAX_STEP_TOKENS`].
    pub fn max_step_tokens(a: &Architecture, widest_ordered_input: usize, max_binding: u64) -> usize {
        let one = Self::new(a, &LoadOptions { context: 1, prefill_chunk: 1, sequences: 1 }, widest_ordered_input);
        let per_token = [one.residual, one.normed, one.qkv, one.q, one.attended, one.gate, one.gathered];
        let per_token = per_token.into_iter().max().unwrap_or(0).max(1);
        // Allocations are rounded up to 16 bytes (`storage_size`).
        let fits = max_binding / 16 * 16 / per_token;
        fits.min(MAX_STEP_TOKENS as u64) as usize
    }

    /// Everything but the KV cache, as allocated.
    pub fn activation_bytes(&self) -> u64 {
        let buffers = [
            self.residual,
            self.normed,
            self.qkv,
            self.q,
            self.attended,
            self.gate,
            self.gathered,
            self.tokens,
            self.places,
            self.logits,
            self.rope_table,
            self.prefix_scratch,
        ];
        buffers.into_iter().map(storage_size).sum::<u64>() + self.split_scratch
    }

    /// Every layer's keys and values, as allocated.
    pub fn kv_cache_bytes(&self) -> u64 {
        self.kv_buffers * storage_size(self.kv_layer)
    }
}
