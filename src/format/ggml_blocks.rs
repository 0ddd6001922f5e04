//! GGML's block types as llama.cpp writes them into GGUF files, decoded to f32 exactly as its
//! `dequantize_row_*` (ggml-quants.c) decode them: the same products in the same order, so a
//! tensor repacked for the shaders can be checked value for value against its source.
//!
//! A block holds `values()` values in `bytes()` bytes. The legacy types (`Q4_0` to `Q8_0`)
//! have 32 values and one f16 scale (and an f16 minimum for `_1`); the K-quants have 256
//! values in 8 (Q4_K, Q5_K: 6-bit scale and min each, under f16 `d` and `dmin`) or 16 (Q6_K:
//! signed 8-bit scales under one f16 `d`) sub-blocks.

use half::f16;

use super::dtype::{nibble_words, pack_f16_pair};
use super::gguf::{ggml_block_layout, ggml_type_name};
use super::{pack_q8, DType};

/// The GGML types webjudge reads values of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Bf16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

/// Values per block of the legacy types (`QK4_0` and its kin).
pub(crate) const LEGACY_BLOCK_VALUES: usize = 32;
/// Bytes of a K-quant's packed 6-bit scales and mins (`K_SCALE_SIZE`).
const K_SCALE_BYTES: usize = 12;

impl GgmlType {
    /// The type with GGUF's id, if webjudge reads it.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            30 => GgmlType::Bf16,
            _ => return None,
        })
    }

    /// GGUF's id of the type.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::Bf16 => 30,
        }
    }

    /// llama.cpp's name of the type (`Q4_K`).
    pub fn name(self) -> &'static str {
        ggml_type_name(self.id())
    }

    /// Values per block.
    pub fn values(self) -> usize {
        self.layout().0
    }

    /// Bytes per block.
    pub fn bytes(self) -> usize {
        self.layout().1
    }

    fn layout(self) -> (usize, usize) {
        let (values, bytes) = ggml_block_layout(self.id()).expect("the GGUF reader sizes every GgmlType");
        (values as usize, bytes as usize)
    }

    /// The model-directory dtype that keeps this type's values exactly.
    pub fn dtype(self) -> DType {
        match self {
            GgmlType::F32 => DType::F32,
            GgmlType::F16 => DType::F16,
            GgmlType::Bf16 => DType::Bf16,
            GgmlType::Q4_0 | GgmlType::Q4_1 => DType::Q4,
            GgmlType::Q5_0 | GgmlType::Q5_1 => DType::Q5,
            GgmlType::Q8_0 => DType::Q8,
            GgmlType::Q4K => DType::Q4K,
            GgmlType::Q5K => DType::Q5K,
            GgmlType::Q6K => DType::Q6K,
        }
    }

    /// The group size of [`Self::dtype`]'s part (0 when not quantized).
    pub fn group(self) -> usize {
        if self.dtype().is_quantized() {
            self.values()
        } else {
            0
        }
    }

    /// Repacks whole blocks into one part of [`Self::dtype`]'s layout (src/format/dtype.rs),
    /// value for value: every value decodes to the f32 [`Self::dequantize`] gives. Fails
    /// only where a legacy symmetric type's implied offset (`-8d`, `-16d`) overflows f16.
    pub fn pack(self, raw: &[u8]) -> Result<Vec<u32>, String> {
        assert!(raw.len().is_multiple_of(self.bytes()), "{} bytes are not whole {} blocks", raw.len(), self.name());
        let blocks = raw.chunks_exact(self.bytes());
        let n = raw.len() / self.bytes() * self.values();
        Ok(match self {
            // Already little-endian words (16-bit pairs share one; an odd tail gets a zero
            // high half).
            GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16 => raw.chunks(4).map(le_word).collect(),
            GgmlType::Q8_0 => {
                let scales: Vec<f16> = blocks.clone().map(|b| f16::from_le_bytes([b[0], b[1]])).collect();
                let codes: Vec<i8> = blocks.flat_map(|b| b[2..].iter().map(|&q| q as i8)).collect();
                pack_q8(&codes, &scales, LEGACY_BLOCK_VALUES)
            }
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 => {
                let (has_min, five_bits) = (matches!(self, GgmlType::Q4_1 | GgmlType::Q5_1), self.dtype() == DType::Q5);
                let mut codes = Vec::with_capacity(n);
                let mut params = Vec::with_capacity(n / LEGACY_BLOCK_VALUES * 2);
                for block in blocks {
                    let d = f16::from_le_bytes([block[0], block[1]]);
                    let offset = match has_min {
                        true => f16::from_le_bytes([block[2], block[3]]),
                        false => symmetric_offset(self, d)?,
                    };
                    params.push(pack_f16_pair(d, offset));
                    let rest = &block[if has_min { 4 } else { 2 }..];
                    let nibbles = if five_bits {
                        params.push(le_word(&rest[..4]));
                        &rest[4..]
                    } else {
                        rest
                    };
                    // Low nibbles are values 0..16 of the block, high nibbles 16..32.
                    codes.extend(nibbles.iter().map(|q| q & 15));
                    codes.extend(nibbles.iter().map(|q| q >> 4));
                }
                nibble_words(&codes).chain(params).collect()
            }
            GgmlType::Q4K | GgmlType::Q5K => {
                let mut codes = Vec::with_capacity(n);
                let mut params = Vec::new();
                for block in blocks {
                    // d, dmin and the 12 bytes of scales and mins, as they are.
                    params.extend(block[..16].chunks(4).map(le_word));
                    let nibbles = &block[block.len() - 128..];
                    for chunk in nibbles.chunks_exact(32) {
                        codes.extend(chunk.iter().map(|q| q & 15));
                        codes.extend(chunk.iter().map(|q| q >> 4));
                    }
                    if self == GgmlType::Q5K {
                        let fifth = &block[16..48];
                        params
                            .extend((0..8).map(|j| (0..32).fold(0u32, |w, l| w | u32::from((fifth[l] >> j) & 1) << l)));
                    }
                }
                nibble_words(&codes).chain(params).collect()
            }
            GgmlType::Q6K => {
                let mut codes = vec![0u8; n];
                let mut params = Vec::new();
                for (block, codes) in blocks.zip(codes.chunks_exact_mut(super::SUPER_BLOCK_VALUES as usize)) {
                    let mut high = [0u32; 16];
                    for half in 0..2 {
                        let (ql, qh) = (&block[64 * half..][..64], &block[128 + 32 * half..][..32]);
                        for l in 0..32 {
                            for i in 0..4 {
                                let v = 128 * half + 32 * i + l;
                                codes[v] = if i < 2 { ql[l + 32 * i] & 15 } else { ql[l + 32 * (i - 2)] >> 4 };
                                high[v / 16] |= u32::from((qh[l] >> (2 * i)) & 3) << (2 * (v % 16));
                            }
                        }
                    }
                    params.push(u32::from(u16::from_le_bytes([block[208], block[209]])));
                    params.extend(block[192..208].chunks(4).map(le_word));
                    params.extend(high);
                }
                nibble_words(&codes).chain(params).collect()
            }
        })
    }

    /// Decodes whole blocks (`raw.len()` a multiple of [`bytes`](Self::bytes)) to f32, in order.
    pub fn dequantize(self, raw: &[u8]) -> Vec<f32> {
        assert!(raw.len().is_multiple_of(self.bytes()), "{} bytes are not whole {} blocks", raw.len(), self.name());
        let mut out = Vec::with_capacity(raw.len() / self.bytes() * self.values());
        for block in raw.chunks_exact(self.bytes()) {
            match self {
                GgmlType::F32 => out.push(f32::from_le_bytes([block[0], block[1], block[2], block[3]])),
                GgmlType::F16 => out.push(f16_at(block, 0)),
                GgmlType::Bf16 => out.push(f32::from_bits(u32::from(u16::from_le_bytes([block[0], block[1]])) << 16)),
                GgmlType::Q4_0 => legacy(block, &mut out, false, false, |q, d, _| (f32::from(q) - 8.0) * d),
                GgmlType::Q4_1 => legacy(block, &mut out, true, false, |q, d, m| f32::from(q) * d + m),
                GgmlType::Q5_0 => legacy(block, &mut out, false, true, |q, d, _| (f32::from(q) - 16.0) * d),
                GgmlType::Q5_1 => legacy(block, &mut out, true, true, |q, d, m| f32::from(q) * d + m),
                GgmlType::Q8_0 => {
                    let d = f16_at(block, 0);
                    out.extend(block[2..].iter().map(|&q| f32::from(q as i8) * d));
                }
                GgmlType::Q4K => q4_k_or_q5_k(block, &mut out, None),
                GgmlType::Q5K => q4_k_or_q5_k(block, &mut out, Some(&block[4 + K_SCALE_BYTES..][..32])),
                GgmlType::Q6K => q6_k(block, &mut out),
            }
        }
        out
    }
}

/// Up to four little-endian bytes as a word (zeros past the end).
fn le_word(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word[..bytes.len()].copy_from_slice(bytes);
    u32::from_le_bytes(word)
}

/// Q4_0's values are `d * (q - 8)` and Q5_0's `d * (q - 16)`: as q4 and q5 that is scale `d`
/// and offset `-8d` or `-16d`, exact in f16 (a power-of-two multiple) unless it overflows.
fn symmetric_offset(ggml_type: GgmlType, d: f16) -> Result<f16, String> {
    let shift = if ggml_type == GgmlType::Q4_0 { 8.0 } else { 16.0 };
    let offset = f16::from_f32(-shift * d.to_f32());
    if !offset.is_finite() {
        return Err(format!(
            "{} scale {d} makes the offset -{shift}d overflow f16, so it has no exact {} form",
            ggml_type.name(),
            ggml_type.dtype().name()
        ));
    }
    Ok(offset)
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Q4_0, Q4_1, Q5_0, Q5_1: `d` (and for `_1` the minimum `m`), then for 5-bit types 4 bytes
/// of fifth bits (value `j`'s at bit `j`), then 16 bytes of nibbles: value `j` in the low
/// nibble of byte `j`, value `j + 16` in the high one.
fn legacy(block: &[u8], out: &mut Vec<f32>, has_min: bool, has_fifth_bit: bool, value: impl Fn(u8, f32, f32) -> f32) {
    let d = f16_at(block, 0);
    let m = if has_min { f16_at(block, 2) } else { 0.0 };
    let rest = &block[if has_min { 4 } else { 2 }..];
    let (fifth_bits, nibbles) = match has_fifth_bit {
        true => (u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]), &rest[4..]),
        false => (0, rest),
    };
    let code = |j: usize| {
        let nibble = if j < 16 { nibbles[j] & 0xF } else { nibbles[j - 16] >> 4 };
        nibble | (((fifth_bits >> j) & 1) as u8) << 4
    };
    out.extend((0..LEGACY_BLOCK_VALUES).map(|j| value(code(j), d, m)));
}

/// Sub-block `j`'s 6-bit scale and min (`get_scale_min_k4`).
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Q4_K and Q5_K: `d`, `dmin`, the packed scales, (Q5_K: 32 bytes of fifth bits), 128 bytes
/// of nibbles. Each 64 values share 32 nibble bytes: the low nibbles are sub-block `2c`, the
/// high ones `2c + 1`; Q5_K's fifth bit of value `l` of sub-block `s` is bit `s` of byte `l`.
fn q4_k_or_q5_k(block: &[u8], out: &mut Vec<f32>, fifth_bits: Option<&[u8]>) {
    let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
    let scales = &block[4..4 + K_SCALE_BYTES];
    let nibbles = &block[block.len() - 128..];
    for sub_block in 0..8 {
        let (scale, min) = scale_min_k4(sub_block, scales);
        let (d1, m1) = (d * f32::from(scale), dmin * f32::from(min));
        let bytes = &nibbles[sub_block / 2 * 32..][..32];
        for (l, &byte) in bytes.iter().enumerate() {
            let nibble = if sub_block % 2 == 0 { byte & 0xF } else { byte >> 4 };
            let fifth = fifth_bits.map_or(0, |bits| ((bits[l] >> sub_block) & 1) << 4);
            out.push(d1 * f32::from(nibble | fifth) - m1);
        }
    }
}

/// Q6_K: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 signed scales, `d`.
/// Each half of 128 values takes 64 low-nibble bytes and 32 high bytes: value `l + 32i`
/// (`i` in 0..4, `l` in 0..32) has low nibble `ql[l + 32(i % 2)]` (high nibble when `i >= 2`),
/// high bits `qh[l] >> 2i`, and scale `l / 16 + 2i`.
fn q6_k(block: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(block, 208);
    for half in 0..2 {
        let ql = &block[64 * half..][..64];
        let qh = &block[128 + 32 * half..][..32];
        let scales = &block[192 + 8 * half..][..8];
        let start = out.len();
        out.resize(start + 128, 0.0);
        for l in 0..32 {
            for i in 0..4 {
                let low = if i < 2 { ql[l + 32 * i] & 0xF } else { ql[l + 32 * (i - 2)] >> 4 };
                let q = i32::from(low | ((qh[l] >> (2 * i)) & 3) << 4) - 32;
                let scale = f32::from(scales[l / 16 + 2 * i] as i8);
                out[start + l + 32 * i] = d * scale * q as f32;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::dequantize;

    /// gguf-py's dequantization of raw blocks of every type (tools/reference/ggml_blocks_fixture.py).
    const FIXTURE: &str = include_str!("../../tests/fixtures/ggml_blocks.json");

    /// Bytes from the fixtures' hex strings.
    pub(crate) fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    fn fixture_cases() -> Vec<(GgmlType, Vec<u8>, Vec<u32>)> {
        let fixture: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        let types = fixture["types"].as_object().unwrap();
        assert_eq!(types.len(), 9);
        types
            .iter()
            .map(|(name, case)| {
                let ggml_type = (0..40).filter_map(GgmlType::from_id).find(|t| t.name() == name).unwrap();
                let values = hex(case["values"].as_str().unwrap())
                    .chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                (ggml_type, hex(case["blocks"].as_str().unwrap()), values)
            })
            .collect()
    }

    /// Every block repacked into the model directory's layout decodes to llama.cpp's bits,
    /// except a symmetric block whose implied offset overflows f16, which is refused.
    #[test]
    fn packed_parts_decode_to_llama_cpp_bits() {
        for (ggml_type, raw, expected) in fixture_cases() {
            let dtype = ggml_type.dtype();
            for (index, block) in raw.chunks(ggml_type.bytes()).enumerate() {
                let want = &expected[index * ggml_type.values()..][..ggml_type.values()];
                let words = match ggml_type.pack(block) {
                    Ok(words) => words,
                    Err(problem) => {
                        let d = f16::from_le_bytes([block[0], block[1]]).to_f32().abs();
                        assert!(matches!(ggml_type, GgmlType::Q4_0 | GgmlType::Q5_0), "{problem}");
                        assert!(d * 16.0 > 65504.0, "{problem}");
                        continue;
                    }
                };
                let values = ggml_type.values();
                assert_eq!(words.len() as u64 * 4, dtype.part_bytes(1, values as u64, ggml_type.group().max(1) as u64));
                let got = dequantize(dtype, &words, 1, values, ggml_type.group().max(1));
                for (i, (g, w)) in got.iter().zip(want).enumerate() {
                    // Bit for bit, but for the sign of a zero: Q4_0's (q - 8) * 0 is -0 where
                    // q4's 0 * q + (-8 * 0) is +0, the same value in every sum.
                    let same = g.to_bits() == *w || (*g == 0.0 && f32::from_bits(*w) == 0.0);
                    assert!(same, "{} block {index} value {i}: {g} vs {}", ggml_type.name(), f32::from_bits(*w));
                }
            }
        }
    }

    #[test]
    fn every_type_decodes_to_llama_cpp_bits() {
        for (ggml_type, raw, expected) in fixture_cases() {
            let name = ggml_type.name();
            let got: Vec<u32> = ggml_type.dequantize(&raw).iter().map(|v| v.to_bits()).collect();
            assert_eq!(got.len(), expected.len(), "{name}");
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert_eq!(g, e, "{name} value {i}: {} vs {}", f32::from_bits(*g), f32::from_bits(*e));
            }
        }
    }
}
