//! llama.cpp's reference quantizers for the K-quants (`quantize_row_q4_K_ref`,
//! `quantize_row_q5_K_ref`, `quantize_row_q6_K_ref` in ggml-quants.c), written so that the same
//! f32 rows give the same blocks byte for byte: the same searches, the same f32 operations in
//! the same order (no fused multiply-adds; Rust never contracts them), the same rounding
//! (`nearest_int` rounds half to even) and the same f16 conversion (round to nearest even).
//!
//! Q4_K and Q5_K fit each sub-block of 32 values with a scale and a minimum chosen by a
//! weighted least-squares search over candidate scales (`make_qkx2_quants`), then quantize
//! the eight scales and mins to 6 bits under one f16 `d` and `dmin`; Q6_K fits 16 sub-blocks
//! of 16 symmetric values (`make_qx_quants`) under 8-bit scales and one f16 `d`. The blocks
//! are laid out as [`GgmlType::dequantize`](super::ggml_blocks::GgmlType::dequantize) reads them.

use half::f16;

const SUPER_BLOCK: usize = super::SUPER_BLOCK_VALUES as usize;
/// The largest block [`fit_scale_min`] fits: q4's largest group.
pub(super) const MAX_FIT_VALUES: usize = 128;
/// Below this, a Q6_K super-block is all zero (`GROUP_MAX_EPS`).
const GROUP_MAX_EPS: f32 = 1e-15;

/// llama.cpp's `nearest_int`: round half to even (it adds 1.5 * 2^23 and reads the mantissa).
fn nearest_int(value: f32) -> i32 {
    value.round_ties_even() as i32
}

fn f16_bytes(value: f32) -> [u8; 2] {
    f16::from_f32(value).to_le_bytes()
}

fn f16_value(bytes: [u8; 2]) -> f32 {
    f16::from_le_bytes(bytes).to_f32()
}

/// Quantizes rows (a multiple of 256 values) to Q4_K blocks as llama.cpp's `quantize_q4_K`
/// does: `quantize_row_q4_K_ref` without an importance matrix, `quantize_row_q4_K_impl` with
/// one (`importance`: one value per column of a row, its length the row's).
pub fn quantize_q4_k(values: &[f32], importance: Option<&[f32]>) -> Vec<u8> {
    quantize_scale_min(values, importance, 15)
}

/// Quantizes rows (a multiple of 256 values) to Q5_K blocks as llama.cpp's `quantize_q5_K`
/// does (the reference quantizer, or with `importance` the weighted one).
pub fn quantize_q5_k(values: &[f32], importance: Option<&[f32]>) -> Vec<u8> {
    quantize_scale_min(values, importance, 31)
}

/// The part of a row's importance that weighs super-block `index` of `values` (rows of
/// `importance.len()` values, each a whole number of super-blocks).
fn super_block_importance(importance: Option<&[f32]>, index: usize) -> Option<&[f32]> {
    importance.map(|columns| {
        assert!(
            columns.len().is_multiple_of(SUPER_BLOCK),
            "rows of {} values are not whole super-blocks",
            columns.len()
        );
        &columns[index * SUPER_BLOCK % columns.len()..][..SUPER_BLOCK]
    })
}

/// A super-block's 6-bit scales and mins packed as `get_scale_min_k4` reads them, and its
/// f16 `d` and `dmin`.
struct ScalesMins {
    packed: [u8; 12],
    d: [u8; 2],
    dmin: [u8; 2],
}

impl ScalesMins {
    fn pack(scales: &[u8; 8], mins: &[u8; 8], d: f32, dmin: f32) -> Self {
        let mut packed = [0u8; 12];
        for j in 0..8 {
            let (ls, lm) = (scales[j], mins[j]);
            if j < 4 {
                packed[j] = ls;
                packed[j + 4] = lm;
            } else {
                packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
                packed[j - 4] |= (ls >> 4) << 6;
                packed[j] |= (lm >> 4) << 6;
            }
        }
        Self { packed, d: f16_bytes(d), dmin: f16_bytes(dmin) }
    }
}

/// `quantize_row_q{4,5}_K_ref`'s scales: each sub-block fitted by `make_qkx2_quants` with
/// weights `rms + |x|`, the scales and mins then rounded against the largest of each.
fn reference_scales(x: &[f32], max_code: u8, codes: &mut [u8; SUPER_BLOCK]) -> ScalesMins {
    let (search_start, search_steps) = if max_code == 31 { (-0.5, 15) } else { (-1.0, 20) };
    let mut fits = [(0f32, 0f32); 8];
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for (j, fit) in fits.iter_mut().enumerate() {
        let sub = &x[32 * j..][..32];
        let sum_x2 = sub.iter().fold(0f32, |sum, &v| sum + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: [f32; 32] = std::array::from_fn(|l| av_x + sub[l].abs());
        *fit = fit_scale_min(sub, &weights, max_code, &mut codes[32 * j..][..32], search_start, 0.1, search_steps);
        max_scale = if fit.0 > max_scale { fit.0 } else { max_scale };
        max_min = if fit.1 > max_min { fit.1 } else { max_min };
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    // C stores the int in a uint8_t before MIN(63, ·): negative values wrap.
    let scales = fits.map(|(scale, _)| (nearest_int(inv_scale * scale) as u8).min(63));
    let mins = fits.map(|(_, min)| (nearest_int(inv_min * min) as u8).min(63));
    ScalesMins::pack(&scales, &mins, max_scale / 63.0, max_min / 63.0)
}

/// `quantize_row_q{4,5}_K_impl`'s scales under an importance matrix: each sub-block fitted by
/// `make_qkx3_quants` with weights `importance * sqrt(sigma² + x²)`, the scales and mins
/// then fitted to 6 bits by `make_qp_quants`, weighted by each sub-block's total weight.
fn weighted_scales(x: &[f32], importance: &[f32], max_code: u8, codes: &mut [u8; SUPER_BLOCK]) -> ScalesMins {
    let sum_x2 = x.iter().fold(0f32, |sum, &v| sum + v * v);
    let sigma2 = 2.0 * sum_x2 / SUPER_BLOCK as f32;
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let mut sub_weights = [0f32; 8];
    for j in 0..8 {
        let sub = &x[32 * j..][..32];
        let weights: [f32; 32] = std::array::from_fn(|l| importance[32 * j + l] * (sigma2 + sub[l] * sub[l]).sqrt());
        sub_weights[j] = weights.iter().fold(0f32, |sum, &w| sum + w);
        (scales[j], mins[j]) = fit_scale_min(sub, &weights, max_code, &mut codes[32 * j..][..32], -0.9, 0.05, 36);
    }
    let (mut scale_codes, mut min_codes) = ([0u8; 8], [0u8; 8]);
    let d = fit_unsigned_codes(&scales, 63, &sub_weights, &mut scale_codes);
    let dmin = fit_unsigned_codes(&mins, 63, &sub_weights, &mut min_codes);
    ScalesMins::pack(&scale_codes, &min_codes, d, dmin)
}

/// Q4_K (`max_code` 15) and Q5_K (31): a super-block is `d`, `dmin`, 12 bytes of packed 6-bit
/// scales and mins, (Q5_K: 32 bytes of fifth bits), 128 bytes of nibbles.
fn quantize_scale_min(values: &[f32], importance: Option<&[f32]>, max_code: u8) -> Vec<u8> {
    assert!(values.len().is_multiple_of(SUPER_BLOCK), "{} values are not whole super-blocks", values.len());
    let five_bits = max_code == 31;
    let mut out = Vec::with_capacity(values.len() / SUPER_BLOCK * if five_bits { 176 } else { 144 });
    for (index, x) in values.chunks_exact(SUPER_BLOCK).enumerate() {
        let mut codes = [0u8; SUPER_BLOCK];
        let ScalesMins { packed: scales, d, dmin } = match super_block_importance(importance, index) {
            None => reference_scales(x, max_code, &mut codes),
            Some(importance) => weighted_scales(x, importance, max_code, &mut codes),
        };
        for j in 0..8 {
            let (sc, m) = super::ggml_blocks::scale_min_k4(j, &scales);
            let step = f16_value(d) * f32::from(sc);
            if step == 0.0 {
                continue;
            }
            let shift = f16_value(dmin) * f32::from(m);
            for (code, &v) in codes[32 * j..][..32].iter_mut().zip(&x[32 * j..][..32]) {
                *code = nearest_int((v + shift) / step).clamp(0, i32::from(max_code)) as u8;
            }
        }
        out.extend_from_slice(&d);
        out.extend_from_slice(&dmin);
        out.extend_from_slice(&scales);
        let mut fifth_bits = [0u8; 32];
        let mut nibbles = [0u8; 128];
        for chunk in 0..4 {
            for l in 0..32 {
                let (low, high) = (codes[64 * chunk + l], codes[64 * chunk + 32 + l]);
                fifth_bits[l] |= ((low >> 4) << (2 * chunk)) | ((high >> 4) << (2 * chunk + 1));
                nibbles[32 * chunk + l] = (low & 0xF) | ((high & 0xF) << 4);
            }
        }
        if five_bits {
            out.extend_from_slice(&fifth_bits);
        }
        out.extend_from_slice(&nibbles);
    }
    out
}

/// `make_qp_quants`: codes `0..=max_code` for non-negative values (a super-block's sub-block
/// scales or mins) under one scale, returned: the weighted best of nine candidate scales
/// around `max_code / max`, then up to five passes moving single codes while that lowers
/// the weighted error.
fn fit_unsigned_codes(x: &[f32; 8], max_code: u8, weights: &[f32; 8], codes: &mut [u8; 8]) -> f32 {
    let n_max = f32::from(max_code);
    let max = x.iter().fold(0f32, |max, &v| if max > v { max } else { v });
    if max == 0.0 {
        codes.fill(0);
        return 0.0;
    }
    let mut inverse_scale = n_max / max;
    let code_at = |inverse_scale: f32, v: f32| nearest_int(inverse_scale * v).min(i32::from(max_code));
    let scale = 1.0 / inverse_scale;
    let mut best_error = 0f32;
    for i in 0..8 {
        let diff = x[i] - scale * nearest_int(inverse_scale * x[i]) as f32;
        best_error += weights[i] * diff * diff;
    }
    for step in (-4..=4).filter(|&s| s != 0) {
        let candidate = (0.1 * step as f32 + n_max) / max;
        let candidate_scale = 1.0 / candidate;
        let mut error = 0f32;
        for i in 0..8 {
            let diff = x[i] - candidate_scale * code_at(candidate, x[i]) as f32;
            error += weights[i] * diff * diff;
        }
        if error < best_error {
            best_error = error;
            inverse_scale = candidate;
        }
    }
    let (mut sum_lx, mut sum_l2) = (0f32, 0f32);
    for i in 0..8 {
        let l = code_at(inverse_scale, x[i]);
        codes[i] = l as u8;
        let (w, l) = (weights[i], l as f32);
        sum_lx += w * x[i] * l;
        sum_l2 += w * l * l;
    }
    for _ in 0..5 {
        let mut changed = false;
        for i in 0..8 {
            let (w, l) = (weights[i], f32::from(codes[i]));
            let mut slx = sum_lx - w * x[i] * l;
            let mut sl2 = sum_l2 - w * l * l;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(i32::from(max_code));
                if new_l != i32::from(codes[i]) {
                    slx += w * x[i] * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if slx * slx * sum_l2 > sum_lx * sum_lx * sl2 {
                        codes[i] = new_l as u8;
                        (sum_lx, sum_l2) = (slx, sl2);
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    sum_lx / sum_l2
}

/// `make_qkx2_quants` for a block of up to [`MAX_FIT_VALUES`] values: the scale and the
/// minimum (returned negated, as a non-negative number to subtract) that minimize the
/// weighted squared error, starting from min/max and trying `steps + 1` candidate scales
/// `(start + delta * step + max_code) / range`, each refined by weighted least squares.
/// Writes the codes of the best fit. The minimum is never above zero (K-quants subtract it
/// as an unsigned 6-bit multiple).
pub(super) fn fit_scale_min(
    x: &[f32],
    weights: &[f32],
    max_code: u8,
    codes: &mut [u8],
    start: f32,
    delta: f32,
    steps: i32,
) -> (f32, f32) {
    let n = x.len();
    assert!(n <= MAX_FIT_VALUES && weights.len() == n && codes.len() == n, "a block of up to {MAX_FIT_VALUES} values");
    let n_max = f32::from(max_code);
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        min = if x[i] < min { x[i] } else { min };
        max = if x[i] > max { x[i] } else { max };
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        codes.fill(0);
        return (0.0, -min);
    }
    let code_at = |inverse_scale: f32, v: f32, min: f32| {
        nearest_int(inverse_scale * (v - min)).clamp(0, i32::from(max_code)) as u8
    };
    let mut inverse_scale = n_max / (max - min);
    let mut scale = 1.0 / inverse_scale;
    let mut best_error = 0f32;
    for i in 0..n {
        codes[i] = code_at(inverse_scale, x[i], min);
        let diff = scale * f32::from(codes[i]) + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    let mut trial = [0u8; MAX_FIT_VALUES];
    let trial = &mut trial[..n];
    for step in 0..=steps {
        inverse_scale = (start + delta * step as f32 + n_max) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            trial[i] = code_at(inverse_scale, x[i], min);
            let (w, l) = (weights[i], f32::from(trial[i]));
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut error = 0f32;
            for i in 0..n {
                let diff = this_scale * f32::from(trial[i]) + this_min - x[i];
                error += weights[i] * (diff * diff);
            }
            if error < best_error {
                codes.copy_from_slice(trial);
                best_error = error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Quantizes rows (a multiple of 256 values) to Q6_K blocks as llama.cpp's `quantize_q6_K`
/// does (`quantize_row_q6_K_ref`, or with `importance` `quantize_row_q6_K_impl`, which
/// weighs each value's error by its column's importance alone): 128 bytes of low nibbles,
/// 64 bytes of high bit pairs, 16 signed 8-bit scales, f16 `d`.
pub fn quantize_q6_k(values: &[f32], importance: Option<&[f32]>) -> Vec<u8> {
    assert!(values.len().is_multiple_of(SUPER_BLOCK), "{} values are not whole super-blocks", values.len());
    let mut out = Vec::with_capacity(values.len() / SUPER_BLOCK * 210);
    for (index, x) in values.chunks_exact(SUPER_BLOCK).enumerate() {
        let importance = super_block_importance(importance, index);
        let mut codes = [0u8; SUPER_BLOCK];
        let mut fits = [0f32; 16];
        let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
        for (j, fit) in fits.iter_mut().enumerate() {
            let codes_j: &mut [u8; 16] = (&mut codes[16 * j..][..16]).try_into().unwrap();
            *fit = fit_symmetric(&x[16 * j..][..16], importance.map(|w| &w[16 * j..][..16]), codes_j);
            if fit.abs() > max_abs_scale {
                max_abs_scale = fit.abs();
                max_scale = *fit;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            out.extend_from_slice(&[0; 208]);
            out.extend_from_slice(&f16_bytes(0.0));
            continue;
        }
        let inverse_scale = -128.0 / max_scale;
        let d = f16_bytes(1.0 / inverse_scale);
        let scales: [i8; 16] = std::array::from_fn(|j| nearest_int(inverse_scale * fits[j]).min(127) as i8);
        for (j, &scale) in scales.iter().enumerate() {
            let step = f16_value(d) * f32::from(scale);
            if step == 0.0 {
                continue;
            }
            for (code, &v) in codes[16 * j..][..16].iter_mut().zip(&x[16 * j..][..16]) {
                *code = (nearest_int(v / step).clamp(-32, 31) + 32) as u8;
            }
        }
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        for half in 0..2 {
            let codes = &codes[128 * half..];
            for l in 0..32 {
                let q: [u8; 4] = std::array::from_fn(|i| codes[l + 32 * i]);
                ql[64 * half + l] = (q[0] & 0xF) | ((q[2] & 0xF) << 4);
                ql[64 * half + l + 32] = (q[1] & 0xF) | ((q[3] & 0xF) << 4);
                qh[32 * half + l] = (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
            }
        }
        out.extend_from_slice(&ql);
        out.extend_from_slice(&qh);
        out.extend(scales.iter().map(|&s| s as u8));
        out.extend_from_slice(&d);
    }
    out
}

/// `make_qx_quants(16, 32, x, L, 1, weights)`: a symmetric scale for 16 values (codes
/// `-32..32` stored `+32`), weighted by `weights` or else by `x²`, refined over 18 candidate
/// scales around `-32 / max`.
fn fit_symmetric(x: &[f32], weights: Option<&[f32]>, codes: &mut [u8; 16]) -> f32 {
    const N_MAX: i32 = 32;
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        codes.fill(0);
        return 0.0;
    }
    let code_at = |inverse_scale: f32, v: f32| nearest_int(inverse_scale * v).clamp(-N_MAX, N_MAX - 1);
    let sums = |inverse_scale: f32| {
        let (mut sum_lx, mut sum_l2) = (0f32, 0f32);
        for (i, &v) in x.iter().enumerate() {
            let l = code_at(inverse_scale, v) as f32;
            let w = weights.map_or(v * v, |weights| weights[i]);
            sum_lx += w * v * l;
            sum_l2 += w * l * l;
        }
        (sum_lx, sum_l2)
    };
    let mut inverse_scale = -(N_MAX as f32) / max;
    for (code, &v) in codes.iter_mut().zip(x) {
        *code = (code_at(inverse_scale, v) + N_MAX) as u8;
    }
    let (sum_lx, sum_l2) = sums(inverse_scale);
    let mut scale = if sum_l2 != 0.0 { sum_lx / sum_l2 } else { 0.0 };
    let mut best = scale * sum_lx;
    for step in (-9..=9).filter(|&s| s != 0) {
        inverse_scale = -(N_MAX as f32 + 0.1 * step as f32) / max;
        let (sum_lx, sum_l2) = sums(inverse_scale);
        if sum_l2 > 0.0 && sum_lx * sum_lx > best * sum_l2 {
            for (code, &v) in codes.iter_mut().zip(x) {
                *code = (code_at(inverse_scale, v) + N_MAX) as u8;
            }
            scale = sum_lx / sum_l2;
            best = scale * sum_lx;
        }
    }
    scale
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::ggml_blocks::tests::hex;
    use crate::format::ggml_blocks::GgmlType;

    type Quantizer = fn(&[f32], Option<&[f32]>) -> Vec<u8>;

    /// f32 rows and llama.cpp's blocks of them, without and with an importance matrix
    /// (tools/reference/k_quants_fixture.py).
    const FIXTURE: &str = include_str!("../../tests/fixtures/k_quants.json");

    pub(crate) fn fixture_floats(fixture: &serde_json::Value, key: &str) -> Vec<f32> {
        hex(fixture[key].as_str().unwrap())
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    pub(crate) fn fixture() -> serde_json::Value {
        serde_json::from_str(FIXTURE).unwrap()
    }

    #[test]
    fn blocks_are_llama_cpp_blocks() {
        let fixture = fixture();
        let values = fixture_floats(&fixture, "values");
        let importance = fixture_floats(&fixture, "importance");
        assert_eq!(importance.len(), fixture["row"].as_u64().unwrap() as usize);
        let quantizers: [(&str, GgmlType, Quantizer); 3] = [
            ("Q4_K", GgmlType::Q4K, quantize_q4_k),
            ("Q5_K", GgmlType::Q5K, quantize_q5_k),
            ("Q6_K", GgmlType::Q6K, quantize_q6_k),
        ];
        for (name, ggml_type, quantize) in quantizers {
            for (key, importance) in [("blocks", None), ("weighted_blocks", Some(&importance[..]))] {
                let expected = hex(fixture["types"][name][key].as_str().unwrap());
                let got = quantize(&values, importance);
                assert_eq!(got.len(), expected.len(), "{name}");
                for (block, (g, e)) in got.chunks(ggml_type.bytes()).zip(expected.chunks(ggml_type.bytes())).enumerate()
                {
                    assert_eq!(g, e, "{name} {key}: super-block {block}");
                }
            }
        }
    }

    #[test]
    fn blocks_decode_close_to_their_rows() {
        let values: Vec<f32> = (0..2 * SUPER_BLOCK).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.03).collect();
        for (ggml_type, quantize, tolerance) in [
            (GgmlType::Q4K, quantize_q4_k as Quantizer, 0.06 / 15.0),
            (GgmlType::Q5K, quantize_q5_k, 0.06 / 31.0),
            (GgmlType::Q6K, quantize_q6_k, 0.03 / 31.0),
        ] {
            let back = ggml_type.dequantize(&quantize(&values, None));
            for (a, b) in values.iter().zip(&back) {
                assert!((a - b).abs() <= tolerance, "{}: {a} vs {b}", ggml_type.name());
            }
        }
    }
}
