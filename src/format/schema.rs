//! The tensor schema: the name and shape of every tensor a model directory holds (GGUF
//! naming), the names of the input orders and of the projections the model stacks at load.
//! Every other module names tensors through this one.

use std::ops::Range;

use super::Architecture;

/// Where a layer's tensor names start: `blk.{layer}.{suffix}.weight`.
const LAYER_PREFIX: &str = "blk.";
const WEIGHT_SUFFIX: &str = ".weight";
const BIAS_SUFFIX: &str = ".bias";
const INPUT_ORDER_SUFFIX: &str = ".input_order";

/// llama.cpp's tensor of per-pair RoPE frequency divisors (Llama 3's scaling): read into
/// [`Architecture::rope_frequency_divisors`], never kept as a tensor.
pub const ROPE_FREQUENCIES: &str = "rope_freqs.weight";

/// llama.cpp's LongRoPE factors of a `phi3` GGUF (f32, one per rotated pair): the short
/// ones are read into [`Architecture::rope_frequency_divisors`], the long ones (past the
/// original context, which a model directory never records) only checked; neither is kept.
pub const ROPE_FACTORS_SHORT: &str = "rope_factors_short.weight";
pub const ROPE_FACTORS_LONG: &str = "rope_factors_long.weight";

/// Weight tensors of one layer.
pub const TENSORS_PER_LAYER: usize = LayerWeight::ALL.len();

/// The tensors outside the layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalWeight {
    TokenEmbedding,
    /// The final norm.
    OutputNorm,
    /// The lm_head, absent where it is tied to the token embedding.
    Output,
}

impl GlobalWeight {
    pub fn name(self) -> &'static str {
        match self {
            Self::TokenEmbedding => "token_embd.weight",
            Self::OutputNorm => "output_norm.weight",
            Self::Output => "output.weight",
        }
    }

    pub fn shape(self, a: &Architecture) -> Vec<usize> {
        match self {
            Self::TokenEmbedding | Self::Output => vec![a.vocab, a.hidden],
            Self::OutputNorm => vec![a.hidden],
        }
    }

    /// The tensor the lm_head multiplies by.
    pub fn lm_head(a: &Architecture) -> Self {
        if a.tied_embeddings {
            Self::TokenEmbedding
        } else {
            Self::Output
        }
    }

    /// Those the architecture has, in the order a model directory lists them.
    fn present(a: &Architecture) -> &'static [Self] {
        match a.tied_embeddings {
            true => &[Self::TokenEmbedding, Self::OutputNorm],
            false => &[Self::TokenEmbedding, Self::OutputNorm, Self::Output],
        }
    }
}

/// The weights of every layer: two norms, four attention and three feed-forward matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerWeight {
    AttnNorm,
    AttnQ,
    AttnK,
    AttnV,
    AttnOutput,
    FfnNorm,
    FfnGate,
    FfnUp,
    FfnDown,
}

impl LayerWeight {
    /// In the order a model directory lists a layer's tensors.
    pub const ALL: [Self; 9] = [
        Self::AttnNorm,
        Self::AttnQ,
        Self::AttnK,
        Self::AttnV,
        Self::AttnOutput,
        Self::FfnNorm,
        Self::FfnGate,
        Self::FfnUp,
        Self::FfnDown,
    ];

    /// The name's part that says which weight of the layer it is (`ffn_down`).
    pub fn suffix(self) -> &'static str {
        match self {
            Self::AttnNorm => "attn_norm",
            Self::AttnQ => "attn_q",
            Self::AttnK => "attn_k",
            Self::AttnV => "attn_v",
            Self::AttnOutput => "attn_output",
            Self::FfnNorm => "ffn_norm",
            Self::FfnGate => "ffn_gate",
            Self::FfnUp => "ffn_up",
            Self::FfnDown => "ffn_down",
        }
    }

    /// The tensor's name in `layer`: `blk.3.ffn_down.weight`.
    pub fn name(self, layer: usize) -> String {
        layer_tensor_name(layer, self.suffix())
    }

    pub fn shape(self, a: &Architecture) -> Vec<usize> {
        match self {
            Self::AttnNorm | Self::FfnNorm => vec![a.hidden],
            Self::AttnQ => vec![a.q_dim(), a.hidden],
            Self::AttnK | Self::AttnV => vec![a.kv_dim(), a.hidden],
            Self::AttnOutput => vec![a.hidden, a.q_dim()],
            Self::FfnGate | Self::FfnUp => vec![a.ffn, a.hidden],
            Self::FfnDown => vec![a.hidden, a.ffn],
        }
    }

    /// Whether RoPE rotates the rows this weight computes (queries and keys).
    pub fn is_rotated(self) -> bool {
        matches!(self, Self::AttnQ | Self::AttnK)
    }

    /// The layer and weight a layer tensor's name names (`blk.3.ffn_down.weight`).
    pub fn parse(name: &str) -> Option<(usize, Self)> {
        let (layer, suffix) = name.strip_prefix(LAYER_PREFIX)?.strip_suffix(WEIGHT_SUFFIX)?.split_once('.')?;
        let weight = Self::ALL.into_iter().find(|w| w.suffix() == suffix)?;
        Some((layer.parse().ok()?, weight))
    }

    /// The first weight of the layer that reads the same input (q for q/k/v, the gate
    /// for gate/up), or this one where no other reads it.
    pub fn first_reader_of_input(self) -> Self {
        StackedWeight::ALL.into_iter().find(|s| s.parts().contains(&self)).map_or(self, |s| s.parts()[0])
    }
}

/// The biases of the q, k and v projections, in architectures that have them
/// ([`Architecture::qkv_bias`], Qwen2): f32 vectors, `blk.{layer}.attn_q.bias`. The model
/// adds them where RoPE reads the projections' sums; q's and k's follow their weights' row
/// order (the engine's RoPE convention).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerBias {
    Q,
    K,
    V,
}

impl LayerBias {
    /// In the order of their projections' rows in a token's q/k/v sums.
    pub const ALL: [Self; 3] = [Self::Q, Self::K, Self::V];

    /// The weight whose sums this bias is added to.
    pub fn weight(self) -> LayerWeight {
        match self {
            Self::Q => LayerWeight::AttnQ,
            Self::K => LayerWeight::AttnK,
            Self::V => LayerWeight::AttnV,
        }
    }

    /// `blk.3.attn_q.bias`.
    pub fn name(self, layer: usize) -> String {
        format!("{LAYER_PREFIX}{layer}.{}{BIAS_SUFFIX}", self.weight().suffix())
    }

    pub fn shape(self, a: &Architecture) -> Vec<usize> {
        vec![self.weight().shape(a)[0]]
    }

    /// The layer and bias a tensor's name names (`blk.3.attn_k.bias`).
    pub fn parse(name: &str) -> Option<(usize, Self)> {
        let (layer, suffix) = name.strip_prefix(LAYER_PREFIX)?.strip_suffix(BIAS_SUFFIX)?.split_once('.')?;
        let bias = Self::ALL.into_iter().find(|b| b.weight().suffix() == suffix)?;
        Some((layer.parse().ok()?, bias))
    }
}

/// One layer's weights, each a field named once (after [`LayerWeight`]); `T` is what a weight
/// is to its reader: a `GpuTensor`, the CPU reference's `Vec<f32>`, a name.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerWeights<T> {
    pub attention_norm: T,
    pub wq: T,
    pub wk: T,
    pub wv: T,
    pub wo: T,
    pub feed_forward_norm: T,
    pub gate: T,
    pub up: T,
    pub down: T,
}

impl<T> LayerWeights<T> {
    /// Each weight from its kind, asked for in [`LayerWeight::ALL`]'s order.
    pub fn from_fn(mut weight: impl FnMut(LayerWeight) -> T) -> Self {
        Self {
            attention_norm: weight(LayerWeight::AttnNorm),
            wq: weight(LayerWeight::AttnQ),
            wk: weight(LayerWeight::AttnK),
            wv: weight(LayerWeight::AttnV),
            wo: weight(LayerWeight::AttnOutput),
            feed_forward_norm: weight(LayerWeight::FfnNorm),
            gate: weight(LayerWeight::FfnGate),
            up: weight(LayerWeight::FfnUp),
            down: weight(LayerWeight::FfnDown),
        }
    }
}

/// The projections of a layer that read one input, stacked by the model at load into one
/// tensor read by one dispatch (no model directory holds them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackedWeight {
    /// q, k and v: `blk.N.attn_qkv.weight`.
    Qkv,
    /// Gate and up: `blk.N.ffn_gate_up.weight`.
    GateUp,
}

impl StackedWeight {
    pub const ALL: [Self; 2] = [Self::Qkv, Self::GateUp];

    /// The weights stacked, in the order of their rows.
    pub fn parts(self) -> &'static [LayerWeight] {
        match self {
            Self::Qkv => &[LayerWeight::AttnQ, LayerWeight::AttnK, LayerWeight::AttnV],
            Self::GateUp => &[LayerWeight::FfnGate, LayerWeight::FfnUp],
        }
    }

    /// Each part and its rows of the stack, by the parts' shapes: where a checkpoint that
    /// stores the projections fused (Phi-3's `qkv_proj` and `gate_up_proj`, llama.cpp's
    /// `attn_qkv` and `ffn_up` for `phi3`) holds each, in this order too.
    pub fn part_rows(self, a: &Architecture) -> Vec<(LayerWeight, Range<usize>)> {
        let mut start = 0;
        let parts = self.parts().iter().map(|&part| {
            let rows = part.shape(a)[0];
            start += rows;
            (part, start - rows..start)
        });
        parts.collect()
    }

    pub fn name(self, layer: usize) -> String {
        let suffix = match self {
            Self::Qkv => "attn_qkv",
            Self::GateUp => "ffn_gate_up",
        };
        layer_tensor_name(layer, suffix)
    }
}

fn layer_tensor_name(layer: usize, suffix: &str) -> String {
    format!("{LAYER_PREFIX}{layer}.{suffix}{WEIGHT_SUFFIX}")
}

/// What a weight is, for profile labels: its role in every layer (`blk.3.ffn_down.weight`
/// → `ffn_down`), or its name without `.weight` outside the layers (`output`).
pub fn role(name: &str) -> &str {
    layer_role(name).unwrap_or_else(|| name.strip_suffix(WEIGHT_SUFFIX).unwrap_or(name))
}

/// What a tensor is in every layer: `blk.3.ffn_down.weight` → `ffn_down`; `None` for a
/// tensor outside the layers.
pub fn layer_role(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(LAYER_PREFIX)?;
    let rest = rest.strip_suffix(WEIGHT_SUFFIX).unwrap_or(rest);
    Some(rest.split_once('.').map_or(rest, |(_layer, role)| role))
}

/// The name of the input order of weight `weight_name` (`blk.3.attn_q.input_order`).
pub fn input_order_name(weight_name: &str) -> String {
    let base = weight_name.strip_suffix(WEIGHT_SUFFIX).unwrap_or(weight_name);
    format!("{base}{INPUT_ORDER_SUFFIX}")
}

/// The tensor names and shapes the forward pass reads, in the order a model directory
/// lists them. `present` is how many tensors the checkpoint or model directory holds: a
/// layer count read from a file is believed only as far as its tensors can back it (each
/// layer has tensors of its own), before anything is allocated for it. Which tensor is
/// missing is for the caller to name.
pub fn expected_tensors(a: &Architecture, present: usize) -> Result<Vec<(String, Vec<usize>)>, TensorCountError> {
    let globals = GlobalWeight::present(a);
    let per_layer = TENSORS_PER_LAYER + if a.qkv_bias { LayerBias::ALL.len() } else { 0 };
    let needed = a.n_layers.checked_mul(per_layer).and_then(|n| n.checked_add(globals.len()));
    let Some(needed) = needed.filter(|_| a.n_layers <= present) else {
        return Err(TensorCountError { n_layers: a.n_layers, present });
    };
    let mut expected = Vec::with_capacity(needed);
    expected.extend(globals.iter().map(|g| (g.name().to_string(), g.shape(a))));
    for layer in 0..a.n_layers {
        expected.extend(LayerWeight::ALL.map(|w| (w.name(layer), w.shape(a))));
        if a.qkv_bias {
            expected.extend(LayerBias::ALL.map(|b| (b.name(layer), b.shape(a))));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for weight in LayerWeight::ALL {
            assert_eq!(LayerWeight::parse(&weight.name(12)), Some((12, weight)));
            assert_eq!(layer_role(&weight.name(3)), Some(weight.suffix()));
        }
        assert_eq!(layer_role(&StackedWeight::GateUp.name(0)), Some("ffn_gate_up"));
        assert_eq!(LayerWeight::parse(GlobalWeight::Output.name()), None);
        assert_eq!(layer_role(GlobalWeight::TokenEmbedding.name()), None);
        assert_eq!(role(GlobalWeight::Output.name()), "output");
        assert_eq!(input_order_name(&LayerWeight::AttnQ.name(3)), "blk.3.attn_q.input_order");
        assert_eq!(LayerWeight::AttnV.first_reader_of_input(), LayerWeight::AttnQ);
        assert_eq!(LayerWeight::FfnUp.first_reader_of_input(), LayerWeight::FfnGate);
        assert_eq!(LayerWeight::FfnDown.first_reader_of_input(), LayerWeight::FfnDown);
        for bias in LayerBias::ALL {
            assert_eq!(LayerBias::parse(&bias.name(7)), Some((7, bias)));
            assert_eq!(LayerWeight::parse(&bias.name(7)), None);
        }
        assert_eq!(LayerBias::K.name(2), "blk.2.attn_k.bias");
    }
}
