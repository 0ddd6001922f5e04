//! GGUF import. Small GGUF files are written here from the GGUF spec (a writer of
//! our own, so the reader is not checked against itself), converted, and read back:
//! the manifest, the shards and their hashes, every value against GGUF's
//! dequantization formulas computed independently here, shard splitting, and
//! malformed files of every kind, which must be errors of the right variant, never
//! panics; and the real test model.

mod common;
mod test_model;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::read_tensor;
use half::f16;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use webjudge::convert::gguf_import::{convert_gguf, ConvertOptions};
use webjudge::engine::native::read_metadata;
use webjudge::format::ggml_blocks::GgmlType;
use webjudge::format::gguf::{
    ggml_block_layout, GgufArray, GgufError, GgufFile, GgufMetadata, GgufValue, GGML_TYPE_F16 as F16,
    GGML_TYPE_F32 as F32, GGML_TYPE_Q4_0 as Q4_0, GGML_TYPE_Q4_1 as Q4_1, GGML_TYPE_Q8_0 as Q8_0,
};
use webjudge::format::manifest::TensorEntry;
use webjudge::format::manifest::{
    CHAT_TEMPLATE_FORMAT_VERSION, DEFAULT_SHARD_BYTES, INPUT_ORDER_FORMAT_VERSION, K_QUANT_FORMAT_VERSION,
    ROPE_SCALING_FORMAT_VERSION,
};
use webjudge::format::schema::expected_tensors;
use webjudge::format::{Architecture, ChatTemplate, DType, Manifest, Message};
use webjudge::import::gguf::{GgufPlan, ImportOptions};
use webjudge::import::stream::{GgufStream, StreamedFile, StreamedModel};
use webjudge::import::{ConvertError, JudgeChoice, OutputProblem, TemplateText};
use webjudge::judge::JudgeFamily;
use webjudge::kernels::Sampling;

use test_model::smollm2_template;

/// A type the converter refuses (it would need requantizing).
const Q3_K: u32 = 11;
const Q5_0: u32 = 6;
const Q5_1: u32 = 7;
const Q4_K: u32 = 12;
const Q5_K: u32 = 13;
const Q6_K: u32 = 14;
const BF16: u32 = 30;

const LAYERS: usize = 2;
const HIDDEN: u64 = 64;
const HEADS: u64 = 4;
const KV_HEADS: u64 = 2;
const HEAD_DIM: u64 = 16;
const FFN: u64 = 256;

const SMOLLM_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

// ---------------------------------------------------------------------------------
// A GGUF writer, straight from the spec.

#[derive(Clone, Debug)]
struct Tensor {
    name: String,
    /// GGUF order: dims[0] is contiguous.
    dims: Vec<u64>,
    ggml_type: u32,
    data: Vec<u8>,
}

#[derive(Clone, Debug)]
struct Gguf {
    version: u32,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<Tensor>,
    alignment: usize,
}

fn value_type(value: &GgufValue) -> u32 {
    match value {
        GgufValue::U8(_) => 0,
        GgufValue::I8(_) => 1,
        GgufValue::U16(_) => 2,
        GgufValue::I16(_) => 3,
        GgufValue::U32(_) => 4,
        GgufValue::I32(_) => 5,
        GgufValue::F32(_) => 6,
        GgufValue::Bool(_) => 7,
        GgufValue::String(_) => 8,
        GgufValue::Array(_) => 9,
        GgufValue::U64(_) => 10,
        GgufValue::I64(_) => 11,
        GgufValue::F64(_) => 12,
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &GgufValue) {
    match value {
        GgufValue::U8(v) => out.extend(v.to_le_bytes()),
        GgufValue::I8(v) => out.extend(v.to_le_bytes()),
        GgufValue::U16(v) => out.extend(v.to_le_bytes()),
        GgufValue::I16(v) => out.extend(v.to_le_bytes()),
        GgufValue::U32(v) => out.extend(v.to_le_bytes()),
        GgufValue::I32(v) => out.extend(v.to_le_bytes()),
        GgufValue::U64(v) => out.extend(v.to_le_bytes()),
        GgufValue::I64(v) => out.extend(v.to_le_bytes()),
        GgufValue::F32(v) => out.extend(v.to_le_bytes()),
        GgufValue::F64(v) => out.extend(v.to_le_bytes()),
        GgufValue::Bool(v) => out.push(u8::from(*v)),
        GgufValue::String(s) => put_string(out, s),
        GgufValue::Array(array) => put_array(out, array),
    }
}

fn put_array(out: &mut Vec<u8>, array: &GgufArray) {
    fn items<T>(out: &mut Vec<u8>, item_type: u32, items: &[T], put: impl Fn(&mut Vec<u8>, &T)) {
        out.extend(item_type.to_le_bytes());
        out.extend((items.len() as u64).to_le_bytes());
        items.iter().for_each(|item| put(out, item));
    }
    match array {
        GgufArray::U8(v) => items(out, 0, v, |out, x| out.extend(x.to_le_bytes())),
        GgufArray::I8(v) => items(out, 1, v, |out, x| out.extend(x.to_le_bytes())),
        GgufArray::U16(v) => items(out, 2, v, |out, x| out.extend(x.to_le_bytes())),
        GgufArray::I16(v) => items(out, 3, v, |out, x| out.extend(x.to_le_bytes())),
        GgufArray::U32(v) => items(out, 4, v, |out, x| out.extend(x.to_le_bytes())),
        GgufArray::I32(v) => items(out, 5, v, |out, x| out.extend(x.to_le_bytes())),
        GgufArray::F32(v) => items(out, 6, v, |out, x| out.extend(x.to_le_bytes())),
        GgufArray::Bool(v) => items(out, 7, v, |out, x| out.push(u8::from(*x))),
        GgufArray::String(v) => items(out, 8, &v.iter().collect::<Vec<_>>(), |out, x| put_string(out, x)),
        GgufArray::Array(v) => items(out, 9, v, put_array),
        GgufArray::U64(v) => items(out, 10, v, |out, x| out.extend(x.to_le_bytes())),
        GgufArray::I64(v) => items(out, 11, v, |out, x| out.extend(x.to_le_bytes())),
        GgufArray::F64(v) => items(out, 12, v, |out, x| out.extend(x.to_le_bytes())),
    }
}

fn pad_to(out: &mut Vec<u8>, alignment: usize) {
    out.resize(out.len().div_ceil(alignment) * alignment, 0);
}

impl Gguf {
    fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut out, key);
            out.extend(value_type(value).to_le_bytes());
            put_value(&mut out, value);
        }
        let mut offset = 0;
        for tensor in &self.tensors {
            put_string(&mut out, &tensor.name);
            out.extend((tensor.dims.len() as u32).to_le_bytes());
            tensor.dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
            out.extend(tensor.ggml_type.to_le_bytes());
            out.extend((offset as u64).to_le_bytes());
            offset += tensor.data.len().div_ceil(self.alignment) * self.alignment;
        }
        // Padding goes before each tensor: the file ends where the last tensor does, so
        // every shorter prefix is truncated.
        for tensor in &self.tensors {
            pad_to(&mut out, self.alignment);
            out.extend(&tensor.data);
        }
        out
    }

    fn set(&mut self, key: &str, value: GgufValue) {
        self.remove(key);
        self.metadata.push((key.into(), value));
    }

    fn remove(&mut self, key: &str) {
        self.metadata.retain(|(k, _)| k != key);
    }

    fn tensor_mut(&mut self, name: &str) -> &mut Tensor {
        self.tensors.iter_mut().find(|t| t.name == name).expect("tensor exists")
    }

    fn tensor(&self, name: &str) -> &Tensor {
        self.tensors.iter().find(|t| t.name == name).expect("tensor exists")
    }
}

fn string(s: &str) -> GgufValue {
    GgufValue::String(s.into())
}

// ---------------------------------------------------------------------------------
// Random tensors and their dequantization per the GGUF spec.

fn random_f16(rng: &mut SmallRng, low: f32, high: f32) -> [u8; 2] {
    f16::from_f32(rng.random_range(low..high)).to_le_bytes()
}

fn random_tensor(rng: &mut SmallRng, name: &str, dims: &[u64], ggml_type: u32) -> Tensor {
    let n = dims.iter().product::<u64>() as usize;
    let mut data = Vec::new();
    match ggml_type {
        F32 => (0..n).for_each(|_| data.extend(rng.random_range(-1.0f32..1.0).to_le_bytes())),
        F16 => (0..n).for_each(|_| data.extend(random_f16(rng, -1.0, 1.0))),
        Q8_0 => {
            for _ in 0..n / 32 {
                data.extend(random_f16(rng, -0.05, 0.05));
                data.extend((0..32).map(|_| rng.random::<u8>()));
            }
        }
        // Negative scales too: they are legal and flip the sign of zero in Q4_0.
        Q4_0 => {
            for _ in 0..n / 32 {
                data.extend(random_f16(rng, -0.1, 0.1));
                data.extend((0..16).map(|_| rng.random::<u8>()));
            }
        }
        Q4_1 => {
            for _ in 0..n / 32 {
                data.extend(random_f16(rng, 0.0, 0.1));
                data.extend(random_f16(rng, -1.0, 0.0));
                data.extend((0..16).map(|_| rng.random::<u8>()));
            }
        }
        BF16 => (0..n).for_each(|_| data.extend(&rng.random_range(-1.0f32..1.0).to_le_bytes()[2..])),
        // Random codes (and 6-bit scales) under sane f16 scales at each type's offsets.
        Q5_0 | Q5_1 | Q4_K | Q5_K | Q6_K | Q3_K => {
            let (values, bytes) = ggml_block_layout(ggml_type).unwrap();
            for _ in 0..n as u64 / values {
                let mut block: Vec<u8> = (0..bytes).map(|_| rng.random()).collect();
                match ggml_type {
                    Q5_0 => block[..2].copy_from_slice(&random_f16(rng, -0.06, 0.06)),
                    Q5_1 | Q4_K | Q5_K => {
                        block[..2].copy_from_slice(&random_f16(rng, 0.0, 0.003));
                        block[2..4].copy_from_slice(&random_f16(rng, 0.0, 0.02));
                    }
                    Q6_K => block[208..].copy_from_slice(&random_f16(rng, -0.0003, 0.0003)),
                    _ => {}
                }
                data.extend(block);
            }
        }
        other => panic!("no generator for ggml type {other}"),
    }
    Tensor { name: name.into(), dims: dims.to_vec(), ggml_type, data }
}

fn half_at(bytes: &[u8]) -> f32 {
    f16::from_le_bytes([bytes[0], bytes[1]]).to_f32()
}

/// GGUF's dequantization (ggml's `dequantize_row_*`), written from the spec.
fn spec_dequantize(tensor: &Tensor) -> Vec<f32> {
    let d = &tensor.data;
    match tensor.ggml_type {
        F32 => d.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        F16 => d.chunks_exact(2).map(half_at).collect(),
        Q8_0 => d
            .chunks_exact(34)
            .flat_map(|b| {
                let scale = half_at(b);
                b[2..].iter().map(move |&q| f32::from(q as i8) * scale)
            })
            .collect(),
        Q4_0 => d
            .chunks_exact(18)
            .flat_map(|b| {
                let scale = half_at(b);
                let qs = &b[2..];
                (0..32).map(move |j| {
                    let q = if j < 16 { qs[j] & 15 } else { qs[j - 16] >> 4 };
                    (i32::from(q) - 8) as f32 * scale
                })
            })
            .collect(),
        Q4_1 => d
            .chunks_exact(20)
            .flat_map(|b| {
                let (scale, min) = (half_at(b), half_at(&b[2..]));
                let qs = &b[4..];
                (0..32).map(move |j| {
                    let q = if j < 16 { qs[j] & 15 } else { qs[j - 16] >> 4 };
                    f32::from(q) * scale + min
                })
            })
            .collect(),
        // llama.cpp's own dequantization of these is checked bit for bit against gguf-py's
        // (src/format/ggml_blocks.rs); here it only checks the importer's plumbing.
        other => GgmlType::from_id(other).expect("a type the importer reads").dequantize(d),
    }
}

// ---------------------------------------------------------------------------------
// The tiny llama model.

/// GPT-2's byte-to-character map: printable bytes stand for themselves, the rest map
/// to characters from U+0100 up.
fn byte_level_chars() -> Vec<char> {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let mut next = 256;
    (0..256u32)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap()
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap()
            }
        })
        .collect()
}

/// Byte-level BPE vocabulary: three specials, the 256 byte characters, three merges.
fn tokenizer_metadata() -> Vec<(String, GgufValue)> {
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"].map(String::from).to_vec();
    tokens.extend(byte_level_chars().iter().map(|c| c.to_string()));
    let merges = ["h e", "Ġ t", "Ġt he"];
    tokens.extend(merges.iter().map(|m| m.replace(' ', "")));
    let token_type = (0..tokens.len()).map(|i| if i < 3 { 3 } else { 1 }).collect();
    vec![
        ("tokenizer.ggml.model".into(), string("gpt2")),
        ("tokenizer.ggml.pre".into(), string("smollm")),
        ("tokenizer.ggml.tokens".into(), GgufArray::String(tokens.iter().collect()).into()),
        ("tokenizer.ggml.token_type".into(), GgufArray::I32(token_type).into()),
        ("tokenizer.ggml.merges".into(), GgufArray::String(merges.iter().collect()).into()),
        ("tokenizer.ggml.bos_token_id".into(), GgufValue::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), GgufValue::U32(2)),
        ("tokenizer.ggml.eot_token_id".into(), GgufValue::U32(0)),
        ("tokenizer.ggml.add_bos_token".into(), GgufValue::Bool(false)),
        ("tokenizer.chat_template".into(), string(SMOLLM_TEMPLATE)),
    ]
}

const VOCAB: u64 = 3 + 256 + 3;

/// ggml types per tensor, chosen so every supported type appears both as a matrix
/// and as a vector.
fn tensor_types(layer: usize) -> [(&'static str, u32); 9] {
    if layer.is_multiple_of(2) {
        [
            ("attn_norm", F32),
            ("attn_q", Q4_0),
            ("attn_k", Q4_1),
            ("attn_v", F16),
            ("attn_output", F32),
            ("ffn_norm", F16),
            ("ffn_gate", Q4_1),
            ("ffn_up", Q4_0),
            ("ffn_down", Q8_0),
        ]
    } else {
        [
            ("attn_norm", Q8_0),
            ("attn_q", Q4_1),
            ("attn_k", Q4_0),
            ("attn_v", Q8_0),
            ("attn_output", Q4_1),
            ("ffn_norm", Q4_0),
            ("ffn_gate", Q4_0),
            ("ffn_up", F16),
            ("ffn_down", Q4_1),
        ]
    }
}

/// A 2-layer llama with metadata of every value kind. Tensors are stored in reverse of
/// the order the converter writes them, so lookup by name is exercised.
fn tiny_model(seed: u64, tied: bool) -> Gguf {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut metadata: Vec<(String, GgufValue)> = vec![
        ("general.architecture".into(), string("llama")),
        ("general.name".into(), string("tiny")),
        ("general.alignment".into(), GgufValue::U32(64)),
        ("llama.block_count".into(), GgufValue::U32(LAYERS as u32)),
        // Writers differ in integer widths; the reader converts what fits.
        ("llama.embedding_length".into(), GgufValue::U64(HIDDEN)),
        ("llama.attention.head_count".into(), GgufValue::I32(HEADS as i32)),
        ("llama.attention.head_count_kv".into(), GgufValue::U16(KV_HEADS as u16)),
        ("llama.feed_forward_length".into(), GgufValue::U32(FFN as u32)),
        ("llama.context_length".into(), GgufValue::U32(512)),
        ("llama.rope.freq_base".into(), GgufValue::F32(100000.0)),
        ("llama.rope.dimension_count".into(), GgufValue::U32(HEAD_DIM as u32)),
        ("llama.attention.layer_norm_rms_epsilon".into(), GgufValue::F64(1e-5)),
        ("test.u8".into(), GgufValue::U8(200)),
        ("test.i8".into(), GgufValue::I8(-100)),
        ("test.i16".into(), GgufValue::I16(-30000)),
        ("test.i64".into(), GgufValue::I64(-1 << 40)),
        ("test.empty".into(), string("")),
        ("test.utf8".into(), string("héllo wörld ✓")),
        (
            "test.nested".into(),
            GgufArray::Array(vec![GgufArray::F32(vec![1.5, -2.0]), GgufArray::F32(vec![0.25])]).into(),
        ),
    ];
    metadata.extend(tokenizer_metadata());
    let mut tensors = vec![
        random_tensor(&mut rng, "token_embd.weight", &[HIDDEN, VOCAB], Q8_0),
        random_tensor(&mut rng, "output_norm.weight", &[HIDDEN], Q4_1),
    ];
    if !tied {
        tensors.push(random_tensor(&mut rng, "output.weight", &[HIDDEN, VOCAB], Q4_1));
    }
    for layer in 0..LAYERS {
        for (name, ggml_type) in tensor_types(layer) {
            let dims = match name {
                "attn_norm" | "ffn_norm" => vec![HIDDEN],
                "attn_q" | "attn_output" => vec![HIDDEN, HEADS * HEAD_DIM],
                "attn_k" | "attn_v" => vec![HIDDEN, KV_HEADS * HEAD_DIM],
                "ffn_gate" | "ffn_up" => vec![HIDDEN, FFN],
                _ => vec![FFN, HIDDEN],
            };
            tensors.push(random_tensor(&mut rng, &format!("blk.{layer}.{name}.weight"), &dims, ggml_type));
        }
    }
    tensors.reverse();
    Gguf { version: 3, metadata, tensors, alignment: 64 }
}

fn tiny_architecture(tied: bool) -> Architecture {
    Architecture {
        n_layers: LAYERS,
        hidden: HIDDEN as usize,
        n_heads: HEADS as usize,
        n_kv_heads: KV_HEADS as usize,
        head_dim: HEAD_DIM as usize,
        ffn: FFN as usize,
        vocab: VOCAB as usize,
        rope_theta: 100000.0,
        rope_frequency_divisors: Vec::new(),
        qkv_bias: false,
        rope_attention_factor: 1.0,
        norm_eps: 1e-5,
        context_length: 512,
        tied_embeddings: tied,
        bos_id: Some(1),
        eos_ids: vec![2, 0],
        add_bos: false,
    }
}

// ---------------------------------------------------------------------------------
// Helpers.

fn scratch(name: &str) -> PathBuf {
    test_model::scratch("convert", name)
}

fn write_gguf(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn convert(path: &Path, out: &Path, max_shard_bytes: u64) -> Result<Manifest, ConvertError> {
    let options = ConvertOptions { max_shard_bytes, ..ConvertOptions::default() };
    convert_gguf(path, out, &options, &mut |_, _| {}).map(|conversion| conversion.manifest)
}

fn convert_bytes(dir: &Path, bytes: &[u8]) -> Result<Manifest, ConvertError> {
    let path = write_gguf(dir, "model.gguf", bytes);
    let out = dir.join("out");
    let result = convert(&path, &out, 1 << 20);
    if result.is_err() {
        assert!(!out.exists(), "a failed conversion left {}", out.display());
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(leftovers.iter().all(|name| name == "model.gguf" || name == "out"), "conversion left {leftovers:?} behind");
    let _ = std::fs::remove_dir_all(&out);
    result
}

fn parse(bytes: &[u8]) -> Result<GgufFile, GgufError> {
    GgufFile::read(Cursor::new(bytes))
}

/// Bit-for-bit equality, except that the sign of a zero may differ: q4 stores Q4_0 as
/// `d*q + (-8d)`, which gives +0 where GGUF's `(q-8)*d` gives -0 for a negative `d`.
fn assert_same_values(name: &str, ours: &[f32], spec: &[f32]) {
    assert_eq!(ours.len(), spec.len(), "{name}: value count");
    for (i, (a, b)) in ours.iter().zip(spec).enumerate() {
        assert!(a.to_bits() == b.to_bits() || (*a == 0.0 && *b == 0.0), "{name}[{i}]: converted {a}, GGUF {b}");
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks shards against the manifest and every tensor against the GGUF's values.
fn check_model_dir(dir: &Path, manifest: &Manifest, gguf: &Gguf) {
    let on_disk = Manifest::from_json(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(&on_disk, manifest);
    for shard in &manifest.shards {
        let bytes = std::fs::read(dir.join(&shard.file)).unwrap();
        assert_eq!(bytes.len() as u64, shard.size, "{}", shard.file);
        assert_eq!(sha256_hex(&bytes), shard.sha256, "{}", shard.file);
    }
    let tokenizer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap()).unwrap();
    assert!(tokenizer.is_object());
    for tensor in &gguf.tensors {
        let entry = manifest.tensor(&tensor.name).unwrap();
        let ggml_type = GgmlType::from_id(tensor.ggml_type).unwrap();
        let expected_dtype = if tensor.dims.len() == 1 { DType::F32 } else { ggml_type.dtype() };
        assert_eq!(entry.dtype, expected_dtype, "{}", tensor.name);
        let shape: Vec<usize> = tensor.dims.iter().rev().map(|&d| d as usize).collect();
        assert_eq!(entry.shape, shape, "{}", tensor.name);
        let group = if expected_dtype.is_quantized() { ggml_type.values() } else { 0 };
        assert_eq!(entry.group_size, group, "{}", tensor.name);
        assert_same_values(&tensor.name, &read_tensor(dir, manifest, &tensor.name), &spec_dequantize(tensor));
    }
}

// ---------------------------------------------------------------------------------
// Well-formed files.

#[test]
fn reader_returns_metadata_and_tensors_as_written() {
    let gguf = tiny_model(1, false);
    let bytes = gguf.bytes();
    let file = parse(&bytes).unwrap();
    assert_eq!(file.version, 3);
    assert_eq!(file.alignment, 64);
    assert_eq!(file.data_offset % 64, 0);
    assert_eq!(file.file_size, bytes.len() as u64);
    let written: GgufMetadata = gguf.metadata.iter().cloned().collect();
    assert_eq!(file.metadata, written);
    assert_eq!(file.tensors.len(), gguf.tensors.len());
    for (info, tensor) in file.tensors.iter().zip(&gguf.tensors) {
        assert_eq!((&info.name, &info.dims, info.ggml_type), (&tensor.name, &tensor.dims, tensor.ggml_type));
        let range = file.tensor_range(info).unwrap();
        assert_eq!(&bytes[range.start as usize..range.end as usize], &tensor.data[..], "{}", tensor.name);
    }

    let mut v2 = gguf.clone();
    v2.version = 2;
    assert_eq!(parse(&v2.bytes()).unwrap().version, 2);
}

#[test]
fn converts_every_supported_type_exactly() {
    for tied in [false, true] {
        let dir = scratch(if tied { "exact-tied" } else { "exact-untied" });
        let gguf = tiny_model(2, tied);
        let path = write_gguf(&dir, "tiny.gguf", &gguf.bytes());
        let out = dir.join("model");
        let mut calls = Vec::new();
        let manifest =
            convert_gguf(&path, &out, &ConvertOptions::default(), &mut |done, total| calls.push((done, total)))
                .unwrap()
                .manifest;

        assert_eq!(manifest.architecture, tiny_architecture(tied));
        assert_eq!(manifest.chat_template, Some(smollm2_template()));
        let names: Vec<&str> = manifest.tensors.iter().map(|t| t.name.as_str()).collect();
        let expected: Vec<String> =
            expected_tensors(&manifest.architecture, usize::MAX).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, expected);
        assert_eq!(manifest.shards.len(), 1, "everything fits the default shard size");
        check_model_dir(&out, &manifest, &gguf);

        let total: u64 = gguf.tensors.iter().map(|t| t.data.len() as u64).sum();
        assert_eq!(calls.first(), Some(&(0, total)));
        assert_eq!(calls.last(), Some(&(total, total)));
        assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0), "progress goes forward");
    }
}

/// The types of llama.cpp's K-quant mixes keep their own layouts, value for value: Q4_K, Q5_K
/// and Q6_K on the rows that are whole super-blocks (the feed-forward down projections here),
/// Q5_0, Q5_1 and BF16 elsewhere, as a Q4_K_M file of a model with such rows has them.
#[test]
fn converts_k_quant_mixes_exactly() {
    for (down_types, seed) in [([Q4_K, Q6_K], 21), ([Q5_K, Q4_K], 22)] {
        let dir = scratch(&format!("k-quants-{seed}"));
        let mut gguf = tiny_model(seed, false);
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut replace = |name: &str, ggml_type: u32| {
            let tensor = gguf.tensor_mut(name);
            *tensor = random_tensor(&mut rng, name, &tensor.dims.clone(), ggml_type);
        };
        for (layer, down) in down_types.into_iter().enumerate() {
            replace(&format!("blk.{layer}.ffn_down.weight"), down);
            replace(&format!("blk.{layer}.attn_q.weight"), Q5_0);
            replace(&format!("blk.{layer}.attn_k.weight"), Q5_1);
            replace(&format!("blk.{layer}.attn_v.weight"), BF16);
        }
        replace("token_embd.weight", Q5_1);
        replace("output.weight", BF16);
        let path = write_gguf(&dir, "k.gguf", &gguf.bytes());
        let out = dir.join("model");
        let manifest = convert_gguf(&path, &out, &ConvertOptions::default(), &mut |_, _| ()).unwrap().manifest;
        check_model_dir(&out, &manifest, &gguf);
        let dtypes: BTreeSet<&str> = manifest.tensors.iter().map(|t| t.dtype.name()).collect();
        assert!(dtypes.is_superset(&["q5", "bf16"].into()), "{dtypes:?}");
        // Older builds refuse it by its version, not by an unknown dtype name.
        assert_eq!(manifest.format_version, CHAT_TEMPLATE_FORMAT_VERSION, "the Jinja template needs the newest");
        let mut older = manifest.clone();
        older.chat_template = Some(ChatTemplate::llama2());
        older.format_version = K_QUANT_FORMAT_VERSION;
        older.validate().unwrap();
        older.format_version = INPUT_ORDER_FORMAT_VERSION;
        let refused = older.validate().unwrap_err().to_string();
        assert!(refused.contains("which needs format version 3, not 2"), "{refused}");
    }
}

/// A tiny LLaMA whose rows are whole super-blocks, quantized by llama.cpp's own quantizer to
/// Q4_K_M and Q5_K_M (tests/fixtures/kquant_tiny, tools/reference/kquant_model_fixture.py),
/// converts without requantizing and generates the greedy ids of a float64 forward over its
/// dequantized weights. Tolerance: every step's top-5 logits (values ~15-30) within 0.05, 5
/// times the worst measured on lavapipe (1.0e-2: f32 sums, f16 KV cache) and under a quarter
/// of the golden's smallest top-1/top-2 margin (0.2 or more), so equal ids are no coincidence.
#[test]
fn llama_cpp_k_quant_files_generate_the_reference_greedy_ids() {
    const LOGIT_TOLERANCE: f32 = 0.05;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kquant_tiny");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("golden.json")).unwrap()).unwrap();
    let ids = |value: &serde_json::Value| -> Vec<u32> {
        value.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
    };
    for (mix, case) in golden["files"].as_object().unwrap() {
        let margins = case["margins"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap() as f32);
        assert!(margins.fold(f32::INFINITY, f32::min) > 4.0 * LOGIT_TOLERANCE, "{mix}");
        let out = scratch(&format!("llama-cpp-{mix}")).join("model");
        let manifest = convert(&fixture.join(format!("{mix}.gguf")), &out, DEFAULT_SHARD_BYTES).unwrap();
        // Loaded directly (`--model file.gguf`), it is the directory written, to the shard bytes.
        assert_eq!(read_metadata(&fixture.join(format!("{mix}.gguf"))).unwrap().0, manifest, "{mix}");
        let written: BTreeSet<&str> = manifest.tensors.iter().map(|t| t.dtype.name()).collect();
        let k_type = if mix == "q4_k_m" { "q4_k" } else { "q5_k" };
        assert_eq!(written, ["f32", k_type, "q6_k"].into(), "{mix}: every tensor in its own type");

        let mut engine = common::hf::load_short_context(&out);
        let model = engine.model_mut();
        let (prompt, want) = (ids(&case["prompt"]), ids(&case["greedy"]));
        let mut got = vec![pollster::block_on(model.prefill(&prompt, Sampling::Greedy)).unwrap()];
        let mut worst = 0f32;
        for (step, top5) in case["top5"].as_array().unwrap().iter().enumerate() {
            let logits = pollster::block_on(model.logits(1)).unwrap();
            for top in top5.as_array().unwrap() {
                let (id, logit) = (top[0].as_u64().unwrap() as usize, top[1].as_f64().unwrap() as f32);
                let difference = (logits[id] - logit).abs();
                assert!(difference <= LOGIT_TOLERANCE, "{mix} step {step}: logit of {id} differs by {difference}");
                worst = worst.max(difference);
            }
            assert_eq!(got[step], want[step], "{mix} step {step}: greedy id differs from the reference's");
            if got.len() < want.len() {
                got.push(pollster::block_on(model.decode(Sampling::Greedy)).unwrap());
            }
        }
        assert_eq!(got, want);
        println!(
            "{mix} (llama.cpp's quantizer): greedy ids equal the reference's; max top-5 logit difference {worst:.2e}"
        );
    }
}

/// llama.cpp writes Mistral models (Prometheus 2 among them) as `llama` GGUF files: the
/// judge family comes from `general.name` (or the file name), `--context` caps the recorded
/// context, and a sliding window shorter than that context is refused with both numbers.
#[test]
fn mistral_gguf_records_judge_and_context() {
    let dir = scratch("mistral");
    let mut gguf = tiny_model(5, false);
    gguf.set("general.name", string("Prometheus 7b v2.0"));
    let path = write_gguf(&dir, "model.gguf", &gguf.bytes());
    let convert_with =
        |name: &str, options: ConvertOptions| convert_gguf(&path, &dir.join(name), &options, &mut |_, _| {});

    let inferred = convert_with("inferred", ConvertOptions::default()).unwrap();
    assert_eq!(inferred.manifest.judge, Some(JudgeFamily::Prometheus));
    assert_eq!(inferred.judge_reason, r#"general.name "Prometheus 7b v2.0" contains "prometheus""#);
    assert_eq!(inferred.manifest.architecture.context_length, 512);
    let forced = ConvertOptions { judge: JudgeChoice::Given(None), context: Some(128), ..ConvertOptions::default() };
    let forced = convert_with("forced", forced).unwrap().manifest;
    assert_eq!((forced.judge, forced.architecture.context_length), (None, 128));

    gguf.set("llama.attention.sliding_window", GgufValue::U32(256));
    let path = write_gguf(&dir, "prometheus-sliding.gguf", &gguf.bytes());
    let refused = convert_gguf(&path, &dir.join("refused"), &ConvertOptions::default(), &mut |_, _| {}).unwrap_err();
    assert!(matches!(refused, ConvertError::SlidingWindow { window: 256, context: 512 }), "{refused}");
    assert!(!dir.join("refused").exists());
    let within = ConvertOptions { context: Some(256), ..ConvertOptions::default() };
    let within = convert_gguf(&path, &dir.join("within"), &within, &mut |_, _| {}).unwrap().manifest;
    assert_eq!(within.architecture.context_length, 256);
}

#[test]
fn small_shards_split_tensors_into_parts() {
    let dir = scratch("shards");
    let gguf = tiny_model(3, false);
    let path = write_gguf(&dir, "tiny.gguf", &gguf.bytes());
    let out = dir.join("model");
    let manifest = convert(&path, &out, 4096).unwrap();
    assert!(manifest.shards.len() > 5, "{} shards", manifest.shards.len());
    assert!(manifest.shards.iter().all(|s| s.size <= 4096), "a shard exceeds the limit");
    for tensor in &manifest.tensors {
        let length: u64 = tensor.parts.iter().map(|p| p.length).sum();
        assert_eq!(
            length,
            tensor.dtype.part_bytes(tensor.rows() as u64, tensor.cols() as u64, tensor.group_size.max(1) as u64)
        );
    }
    let embedding = manifest.tensor("token_embd.weight").unwrap();
    assert!(embedding.parts.len() > 1, "token_embd.weight was not split");
    assert!(embedding.parts.windows(2).all(|w| w[0].shard != w[1].shard), "each part fills its own shard");
    check_model_dir(&out, &manifest, &gguf);

    assert!(matches!(convert(&path, &dir.join("tiny-shards"), 100), Err(ConvertError::ShardSize(100))));
}

#[test]
fn output_directory_is_replaced_only_when_asked() {
    let dir = scratch("output");
    let path = write_gguf(&dir, "tiny.gguf", &tiny_model(4, true).bytes());
    let out = dir.join("model");
    std::fs::create_dir_all(&out).unwrap();
    convert(&path, &out, 1 << 20).expect("an empty directory is fine");
    convert(&path, &dir.join("new/folders/model"), 1 << 20).expect("a directory in folders yet to be made");
    assert!(matches!(convert(&path, &out, 1 << 20), Err(ConvertError::Output { .. })));
    let options = ConvertOptions { overwrite: true, ..ConvertOptions::default() };
    convert_gguf(&path, &out, &options, &mut |_, _| {}).expect("overwrite replaces it");
    assert!(out.join("manifest.json").exists());
    let file = dir.join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(convert_gguf(&path, &file, &options, &mut |_, _| {}), Err(ConvertError::Output { .. })));
}

/// `--force` once deleted whatever `--out` named: the user's notes, and the input itself.
#[test]
fn force_never_replaces_the_input_or_a_directory_that_is_not_a_model() {
    let dir = scratch("force-victim");
    let gguf = tiny_model(4, true).bytes();
    let force = ConvertOptions { overwrite: true, ..ConvertOptions::default() };
    let refused = |input: &Path, out: &Path| match convert_gguf(input, out, &force, &mut |_, _| {}) {
        Err(ConvertError::Output { problem, .. }) => problem,
        other => panic!("{} into {} was not refused: {other:?}", input.display(), out.display()),
    };

    let victim = dir.join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("notes.txt"), "notes").unwrap();
    let input = write_gguf(&victim, "model.gguf", &gguf);
    assert!(matches!(refused(&input, &victim), OutputProblem::HoldsInput(_)));
    let elsewhere = write_gguf(&dir, "model.gguf", &gguf);
    assert_eq!(refused(&elsewhere, &victim), OutputProblem::NotAModelDirectory);
    assert_eq!(std::fs::read_to_string(victim.join("notes.txt")).unwrap(), "notes");
    assert_eq!(std::fs::read(&input).unwrap(), gguf);

    // A real model directory with the input inside it (reached through `..`) is kept too.
    let model = dir.join("model");
    convert(&elsewhere, &model, 1 << 20).unwrap();
    let inside = write_gguf(&model, "source.gguf", &gguf);
    let roundabout = model.join("..").join("model").join("source.gguf");
    assert!(matches!(refused(&roundabout, &model), OutputProblem::HoldsInput(_)));
    assert_eq!(std::fs::read(&inside).unwrap(), gguf);
    assert!(model.join("manifest.json").is_file());
    assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')));
}

/// Every file under `dir` (symlinks followed) with its bytes; directories as `name/`.
fn listing(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            files.extend(listing(&path).into_iter().map(|(inner, bytes)| (format!("{name}/{inner}"), bytes)));
            files.insert(format!("{name}/"), Vec::new());
        } else {
            files.insert(name, std::fs::read(&path).unwrap());
        }
    }
    files
}

/// Runs `webjudge convert INPUT --out OUT [--force]`: its exit status and stderr.
fn convert_cli(input: &Path, out: &Path, force: bool) -> (Option<i32>, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_webjudge"));
    command.arg("convert").arg(input).arg("--out").arg(out);
    if force {
        command.arg("--force");
    }
    let output = command.output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The id of a process that has exited (and been waited for).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    child.id()
}

/// `--force` replaced any directory with a `manifest.json` (a web extension's, a PWA's) and
/// deleted a user's files kept in a model directory: it replaces only what a conversion wrote.
#[test]
fn force_replaces_only_the_files_a_conversion_wrote() {
    let dir = scratch("force-foreign");
    let path = write_gguf(&dir, "tiny.gguf", &tiny_model(4, true).bytes());
    let force = ConvertOptions { overwrite: true, ..ConvertOptions::default() };
    let refused = |out: &Path| match convert_gguf(&path, out, &force, &mut |_, _| {}) {
        Err(ConvertError::Output { problem, .. }) => problem,
        other => panic!("{} was not refused: {other:?}", out.display()),
    };

    let extension = dir.join("extension");
    std::fs::create_dir_all(extension.join("icons")).unwrap();
    std::fs::write(extension.join("manifest.json"), r#"{"manifest_version": 3, "name": "notes"}"#).unwrap();
    std::fs::write(extension.join("background.js"), "chrome.runtime;").unwrap();
    std::fs::write(extension.join("icons").join("icon.png"), "png").unwrap();
    let before = listing(&extension);
    let problem = refused(&extension);
    assert!(matches!(problem, OutputProblem::ForeignManifest(_)), "{problem:?}");
    assert!(problem.to_string().contains("not a webjudge manifest"), "{problem}");
    assert_eq!(listing(&extension), before);

    // A model directory holding the user's results and notes: named, kept, with or without --force.
    let model = dir.join("model");
    convert(&path, &model, 1 << 16).unwrap();
    std::fs::write(model.join("results.jsonl"), "{\"index\": 0}\n").unwrap();
    std::fs::create_dir(model.join("notes")).unwrap();
    let before = listing(&model);
    let problem = refused(&model);
    assert_eq!(problem, OutputProblem::ForeignFiles(vec!["notes/".into(), "results.jsonl".into()]));
    let without_force = convert(&path, &model, 1 << 16).unwrap_err().to_string();
    assert!(without_force.contains(": notes/, results.jsonl ("), "{without_force}");
    assert_eq!(listing(&model), before);

    // A tokenizer.json that links to the user's file is not one a conversion wrote.
    std::fs::remove_file(model.join("results.jsonl")).unwrap();
    std::fs::remove_dir(model.join("notes")).unwrap();
    let user_file = write_gguf(&dir, "user.json", b"{}");
    std::fs::remove_file(model.join("tokenizer.json")).unwrap();
    std::os::unix::fs::symlink(&user_file, model.join("tokenizer.json")).unwrap();
    assert_eq!(refused(&model), OutputProblem::ForeignFiles(vec!["tokenizer.json".into()]));
    assert_eq!(std::fs::read(&user_file).unwrap(), b"{}");

    // Many: the first few by name, and a count.
    std::fs::remove_file(model.join("tokenizer.json")).unwrap();
    for n in 1..=7 {
        std::fs::write(model.join(format!("note-{n}.txt")), "n").unwrap();
    }
    let problem = refused(&model).to_string();
    assert!(problem.contains("note-1.txt, note-2.txt, note-3.txt, note-4.txt, note-5.txt and 2 more"), "{problem}");

    // A file that appears while converting is seen before anything is replaced.
    for n in 1..=7 {
        std::fs::remove_file(model.join(format!("note-{n}.txt"))).unwrap();
    }
    let late = model.join("late.txt");
    let mut add_late = |_, _| std::fs::write(&late, "late").unwrap();
    match convert_gguf(&path, &model, &force, &mut add_late) {
        Err(ConvertError::Output { problem, .. }) => {
            assert_eq!(problem, OutputProblem::ForeignFiles(vec!["late.txt".into()]))
        }
        other => panic!("a file added while converting was replaced: {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&late).unwrap(), "late");
    std::fs::remove_file(&late).unwrap();

    // Only what a conversion wrote (the tokenizer.json is gone, which is fine): replaced.
    convert_gguf(&path, &model, &force, &mut |_, _| {}).expect("a model directory is replaced");
    assert!(model.join("tokenizer.json").is_file());
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(names.iter().all(|name| !name.to_string_lossy().starts_with('.')), "{names:?}");
}

/// `--out` a link to a model directory: the directory it points to is replaced, the link kept.
#[test]
fn force_through_a_link_replaces_the_directory_it_points_to() {
    let dir = scratch("force-link");
    let old = write_gguf(&dir, "old.gguf", &tiny_model(5, true).bytes());
    let new = write_gguf(&dir, "new.gguf", &tiny_model(4, true).bytes());
    let real = dir.join("real");
    convert(&old, &real, 1 << 16).unwrap();
    let link = dir.join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let force = ConvertOptions { overwrite: true, ..ConvertOptions::default() };
    let manifest = convert_gguf(&new, &link, &force, &mut |_, _| {}).unwrap().manifest;
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(Manifest::from_json(&std::fs::read_to_string(real.join("manifest.json")).unwrap()).unwrap(), manifest);
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["link", "new.gguf", "old.gguf", "real"]);
}

/// A conversion killed with SIGKILL leaves `.NAME.converting-PID` (tens of MB) beside its
/// output: the next conversion into it removes those of dead processes holding only files a
/// conversion writes, and says what it removed and what it left.
#[test]
fn leftovers_of_killed_conversions_are_removed_by_the_next() {
    let dir = scratch("leftovers");
    let path = write_gguf(&dir, "tiny.gguf", &tiny_model(4, true).bytes());
    let model = dir.join("m");
    let manifest = convert(&path, &model, 1 << 16).unwrap();
    assert!(manifest.shards.len() > 1, "the test needs several shards");
    let leftover = |what: &str, pid: u32| dir.join(format!(".m.{what}-{pid}"));
    let copy = |to: &Path, files: &[&str]| {
        std::fs::create_dir(to).unwrap();
        for file in files {
            std::fs::copy(model.join(file), to.join(file)).unwrap();
        }
    };
    let shard = manifest.shards[0].file.as_str();
    // Killed while writing shards: complete ones and a partial one, no manifest yet.
    let writing = leftover("converting", dead_pid());
    copy(&writing, &[shard]);
    std::fs::write(writing.join("weights-00002.partial"), [0u8; 100]).unwrap();
    // Killed after its two renames, before removing the old model.
    let replaced = leftover("replaced", dead_pid());
    let all: Vec<&str> =
        manifest.shards.iter().map(|s| s.file.as_str()).chain(["manifest.json", "tokenizer.json"]).collect();
    copy(&replaced, &all);
    // A dead process's, but holding something a conversion does not write: kept.
    let foreign = leftover("converting", dead_pid());
    copy(&foreign, &[shard]);
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    // A running process's (this test's parent): kept.
    let running = leftover("converting", std::os::unix::process::parent_id());
    copy(&running, &[shard]);
    // Another output's: not looked at.
    let other = dir.join(format!(".m2.converting-{}", dead_pid()));
    copy(&other, &[shard]);

    let (status, stderr) = convert_cli(&path, &model, true);
    assert_eq!(status, Some(0), "{stderr}");
    for gone in [&writing, &replaced] {
        assert!(!gone.exists(), "{} is left", gone.display());
        assert!(stderr.contains(&format!("removed {}", gone.display())), "{stderr}");
    }
    for kept in [&foreign, &running, &other] {
        assert!(kept.is_dir(), "{} was removed", kept.display());
    }
    assert_eq!(std::fs::read_to_string(foreign.join("notes.txt")).unwrap(), "mine");
    assert!(stderr.contains(&format!("left {}", foreign.display())) && stderr.contains("notes.txt"), "{stderr}");
    assert!(stderr.contains(&format!("left {}", running.display())) && stderr.contains("still running"), "{stderr}");
    assert!(!stderr.contains(".m2."), "{stderr}");
}

/// Killed between the two renames that replace a model directory, a conversion leaves no
/// output directory, the old model moved aside and the new one complete: the next
/// conversion puts the old one back before anything else.
#[test]
fn a_model_moved_aside_by_a_killed_conversion_is_put_back() {
    let dir = scratch("put-back");
    let old = write_gguf(&dir, "old.gguf", &tiny_model(5, true).bytes());
    let new = write_gguf(&dir, "new.gguf", &tiny_model(4, true).bytes());
    let model = dir.join("m");
    convert(&old, &model, 1 << 16).unwrap();
    let old_files = listing(&model);
    let pid = dead_pid();
    let aside = dir.join(format!(".m.replaced-{pid}"));
    std::fs::rename(&model, &aside).unwrap();
    convert(&new, &dir.join(format!(".m.converting-{pid}")), 1 << 16).unwrap();

    let (status, stderr) = convert_cli(&new, &model, false);
    assert_eq!(status, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("restored {} from {}", model.display(), aside.display())), "{stderr}");
    assert!(stderr.contains("--force replaces it"), "{stderr}");
    assert_eq!(listing(&model), old_files);
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["m", "new.gguf", "old.gguf"]);
}

#[test]
fn chat_templates_are_kept_checked_or_given() {
    let dir = scratch("templates");
    let mut gguf = tiny_model(5, true);
    let inst =
        "{{ bos_token }}{% for message in messages %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endfor %}";
    gguf.set("tokenizer.chat_template", string(inst));
    gguf.remove("tokenizer.ggml.add_bos_token");
    let manifest = convert_bytes(&dir, &gguf.bytes()).unwrap();
    let template = manifest.chat_template.expect("the file's template");
    assert_eq!(template.render(&[Message::user("x")]).unwrap().text, "<|im_start|>[INST] x [/INST]");
    assert_eq!(manifest.format_version, CHAT_TEMPLATE_FORMAT_VERSION);
    assert!(!manifest.architecture.add_bos, "byte-level BPE tokenizers add no BOS by default");

    // A template webjudge cannot render is refused when converting, naming where it was.
    gguf.set("tokenizer.chat_template", string("{{ '### User: ' + message['content'] }}"));
    let error = convert_bytes(&dir, &gguf.bytes()).unwrap_err();
    assert!(matches!(error, ConvertError::ChatTemplate(_)), "{error}");
    assert!(error.to_string().starts_with("chat template (GGUF tokenizer.chat_template): "), "{error}");

    // Without one the model converts; --chat-template supplies one.
    gguf.remove("tokenizer.chat_template");
    let manifest = convert_bytes(&dir, &gguf.bytes()).unwrap();
    assert_eq!((manifest.chat_template, manifest.format_version), (None, CHAT_TEMPLATE_FORMAT_VERSION));
    let path = write_gguf(&dir, "untemplated.gguf", &gguf.bytes());
    let given = TemplateText { origin: "judge.jinja".into(), jinja: inst.into() };
    let options = ConvertOptions { overwrite: true, chat_template: Some(given), ..Default::default() };
    let manifest = convert_gguf(&path, &dir.join("given"), &options, &mut |_, _| {}).unwrap().manifest;
    assert_eq!(manifest.chat_template.as_ref().map(ChatTemplate::origin), Some("judge.jinja"));
}

/// Through the CLI: a GGUF without a template converts and says so, a judge protocol then
/// names the template it needs, and `--chat-template FILE` supplies one.
#[test]
fn chat_template_flag_and_its_absence_through_the_cli() {
    let dir = scratch("template-cli");
    let mut gguf = tiny_model(5, true);
    gguf.remove("tokenizer.chat_template");
    let path = write_gguf(&dir, "untemplated.gguf", &gguf.bytes());
    let webjudge = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_webjudge"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status.success(), text(&output.stdout), text(&output.stderr))
    };
    let (bare, templated) = (dir.join("bare"), dir.join("templated"));
    let (ok, stdout, stderr) = webjudge(&["convert", path.to_str().unwrap(), "--out", bare.to_str().unwrap()], "");
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(
            "chat template: none (generation from plain text works; judging needs one: --chat-template FILE)"
        ),
        "{stdout}"
    );
    let row = r#"{"prompt": "q", "response": "r"}"#;
    let (ok, _, stderr) = webjudge(&["prompt", "--protocol", "single", "--model", bare.to_str().unwrap()], row);
    assert!(!ok);
    assert!(stderr.contains("protocol single needs the model's chat template (Auto-J's: LLaMA-2's"), "{stderr}");

    let template = dir.join("judge.jinja");
    std::fs::write(&template, "{{ bos_token }}{% for m in messages %}<user>{{ m.content }}</user>{% endfor %}")
        .unwrap();
    let args = ["convert", path.to_str().unwrap(), "--out", templated.to_str().unwrap(), "--chat-template"];
    let (ok, stdout, stderr) = webjudge(&[&args[..], &[template.to_str().unwrap()]].concat(), "");
    assert!(ok, "{stderr}");
    assert!(stdout.contains("chat template: judge.jinja"), "{stdout}");
    let (ok, stdout, stderr) =
        webjudge(&["prompt", "--protocol", "single", "--model", templated.to_str().unwrap()], row);
    assert!(ok, "{stderr}");
    let input: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let input = input["input"].as_str().unwrap();
    assert!(input.starts_with("<|im_start|><user>Write critiques") && input.ends_with("</user>"), "{input}");
}

/// Llama 3's RoPE scaling arrives in a GGUF as llama.cpp's `rope_freqs.weight` (one f32
/// divisor per rotated pair), a linear scaling as metadata: both become the architecture's
/// divisors (a model directory of format version 5), and the tensor is not kept as a weight.
/// A scaling webjudge does not implement, or both at once, is refused by name.
#[test]
fn rope_scaling_becomes_the_architecture_s_divisors() {
    let divisors: Vec<f32> = (0..HEAD_DIM / 2).map(|i| 1.0 + i as f32 * 0.75).collect();
    let mut llama3 = tiny_model(9, false);
    let data = divisors.iter().flat_map(|d| d.to_le_bytes()).collect();
    llama3.tensors.push(Tensor { name: "rope_freqs.weight".into(), dims: vec![HEAD_DIM / 2], ggml_type: F32, data });
    let manifest = convert_bytes(&scratch("rope-llama3"), &llama3.bytes()).unwrap();
    assert_eq!(manifest.architecture.rope_frequency_divisors, divisors);
    assert_eq!(manifest.format_version, ROPE_SCALING_FORMAT_VERSION);
    assert!(manifest.tensors.iter().all(|t| t.name != "rope_freqs.weight"));

    let mut linear = tiny_model(9, false);
    linear.set("llama.rope.scaling.type", string("linear"));
    linear.set("llama.rope.scaling.factor", GgufValue::F32(4.0));
    let manifest = convert_bytes(&scratch("rope-linear"), &linear.bytes()).unwrap();
    assert_eq!(manifest.architecture.rope_frequency_divisors, vec![4.0; HEAD_DIM as usize / 2]);

    let mut both = linear.clone();
    both.tensors.push(llama3.tensors.last().unwrap().clone());
    let error = convert_bytes(&scratch("rope-both"), &both.bytes()).unwrap_err().to_string();
    assert!(error.contains("both linear RoPE scaling and rope_freqs.weight"), "{error}");
    let mut yarn = tiny_model(9, false);
    yarn.set("llama.rope.scaling.type", string("yarn"));
    let error = convert_bytes(&scratch("rope-yarn"), &yarn.bytes()).unwrap_err().to_string();
    assert!(error.contains("RoPE scaling \"yarn\" is not supported"), "{error}");
}

/// A file whose RoPE rotates only part of each head (Phi-4-mini's `phi3` files) is refused
/// naming the key, as is a value length other than the key length.
#[test]
fn partial_rope_is_refused_by_name() {
    let mut partial = tiny_model(9, false);
    partial.set("llama.rope.dimension_count", GgufValue::U32(HEAD_DIM as u32 / 2));
    let error = convert_bytes(&scratch("rope-partial"), &partial.bytes()).unwrap_err().to_string();
    assert!(error.contains("llama.rope.dimension_count 8: the model rotates only part of each head of 16"), "{error}");
    let mut values = tiny_model(9, false);
    values.set("llama.attention.value_length", GgufValue::U32(HEAD_DIM as u32 * 2));
    let error = convert_bytes(&scratch("value-length"), &values.bytes()).unwrap_err().to_string();
    assert!(error.contains("llama.attention.value_length 32 differs from the key length 16"), "{error}");
}

// ---------------------------------------------------------------------------------
// Malformed files.

#[test]
fn every_truncation_is_an_error() {
    let bytes = tiny_model(6, false).bytes();
    let data_offset = parse(&bytes).unwrap().data_offset as usize;
    let lengths = (0..data_offset + 256).chain((data_offset + 256..bytes.len()).step_by(61));
    for length in lengths {
        match parse(&bytes[..length]) {
            Err(GgufError::Truncated { offset, file_size, .. }) => {
                assert_eq!(file_size, length as u64);
                assert!(offset <= length as u64);
            }
            Err(GgufError::TooLarge { .. } | GgufError::OutOfBounds { .. }) => {}
            other => panic!("prefix of {length} bytes: {other:?}"),
        }
    }
    let dir = scratch("truncated");
    for length in [0, 3, 20, data_offset - 1, data_offset + 1, bytes.len() - 1] {
        assert!(matches!(convert_bytes(&dir, &bytes[..length]), Err(ConvertError::Gguf(_))), "prefix of {length}");
    }
}

#[test]
fn bad_magic_and_versions_are_named() {
    let mut bytes = tiny_model(7, true).bytes();
    bytes[..4].copy_from_slice(b"GGML");
    match parse(&bytes) {
        Err(e @ GgufError::BadMagic { .. }) => {
            assert!(e.to_string().contains("47 47 4d 4c") || e.to_string().contains("GGML"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    for version in [0, 1, 4, 0x0300_0000] {
        let mut gguf = tiny_model(7, true);
        gguf.version = version;
        assert!(matches!(parse(&gguf.bytes()), Err(GgufError::UnsupportedVersion { version: v }) if v == version));
    }
}

/// Offsets of the first metadata key's length and of its value.
fn header_field_offsets(gguf: &Gguf) -> (usize, usize) {
    // After magic, version, tensor count and metadata count.
    let first_key_len = 4 + 4 + 8 + 8;
    let first_value = first_key_len + 8 + gguf.metadata[0].0.len() + 4;
    (first_key_len, first_value)
}

#[test]
fn absurd_counts_and_lengths_are_rejected_before_allocating() {
    let gguf = tiny_model(8, true);
    let bytes = gguf.bytes();
    let (first_key_len, first_value) = header_field_offsets(&gguf);
    let patch = |at: usize, value: u64| {
        let mut bytes = bytes.clone();
        bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        bytes
    };
    for huge in [u64::MAX, 1 << 40, bytes.len() as u64] {
        for (at, what) in [(8, "tensor count"), (16, "metadata count"), (first_key_len, "metadata key length")] {
            match parse(&patch(at, huge)) {
                Err(GgufError::TooLarge { what: w, count, .. }) => {
                    assert!(w.starts_with(what), "{w}");
                    assert_eq!(count, huge);
                }
                other => panic!("{what} = {huge}: {other:?}"),
            }
        }
        // general.architecture's string value.
        assert!(matches!(parse(&patch(first_value, huge)), Err(GgufError::TooLarge { .. })));
    }

    // An array claiming more items than the file holds.
    let mut one_array = gguf.clone();
    one_array.metadata = vec![("big".into(), GgufArray::U64(vec![1]).into())];
    one_array.tensors.clear();
    let mut bytes = one_array.bytes();
    let count_at = 24 + 8 + 3 + 4 + 4;
    bytes[count_at..count_at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(parse(&bytes), Err(GgufError::TooLarge { .. })));

    // Unknown value types, too many dims and arrays nested without end are malformed.
    let mut bytes = one_array.bytes();
    bytes[24 + 8 + 3..24 + 8 + 3 + 4].copy_from_slice(&13u32.to_le_bytes());
    assert!(matches!(parse(&bytes), Err(GgufError::Malformed { .. })));
    let mut deep = GgufArray::U8(vec![0]);
    for _ in 0..8 {
        deep = GgufArray::Array(vec![deep]);
    }
    one_array.metadata = vec![("deep".into(), deep.into())];
    assert!(matches!(parse(&one_array.bytes()), Err(GgufError::Malformed { .. })));
    let mut five_dims = tiny_model(8, true);
    five_dims.tensors[0].dims = vec![1, 1, 1, 1, 1];
    assert!(matches!(parse(&five_dims.bytes()), Err(GgufError::Malformed { .. })));
}

#[test]
fn tensor_data_must_lie_aligned_inside_the_file() {
    let gguf = tiny_model(9, true);
    let bytes = gguf.bytes();
    let file = parse(&bytes).unwrap();
    // The last tensor info's offset field sits just before the data section's padding.
    let mut header_end = 24;
    for (key, value) in &gguf.metadata {
        let mut entry = Vec::new();
        put_string(&mut entry, key);
        put_value(&mut entry, value);
        header_end += entry.len() + 4;
    }
    for tensor in &gguf.tensors {
        header_end += 8 + tensor.name.len() + 4 + 8 * tensor.dims.len() + 4 + 8;
    }
    let last_offset_at = header_end - 8;
    let last = &file.tensors.last().unwrap();
    assert_eq!(u64::from_le_bytes(bytes[last_offset_at..header_end].try_into().unwrap()), last.offset);

    let patch = |offset: u64| {
        let mut bytes = bytes.clone();
        bytes[last_offset_at..header_end].copy_from_slice(&offset.to_le_bytes());
        parse(&bytes)
    };
    assert!(matches!(patch(last.offset + 1), Err(GgufError::Misaligned { alignment: 64, .. })));
    assert!(matches!(patch(1 << 30), Err(GgufError::OutOfBounds { .. })));
    assert!(matches!(patch(u64::MAX - 63), Err(GgufError::OutOfBounds { .. })));

    let mut bad_alignment = gguf.clone();
    bad_alignment.set("general.alignment", GgufValue::U32(48));
    bad_alignment.alignment = 48;
    assert!(matches!(parse(&bad_alignment.bytes()), Err(GgufError::BadAlignment(48))));
    bad_alignment.set("general.alignment", string("64"));
    assert!(matches!(parse(&bad_alignment.bytes()), Err(GgufError::MetadataType { .. })));
}

#[test]
fn wrong_tensors_and_metadata_are_named() {
    let dir = scratch("wrong");
    let base = tiny_model(10, true);
    let convert_variant = |change: &dyn Fn(&mut Gguf)| {
        let mut gguf = base.clone();
        change(&mut gguf);
        convert_bytes(&dir, &gguf.bytes())
    };

    match convert_variant(&|g| g.tensor_mut("blk.1.attn_q.weight").dims = vec![HIDDEN, 32]) {
        Err(ConvertError::Shape { name, expected, .. }) => {
            assert_eq!(name, "blk.1.attn_q.weight");
            assert_eq!(expected, vec![64, 64]);
        }
        other => panic!("{other:?}"),
    }
    let missing = convert_variant(&|g| g.tensors.retain(|t| t.name != "blk.0.ffn_up.weight"));
    assert!(matches!(missing, Err(ConvertError::MissingTensor(n)) if n == "blk.0.ffn_up.weight"));
    // Phi-3's LongRoPE factors: a tensor webjudge does not read.
    let extra = convert_variant(&|g| {
        let mut rope = g.tensor("blk.0.attn_norm.weight").clone();
        rope.name = "rope_factors_long.weight".into();
        g.tensors.push(rope);
    });
    assert!(matches!(extra, Err(ConvertError::UnexpectedTensor(n)) if n == "rope_factors_long.weight"));
    // Llama 3's divisors, one per rotated pair, not one per hidden value.
    let misshapen = convert_variant(&|g| {
        let mut rope = g.tensor("blk.0.attn_norm.weight").clone();
        rope.name = "rope_freqs.weight".into();
        g.tensors.push(rope);
    });
    assert!(matches!(misshapen, Err(ConvertError::Shape { name, .. }) if name == "rope_freqs.weight"));
    // A name with control bytes would reach the terminal raw: refused, and shown escaped.
    let escape = convert_variant(&|g| g.tensor_mut("blk.0.attn_norm.weight").name = "blk.0\u{1b}[2J".into());
    let message = escape.unwrap_err().to_string();
    assert!(
        message.contains(r#""blk.0\u{1b}[2J" contains control characters"#) && !message.contains('\u{1b}'),
        "{message}"
    );
    // Q4_0 rows must hold whole blocks of 32.
    let split_block = convert_variant(&|g| g.tensor_mut("blk.0.attn_q.weight").dims = vec![16, 128]);
    assert!(matches!(split_block, Err(ConvertError::Gguf(GgufError::BadShape { .. }))));

    let mut rng = SmallRng::seed_from_u64(11);
    let k_quant = random_tensor(&mut rng, "blk.1.ffn_down.weight", &[FFN, HIDDEN], Q3_K);
    match convert_variant(&|g| *g.tensor_mut("blk.1.ffn_down.weight") = k_quant.clone()) {
        Err(e @ ConvertError::UnsupportedType { .. }) => {
            let message = e.to_string();
            assert!(message.contains("Q3_K") && message.contains("blk.1.ffn_down.weight"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let mut unknown = k_quant.clone();
    unknown.ggml_type = 16; // IQ2_XXS
    match convert_variant(&|g| *g.tensor_mut("blk.1.ffn_down.weight") = unknown.clone()) {
        Err(ConvertError::UnsupportedType { type_name, .. }) => assert_eq!(type_name, "IQ2_XXS"),
        other => panic!("{other:?}"),
    }

    // Q4_0 with a scale whose -8d overflows f16 has no exact q4 form.
    let overflow = convert_variant(&|g| {
        let tensor = g.tensor_mut("blk.0.attn_q.weight");
        tensor.data[..2].copy_from_slice(&f16::from_f32(10000.0).to_le_bytes());
    });
    assert!(matches!(overflow, Err(ConvertError::Value { tensor, .. }) if tensor == "blk.0.attn_q.weight"));

    let other_arch = convert_variant(&|g| g.set("general.architecture", string("gemma2")));
    assert!(matches!(other_arch, Err(ConvertError::Architecture(a)) if a == "gemma2"));
    let no_layers = convert_variant(&|g| g.remove("llama.block_count"));
    assert!(matches!(no_layers, Err(ConvertError::MissingKey(k)) if k == "llama.block_count"));
    let wrong_kind = convert_variant(&|g| g.set("llama.block_count", string("two")));
    assert!(matches!(wrong_kind, Err(ConvertError::Gguf(GgufError::MetadataType { .. }))));
    let bad_heads = convert_variant(&|g| g.set("llama.attention.head_count_kv", GgufValue::U32(3)));
    assert!(matches!(bad_heads, Err(ConvertError::InvalidArchitecture(_))));
    let scaled = convert_variant(&|g| g.set("llama.rope.scaling.type", string("yarn")));
    assert!(matches!(scaled, Err(ConvertError::Unsupported(_))));
    let bad_eos = convert_variant(&|g| g.set("tokenizer.ggml.eos_token_id", GgufValue::U32(VOCAB as u32)));
    assert!(matches!(bad_eos, Err(ConvertError::InvalidArchitecture(_))));
    // 1e39 is infinity in f32.
    let infinite_eps = convert_variant(&|g| g.set("llama.attention.layer_norm_rms_epsilon", GgufValue::F64(1e39)));
    assert!(matches!(infinite_eps, Err(ConvertError::InvalidArchitecture(m)) if m.contains("norm_eps inf")));
    let infinite_theta = convert_variant(&|g| g.set("llama.rope.freq_base", GgufValue::F32(f32::INFINITY)));
    assert!(matches!(infinite_theta, Err(ConvertError::InvalidArchitecture(m)) if m.contains("rope_theta inf")));
}

#[test]
fn random_corruption_never_panics() {
    let dir = scratch("fuzz");
    let bytes = tiny_model(12, true).bytes();
    let header = parse(&bytes).unwrap().data_offset as usize;
    let mut rng = SmallRng::seed_from_u64(13);
    for round in 0..3000 {
        let mut corrupt = bytes.clone();
        for _ in 0..rng.random_range(1..5) {
            let at = rng.random_range(0..header);
            corrupt[at] = if rng.random_bool(0.5) { rng.random() } else { corrupt[at] ^ (1 << rng.random_range(0..8)) };
        }
        let parsed = parse(&corrupt);
        // Converting is slower; a sample of the files that still parse goes through it.
        if parsed.is_ok() && round % 10 == 0 {
            let _ = convert_bytes(&dir, &corrupt);
        }
    }
}

// ---------------------------------------------------------------------------------
// The real test model.

#[test]
fn converts_the_test_model() {
    let path = test_model::gguf();
    let dir = scratch("smollm2");
    let out = dir.join("model");
    let manifest = convert(&path, &out, 64 << 20).unwrap();
    let expected = Architecture {
        n_layers: 30,
        hidden: 576,
        n_heads: 9,
        n_kv_heads: 3,
        head_dim: 64,
        ffn: 1536,
        vocab: 49152,
        rope_theta: 100000.0,
        rope_frequency_divisors: Vec::new(),
        qkv_bias: false,
        rope_attention_factor: 1.0,
        norm_eps: 1e-5,
        context_length: 8192,
        tied_embeddings: true,
        bos_id: Some(1),
        eos_ids: vec![2],
        add_bos: false,
    };
    assert_eq!(manifest.architecture, expected);
    assert_eq!(manifest.chat_template, Some(smollm2_template()));
    assert_eq!(manifest.tensors.len(), 2 + 9 * 30);
    let mut dtypes = BTreeMap::new();
    for tensor in &manifest.tensors {
        *dtypes.entry(format!("{:?}", tensor.dtype)).or_insert(0) += 1;
    }
    assert_eq!(dtypes, BTreeMap::from([("F32".into(), 61), ("Q4".into(), 210), ("Q8".into(), 1)]));
    assert_eq!(manifest.tensor("token_embd.weight").unwrap().dtype, DType::Q8);

    // Spot-check values against the GGUF's own bytes, dequantized per the spec.
    let bytes = std::fs::read(&path).unwrap();
    let file = parse(&bytes).unwrap();
    for name in ["blk.0.attn_norm.weight", "blk.0.attn_q.weight", "blk.29.ffn_down.weight", "token_embd.weight"] {
        let info = file.tensor(name).unwrap();
        let range = file.tensor_range(info).unwrap();
        let tensor = Tensor {
            name: name.into(),
            dims: info.dims.clone(),
            ggml_type: info.ggml_type,
            data: bytes[range.start as usize..range.end as usize].to_vec(),
        };
        assert_same_values(name, &read_tensor(&out, &manifest, name), &spec_dequantize(&tensor));
    }
    for shard in &manifest.shards {
        assert_eq!(sha256_hex(&std::fs::read(out.join(&shard.file)).unwrap()), shard.sha256);
    }
    let tokenizer = tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
    assert_eq!(tokenizer.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(tokenizer.get_vocab_size(true), 49152);
}

/// A model directory is input like any other: sizes, names and shapes in its manifest are
/// checked against what exists before anything is read or allocated.
#[test]
fn hostile_manifests_are_refused_before_reading_or_allocating() {
    let dir = scratch("hostile-manifest");
    let path = write_gguf(&dir, "tiny.gguf", &tiny_model(4, true).bytes());
    let model = dir.join("model");
    convert(&path, &model, 1 << 20).unwrap();
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("manifest.json")).unwrap()).unwrap();
    let refused = |edit: &dyn Fn(&mut serde_json::Value), expected: &str| {
        let mut manifest = original.clone();
        edit(&mut manifest);
        let error = Manifest::from_json(&manifest.to_string()).expect_err(expected).to_string();
        assert!(error.contains(expected), "{error:?} does not say {expected:?}");
        manifest
    };
    refused(&|m| m["architecture"]["n_layers"] = 1_000_000_000_000u64.into(), "1000000000000 layers, but only");
    refused(&|m| m["architecture"]["n_layers"] = (usize::MAX / 2).into(), "does not fit in 64 bits");
    refused(&|m| m["architecture"]["context_length"] = (1u64 << 62).into(), "KV cache");
    refused(&|m| m["architecture"]["hidden"] = (1u64 << 33).into(), "does not fit in 32 bits");
    refused(&|m| m["architecture"]["ffn"] = 1024.into(), "the architecture needs [1024");
    refused(&|m| m["tensors"][0]["shape"] = serde_json::json!([1u64 << 32, 1u64 << 32]), "more than 2^40 values");
    refused(&|m| m["tensors"][0]["parts"][0]["rows"] = usize::MAX.into(), "do not cover the rows");
    // 1e39 is infinity in f32: every norm would divide by it.
    refused(&|m| m["architecture"]["norm_eps"] = 1e39.into(), "norm_eps inf is not within (0, 0.01]");
    refused(&|m| m["architecture"]["norm_eps"] = 0.5.into(), "norm_eps 0.5 is not within (0, 0.01]");
    refused(&|m| m["architecture"]["rope_theta"] = 1e39.into(), "rope_theta inf is not within [1, 1e12]");
    refused(&|m| m["architecture"]["rope_theta"] = 0.5.into(), "rope_theta 0.5 is not within [1, 1e12]");
    // Every byte of a shard is read into memory: each must be backed by the tensor parts in it.
    let unused = |m: &mut serde_json::Value| {
        let shard = serde_json::json!({"file": "unused.bin", "size": 1u64 << 40, "sha256": "0".repeat(64)});
        m["shards"].as_array_mut().unwrap().push(shard);
    };
    refused(&unused, "shard unused.bin holds no tensor part");
    let first_shard_size = original["shards"][0]["size"].as_u64().unwrap();
    refused(
        &|m| m["shards"][0]["size"] = (first_shard_size + 4096).into(),
        &format!("is {} bytes, more than the", first_shard_size + 4096),
    );
    // Through the CLI: a clear error (exit 1), nothing opened.
    let generate_fails = |manifest: &serde_json::Value| {
        std::fs::write(model.join("manifest.json"), manifest.to_string()).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_webjudge"))
            .args(["generate", "--model", model.to_str().unwrap(), "--prompt", "hi", "--max-tokens", "1"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        stderr
    };
    for name in ["../../../../etc/passwd", "/etc/passwd", "sub/weights.bin", ".hidden", "", "a\\b"] {
        let manifest = refused(&|m| m["shards"][0]["file"] = name.into(), "is not a plain file name");
        let stderr = generate_fails(&manifest);
        assert!(stderr.contains("not a plain file name") && !stderr.contains("bytes"), "{stderr}");
    }

    // A shard replaced by a device is refused by its metadata, before the GPU.
    let shard = model.join(original["shards"][0]["file"].as_str().unwrap());
    std::fs::remove_file(&shard).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &shard).unwrap();
    let stderr = generate_fails(&original);
    assert!(stderr.contains("not a regular file") && stderr.contains(&*shard.to_string_lossy()), "{stderr}");

    // A 1 TiB sparse shard that no tensor uses: refused, not an allocation that aborts.
    let mut manifest = original.clone();
    unused(&mut manifest);
    std::fs::File::create(model.join("unused.bin")).unwrap().set_len(1 << 40).unwrap();
    let stderr = generate_fails(&manifest);
    assert!(stderr.contains("shard unused.bin holds no tensor part"), "{stderr}");
}

/// Runs the webjudge binary bounded as a hostile file needs: within 2 GiB of address space (a
/// read without end fails fast instead of taking the machine's memory) and 60 seconds (a read
/// that blocks fails the test instead of hanging it). Its output must fit a pipe's buffer.
fn webjudge_bounded(args: &[&OsStr]) -> Output {
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -v 2097152 && exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_webjudge")])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("webjudge {args:?} still ran after 60 s: a read blocks");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A FIFO or a device in place of any file a command reads is refused at once, by name:
/// nothing blocks on a FIFO or reads /dev/zero without end; nor is a huge file read.
#[test]
fn special_files_are_refused_without_reading_them() {
    let dir = scratch("special-files");
    let gguf = write_gguf(&dir, "tiny.gguf", &tiny_model(4, true).bytes());
    let model = dir.join("model");
    convert(&gguf, &model, 1 << 20).unwrap();
    let hf = dir.join("hf");
    std::fs::create_dir(&hf).unwrap();
    common::hf::write_metadata(&hf, &tiny_architecture(true));
    let (manifest, tokenizer) = (model.join("manifest.json"), model.join("tokenizer.json"));
    let (prompts, input, verdicts) = (dir.join("prompts.jsonl"), dir.join("rows.jsonl"), dir.join("verdicts.jsonl"));
    let out = dir.join("out");
    let o = OsStr::new;
    let m = model.as_os_str();
    let cases: [(&Path, Vec<&OsStr>); 13] = [
        (&manifest, vec![o("judge"), o("--model"), m, o("--query"), o("q"), o("--response"), o("r")]),
        (&manifest, vec![o("prompt"), o("--protocol"), o("single"), o("--model"), m]),
        (&manifest, vec![o("generate"), o("--model"), m, o("--prompt"), o("hi")]),
        (&tokenizer, vec![o("tokenize"), o("--model"), m, o("--text"), o("hi")]),
        (&tokenizer, vec![o("prompt"), o("--protocol"), o("single"), o("--model"), m, o("--ids")]),
        (&prompts, vec![o("generate"), o("--model"), m, o("--prompts"), prompts.as_os_str()]),
        (&prompts, vec![o("bench"), o("--model"), m, o("--text-file"), prompts.as_os_str()]),
        (
            &input,
            vec![o("judge"), o("--model"), m, o("--input"), input.as_os_str(), o("--output"), verdicts.as_os_str()],
        ),
        (&gguf, vec![o("convert"), gguf.as_os_str(), o("--out"), out.as_os_str()]),
        (&hf.join("config.json"), vec![o("convert"), hf.as_os_str(), o("--out"), out.as_os_str()]),
        (&hf.join("tokenizer_config.json"), vec![o("convert"), hf.as_os_str(), o("--out"), out.as_os_str()]),
        (&hf.join("tokenizer.json"), vec![o("convert"), hf.as_os_str(), o("--out"), out.as_os_str()]),
        (&hf.join("model.safetensors"), vec![o("convert"), hf.as_os_str(), o("--out"), out.as_os_str()]),
    ];
    for (file, args) in &cases {
        let saved = file.with_extension("saved");
        let existed = std::fs::rename(file, &saved).is_ok();
        for (described, make) in [("a FIFO", make_fifo as fn(&Path)), ("a character device", link_to_dev_zero)] {
            make(file);
            let run = webjudge_bounded(args);
            let stderr = String::from_utf8_lossy(&run.stderr);
            let expected = format!("{}: {described}, not a regular file", file.display());
            assert!(stderr.contains(&expected), "{args:?} with {described} as {}: {stderr}", file.display());
            assert_eq!(run.status.code(), Some(1), "{args:?}: {stderr}");
            std::fs::remove_file(file).unwrap();
        }
        if existed {
            std::fs::rename(&saved, file).unwrap();
        }
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }

    // A file read whole must be within the limit of its kind: refused before it is read.
    for ((file, args), limit) in
        [(&cases[0], "64 MiB (67108864 bytes) a manifest"), (&cases[3], "128 MiB (134217728 bytes) a tokenizer")]
    {
        let saved = file.with_extension("saved");
        std::fs::rename(file, &saved).unwrap();
        std::fs::File::create(file).unwrap().set_len(300 << 20).unwrap();
        let run = webjudge_bounded(args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        let expected = format!("{}: 314572800 bytes, more than the {limit} may have", file.display());
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
        assert_eq!(run.status.code(), Some(1), "{args:?}: {stderr}");
        std::fs::rename(&saved, file).unwrap();
    }
}

fn make_fifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success(), "mkfifo {}", path.display());
}

fn link_to_dev_zero(path: &Path) {
    std::os::unix::fs::symlink("/dev/zero", path).unwrap();
}

/// Counts the bytes each thread holds allocated, and the most it has held, so a test can
/// bound what one call takes while other tests run beside it.
struct CountingAllocator;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: a thread's counters are gone while it exits.
    let _ = HELD.try_with(|held| {
        held.set(held.get() + delta);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(held.get())));
    });
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        new
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }
}

/// What `f` returns, and the most bytes it held allocated at once on this thread.
fn peak_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = HELD.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    let value = f();
    (value, (PEAK.with(Cell::get) - start) as usize)
}

/// Metadata arrays take memory in proportion to their bytes in the file: a 40 MB array of
/// bytes or a 36 MB array of one-byte strings is read into about as much, not 31 or 7 times
/// as much.
#[test]
fn large_metadata_arrays_take_memory_in_proportion_to_the_file() {
    let arrays = [
        ("bytes", GgufArray::U8(vec![7; 40 << 20])),
        ("strings", GgufArray::String(std::iter::repeat_n("a", 4 << 20).collect())),
    ];
    for (name, array) in arrays {
        let gguf =
            Gguf { version: 3, metadata: vec![("big".into(), array.into())], tensors: Vec::new(), alignment: 32 };
        let bytes = gguf.bytes();
        let (file, peak) = peak_allocation(|| parse(&bytes));
        assert!(file.unwrap().metadata.contains_key("big"));
        let bound = bytes.len() + bytes.len() / 4 + (1 << 20);
        assert!(peak < bound, "{name}: {peak} bytes held for a {}-byte file (at most {bound})", bytes.len());
    }
}

/// `--imatrix-text` where it cannot weigh anything is refused before any work: with a GGUF
/// input (imported without requantizing) and with a choice that has no search to weigh.
#[test]
fn imatrix_text_is_refused_where_it_does_not_apply() {
    let dir = scratch("imatrix-refused");
    let gguf = write_gguf(&dir, "tiny.gguf", &tiny_model(5, true).bytes());
    let text = dir.join("calibration.txt");
    std::fs::write(&text, "The response is correct.").unwrap();
    let hf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mistral_tiny");
    let run = |input: &Path, quant: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_webjudge"))
            .arg("convert")
            .arg(input)
            .arg("--out")
            .arg(dir.join("out"))
            .args(quant)
            .arg("--imatrix-text")
            .arg(&text)
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let gguf_error = run(&gguf, &[]);
    assert!(gguf_error.contains("--imatrix-text apply to Hugging Face checkpoint directories"), "{gguf_error}");
    let q8_error = run(&hf, &["--quant", "q8"]);
    assert!(
        q8_error.contains("--imatrix-text applies to q4, q4_k, q5_k, q6_k, q4_k_m, q5_k_m; q8 does not"),
        "{q8_error}"
    );
    assert!(!dir.join("out").exists());
}

/// Tensor parts' packed bytes by tensor name and part index.
type Parts = BTreeMap<(String, usize), Vec<u8>>;

/// Streams the GGUF `files` (one, or a split model's parts, each with the sha256 expected of
/// it) as a download delivers them, from headers read by growing prefixes, in chunks of
/// `chunk` bytes, of which `delivered` arrive (all the files end to end, fewer, or more):
/// each part handed on, by tensor name and part index, and how the stream ended.
fn stream_gguf(
    files: &[(&[u8], Option<&str>)],
    delivered: &[u8],
    chunk: usize,
) -> (Parts, Result<StreamedModel, ConvertError>) {
    let read_header = |bytes: &[u8]| {
        let mut prefix = 256;
        loop {
            match GgufFile::read_prefix(&bytes[..prefix.min(bytes.len())], bytes.len() as u64).unwrap() {
                Some(header) => break header,
                None => prefix *= 2,
            }
        }
    };
    let header = match files {
        [(bytes, _)] => read_header(bytes),
        parts => GgufFile::join_splits(parts.iter().map(|(bytes, _)| read_header(bytes)).collect()).unwrap(),
    };
    let joined = files.iter().flat_map(|(bytes, _)| bytes.iter().copied()).collect::<Vec<u8>>();
    let range = |r: std::ops::Range<u64>| Ok::<_, ConvertError>(joined[r.start as usize..r.end as usize].to_vec());
    let apart = GgufPlan::read_apart(&header, range).unwrap();
    let plan = GgufPlan::new(&header, None, &ImportOptions::default(), &apart).unwrap();
    let streamed_files = files
        .iter()
        .map(|(bytes, sha256)| StreamedFile { size: bytes.len() as u64, expected_sha256: sha256.map(String::from) })
        .collect();
    let mut stream = GgufStream::new(plan, streamed_files, DEFAULT_SHARD_BYTES);
    let mut parts = BTreeMap::new();
    for piece in delivered.chunks(chunk) {
        let mut keep = |entry: &TensorEntry, part: usize, packed: &[u8]| {
            let repeated = parts.insert((entry.name.clone(), part), packed.to_vec()).is_some();
            assert!(!repeated, "{} part {part} twice", entry.name);
        };
        if let Err(error) = stream.push(piece, &mut keep) {
            return (parts, Err(error));
        }
    }
    (parts, stream.finish())
}

/// The parts of a converted directory, by tensor name and part index.
fn written_parts(dir: &Path, manifest: &Manifest) -> Parts {
    let shards: Vec<Vec<u8>> = manifest.shards.iter().map(|s| std::fs::read(dir.join(&s.file)).unwrap()).collect();
    let mut parts = BTreeMap::new();
    for tensor in &manifest.tensors {
        for (index, part) in tensor.parts.iter().enumerate() {
            let bytes = shards[part.shard][part.offset as usize..(part.offset + part.length) as usize].to_vec();
            parts.insert((tensor.name.clone(), index), bytes);
        }
    }
    parts
}

/// A GGUF streamed in file order, as the browser downloads it (the header from growing
/// prefixes, then chunks of any size), hands on every part `convert` writes, byte for byte
/// (Q4_1 and Q8_0 of the test model; Qwen2's permuted Q/K rows and biases; Phi-3's fused
/// tensors and LongRoPE factors; Q4_K_M's super-blocks), and the file's sha256; a wrong
/// hash, a missing last byte and an extra byte are refused.
#[test]
fn gguf_streamed_in_file_order_repacks_as_convert_writes() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = scratch("stream");
    let mut cases = vec![(test_model::gguf(), test_model::converted_dir())];
    for name in ["qwen2_tiny.gguf", "phi3_tiny.f16.gguf", "kquant_tiny/q4_k_m.gguf"] {
        let out = dir.join(name.replace('/', "-"));
        convert(&fixtures.join(name), &out, DEFAULT_SHARD_BYTES).unwrap();
        cases.push((fixtures.join(name), out));
    }
    for (gguf, converted) in &cases {
        let bytes = std::fs::read(gguf).unwrap();
        let (manifest, _) = read_metadata(converted).unwrap();
        let sha256 = sha256_hex(&bytes);
        let upper = sha256.to_uppercase();
        let (parts, streamed) = stream_gguf(&[(&bytes, Some(&upper))], &bytes, 1_000_003);
        let streamed = streamed.unwrap_or_else(|e| panic!("{}: {e}", gguf.display()));
        assert_eq!(streamed.sha256, [sha256]);
        assert!(
            parts == written_parts(converted, &manifest),
            "{}: streamed parts differ from convert's",
            gguf.display()
        );
        let names = |m: &Manifest| m.tensors.iter().map(|t| t.name.clone()).collect::<BTreeSet<_>>();
        assert_eq!(names(&streamed.manifest), names(&manifest));
        assert_eq!(streamed.manifest.architecture, manifest.architecture);
    }

    let bytes = std::fs::read(&cases[1].0).unwrap();
    let wrong = "0".repeat(64);
    let refused = stream_gguf(&[(&bytes, Some(&wrong))], &bytes, 4093).1.err().unwrap();
    assert!(
        matches!(&refused, ConvertError::FileHash { expected, found } if *expected == wrong && *found == sha256_hex(&bytes))
    );
    assert!(refused.to_string().contains("nothing of it kept"), "{refused}");
    let short = stream_gguf(&[(&bytes, None)], &bytes[..bytes.len() - 1], 4093).1.err().unwrap();
    assert!(matches!(short, ConvertError::FileSize { expected, received } if received + 1 == expected), "{short}");
    let long = [&bytes[..], &[0]].concat();
    let long = stream_gguf(&[(&bytes, None)], &long, 4093).1.err().unwrap();
    assert!(matches!(long, ConvertError::FileSize { expected, received } if received == expected + 1), "{long}");
}

/// llama.cpp's split files (`gguf-split`: `NAME-00001-of-00002.gguf` …) load directly as the
/// whole file converts (the manifest, to the shard bytes), and stream so too, each part
/// checked against its sha256; a missing part, a part that says it
/// is another, and a first part promising more tensors than the parts hold are refused, naming
/// the problem.
#[test]
fn split_gguf_files_load_as_the_whole_file() {
    let dir = scratch("split");
    let gguf = tiny_model(7, false);
    let manifest = convert(&write_gguf(&dir, "tiny.gguf", &gguf.bytes()), &dir.join("whole"), DEFAULT_SHARD_BYTES);
    let manifest = manifest.unwrap();
    let total = gguf.tensors.len();
    let write_split = |second_no: u16, promised: usize| {
        let split = [("split.count", 2u16), ("split.no", 0)];
        let mut first = Gguf { tensors: gguf.tensors[..total / 2].to_vec(), ..gguf.clone() };
        let alignment = ("general.alignment".to_string(), GgufValue::U32(64));
        let mut second =
            Gguf { tensors: gguf.tensors[total / 2..].to_vec(), metadata: vec![alignment], ..gguf.clone() };
        for (key, value) in split {
            first.set(key, GgufValue::U16(value));
            second.set(key, GgufValue::U16(if key == "split.no" { second_no } else { value }));
        }
        first.set("split.tensors.count", GgufValue::I32(promised as i32));
        write_gguf(&dir, "tiny-00002-of-00002.gguf", &second.bytes());
        write_gguf(&dir, "tiny-00001-of-00002.gguf", &first.bytes())
    };
    let first = write_split(1, total);
    assert_eq!(read_metadata(&first).unwrap().0, manifest);
    // Streamed end to end as the browser downloads them, each part checked against its own
    // sha256 as its last byte arrives (a wrong one before the next part is fetched).
    let files = [std::fs::read(&first).unwrap(), std::fs::read(dir.join("tiny-00002-of-00002.gguf")).unwrap()];
    let hashes = files.each_ref().map(|bytes| sha256_hex(bytes));
    let expected = [(&files[0][..], Some(&hashes[0][..])), (&files[1][..], Some(&hashes[1][..]))];
    let (parts, streamed) = stream_gguf(&expected, &files.concat(), 4093);
    assert_eq!(streamed.unwrap().sha256, hashes);
    assert!(parts == written_parts(&dir.join("whole"), &manifest), "streamed split parts differ from convert's");
    let wrong = "0".repeat(64);
    let refused = stream_gguf(&[(&files[0], Some(&wrong)), (&files[1], None)], &files[0], 4093).1.err().unwrap();
    assert!(matches!(&refused, ConvertError::FileHash { found, .. } if *found == hashes[0]), "{refused}");

    let refused = |path: &Path| read_metadata(path).err().expect("refused").to_string();
    let promising = write_split(1, total + 1);
    let error = refused(&promising);
    assert!(
        error.contains(&format!("split.tensors.count is Some({}), the 2 split parts hold {total}", total + 1)),
        "{error}"
    );
    let misnumbered = write_split(0, total);
    let error = refused(&misnumbered);
    assert!(error.contains("split part 2 of 2 says split.no Some(0)"), "{error}");
    std::fs::remove_file(dir.join("tiny-00002-of-00002.gguf")).unwrap();
    let error = refused(&first);
    assert!(error.contains("tiny-00002-of-00002.gguf"), "{error}");
}

/// A GGUF whose contents are wrong is refused naming the file once, whichever way a command
/// reads it: loaded (`generate`), its header only (`tokenize`), or its manifest made first
/// (`prompt --model`).
#[test]
fn a_broken_gguf_is_refused_naming_the_file_once() {
    let dir = scratch("broken");
    let bytes = tiny_model(4, true).bytes();
    let path = write_gguf(&dir, "cut.gguf", &bytes[..bytes.len() - 1000]);
    let shown = path.display().to_string();
    let commands: [&[&str]; 3] = [
        &["generate", "--model", &shown, "--prompt", "hi", "--max-tokens", "1"],
        &["tokenize", "--model", &shown, "--text", "hi"],
        &["prompt", "--protocol", "single", "--model", &shown],
    ];
    for args in commands {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_webjudge"))
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} accepted a cut file");
        assert_eq!(stderr.matches(&shown).count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("outside the file"), "{args:?}: {stderr}");
    }
}
