//! GGML's block types as llama.cpp writes them into GGUF files, decoded to f32 exactly as its
//! `dequantize_row_*` (ggml-quants.c) decode them: the same products in the same order, so a
//! tensor repacked for the shaders can be checked value for value against its source.
//!
//! A block holds `values()` values in `bytes()` bytes. The legacy types (`Q4_0` to `Q8_0`)
//! have 32 values and one f16 scale (and an f16 minimum for `_1`); the K-quants have 256
//! values in 8 (Q4_K, Q5_K: 6-bit scale and min each, under f16 `d` and `dmin`) or 16 (Q6_K:
//! signed 8-bit scales under one f16 `d`) sub-blocks.

use half::f16;

use super::gguf::{ggml_block_layout, ggml_type_name};

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
const LEGACY_BLOCK_VALUES: usize = 32;
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

    /// gguf-py's dequantization of raw blocks of every type (tools/reference/ggml_blocks_fixture.py).
    const FIXTURE: &str = include_str!("../../tests/fixtures/ggml_blocks.json");

    /// Bytes from the fixtures' hex strings.
    pub(crate) fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn every_type_decodes_to_llama_cpp_bits() {
        let fixture: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        let types = fixture["types"].as_object().unwrap();
        assert_eq!(types.len(), 9);
        for (name, case) in types {
            let ggml_type = (0..40).filter_map(GgmlType::from_id).find(|t| t.name() == name).unwrap();
            let raw = hex(case["blocks"].as_str().unwrap());
            let expected: Vec<u32> = hex(case["values"].as_str().unwrap())
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let got: Vec<u32> = ggml_type.dequantize(&raw).iter().map(|v| v.to_bits()).collect();
            assert_eq!(got.len(), expected.len(), "{name}");
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert_eq!(g, e, "{name} value {i}: {} vs {}", f32::from_bits(*g), f32::from_bits(*e));
            }
        }
    }
}
