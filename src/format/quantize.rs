//! From f32 values to each dtype's layout: the rules the converters and the tests quantize
//! with. The K-quants are llama.cpp's own ([`super::k_quants`]); q4 and q5 fit each group's
//! scale and offset by the same weighted least-squares search (`make_qkx2_quants`) that
//! Q4_K and Q5_K use for their sub-blocks, keeping the min/max fit where it does better
//! once both are rounded to f16.
//!
//! With an importance matrix (one value per input column: the mean square of the activation
//! that column multiplies, collected from calibration text), the searches weigh each value's
//! error as llama.cpp's `_impl` quantizers do: the K-quants exactly as theirs, q4 and q5 as
//! Q4_1's and Q5_1's (`make_qkx3_quants` over `importance * sqrt(sigma² + x²)`). q8, q4sym and
//! the min/max rule ignore it, as llama.cpp's Q8_0 does.

use half::{bf16, f16};

use super::dtype::{nibble_words, pack_f16_pair, pack_f16_words, pack_q4, pack_q8, Q5_GROUP};
use super::ggml_blocks::GgmlType;
use super::k_quants::{self, fit_scale_min, MAX_FIT_VALUES};
use super::DType;

/// How q4 and q5 pick a group's scale and offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AffineRule {
    /// The group's minimum and `(max - min) / max_code`: GGUF Q4_1's and Q5_1's rule.
    MinMax,
    /// The weighted least-squares search, or min/max where that fits better.
    Search,
}

/// Encodes f32 values in the given dtype with its default rule (the search for q4 and q5).
pub fn encode(dtype: DType, values: &[f32], group: usize) -> Vec<u32> {
    encode_weighted(dtype, values, group, None)
}

/// [`encode`] under an importance matrix: `importance` has one value per column of the rows
/// `values` holds (its length is the row length).
pub fn encode_weighted(dtype: DType, values: &[f32], group: usize, importance: Option<&[f32]>) -> Vec<u32> {
    match dtype {
        DType::F32 => values.iter().map(|v| v.to_bits()).collect(),
        DType::U32 => values.iter().map(|&v| v as u32).collect(),
        DType::F16 => {
            let halves: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
            pack_f16_words(&halves).collect()
        }
        DType::Q4 => quantize_q4(values, group, AffineRule::Search, importance),
        DType::Q8 => quantize_q8(values, group),
        DType::Bf16 => values
            .chunks(2)
            .map(|pair| {
                let bits = |v: Option<&f32>| u32::from(v.map_or(0, |&v| bf16::from_f32(v).to_bits()));
                bits(pair.first()) | (bits(pair.get(1)) << 16)
            })
            .collect(),
        DType::Q5 => quantize_q5(values, importance),
        DType::Q4K => pack_ggml(GgmlType::Q4K, &k_quants::quantize_q4_k(values, importance)),
        DType::Q5K => pack_ggml(GgmlType::Q5K, &k_quants::quantize_q5_k(values, importance)),
        DType::Q6K => pack_ggml(GgmlType::Q6K, &k_quants::quantize_q6_k(values, importance)),
    }
}

fn pack_ggml(ggml_type: GgmlType, blocks: &[u8]) -> Vec<u32> {
    ggml_type.pack(blocks).expect("K-quant blocks always have an exact form")
}

/// Quantizes f32 rows to q4 (asymmetric: per group an f16 scale and offset), the search
/// weighted by `importance` where given.
pub fn quantize_q4(values: &[f32], group: usize, rule: AffineRule, importance: Option<&[f32]>) -> Vec<u32> {
    let (codes, params) = match (rule, importance) {
        (AffineRule::Search, Some(importance)) => weighted_affine_groups(values, group, 15, importance),
        _ => affine_groups(values, group, 15, rule),
    };
    pack_q4(&codes, &params, group)
}

/// Quantizes f32 rows to q5 (groups of 32, asymmetric, 32 levels), with the search,
/// weighted by `importance` where given.
pub fn quantize_q5(values: &[f32], importance: Option<&[f32]>) -> Vec<u32> {
    let group = Q5_GROUP as usize;
    let (codes, params) = match importance {
        Some(importance) => weighted_affine_groups(values, group, 31, importance),
        None => affine_groups(values, group, 31, AffineRule::Search),
    };
    let params = codes.chunks_exact(group).zip(params).flat_map(|(block_codes, (scale, offset))| {
        let fifth_bits = block_codes.iter().enumerate().fold(0u32, |bits, (j, &q)| bits | u32::from(q >> 4) << j);
        [pack_f16_pair(scale, offset), fifth_bits]
    });
    nibble_words(&codes).chain(params).collect()
}

/// Codes `0..=max_code` and per-group f16 `(scale, offset)` such that a value is
/// `scale * code + offset`.
fn affine_groups(values: &[f32], group: usize, max_code: u8, rule: AffineRule) -> (Vec<u8>, Vec<(f16, f16)>) {
    assert!(group <= MAX_FIT_VALUES, "groups of at most {MAX_FIT_VALUES} values");
    let mut codes = vec![0u8; values.len()];
    let mut params = Vec::with_capacity(values.len() / group);
    for (block, block_codes) in values.chunks_exact(group).zip(codes.chunks_exact_mut(group)) {
        let min = block.iter().copied().fold(f32::INFINITY, f32::min);
        let max = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let min_max = (f16::from_f32((max - min) / f32::from(max_code)), f16::from_f32(min));
        let fit = match rule {
            AffineRule::MinMax => min_max,
            AffineRule::Search => {
                // Q4_K's weights: the block's RMS plus each value's magnitude.
                let rms = (block.iter().map(|v| v * v).sum::<f32>() / group as f32).sqrt();
                let weights: Vec<f32> = block.iter().map(|v| rms + v.abs()).collect();
                let (start, steps) = if max_code == 15 { (-1.0, 20) } else { (-0.5, 15) };
                let (scale, negated_min) = fit_scale_min(block, &weights, max_code, block_codes, start, 0.1, steps);
                let searched = (f16::from_f32(scale), f16::from_f32(-negated_min));
                // Rounded to f16, the search can lose to min/max on a rare group: keep the better.
                let error = |params| weighted_error(block, &weights, params, max_code);
                if error(searched) <= error(min_max) {
                    searched
                } else {
                    min_max
                }
            }
        };
        for (code, &v) in block_codes.iter_mut().zip(block) {
            *code = affine_code(v, fit, max_code);
        }
        params.push(fit);
    }
    (codes, params)
}

/// llama.cpp's `quantize_row_q4_1_impl` / `quantize_row_q5_1_impl` for groups of any size up
/// to [`MAX_FIT_VALUES`]: each group fitted by `make_qkx3_quants` with weights
/// `importance * sqrt(sigma² + x²)` (`sigma²` the row's mean square), its codes kept as the
/// search chose them.
fn weighted_affine_groups(
    values: &[f32],
    group: usize,
    max_code: u8,
    importance: &[f32],
) -> (Vec<u8>, Vec<(f16, f16)>) {
    assert!(group <= MAX_FIT_VALUES, "groups of at most {MAX_FIT_VALUES} values");
    let cols = importance.len();
    assert!(
        cols.is_multiple_of(group) && values.len().is_multiple_of(cols),
        "rows of {cols} values in groups of {group}"
    );
    let mut codes = vec![0u8; values.len()];
    let mut params = Vec::with_capacity(values.len() / group);
    for (row, row_codes) in values.chunks_exact(cols).zip(codes.chunks_exact_mut(cols)) {
        let sigma2 = row.iter().fold(0f32, |sum, &v| sum + v * v) / cols as f32;
        let groups = row.chunks_exact(group).zip(row_codes.chunks_exact_mut(group)).zip(importance.chunks_exact(group));
        for ((block, block_codes), block_importance) in groups {
            let weights: Vec<f32> =
                block.iter().zip(block_importance).map(|(&v, &w)| w * (sigma2 + v * v).sqrt()).collect();
            let (scale, negated_min) = fit_scale_min(block, &weights, max_code, block_codes, -0.9, 0.05, 36);
            params.push((f16::from_f32(scale), f16::from_f32(-negated_min)));
        }
    }
    (codes, params)
}

/// The nearest code of `v` under the stored (f16) scale and offset.
fn affine_code(v: f32, (scale, offset): (f16, f16), max_code: u8) -> u8 {
    let inverse = if scale.to_f32() > 0.0 { 1.0 / scale.to_f32() } else { 0.0 };
    ((v - offset.to_f32()) * inverse).round().clamp(0.0, f32::from(max_code)) as u8
}

fn weighted_error(block: &[f32], weights: &[f32], params: (f16, f16), max_code: u8) -> f32 {
    let (scale, offset) = (params.0.to_f32(), params.1.to_f32());
    block
        .iter()
        .zip(weights)
        .map(|(&v, &w)| {
            let diff = scale * f32::from(affine_code(v, params, max_code)) + offset - v;
            w * diff * diff
        })
        .sum()
}

/// Quantizes f32 rows to q4 symmetrically, as GGUF's Q4_0 does: per group the value of
/// largest magnitude `m` gives the scale `d = m / -8`, codes are `clamp(round(v/d) + 8, 0, 15)`
/// and the offset `-8d` is exact in f16 (a power-of-two multiple). `m` itself is code 0,
/// so the range is `[-8|d|, 7|d|]` with the sign of `m` on the long side.
pub fn quantize_q4_sym(values: &[f32], group: usize) -> Vec<u32> {
    let mut codes = Vec::with_capacity(values.len());
    let mut params = Vec::with_capacity(values.len() / group);
    for block in values.chunks_exact(group) {
        let extreme = block.iter().copied().fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        let scale = f16::from_f32(extreme / -8.0);
        let inv = if scale.to_f32() != 0.0 { 1.0 / scale.to_f32() } else { 0.0 };
        codes.extend(block.iter().map(|&v| ((v * inv).round() + 8.0).clamp(0.0, 15.0) as u8));
        params.push((scale, f16::from_f32(-8.0 * scale.to_f32())));
    }
    pack_q4(&codes, &params, group)
}

/// Quantizes f32 rows to q8 (symmetric, per group absmax).
pub fn quantize_q8(values: &[f32], group: usize) -> Vec<u32> {
    let mut codes = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(values.len() / group);
    for block in values.chunks_exact(group) {
        let absmax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = f16::from_f32(absmax / 127.0);
        let inv = if scale.to_f32() > 0.0 { 1.0 / scale.to_f32() } else { 0.0 };
        codes.extend(block.iter().map(|&v| (v * inv).round().clamp(-127.0, 127.0) as i8));
        scales.push(scale);
    }
    pack_q8(&codes, &scales, group)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::dequantize;
    use crate::format::dtype::f16_half;
    use crate::format::ggml_blocks::GgmlType;

    /// Weight-like rows: Gaussian and heavy-tailed groups of varied scale, an all-positive
    /// and a constant group.
    fn rows(n: usize) -> Vec<f32> {
        let mut state = 0x2545_f491_u64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32
        };
        let mut values: Vec<f32> = (0..n)
            .map(|i| {
                let scale = 0.01 + 0.05 * ((i / 32) % 7) as f32 / 7.0;
                let (a, b) = (uniform().max(1e-7), uniform());
                let gaussian = (-2.0 * a.ln()).sqrt() * (std::f32::consts::TAU * b).cos();
                if (i / 32) % 5 == 3 {
                    gaussian * gaussian.abs() * scale // heavy tails
                } else {
                    gaussian * scale
                }
            })
            .collect();
        values[..32].iter_mut().for_each(|v| *v = v.abs() + 0.1);
        values[32..64].fill(-0.25);
        values
    }

    fn squared_error(values: &[f32], back: &[f32]) -> f64 {
        values.iter().zip(back).map(|(&a, &b)| f64::from(a - b).powi(2)).sum()
    }

    #[test]
    fn the_search_loses_less_than_min_max() {
        let values = rows(64 * 128);
        for group in [32, 64, 128] {
            let decode = |words: Vec<u32>| dequantize(DType::Q4, &words, 1, values.len(), group);
            let searched = squared_error(&values, &decode(quantize_q4(&values, group, AffineRule::Search, None)));
            let min_max = squared_error(&values, &decode(quantize_q4(&values, group, AffineRule::MinMax, None)));
            // Measured: 0.71, 0.69 and 0.76 of min/max's squared error.
            assert!(searched < 0.85 * min_max, "group {group}: {searched} vs min/max {min_max}");
        }
        let back = dequantize(DType::Q4, &quantize_q4(&values[32..64], 32, AffineRule::Search, None), 1, 32, 32);
        assert_eq!(back, [-0.25; 32], "a constant group is exact");
    }

    #[test]
    fn weighted_q4_and_q5_are_llama_cpps_weighted_q4_1_and_q5_1() {
        let fixture = k_quants::tests::fixture();
        let values = k_quants::tests::fixture_floats(&fixture, "values");
        let importance = k_quants::tests::fixture_floats(&fixture, "importance");
        let blocks = |name: &str| {
            crate::format::ggml_blocks::tests::hex(fixture["types"][name]["weighted_blocks"].as_str().unwrap())
        };
        let q4 = dequantize(
            DType::Q4,
            &quantize_q4(&values, 32, AffineRule::Search, Some(&importance)),
            1,
            values.len(),
            32,
        );
        assert_eq!(q4, GgmlType::Q4_1.dequantize(&blocks("Q4_1")));
        let q5 = dequantize(DType::Q5, &quantize_q5(&values, Some(&importance)), 1, values.len(), 32);
        assert_eq!(q5, GgmlType::Q5_1.dequantize(&blocks("Q5_1")));
    }

    #[test]
    fn q5_searches_too() {
        let values = rows(64 * 32);
        let back = dequantize(DType::Q5, &quantize_q5(&values, None), 1, values.len(), 32);
        for (group, decoded) in values.chunks(32).zip(back.chunks(32)) {
            // Within one of the group's 31 steps of min/max, for every value.
            let max = group.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let min = group.iter().copied().fold(f32::INFINITY, f32::min);
            for (a, b) in group.iter().zip(decoded) {
                assert!((a - b).abs() <= (max - min) / 31.0 + 1e-6, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn q4_sym_is_q4_0() {
        let mut values: Vec<f32> = (0..32).map(|i| (i as f32 - 10.0) * 0.125).collect();
        values[3] = -4.0; // the extreme: d = 0.5, code 0
        let words = quantize_q4_sym(&values, 32);
        assert_eq!(words.len() as u64 * 4, DType::Q4.part_bytes(1, 32, 32));
        let (scale, offset) = (f16_half(words[4], false), f16_half(words[4], true));
        assert_eq!((scale, offset), (0.5, -4.0));
        let back = dequantize(DType::Q4, &words, 1, 32, 32);
        assert_eq!(back[3], -4.0);
        for (a, b) in values.iter().zip(&back) {
            assert!((a - b).abs() <= 0.25, "{a} vs {b}");
            // Every value is d * (q - 8).
            assert_eq!(((b / 0.5) + 8.0).fract(), 0.0);
        }
        assert_eq!(dequantize(DType::Q4, &quantize_q4_sym(&[0.0; 32], 32), 1, 32, 32), [0.0; 32]);
    }
}
