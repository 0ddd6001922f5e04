//! Architecture hyper-parameters: the shapes of a LLaMA-family model.

use serde::{Deserialize, Serialize};

/// RMSNorm's epsilon: models use 1e-5 or 1e-6; a larger one than this would swamp the mean
/// square of small activations, and infinity (1e39 in an f32) zeroes every one.
const MAX_NORM_EPS: f32 = 0.01;
/// RoPE's base: models use 1e4 to 1e8; an infinite one computes garbage without a sign.
const MAX_ROPE_THETA: f32 = 1e12;

/// Everything the forward pass needs to know about a LLaMA-family model's shapes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    pub n_layers: usize,
    pub hidden: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub rope_theta: f32,
    pub norm_eps: f32,
    pub context_length: usize,
    /// The output projection reuses the token embedding matrix.
    pub tied_embeddings: bool,
    pub bos_id: Option<u32>,
    pub eos_ids: Vec<u32>,
    /// The tokenizer prepends BOS to every encoded prompt.
    pub add_bos: bool,
}

impl Architecture {
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Checks the invariants the kernels rely on.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("n_layers", self.n_layers),
            ("hidden", self.hidden),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
            ("ffn", self.ffn),
            ("vocab", self.vocab),
            ("context_length", self.context_length),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(format!("{} attention heads are not a multiple of {} KV heads", self.n_heads, self.n_kv_heads));
        }
        if !self.head_dim.is_multiple_of(2) || self.head_dim > 256 {
            return Err(format!("head dim {} must be even and at most 256", self.head_dim));
        }
        if !(self.norm_eps > 0.0 && self.norm_eps <= MAX_NORM_EPS) {
            return Err(format!("norm_eps {} is not within (0, {MAX_NORM_EPS}]", self.norm_eps));
        }
        if !(1.0..=MAX_ROPE_THETA).contains(&self.rope_theta) {
            return Err(format!("rope_theta {} is not within [1, {MAX_ROPE_THETA:e}]", self.rope_theta));
        }
        // The sizes come from files and size allocations: every product the engine forms
        // must be representable, here and in 32-bit wasm.
        let widths = [
            ("n_heads × head_dim", self.n_heads.checked_mul(self.head_dim)),
            ("n_kv_heads × head_dim", self.n_kv_heads.checked_mul(self.head_dim)),
            ("vocab × hidden", self.vocab.checked_mul(self.hidden)),
            ("ffn × hidden", self.ffn.checked_mul(self.hidden)),
            (
                "n_heads × head_dim × hidden",
                self.n_heads.checked_mul(self.head_dim).and_then(|q| q.checked_mul(self.hidden)),
            ),
        ];
        if let Some((what, _)) = widths.iter().find(|(_, product)| product.is_none_or(|n| u32::try_from(n).is_err())) {
            return Err(format!("{what} does not fit in 32 bits ({self:?})"));
        }
        let kv_cache_bytes = [self.n_layers, self.context_length, self.n_kv_heads, self.head_dim, 4]
            .iter()
            .try_fold(1u64, |bytes, &n| bytes.checked_mul(n as u64));
        if kv_cache_bytes.is_none() {
            return Err(format!(
                "the KV cache of {} layers × {} positions × {} KV heads × {} does not fit in 64 bits",
                self.n_layers, self.context_length, self.n_kv_heads, self.head_dim
            ));
        }
        Ok(())
    }
}
