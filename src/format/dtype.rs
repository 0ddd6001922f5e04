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
//! - `bf16`: `ceil(n/2)` words, value `i` in the low half of word `i/2` when `i` is even; a
//!   value is its 16 bits over 16 zero bits of f32 (GGUF BF16 exactly).
//!
//! The 5-bit and K-quant layouts keep q4's plane of nibbles (`rows*cols/8` words, in value
//! order) and put everything else in a plane of parameters after it, in row order, so
//! parts and stacked projections concatenate plane by plane. Each maps a GGUF type value
//! for value (`super::ggml_blocks`: the same f32 operations as llama.cpp's
//! `dequantize_row_*`):
//!
//! - `q5` (groups of 32; GGUF Q5_0 and Q5_1): per group two words: the f16 scale and offset
//!   as in q4, then the fifth bits (value `j`'s at bit `j`). A value is
//!   `scale * (nibble + 16 * bit) + offset`; Q5_1 maps to (d, m), Q5_0 to (d, -16d).
//! - `q4_k` (super-blocks of 256 = 8 blocks of 32; GGUF Q4_K): per super-block four words:
//!   f16 `d` (low half) and `dmin` (high half), then Q4_K's 12 bytes of 6-bit scales and
//!   mins as they are. Block `j` has scale `d * sc_j` and offset `-(dmin * m_j)`.
//! - `q5_k` (GGUF Q5_K): as `q4_k`, then one word of fifth bits per block (12 words).
//! - `q6_k` (super-blocks of 256 = 16 sub-blocks of 16; GGUF Q6_K): the nibble plane holds
//!   each value's low four bits; per super-block 21 words: f16 `d` (low half), the 16 signed
//!   8-bit scales (4 words), then two bits per value (value `l` of block `j` at bits
//!   `2*(l%16)..` of word `2j + l/16`). A value is `(d * scale) * (code - 32)`.

use half::f16;
use serde::{Deserialize, Serialize};

use super::manifest::{FORMAT_VERSION, K_QUANT_FORMAT_VERSION};
use super::{BLOCK_VALUES, Q4_K_PARAM_WORDS, Q5_K_PARAM_WORDS, Q6_K_PARAM_WORDS, SUPER_BLOCK_VALUES};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    Q4,
    Q8,
    F16,
    F32,
    U32,
    Q5,
    #[serde(rename = "q4_k")]
    Q4K,
    #[serde(rename = "q5_k")]
    Q5K,
    #[serde(rename = "q6_k")]
    Q6K,
    Bf16,
}

const SUPER_BLOCK: usize = SUPER_BLOCK_VALUES as usize;
const Q4K_PARAM_WORDS: u64 = Q4_K_PARAM_WORDS as u64;
const Q5K_PARAM_WORDS: u64 = Q5_K_PARAM_WORDS as u64;
const Q6K_PARAM_WORDS: u64 = Q6_K_PARAM_WORDS as u64;
/// Values per q5 group: one word of fifth bits per weight block.
pub(super) const Q5_GROUP: u64 = BLOCK_VALUES as u64;

impl DType {
    /// The lowercase name the manifest uses (`q4`).
    pub fn name(self) -> &'static str {
        match self {
            DType::Q4 => "q4",
            DType::Q8 => "q8",
            DType::F16 => "f16",
            DType::F32 => "f32",
            DType::U32 => "u32",
            DType::Q5 => "q5",
            DType::Q4K => "q4_k",
            DType::Q5K => "q5_k",
            DType::Q6K => "q6_k",
            DType::Bf16 => "bf16",
        }
    }

    /// The manifest format version that introduced the dtype: a build older than it refuses
    /// the model by its version instead of failing on an unknown dtype name.
    pub fn format_version(self) -> u32 {
        match self {
            DType::Q4 | DType::Q8 | DType::F16 | DType::F32 | DType::U32 => FORMAT_VERSION,
            DType::Q5 | DType::Q4K | DType::Q5K | DType::Q6K | DType::Bf16 => K_QUANT_FORMAT_VERSION,
        }
    }

    /// Whether values come in groups that share quantization parameters.
    pub fn is_quantized(self) -> bool {
        matches!(self, DType::Q4 | DType::Q8 | DType::Q5 | DType::Q4K | DType::Q5K | DType::Q6K)
    }

    /// The group size the layout fixes, for the dtypes that fix one (q5's 32, the
    /// K-quants' 256-value super-blocks); q4 and q8 take any multiple of 32.
    pub fn fixed_group(self) -> Option<u64> {
        match self {
            DType::Q5 => Some(Q5_GROUP),
            DType::Q4K | DType::Q5K | DType::Q6K => Some(SUPER_BLOCK as u64),
            DType::Q4 | DType::Q8 | DType::F16 | DType::F32 | DType::U32 | DType::Bf16 => None,
        }
    }

    /// Bytes of one part holding `rows x cols` values with the given group size.
    pub fn part_bytes(self, rows: u64, cols: u64, group: u64) -> u64 {
        let n = rows * cols;
        4 * match self {
            DType::Q4 => n / 8 + n / group,
            DType::Q8 => n / 4 + (n / group).div_ceil(2),
            DType::F16 | DType::Bf16 => n.div_ceil(2),
            DType::F32 | DType::U32 => n,
            DType::Q5 => n / 8 + 2 * (n / Q5_GROUP),
            DType::Q4K => n / 8 + Q4K_PARAM_WORDS * (n / SUPER_BLOCK as u64),
            DType::Q5K => n / 8 + Q5K_PARAM_WORDS * (n / SUPER_BLOCK as u64),
            DType::Q6K => n / 8 + Q6K_PARAM_WORDS * (n / SUPER_BLOCK as u64),
        }
    }

    /// Word index where a quantized part's group parameters start.
    pub fn params_word_offset(self, rows: u64, cols: u64) -> u64 {
        let n = rows * cols;
        match self {
            DType::Q4 | DType::Q5 | DType::Q4K | DType::Q5K | DType::Q6K => n / 8,
            DType::Q8 => n / 4,
            DType::F16 | DType::F32 | DType::U32 | DType::Bf16 => 0,
        }
    }

    /// Parameter words per group (0 when not quantized; q8's come two groups to a word).
    pub fn params_words_per_group(self) -> u64 {
        match self {
            DType::Q4 => 1,
            DType::Q5 => 2,
            DType::Q4K => Q4K_PARAM_WORDS,
            DType::Q5K => Q5K_PARAM_WORDS,
            DType::Q6K => Q6K_PARAM_WORDS,
            DType::Q8 | DType::F16 | DType::F32 | DType::U32 | DType::Bf16 => 0,
        }
    }

    /// The words of values `range` of a part of `n` values: the range's share of every
    /// plane, itself a part of `range.len()` values. The range must start and end on group
    /// boundaries (q8: on an even group, whose scale starts a word; f16: an even value).
    pub fn part_slice(self, words: &[u32], n: usize, range: std::ops::Range<usize>, group: usize) -> Vec<u32> {
        let (a, b) = (range.start, range.end);
        match self {
            DType::F32 | DType::U32 => words[a..b].to_vec(),
            DType::F16 | DType::Bf16 => {
                assert!(a.is_multiple_of(2), "16-bit ranges start at an even value");
                words[a / 2..b.div_ceil(2)].to_vec()
            }
            DType::Q8 => {
                assert!((a / group).is_multiple_of(2), "q8 ranges start at an even group");
                let scales = n / 4 + a / group / 2..n / 4 + (b / group).div_ceil(2);
                [&words[a / 4..b / 4], &words[scales]].concat()
            }
            DType::Q4 | DType::Q5 | DType::Q4K | DType::Q5K | DType::Q6K => {
                assert!(a.is_multiple_of(group) && b.is_multiple_of(group), "ranges are whole groups");
                let per_group = self.params_words_per_group() as usize;
                let params = n / 8 + a / group * per_group..n / 8 + b / group * per_group;
                [&words[a / 8..b / 8], &words[params]].concat()
            }
        }
    }

    /// Checks that a quantized dtype's groups hold whole weight blocks (and are the size its
    /// layout fixes, where it fixes one).
    pub fn check_group(self, group: u64) -> Result<(), String> {
        if let Some(fixed) = self.fixed_group().filter(|&fixed| fixed != group) {
            return Err(format!("{} needs groups of {fixed} values, not {group}", self.name()));
        }
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
    words.extend(nibble_words(codes));
    pack_q4_words(words, params)
}

/// The plane of nibbles of codes (only their low four bits), eight to a word in value order.
pub(crate) fn nibble_words(codes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    codes
        .chunks_exact(8)
        .map(|chunk| chunk.iter().enumerate().fold(0u32, |word, (i, &q)| word | u32::from(q & 15) << (4 * i)))
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

pub(crate) fn pack_f16_pair(low: f16, high: f16) -> u32 {
    u32::from(low.to_bits()) | (u32::from(high.to_bits()) << 16)
}

pub(super) fn f16_half(word: u32, high: bool) -> f32 {
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
        DType::Bf16 => (0..n).map(|i| f32::from_bits(bf16_bits(words[i / 2], i % 2 == 1))).collect(),
        DType::Q5 => {
            let params = &words[n / 8..];
            (0..n)
                .map(|i| {
                    let (scale_offset, fifth_bits) = (params[2 * (i / 32)], params[2 * (i / 32) + 1]);
                    let q = nibble(words, i) | (((fifth_bits >> (i % 32)) & 1) << 4);
                    f16_half(scale_offset, false) * q as f32 + f16_half(scale_offset, true)
                })
                .collect()
        }
        DType::Q4K | DType::Q5K => {
            let per_block = dtype.params_words_per_group() as usize;
            (0..n)
                .map(|i| {
                    let params = &words[n / 8 + i / SUPER_BLOCK * per_block..][..per_block];
                    let block = i % SUPER_BLOCK / BLOCK_VALUES as usize;
                    let (scale, offset) = k_block_scale_offset(params, block);
                    let fifth = if dtype == DType::Q5K { ((params[4 + block] >> (i % 32)) & 1) << 4 } else { 0 };
                    scale * (nibble(words, i) | fifth) as f32 + offset
                })
                .collect()
        }
        DType::Q6K => (0..n)
            .map(|i| {
                let params = &words[n / 8 + i / SUPER_BLOCK * Q6K_PARAM_WORDS as usize..][..Q6K_PARAM_WORDS as usize];
                let (v, l) = (i % SUPER_BLOCK, i % 32);
                let high = (params[5 + 2 * (v / 32) + l / 16] >> (2 * (l % 16))) & 3;
                let code = (nibble(words, i) | (high << 4)) as i32 - 32;
                let scale = (params[1 + v / 64] >> (8 * (v / 16 % 4))) as u8 as i8;
                f16_half(params[0], false) * f32::from(scale) * code as f32
            })
            .collect(),
    }
}

/// Value `i`'s nibble in a quantized part's plane of nibbles.
fn nibble(words: &[u32], i: usize) -> u32 {
    (words[i / 8] >> (4 * (i % 8))) & 15
}

/// A bf16 value's f32 bits: the low or high half of a word over 16 zero bits.
fn bf16_bits(word: u32, high: bool) -> u32 {
    if high {
        word & 0xFFFF_0000
    } else {
        word << 16
    }
}

/// Block `block`'s scale `d * sc` and offset `-(dmin * m)` in a q4_k or q5_k super-block's
/// parameters (products exact in f32, as llama.cpp forms them).
pub(crate) fn k_block_scale_offset(params: &[u32], block: usize) -> (f32, f32) {
    let mut packed = [0u8; 12];
    for (bytes, word) in packed.chunks_exact_mut(4).zip(&params[1..4]) {
        bytes.copy_from_slice(&word.to_le_bytes());
    }
    let (sc, m) = super::ggml_blocks::scale_min_k4(block, &packed);
    (f16_half(params[0], false) * f32::from(sc), -(f16_half(params[0], true) * f32::from(m)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::encode;

    #[test]
    fn layouts_round_trip_and_sizes_agree() {
        let (rows, cols) = (4usize, 512usize);
        let values: Vec<f32> = (0..rows * cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        let dtypes =
            [DType::F32, DType::F16, DType::Bf16, DType::Q8, DType::Q4, DType::Q5, DType::Q4K, DType::Q5K, DType::Q6K];
        for dtype in dtypes {
            let group = dtype.fixed_group().unwrap_or(32) as usize;
            let words = encode(dtype, &values, group);
            assert_eq!(words.len() as u64 * 4, dtype.part_bytes(rows as u64, cols as u64, group as u64));
            let back = dequantize(dtype, &words, rows, cols, group);
            let tolerance = match dtype {
                DType::F32 | DType::U32 => 0.0,
                DType::F16 => 1e-3,
                DType::Bf16 => 1e-2,
                DType::Q8 => 2.0 / 127.0,
                DType::Q4 | DType::Q4K => 4.0 / 15.0,
                DType::Q5 | DType::Q5K => 4.0 / 31.0,
                DType::Q6K => 4.0 / 63.0,
            };
            for (a, b) in values.iter().zip(&back) {
                assert!((a - b).abs() <= tolerance, "{dtype:?}: {a} vs {b}");
            }
            // Rows 1..3 sliced out of the part decode as those rows of the whole.
            let slice = dtype.part_slice(&words, rows * cols, cols..3 * cols, group);
            assert_eq!(dequantize(dtype, &slice, 2, cols, group), back[cols..3 * cols], "{dtype:?}");
        }
    }

    #[test]
    fn fixed_groups_are_enforced() {
        assert!(DType::Q4K.check_shape(512, 256).is_ok());
        assert_eq!(DType::Q4K.check_shape(512, 32).unwrap_err(), "q4_k needs groups of 256 values, not 32");
        assert!(DType::Q6K.check_shape(576, 256).is_err());
        assert!(DType::Q5.check_shape(96, 32).is_ok());
        assert!(DType::Q5.check_shape(128, 64).is_err());
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
