//! A Hugging Face `tokenizer.json` from a SentencePiece `tokenizer.model`.
//!
//! The model file is a `sentencepiece.ModelProto` (protobuf), read here by a small reader
//! of our own: field 1, the pieces (`SentencePiece { 1: piece, 2: score, 3: type }`);
//! field 2, the `TrainerSpec` (`model_type` 3, `byte_fallback` 35, `unk_id` 40, `bos_id`
//! 41, `eos_id` 42, `pad_id` 43); field 3, the `NormalizerSpec` (`add_dummy_prefix` 3).
//! Other fields are skipped. Only BPE models (LLaMA-2, Auto-J, Yi) are supported.
//!
//! The pieces become the same `tokenizer.ggml.*` metadata a LLaMA GGUF carries (piece
//! types use the same numbering), and [`tokenizer_json_from_gguf`](super::tokenizer_json_from_gguf)
//! builds the tokenizer, so both paths give what transformers' conversion gives.

use serde_json::Value;

use super::{tokenizer_json_from_gguf, TokenizerError};
use crate::format::gguf::{GgufArray, GgufMetadata, GgufValue};

const WIRE_VARINT: u64 = 0;
const WIRE_FIXED64: u64 = 1;
const WIRE_LEN: u64 = 2;
const WIRE_FIXED32: u64 = 5;

const MODEL_UNIGRAM: u64 = 1;
const MODEL_BPE: u64 = 2;

/// SentencePiece's `NORMAL` piece type, the default.
const TYPE_NORMAL: i32 = 1;

/// A parsed `tokenizer.model`, as far as a tokenizer needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct SentencePieceModel {
    pub pieces: Vec<String>,
    pub scores: Vec<f32>,
    /// SentencePiece's types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    pub types: Vec<i32>,
    pub unk_id: Option<u32>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub pad_id: Option<u32>,
    pub byte_fallback: bool,
    pub add_dummy_prefix: bool,
}

/// Builds a `tokenizer.json` (as a string) from a `tokenizer.model`'s bytes. `add_bos` and
/// `add_eos` are `tokenizer_config.json`'s flags where it has them (defaults: BOS yes, EOS no).
pub fn tokenizer_json_from_sentencepiece(
    model: &[u8],
    add_bos: Option<bool>,
    add_eos: Option<bool>,
) -> Result<String, TokenizerError> {
    let model = SentencePieceModel::parse(model)?;
    tokenizer_json_from_gguf(&model.to_gguf_metadata(add_bos.unwrap_or(true), add_eos.unwrap_or(false)))
}

impl SentencePieceModel {
    pub fn parse(bytes: &[u8]) -> Result<Self, TokenizerError> {
        let mut model = Self {
            pieces: Vec::new(),
            scores: Vec::new(),
            types: Vec::new(),
            unk_id: Some(0),
            bos_id: Some(1),
            eos_id: Some(2),
            pad_id: None,
            byte_fallback: false,
            add_dummy_prefix: true,
        };
        // proto2 default: a model without a trainer spec, or one without the field, is unigram.
        let mut model_type = MODEL_UNIGRAM;
        let (mut unk, mut bos, mut eos, mut pad) = (0i64, 1i64, 2i64, -1i64);
        for field in Reader::new(bytes, "ModelProto") {
            let field = field?;
            match field.number {
                1 => {
                    let (piece, score, kind) = parse_piece(field.bytes("ModelProto.pieces")?, model.pieces.len())?;
                    model.pieces.push(piece);
                    model.scores.push(score);
                    model.types.push(kind);
                }
                2 => {
                    for spec in Reader::new(field.bytes("ModelProto.trainer_spec")?, "TrainerSpec") {
                        let spec = spec?;
                        match spec.number {
                            3 => model_type = spec.varint("TrainerSpec.model_type")?,
                            35 => model.byte_fallback = spec.varint("TrainerSpec.byte_fallback")? != 0,
                            40 => unk = spec.int32("TrainerSpec.unk_id")?,
                            41 => bos = spec.int32("TrainerSpec.bos_id")?,
                            42 => eos = spec.int32("TrainerSpec.eos_id")?,
                            43 => pad = spec.int32("TrainerSpec.pad_id")?,
                            _ => {}
                        }
                    }
                }
                3 => {
                    for spec in Reader::new(field.bytes("ModelProto.normalizer_spec")?, "NormalizerSpec") {
                        let spec = spec?;
                        if spec.number == 3 {
                            model.add_dummy_prefix = spec.varint("NormalizerSpec.add_dummy_prefix")? != 0;
                        }
                    }
                }
                _ => {}
            }
        }
        match model_type {
            MODEL_BPE => {}
            MODEL_UNIGRAM => {
                return Err(invalid(
                    "it is a UNIGRAM model; webjudge converts only BPE SentencePiece models (LLaMA-2, Yi)".into(),
                ))
            }
            other => {
                return Err(invalid(format!("model type {other} is not supported; webjudge converts only BPE models")))
            }
        }
        if model.pieces.is_empty() {
            return Err(invalid("it has no pieces".into()));
        }
        let n = model.pieces.len();
        let id = |name: &str, id: i64| -> Result<Option<u32>, TokenizerError> {
            match id {
                id if id < 0 => Ok(None),
                id if (id as u64) < n as u64 => Ok(Some(id as u32)),
                id => Err(invalid(format!("TrainerSpec.{name} {id} is outside the vocabulary of {n} pieces"))),
            }
        };
        model.unk_id = id("unk_id", unk)?;
        model.bos_id = id("bos_id", bos)?;
        model.eos_id = id("eos_id", eos)?;
        model.pad_id = id("pad_id", pad)?;
        Ok(model)
    }

    /// The `tokenizer.ggml.*` metadata of a LLaMA GGUF with this vocabulary.
    pub fn to_gguf_metadata(&self, add_bos: bool, add_eos: bool) -> GgufMetadata {
        let mut metadata = GgufMetadata::new();
        let mut set = |key: &str, value: GgufValue| {
            metadata.insert(format!("tokenizer.ggml.{key}"), value);
        };
        set("model", GgufValue::String("llama".into()));
        set("tokens", GgufArray::String(self.pieces.iter().collect()).into());
        set("scores", GgufArray::F32(self.scores.clone()).into());
        set("token_type", GgufArray::I32(self.types.clone()).into());
        for (key, id) in [
            ("bos_token_id", self.bos_id),
            ("eos_token_id", self.eos_id),
            ("unknown_token_id", self.unk_id),
            ("padding_token_id", self.pad_id),
        ] {
            if let Some(id) = id {
                set(key, GgufValue::U32(id));
            }
        }
        set("add_bos_token", GgufValue::Bool(add_bos));
        set("add_eos_token", GgufValue::Bool(add_eos));
        set("add_space_prefix", GgufValue::Bool(self.add_dummy_prefix));
        metadata
    }
}

/// `add_bos_token` / `add_eos_token` from a parsed `tokenizer_config.json`.
pub fn add_flags(tokenizer_config: Option<&Value>) -> (Option<bool>, Option<bool>) {
    let flag = |key: &str| tokenizer_config.and_then(|c| c.get(key)).and_then(Value::as_bool);
    (flag("add_bos_token"), flag("add_eos_token"))
}

fn parse_piece(bytes: &[u8], index: usize) -> Result<(String, f32, i32), TokenizerError> {
    let mut piece = None;
    let mut score = 0.0f32;
    let mut kind = TYPE_NORMAL;
    for field in Reader::new(bytes, "SentencePiece") {
        let field = field?;
        match field.number {
            1 => {
                let text = std::str::from_utf8(field.bytes("SentencePiece.piece")?)
                    .map_err(|_| invalid(format!("piece {index} is not UTF-8")))?;
                piece = Some(text.to_owned());
            }
            2 => score = field.fixed32("SentencePiece.score")?,
            3 => {
                let value = field.varint("SentencePiece.type")?;
                kind = match value {
                    1..=6 => value as i32,
                    other => return Err(invalid(format!("piece {index} has unknown type {other}"))),
                };
            }
            _ => {}
        }
    }
    let piece = piece.ok_or_else(|| invalid(format!("piece {index} has no text")))?;
    Ok((piece, score, kind))
}

fn invalid(problem: String) -> TokenizerError {
    TokenizerError::SentencePiece(problem)
}

/// One field of a message.
struct Field<'a> {
    number: u64,
    value: Wire<'a>,
}

enum Wire<'a> {
    Varint(u64),
    Fixed64,
    Fixed32(u32),
    Bytes(&'a [u8]),
}

impl<'a> Field<'a> {
    fn wrong(&self, name: &str, expected: &str) -> TokenizerError {
        let found = match self.value {
            Wire::Varint(_) => "a varint",
            Wire::Fixed64 => "a 64-bit value",
            Wire::Fixed32(_) => "a 32-bit value",
            Wire::Bytes(_) => "a length-delimited value",
        };
        invalid(format!("{name} (field {}) should be {expected}, found {found}", self.number))
    }

    fn varint(&self, name: &str) -> Result<u64, TokenizerError> {
        match self.value {
            Wire::Varint(v) => Ok(v),
            _ => Err(self.wrong(name, "a varint")),
        }
    }

    /// An `int32`: negative values are written as ten-byte varints.
    fn int32(&self, name: &str) -> Result<i64, TokenizerError> {
        Ok(i64::from(self.varint(name)? as i32))
    }

    fn fixed32(&self, name: &str) -> Result<f32, TokenizerError> {
        match self.value {
            Wire::Fixed32(bits) => Ok(f32::from_bits(bits)),
            _ => Err(self.wrong(name, "a 32-bit float")),
        }
    }

    fn bytes(&self, name: &str) -> Result<&'a [u8], TokenizerError> {
        match self.value {
            Wire::Bytes(bytes) => Ok(bytes),
            _ => Err(self.wrong(name, "length-delimited")),
        }
    }
}

/// The fields of one message, in order; stops after the first error.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    message: &'static str,
    failed: bool,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], message: &'static str) -> Self {
        Self { bytes, pos: 0, message, failed: false }
    }

    fn truncated(&self, what: &str) -> TokenizerError {
        invalid(format!("{} is truncated: {what} at byte {} runs past its end", self.message, self.pos))
    }

    fn varint(&mut self) -> Result<u64, TokenizerError> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = *self.bytes.get(self.pos).ok_or_else(|| self.truncated("a varint"))?;
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return Err(invalid(format!("{}: a varint at byte {} overflows 64 bits", self.message, self.pos - 1)));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(invalid(format!("{}: a varint at byte {} is longer than ten bytes", self.message, self.pos)))
    }

    fn take(&mut self, len: u64, what: &str) -> Result<&'a [u8], TokenizerError> {
        let remaining = (self.bytes.len() - self.pos) as u64;
        if len > remaining {
            return Err(self.truncated(what));
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn field(&mut self) -> Result<Field<'a>, TokenizerError> {
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 {
            return Err(invalid(format!("{}: field number 0 at byte {}", self.message, self.pos)));
        }
        let value = match key & 7 {
            WIRE_VARINT => Wire::Varint(self.varint()?),
            WIRE_FIXED64 => {
                self.take(8, "a 64-bit value")?;
                Wire::Fixed64
            }
            WIRE_LEN => {
                let len = self.varint()?;
                Wire::Bytes(self.take(len, "a length-delimited value")?)
            }
            WIRE_FIXED32 => {
                let bytes = self.take(4, "a 32-bit value")?;
                Wire::Fixed32(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
            }
            wire => {
                return Err(invalid(format!(
                    "{}: field {number} has unsupported wire type {wire} at byte {}",
                    self.message, self.pos
                )))
            }
        };
        Ok(Field { number, value })
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Field<'a>, TokenizerError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.bytes.len() {
            return None;
        }
        let field = self.field();
        self.failed = field.is_err();
        Some(field)
    }
}
