//! An importance matrix, as llama.cpp's `llama-imatrix` collects one and its quantizers use it:
//! for every linear weight, the mean over calibration tokens of the square of each input
//! column's activation. The quantizers then weigh a value's rounding error by how much its
//! column is used (see [`crate::format::encode_weighted`]).
//!
//! Collected here from the checkpoint's own f32 weights by a CPU forward pass over the
//! calibration text, streamed layer by layer: every token's hidden state goes through one
//! layer before the next layer's weights are read, so only one layer is in memory. The text
//! is cut as `llama-imatrix` cuts it: chunks of [`CONTEXT`] tokens (fewer for a shorter text),
//! each from an empty context and led by BOS where the model adds one; every position counts.
//! As `llama-imatrix` does by default, the lm_head gets none (the token embedding is a lookup,
//! not a product).

use std::collections::HashMap;

use crate::engine::perplexity::{added_bos, chunks, text_tokens};
use crate::format::schema::{GlobalWeight, LayerBias, LayerWeight};
use crate::format::Architecture;
use crate::model::reference::{attend, rmsnorm, rope, swiglu};
use crate::tokenizer::Tokenizer;

/// Tokens per chunk: `llama-imatrix`'s default context.
pub const CONTEXT: usize = 512;

/// Each weight's importance: one value per input column.
#[derive(Clone, Debug, Default)]
pub struct ImportanceMatrix {
    columns: HashMap<String, Vec<f32>>,
    /// Calibration tokens the means are over.
    pub tokens: usize,
}

impl ImportanceMatrix {
    /// The importance of the weight's input columns (model directory name), if collected.
    pub fn get(&self, weight: &str) -> Option<&[f32]> {
        self.columns.get(weight).map(Vec::as_slice)
    }

    /// Weights with an entry.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }
}

/// Why no importance matrix could be collected.
#[derive(Debug, thiserror::Error)]
pub enum ImatrixError {
    #[error("the calibration text is empty: an importance matrix needs at least 2 tokens, BOS included")]
    Empty,
    #[error("calibration text: {0}")]
    Tokenize(String),
}

/// The calibration text's chunks of token ids.
pub fn calibration_chunks(
    tokenizer: &Tokenizer,
    architecture: &Architecture,
    text: &str,
) -> Result<Vec<Vec<u32>>, ImatrixError> {
    let tokens = text_tokens(tokenizer, architecture, text).map_err(|e| ImatrixError::Tokenize(e.to_string()))?;
    if tokens.len() < 2 {
        return Err(ImatrixError::Empty);
    }
    let context = CONTEXT.min(tokens.len());
    Ok(chunks(&tokens, context, added_bos(architecture)).expect("a context the tokens fill"))
}

/// Reads a weight as f32 by name: the given rows, or all of them.
pub type ReadWeight<'a, E> = dyn FnMut(&str, Option<&[usize]>) -> Result<Vec<f32>, E> + 'a;

/// Collects the importance matrix of a model whose weights `read` gives as f32, row-major,
/// by model directory name (the rows of the token embedding asked for; every row of other
/// weights, Q and K rows in the order the engine's RoPE expects).
pub fn collect<E>(
    architecture: &Architecture,
    chunks: &[Vec<u32>],
    read: &mut ReadWeight<'_, E>,
) -> Result<ImportanceMatrix, E> {
    let a = architecture;
    let tokens: Vec<u32> = chunks.concat();
    let rows: Vec<usize> = tokens.iter().map(|&id| id as usize).collect();
    let mut hidden = read(GlobalWeight::TokenEmbedding.name(), Some(&rows))?;
    let mut matrix = ImportanceMatrix { columns: HashMap::new(), tokens: tokens.len() };
    let mut record = |weights: &[LayerWeight], layer: usize, inputs: &[f32], cols: usize| {
        let mean_squares = mean_squares(inputs, cols);
        for weight in weights {
            matrix.columns.insert(weight.name(layer), mean_squares.clone());
        }
    };
    for layer in 0..a.n_layers {
        let biases: Vec<Vec<f32>> = match a.qkv_bias {
            true => LayerBias::ALL.iter().map(|b| read(&b.name(layer), None)).collect::<Result<_, _>>()?,
            false => Vec::new(),
        };
        let mut weight = |w: LayerWeight| read(&w.name(layer), None);
        let normed = rms_normed(&hidden, &weight(LayerWeight::AttnNorm)?, a.norm_eps);
        record(&[LayerWeight::AttnQ, LayerWeight::AttnK, LayerWeight::AttnV], layer, &normed, a.hidden);
        let mut q = matmul(&weight(LayerWeight::AttnQ)?, a.hidden, &normed);
        let mut k = matmul(&weight(LayerWeight::AttnK)?, a.hidden, &normed);
        let mut v = matmul(&weight(LayerWeight::AttnV)?, a.hidden, &normed);
        for (sums, bias) in [&mut q, &mut k, &mut v].into_iter().zip(&biases) {
            sums.chunks_exact_mut(bias.len()).for_each(|token| add(token, bias));
        }
        let mut attention = Vec::with_capacity(tokens.len() * a.q_dim());
        let mut start = 0;
        for chunk in chunks {
            let end = start + chunk.len();
            let (q, k) = (&mut q[start * a.q_dim()..end * a.q_dim()], &mut k[start * a.kv_dim()..end * a.kv_dim()]);
            for (position, (q, k)) in q.chunks_exact_mut(a.q_dim()).zip(k.chunks_exact_mut(a.kv_dim())).enumerate() {
                rope(q, a, position);
                rope(k, a, position);
            }
            let keys: Vec<Vec<f32>> = k.chunks_exact(a.kv_dim()).map(<[f32]>::to_vec).collect();
            let values: Vec<Vec<f32>> =
                v[start * a.kv_dim()..end * a.kv_dim()].chunks_exact(a.kv_dim()).map(<[f32]>::to_vec).collect();
            for (position, query) in q.chunks_exact(a.q_dim()).enumerate() {
                let seen = position + 1;
                attention.extend(attend(query, &keys[..seen], &values[..seen], a.n_heads, a.n_kv_heads));
            }
            start = end;
        }
        record(&[LayerWeight::AttnOutput], layer, &attention, a.q_dim());
        add(&mut hidden, &matmul(&weight(LayerWeight::AttnOutput)?, a.q_dim(), &attention));
        let normed = rms_normed(&hidden, &weight(LayerWeight::FfnNorm)?, a.norm_eps);
        record(&[LayerWeight::FfnGate, LayerWeight::FfnUp], layer, &normed, a.hidden);
        let gate = matmul(&weight(LayerWeight::FfnGate)?, a.hidden, &normed);
        let up = matmul(&weight(LayerWeight::FfnUp)?, a.hidden, &normed);
        let activated = swiglu(&gate, &up);
        record(&[LayerWeight::FfnDown], layer, &activated, a.ffn);
        add(&mut hidden, &matmul(&weight(LayerWeight::FfnDown)?, a.ffn, &activated));
    }
    Ok(matrix)
}

/// Each column's mean square over the rows of `inputs` (rows of `cols` values).
fn mean_squares(inputs: &[f32], cols: usize) -> Vec<f32> {
    let mut sums = vec![0f64; cols];
    for row in inputs.chunks_exact(cols) {
        for (sum, &v) in sums.iter_mut().zip(row) {
            *sum += f64::from(v) * f64::from(v);
        }
    }
    let rows = (inputs.len() / cols) as f64;
    sums.iter().map(|&sum| (sum / rows) as f32).collect()
}

fn rms_normed(hidden: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    hidden.chunks_exact(weight.len()).flat_map(|x| rmsnorm(x, weight, eps)).collect()
}

fn add(hidden: &mut [f32], residual: &[f32]) {
    hidden.iter_mut().zip(residual).for_each(|(h, r)| *h += r);
}

/// `inputs · weightᵀ`: for rows of `cols` inputs, each row's product with the row-major
/// `weight`, spread over the cores by weight rows, a block of inputs at a time so that the
/// block stays in cache while every weight row passes over it.
fn matmul(weight: &[f32], cols: usize, inputs: &[f32]) -> Vec<f32> {
    let (out_rows, tokens) = (weight.len() / cols, inputs.len() / cols);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rows_per_thread = out_rows.div_ceil(threads).max(1);
    let block = (1usize << 17).div_ceil(cols).max(1);
    // Each thread's part: its weight rows' outputs, token-major within the part.
    let parts: Vec<Vec<f32>> = std::thread::scope(|scope| {
        let workers: Vec<_> = weight
            .chunks(rows_per_thread * cols)
            .map(|rows| {
                scope.spawn(move || {
                    let n = rows.len() / cols;
                    let mut out = vec![0f32; tokens * n];
                    for (block_index, inputs) in inputs.chunks(block * cols).enumerate() {
                        for (r, row) in rows.chunks_exact(cols).enumerate() {
                            for (t, x) in inputs.chunks_exact(cols).enumerate() {
                                out[(block_index * block + t) * n + r] = dot(row, x);
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        workers.into_iter().map(|worker| worker.join().expect("a matmul thread panicked")).collect()
    });
    let mut out = Vec::with_capacity(tokens * out_rows);
    for t in 0..tokens {
        for part in &parts {
            let n = part.len() / tokens;
            out.extend_from_slice(&part[t * n..(t + 1) * n]);
        }
    }
    out
}

/// A dot product in eight lanes, which the compiler keeps in vector registers.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_is_each_rows_dot_product() {
        let cols = 37;
        let weight: Vec<f32> = (0..11 * cols).map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.25).collect();
        let inputs: Vec<f32> = (0..5 * cols).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.5).collect();
        let out = matmul(&weight, cols, &inputs);
        for t in 0..5 {
            for r in 0..11 {
                let expected: f32 = (0..cols).map(|c| weight[r * cols + c] * inputs[t * cols + c]).sum();
                assert!((out[t * 11 + r] - expected).abs() < 1e-3, "token {t} row {r}");
            }
        }
    }

    #[test]
    fn mean_squares_are_per_column() {
        assert_eq!(mean_squares(&[1.0, -2.0, 3.0, 4.0], 2), [5.0, 10.0]);
    }
}
