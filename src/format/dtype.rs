//! Tensor dtypes of a model directory and their exact byte layouts.
//!
//! Every tensor part is one little-endian `u32` array so a shader can bind it as
//! `array<vec4<u32>>`; half-precision values travel as `u32` pairs so no shader needs
//! `shader-f16`. Layouts (a part holds `rows x cols` values, row-major):
//!
//! - `q4`: `rows*cols/8` words of nibbles (value `i` of the part at word `i/8`, bits
//!   `4*(i%8)..`), then `rows*cols/group` words of group parameters: low half the f16
//!   scale, high half the f16 offset. A value is `scale * q + offset`, `q` in 0..16.
//!   GGUF Q4_1 maps to (d, m), Q4_0 to (d, -8d); both exactly.
//! - `q8`: `rows*cols/4` words of `i8` (value `i` at byte `i%4` of word `i/4`), then
//!   `ceil(groups/2)` words of f16 scales (group `g` in the low half of word `g/2` when even).
//!   A value is `scale * q`. GGUF Q8_0 maps exactly.
//! - `f16`: `ceil(n/2)` words, value `i` in the low half of word `i/2` when `i` is even.
//! - `f32`: `n` words.
//! - `u32`: `n` words of indices, not weights (an act-order weight's input column order,
//!   see [`super::manifest::TensorEntry::input_order`]); no shader decodes them as values.

use half::f16;
use serde::{Deserialize, Serialize};

use super::BLOCK_VALUES;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    Q4,
    Q8,
    F16,
    F32,
    U32,
}

impl DType {
    /// The lowercase name the manifest uses (`q4`).
    pub fn name(self) -> &'static str {
        match self {
            DType::Q4 => "q4",
            DType::Q8 => "q8",
            DType::F16 => "f16",
            DType::F32 => "f32",
            DType::U32 => "u32",
        }
    }

    /// Whether values come in groups that share quantization parameters.
    pub fn is_quantized(self) -> bool {
        matches!(self, DType::Q4 | DType::Q8)
    }

    /// Bytes of one part holding `rows x cols` values with the given group size.
    pub fn part_bytes(self, rows: u64, cols: u64, group: u64) -> u64 {
        let n = rows * cols;
        4 * match self {
            DType::Q4 => n / 8 + n / group,
            DType::Q8 => n / 4 + (n / group).div_ceil(2),
            DType::F16 => n.div_ceil(2),
            DType::F32 | DType::U32 => n,
        }
    }

    /// Word index where a quantized part's group parameters start.
    pub fn params_word_offset(self, rows: u64, cols: u64) -> u64 {
        let n = rows * cols;
        match self {
            DType::Q4 => n / 8,
            DType::Q8 => n / 4,
            DType::F16 | DType::F32 | DType::U32 => 0,
        }
    }

    /// Checks that a quantized dtype's groups hold whole weight blocks.
    pub fn check_group(self, group: u64) -> Result<(), String> {
        if self.is_quantized() && (group == 0 || !group.is_multiple_of(u64::from(BLOCK_VALUES))) {
            return Err(format!("group size {group} is not a positive multiple of {BLOCK_VALUES}"));
        }
        Ok(())
    }

    /// Checks that a matrix of `cols` columns can use this dtype and group size.
    pub fn check_shape(self, cols: u64, group: u64) -> Result<(), String> {
        if !self.is_quantized() {
            return Ok(());
        }
        self.check_group(group)?;
        if !cols.is_multiple_of(group) {
            return Err(format!("{cols} columns are not a multiple of the group size {group}"));
        }
        Ok(())
    }
}

/// Builds a q4 part from quantized codes (`0..16`, one per value) and per-group
/// `(scale, offset)` pairs.
pub fn pack_q4(codes: &[u8], params: &[(f16, f16)], group: usize) -> Vec<u32> {
    assert_eq!(codes.len(), params.len() * group, "q4 codes and groups disagree");
    let mut words = Vec::with_capacity(codes.len() / 8 + params.len());
    for chunk in codes.chunks_exact(8) {
        let mut word = 0u32;
        for (i, &q) in chunk.iter().enumerate() {
            debug_assert!(q < 16);
            word |= u32::from(q & 15) << (4 * i);
        }
        words.push(word);
    }
    pack_q4_words(words, params)
}

/// Builds a q4 part from codes already packed 8 to a word (value `i` at bits `4*(i%8)..`
/// of word `i/8`) and per-group `(scale, offset)` pairs.
pub fn pack_q4_words(mut code_words: Vec<u32>, params: &[(f16, f16)]) -> Vec<u32> {
    code_words.extend(params.iter().map(|&(scale, offset)| pack_f16_pair(scale, offset)));
    code_words
}

/// Builds a q8 part from signed codes and per-group scales.
pub fn pack_q8(codes: &[i8], scales: &[f16], group: usize) -> Vec<u32> {
    assert_eq!(codes.len(), scales.len() * group, "q8 codes and groups disagree");
    let mut words = Vec::with_capacity(codes.len() / 4 + scales.len().div_ceil(2));
    for chunk in codes.chunks_exact(4) {
        words.push(u32::from_le_bytes([chunk[0] as u8, chunk[1] as u8, chunk[2] as u8, chunk[3] as u8]));
    }
    words.extend(pack_f16_words(scales));
    words
}

/// Packs f16 values two per word (a trailing odd value gets a zero high half).
pub fn pack_f16_words(values: &[f16]) -> impl Iterator<Item = u32> + '_ {
    values.chunks(2).map(|pair| pack_f16_pair(pair[0], pair.get(1).copied().unwrap_or(f16::ZERO)))
}

fn pack_f16_pair(low: f16, high: f16) -> u32 {
    u32::from(low.to_bits()) | (u32::from(high.to_bits()) << 16)
}

fn f16_half(word: u32, high: bool) -> f32 {
    f16::from_bits(if high { (word >> 16) as u16 } else { word as u16 }).to_f32()
}

/// Decodes a whole part back to f32 (the CPU reference and the tests use this).
pub fn dequantize(dtype: DType, words: &[u32], rows: usize, cols: usize, group: usize) -> Vec<f32> {
    let n = rows * cols;
    match dtype {
        DType::F32 => words[..n].iter().map(|&w| f32::from_bits(w)).collect(),
        // Indices are below 2^24 (a row's columns), exact in f32.
        DType::U32 => words[..n].iter().map(|&w| w as f32).collect(),
        DType::F16 => (0..n).map(|i| f16_half(words[i / 2], i % 2 == 1)).collect(),
        DType::Q4 => {
            let params = &words[n / 8..];
            (0..n)
                .map(|i| {
                    let q = (words[i / 8] >> (4 * (i % 8))) & 15;
                    let p = params[i / group];
                    f16_half(p, false) * q as f32 + f16_half(p, true)
                })
                .collect()
        }
        DType::Q8 => {
            let scales = &words[n / 4..];
            (0..n)
                .map(|i| {
                    let q = (words[i / 4] >> (8 * (i % 4))) as u8 as i8;
                    let g = i / group;
                    f16_half(scales[g / 2], g % 2 == 1) * f32::from(q)
                })
                .collect()
        }
    }
}

/// Quantizes f32 rows to q4 (asymmetric: per group min and range), as the converter
/// and the kernel tests do.
pub fn quantize_q4(values: &[f32], group: usize) -> Vec<u32> {
    let mut codes = Vec::with_capacity(values.len());
    let mut params = Vec::with_capacity(values.len() / group);
    for block in values.chunks_exact(group) {
        let min = block.iter().copied().fold(f32::INFINITY, f32::min);
        let max = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let scale = f16::from_f32((max - min) / 15.0);
        let offset = f16::from_f32(min);
        let inv = if scale.to_f32() > 0.0 { 1.0 / scale.to_f32() } else { 0.0 };
        codes.extend(block.iter().map(|&v| ((v - offset.to_f32()) * inv).round().clamp(0.0, 15.0) as u8));
        params.push((scale, offset));
    }
    pack_q4(&codes, &params, group)
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

/// How the Hugging Face importer stores f32 weights: a dtype and, for q4, the rounding
/// scheme (both q4 choices write the same [`DType::Q4`] layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Quant {
    F32,
    F16,
    Q8,
    /// Asymmetric: per group minimum and range ([`quantize_q4`]).
    Q4,
    /// Symmetric around zero like GGUF Q4_0 ([`quantize_q4_sym`]).
    Q4Sym,
}

impl Quant {
    /// The dtype written.
    pub fn dtype(self) -> DType {
        match self {
            Quant::F32 => DType::F32,
            Quant::F16 => DType::F16,
            Quant::Q8 => DType::Q8,
            Quant::Q4 | Quant::Q4Sym => DType::Q4,
        }
    }

    /// Encodes f32 values (`group` is ignored for f16 and f32).
    pub fn encode(self, values: &[f32], group: usize) -> Vec<u32> {
        match self {
            Quant::Q4Sym => quantize_q4_sym(values, group),
            other => encode(other.dtype(), values, group),
        }
    }
}

/// Encodes f32 values in the given dtype (quantizing when needed).
pub fn encode(dtype: DType, values: &[f32], group: usize) -> Vec<u32> {
    match dtype {
        DType::F32 => values.iter().map(|v| v.to_bits()).collect(),
        DType::U32 => values.iter().map(|&v| v as u32).collect(),
        DType::F16 => {
            let halves: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
            pack_f16_words(&halves).collect()
        }
        DType::Q4 => quantize_q4(values, group),
        DType::Q8 => quantize_q8(values, group),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip_and_sizes_agree() {
        let (rows, cols, group) = (3usize, 64usize, 32usize);
        let values: Vec<f32> = (0..rows * cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        for dtype in [DType::F32, DType::F16, DType::Q8, DType::Q4] {
            let words = encode(dtype, &values, group);
            assert_eq!(words.len() as u64 * 4, dtype.part_bytes(rows as u64, cols as u64, group as u64));
            let back = dequantize(dtype, &words, rows, cols, group);
            let tolerance = match dtype {
                DType::F32 | DType::U32 => 0.0,
                DType::F16 => 1e-3,
                DType::Q8 => 2.0 / 127.0,
                DType::Q4 => 4.0 / 15.0,
            };
            for (a, b) in values.iter().zip(&back) {
                assert!((a - b).abs() <= tolerance, "{dtype:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn q4_sym_is_q4_0() {
        let mut values: Vec<f32> = (0..32).map(|i| (i as f32 - 10.0) * 0.125).collect();
        values[3] = -4.0; // the extreme: d = 0.5, code 0
        let words = Quant::Q4Sym.encode(&values, 32);
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
        assert_eq!(dequantize(DType::Q4, &Quant::Q4Sym.encode(&[0.0; 32], 32), 1, 32, 32), [0.0; 32]);
    }

    #[test]
    fn q4_nibble_order_is_sequential() {
        let codes: Vec<u8> = (0..32).map(|i| (i % 16) as u8).collect();
        let words = pack_q4(&codes, &[(f16::ONE, f16::ZERO)], 32);
        assert_eq!(words[0], 0x7654_3210);
        assert_eq!(words[2], 0x7654_3210);
        assert_eq!(words[4], 0x3c00);
    }
}
