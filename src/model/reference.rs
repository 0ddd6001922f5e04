//! A plain CPU f32 forward pass, written to be read in one sitting: the yardstick the
//! GPU kernels are tested against. Slow by design; never used for serving.

use half::f16;

use crate::format::schema::LayerWeights;
use crate::format::Architecture;

/// `y = W x` for a row-major `rows x cols` matrix.
pub fn matvec(weight: &[f32], x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..rows).map(|r| weight[r * cols..(r + 1) * cols].iter().zip(x).map(|(w, v)| w * v).sum()).collect()
}

pub fn rmsnorm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let mean_square = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let inv = 1.0 / (mean_square + eps).sqrt();
    x.iter().zip(weight).map(|(v, w)| v * inv * w).collect()
}

/// Rotates adjacent pairs of each head in place (the engine's RoPE convention), angles in
/// f64 with the architecture's frequency divisors, cos and sin times its attention factor.
pub fn rope(x: &mut [f32], a: &Architecture, position: usize) {
    let scale = a.rope_attention_factor as f64;
    for head in x.chunks_exact_mut(a.head_dim) {
        for i in 0..a.head_dim / 2 {
            let divisor = a.rope_frequency_divisors.get(i).map_or(1.0, |&d| d as f64);
            let angle = position as f64 * (a.rope_theta as f64).powf(-((2 * i) as f64) / a.head_dim as f64) / divisor;
            let (sin, cos) = ((angle.sin() * scale) as f32, (angle.cos() * scale) as f32);
            let (a, b) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = a * cos - b * sin;
            head[2 * i + 1] = a * sin + b * cos;
        }
    }
}

pub fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.iter().zip(up).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect()
}

/// Rounds to f16 and back, as the GPU's KV cache stores keys and values.
pub fn round_f16(values: &[f32]) -> Vec<f32> {
    values.iter().map(|&v| f16::from_f32(v).to_f32()).collect()
}

/// Causal attention of one query (all heads) over `keys`/`values`, each a list of
/// positions holding `n_kv_heads x head_dim` values.
pub fn attend(q: &[f32], keys: &[Vec<f32>], values: &[Vec<f32>], n_heads: usize, n_kv_heads: usize) -> Vec<f32> {
    let head_dim = q.len() / n_heads;
    let group = n_heads / n_kv_heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let mut out = vec![0.0; q.len()];
    for h in 0..n_heads {
        let kv = (h / group) * head_dim;
        let qh = &q[h * head_dim..(h + 1) * head_dim];
        let scores: Vec<f32> = keys
            .iter()
            .map(|k| qh.iter().zip(&k[kv..kv + head_dim]).map(|(a, b)| a * b).sum::<f32>() * scale)
            .collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f32 = weights.iter().sum();
        for (w, v) in weights.iter().zip(values) {
            for d in 0..head_dim {
                out[h * head_dim + d] += w / total * v[kv + d];
            }
        }
    }
    out
}

/// Index of the largest value, the lowest on ties.
pub fn argmax(values: &[f32]) -> usize {
    values.iter().enumerate().fold(0, |best, (i, &v)| if v > values[best] { i } else { best })
}

pub struct ModelWeights {
    pub embedding: Vec<f32>,
    /// Each layer's weights, dequantized.
    pub layers: Vec<LayerWeights<Vec<f32>>>,
    /// Each layer's q, k and v biases side by side, where the architecture has them.
    pub qkv_biases: Option<Vec<Vec<f32>>>,
    pub final_norm: Vec<f32>,
    /// `None` when tied to the embedding.
    pub lm_head: Option<Vec<f32>>,
}

/// The CPU model: a KV cache (rounded to f16 like the GPU's) and a forward pass.
pub struct CpuModel<'a> {
    arch: &'a Architecture,
    weights: &'a ModelWeights,
    keys: Vec<Vec<Vec<f32>>>,
    values: Vec<Vec<Vec<f32>>>,
}

impl<'a> CpuModel<'a> {
    pub fn new(arch: &'a Architecture, weights: &'a ModelWeights) -> Self {
        Self { arch, weights, keys: vec![Vec::new(); arch.n_layers], values: vec![Vec::new(); arch.n_layers] }
    }

    /// Runs one token at the next position and returns the logits.
    pub fn forward(&mut self, token: u32) -> Vec<f32> {
        let a = self.arch;
        let w = self.weights;
        let position = self.keys[0].len();
        let mut x = w.embedding[token as usize * a.hidden..(token as usize + 1) * a.hidden].to_vec();
        for (l, layer) in w.layers.iter().enumerate() {
            let xn = rmsnorm(&x, &layer.attention_norm, a.norm_eps);
            let mut q = matvec(&layer.wq, &xn, a.q_dim(), a.hidden);
            let mut k = matvec(&layer.wk, &xn, a.kv_dim(), a.hidden);
            let mut v = matvec(&layer.wv, &xn, a.kv_dim(), a.hidden);
            if let Some(biases) = &w.qkv_biases {
                let sums = q.iter_mut().chain(&mut k).chain(&mut v);
                sums.zip(&biases[l]).for_each(|(sum, bias)| *sum += bias);
            }
            rope(&mut q, a, position);
            rope(&mut k, a, position);
            self.keys[l].push(round_f16(&k));
            self.values[l].push(round_f16(&v));
            let attended = attend(&q, &self.keys[l], &self.values[l], a.n_heads, a.n_kv_heads);
            let o = matvec(&layer.wo, &attended, a.hidden, a.q_dim());
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
            let xn = rmsnorm(&x, &layer.feed_forward_norm, a.norm_eps);
            let gate = matvec(&layer.gate, &xn, a.ffn, a.hidden);
            let up = matvec(&layer.up, &xn, a.ffn, a.hidden);
            let down = matvec(&layer.down, &swiglu(&gate, &up), a.hidden, a.ffn);
            x.iter_mut().zip(&down).for_each(|(x, d)| *x += d);
        }
        let xn = rmsnorm(&x, &w.final_norm, a.norm_eps);
        matvec(w.lm_head.as_ref().unwrap_or(&w.embedding), &xn, a.vocab, a.hidden)
    }
}

/// The distribution temperature + nucleus (top-p) sampling draws from: the softmax of
/// `logits / temperature`, restricted to the fewest most probable tokens whose mass
/// reaches `top_p` (all tokens when `top_p >= 1`), renormalized. Returns
/// `(token, probability)` pairs, most probable first (lowest id first on ties).
pub fn nucleus(logits: &[f32], temperature: f32, top_p: f32) -> Vec<(usize, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits.iter().map(|&l| (((l - max) / temperature) as f64).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
    let mut kept = Vec::new();
    let mut mass = 0.0;
    for token in order {
        if top_p < 1.0 && mass >= top_p as f64 {
            break;
        }
        mass += weights[token] / total;
        kept.push((token, weights[token] / total));
    }
    kept.into_iter().map(|(token, p)| (token, (p / mass) as f32)).collect()
}
