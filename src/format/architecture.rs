//! Architecture hyper-parameters: the shapes of a LLaMA-family model.

use serde::{Deserialize, Serialize};

/// RMSNorm's epsilon: models use 1e-5 or 1e-6; a larger one than this would swamp the mean
/// square of small activations, and infinity (1e39 in an f32) zeroes every one.
const MAX_NORM_EPS: f32 = 0.01;
/// RoPE's base: models use 1e4 to 1e8; an infinite one computes garbage without a sign.
const MAX_ROPE_THETA: f32 = 1e12;
/// LongRoPE's cos/sin scale is `sqrt(1 + ln(factor) / ln(original context))`: about 1.19 for
/// Phi-3.5's 32-fold extension; a config's own `attention_factor` may differ, but one past
/// this range would swamp or zero the attention scores.
const ROPE_ATTENTION_FACTOR_RANGE: std::ops::RangeInclusive<f32> = 0.1..=10.0;

/// Llama 3's RoPE scaling parameters (`rope_scaling` / `rope_parameters` with
/// `rope_type: "llama3"` in a Hugging Face config).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    /// `original_max_position_embeddings`.
    pub original_context: f32,
}

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
    /// RoPE scaling as a divisor of each rotated pair's frequency (`head_dim / 2` of them),
    /// as llama.cpp's `rope_freqs` tensor holds Llama 3's (`rope_type: "llama3"`) and a
    /// linear scaling's; empty without scaling.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rope_frequency_divisors: Vec<f32>,
    /// What RoPE's cos and sin are multiplied by: LongRoPE's attention factor (Phi-3.5's
    /// `rope_scaling` of type `longrope`), 1 otherwise.
    #[serde(default = "unscaled", skip_serializing_if = "is_unscaled")]
    pub rope_attention_factor: f32,
    pub norm_eps: f32,
    /// The q, k and v projections add a bias (Qwen2): `blk.N.attn_{q,k,v}.bias`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub qkv_bias: bool,
    pub context_length: usize,
    /// The output projection reuses the token embedding matrix.
    pub tied_embeddings: bool,
    pub bos_id: Option<u32>,
    pub eos_ids: Vec<u32>,
    /// The tokenizer prepends BOS to every encoded prompt.
    pub add_bos: bool,
}

fn unscaled() -> f32 {
    1.0
}

fn is_unscaled(factor: &f32) -> bool {
    *factor == 1.0
}

impl Architecture {
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Each rotated pair's angle per position: `rope_theta^(-2i / head_dim)` over its
    /// divisor, in f32 as Hugging Face computes `inv_freq`.
    pub fn rope_inverse_frequencies(&self) -> Vec<f32> {
        let divisor = |i| self.rope_frequency_divisors.get(i).copied().unwrap_or(1.0);
        (0..self.head_dim / 2).map(|i| self.unscaled_inverse_frequency(i) / divisor(i)).collect()
    }

    fn unscaled_inverse_frequency(&self, pair: usize) -> f32 {
        1.0 / self.rope_theta.powf((2 * pair) as f32 / self.head_dim as f32)
    }

    /// Llama 3's divisors (`rope_type: "llama3"`), as llama.cpp's converter computes its
    /// `rope_freqs` tensor: none for wavelengths under `original_context / high_freq_factor`,
    /// `factor` over `original_context / low_freq_factor`, a smooth blend between.
    pub fn llama3_rope_divisors(&self, scaling: Llama3RopeScaling) -> Vec<f32> {
        let Llama3RopeScaling { factor, low_freq_factor, high_freq_factor, original_context } = scaling;
        let low_freq_wavelength = original_context / low_freq_factor;
        let high_freq_wavelength = original_context / high_freq_factor;
        (0..self.head_dim / 2)
            .map(|i| {
                let wavelength = 2.0 * std::f32::consts::PI / self.unscaled_inverse_frequency(i);
                if wavelength < high_freq_wavelength {
                    1.0
                } else if wavelength > low_freq_wavelength {
                    factor
                } else {
                    let smooth =
                        (original_context / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor);
                    1.0 / ((1.0 - smooth) / factor + smooth)
                }
            })
            .collect()
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
        // The key cache stores a head's values in quads of four f16 pairs (shaders/common.wgsl).
        if !self.head_dim.is_multiple_of(8) || self.head_dim > 256 {
            return Err(format!("head dim {} must be a multiple of 8 and at most 256", self.head_dim));
        }
        if !(self.norm_eps > 0.0 && self.norm_eps <= MAX_NORM_EPS) {
            return Err(format!("norm_eps {} is not within (0, {MAX_NORM_EPS}]", self.norm_eps));
        }
        if !(1.0..=MAX_ROPE_THETA).contains(&self.rope_theta) {
            return Err(format!("rope_theta {} is not within [1, {MAX_ROPE_THETA:e}]", self.rope_theta));
        }
        let divisors = &self.rope_frequency_divisors;
        if !divisors.is_empty() && divisors.len() != self.head_dim / 2 {
            return Err(format!("{} RoPE frequency divisors for {} rotated pairs", divisors.len(), self.head_dim / 2));
        }
        if let Some(bad) = divisors.iter().find(|d| !(d.is_finite() && **d >= 1e-3 && **d <= 1e6)) {
            return Err(format!("RoPE frequency divisor {bad} is not within [0.001, 1e6]"));
        }
        if !ROPE_ATTENTION_FACTOR_RANGE.contains(&self.rope_attention_factor) {
            let (low, high) = (ROPE_ATTENTION_FACTOR_RANGE.start(), ROPE_ATTENTION_FACTOR_RANGE.end());
            return Err(format!("RoPE attention factor {} is not within [{low}, {high}]", self.rope_attention_factor));
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
