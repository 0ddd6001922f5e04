//! A Hugging Face `tokenizer.json` from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! A GGUF carries no `tokenizer.json`, only llama.cpp's description of the vocabulary.
//! Two kinds are rebuilt here:
//!
//! - `gpt2`, byte-level BPE (SmolLM2, LLaMA-3): vocabulary and merges as stored, with the
//!   pre-tokenizer `tokenizer.ggml.pre` names. Where transformers' GGUF loader ignores
//!   that name (it splits SmolLM2's digits like GPT-2 does), this follows the model's own
//!   `tokenizer.json` and llama.cpp instead, which split every digit apart.
//! - `llama`, SentencePiece-style BPE (LLaMA-2, Auto-J, Yi): what transformers' GGUF
//!   loader builds (a `LlamaTokenizer` with merges recovered from the piece scores), so
//!   ids agree with `AutoTokenizer.from_pretrained(dir, gguf_file=...)`.
//!
//! Control tokens (and the named BOS/EOS/UNK/PAD) become special added tokens and
//! user-defined ones plain added tokens, so text that spells them out gets their id
//! instead of pieces, as in llama.cpp.
//!
//! Phi-3's added tokens take the whitespace after them (`rstrip`, as its `tokenizer.json`
//! says): llama.cpp marks them so when `general.name` names Phi-3 (llama-vocab.cpp: every
//! control, user-defined and unknown token and `</s>`, but not `<unk>`, `<s>` and
//! `<|endoftext|>`). The same is done here for any `phi3` file with Phi-3's SentencePiece
//! vocabulary, whatever its name (a fine-tune such as Flow-Judge's need not name Phi-3),
//! since transformers tokenizes them so; llama.cpp would not strip there.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::TokenizerError;
use crate::format::gguf::{GgufMetadata, GgufMetadataExt};

const MODEL: &str = "tokenizer.ggml.model";
const PRE: &str = "tokenizer.ggml.pre";
const TOKENS: &str = "tokenizer.ggml.tokens";
const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const MERGES: &str = "tokenizer.ggml.merges";
const SCORES: &str = "tokenizer.ggml.scores";
const BOS_ID: &str = "tokenizer.ggml.bos_token_id";
const EOS_ID: &str = "tokenizer.ggml.eos_token_id";
const UNK_ID: &str = "tokenizer.ggml.unknown_token_id";
const PAD_ID: &str = "tokenizer.ggml.padding_token_id";
const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
const NAME: &str = "general.name";
const ARCHITECTURE: &str = "general.architecture";

/// llama.cpp's token types (`tokenizer.ggml.token_type`) that matter here.
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

/// SentencePiece's visible space.
const SPACE: &str = "\u{2581}";

/// LLaMA-3's split regex, as transformers applies it for the `llama-bpe` family.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split regex (LLaMA-3's with single digits), for the `qwen2` family. Qwen2's
/// tokenizer.json also NFC-normalizes; llama.cpp does not, and neither does this.
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Builds a `tokenizer.json` (as a string) from GGUF tokenizer metadata.
pub fn tokenizer_json_from_gguf(metadata: &GgufMetadata) -> Result<String, TokenizerError> {
    let model = metadata.get_str(MODEL)?.ok_or_else(|| missing(MODEL))?;
    let parts = match model {
        "gpt2" => byte_level(metadata)?,
        "llama" => sentencepiece(metadata)?,
        other => return Err(TokenizerError::UnknownModel(other.into())),
    };
    let vocab = Vocab::read(metadata, model == "llama")?;
    let json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": vocab.added_tokens(),
        "normalizer": null,
        "pre_tokenizer": parts.pre_tokenizer,
        "post_processor": vocab.post_processor()?,
        "decoder": parts.decoder,
        "model": parts.model(&vocab, metadata)?,
    });
    Ok(json.to_string())
}

/// The vocabulary and special-token settings both kinds share.
struct Vocab<'a> {
    tokens: Vec<&'a str>,
    /// Empty when the file gives no types (every token then counts as normal).
    types: Vec<i32>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    /// Phi-3's special tokens take the whitespace after them (see the module documentation).
    phi3_rstrip: bool,
}

impl<'a> Vocab<'a> {
    /// `sentencepiece` vocabularies add BOS unless told otherwise, as llama.cpp and
    /// transformers both assume for files that predate the flag.
    fn read(metadata: &'a GgufMetadata, sentencepiece: bool) -> Result<Self, TokenizerError> {
        let tokens = metadata.get_str_array(TOKENS)?.ok_or_else(|| missing(TOKENS))?;
        let types = metadata.get_i32_array(TOKEN_TYPE)?.unwrap_or_default();
        if !types.is_empty() {
            check_len(TOKEN_TYPE, types.len(), tokens.len())?;
        }
        let id = |key: &str| -> Result<Option<u32>, TokenizerError> {
            match metadata.get_u32(key)? {
                Some(id) if id as usize >= tokens.len() => Err(TokenizerError::InvalidMetadata {
                    key: key.into(),
                    problem: format!("id {id} is outside the vocabulary of {} tokens", tokens.len()),
                }),
                id => Ok(id),
            }
        };
        let name = metadata.get_str(NAME)?.unwrap_or_default().to_lowercase();
        let phi3 = metadata.get_str(ARCHITECTURE)? == Some("phi3") && sentencepiece;
        Ok(Self {
            phi3_rstrip: phi3 || ["phi-3", "phi3"].iter().any(|n| name.contains(n)),
            bos: id(BOS_ID)?,
            eos: id(EOS_ID)?,
            unk: id(UNK_ID)?,
            pad: id(PAD_ID)?,
            add_bos: metadata.get_bool(ADD_BOS)?.unwrap_or(sentencepiece),
            add_eos: metadata.get_bool(ADD_EOS)?.unwrap_or(false),
            tokens,
            types,
        })
    }

    fn token(&self, id: Option<u32>) -> Option<&'a str> {
        id.map(|id| self.tokens[id as usize])
    }

    fn added_tokens(&self) -> Vec<Value> {
        let named = [self.unk, self.bos, self.eos, self.pad];
        let mut added = Vec::new();
        for (id, &content) in self.tokens.iter().enumerate() {
            let kind = self.types.get(id).copied();
            let special = kind == Some(TYPE_CONTROL) || named.contains(&Some(id as u32));
            if special || kind == Some(TYPE_USER_DEFINED) {
                let stripping = [Some(TYPE_CONTROL), Some(TYPE_USER_DEFINED), Some(TYPE_UNKNOWN)].contains(&kind)
                    || content == "</s>";
                let rstrip = self.phi3_rstrip && stripping && !["<unk>", "<s>", "<|endoftext|>"].contains(&content);
                added.push(json!({
                    "id": id,
                    "content": content,
                    "single_word": false,
                    "lstrip": false,
                    "rstrip": rstrip,
                    "normalized": false,
                    "special": special,
                }));
            }
        }
        added
    }

    /// `[BOS] $A [EOS]` as the add flags say, the template transformers writes.
    fn post_processor(&self) -> Result<Value, TokenizerError> {
        let named = |add: bool, id: Option<u32>, key: &str| -> Result<Option<(&'a str, u32)>, TokenizerError> {
            if !add {
                return Ok(None);
            }
            let id = id.ok_or_else(|| missing(key))?;
            Ok(Some((self.tokens[id as usize], id)))
        };
        let bos = named(self.add_bos, self.bos, BOS_ID)?;
        let eos = named(self.add_eos, self.eos, EOS_ID)?;
        let special = |token: Option<(&str, u32)>, type_id: u32| {
            token.map(|(content, _)| json!({"SpecialToken": {"id": content, "type_id": type_id}}))
        };
        let sequence = |name: &str, type_id: u32| Some(json!({"Sequence": {"id": name, "type_id": type_id}}));
        let single: Vec<Value> = [special(bos, 0), sequence("A", 0), special(eos, 0)].into_iter().flatten().collect();
        let pair: Vec<Value> = single
            .iter()
            .cloned()
            .chain([special(bos, 1), sequence("B", 1), special(eos, 1)].into_iter().flatten())
            .collect();
        let special_tokens: Map<String, Value> = [bos, eos]
            .into_iter()
            .flatten()
            .map(|(content, id)| (content.to_owned(), json!({"id": content, "ids": [id], "tokens": [content]})))
            .collect();
        Ok(json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special_tokens}))
    }
}

/// The parts that differ between the two kinds.
struct Parts {
    pre_tokenizer: Value,
    decoder: Value,
    sentencepiece: bool,
}

impl Parts {
    /// The BPE model. Byte-level vocabularies cover every byte by construction; SentencePiece
    /// ones fall back to their `<0xXX>` tokens for characters they lack. transformers
    /// leaves the unknown token unset, which silently drops a character whose bytes have
    /// no tokens either; naming it, as LLaMA-2's own `tokenizer.json` does, yields `<unk>`
    /// there instead and changes nothing for vocabularies with all 256 byte tokens.
    fn model(&self, vocab: &Vocab, metadata: &GgufMetadata) -> Result<Value, TokenizerError> {
        let merges = match metadata.get_str_array(MERGES)? {
            Some(merges) => parse_merges(&merges)?,
            None if self.sentencepiece => merges_from_scores(&vocab.tokens, &scores(metadata, vocab.tokens.len())?),
            None => return Err(missing(MERGES)),
        };
        let ids: Map<String, Value> =
            vocab.tokens.iter().enumerate().map(|(id, &token)| (token.to_owned(), json!(id))).collect();
        let unk = if self.sentencepiece { vocab.token(vocab.unk) } else { None };
        Ok(json!({
            "type": "BPE",
            "dropout": null,
            "unk_token": unk,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": self.sentencepiece,
            "byte_fallback": self.sentencepiece,
            "ignore_merges": false,
            "vocab": ids,
            "merges": merges,
        }))
    }
}

fn byte_level(metadata: &GgufMetadata) -> Result<Parts, TokenizerError> {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split_then_bytes = |regex: &str| {
        json!({
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
                byte_level(false),
            ],
        })
    };
    // llama.cpp reads a file without the key as "default".
    let pre_tokenizer = match metadata.get_str(PRE)?.unwrap_or("default") {
        "default" | "gpt-2" => byte_level(true),
        "smollm" => json!({
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)],
        }),
        "llama-bpe" | "llama3" | "llama-v3" => split_then_bytes(LLAMA3_SPLIT),
        "qwen2" => split_then_bytes(QWEN2_SPLIT),
        other => return Err(TokenizerError::UnknownPreTokenizer(other.into())),
    };
    let decoder = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true});
    Ok(Parts { pre_tokenizer, decoder, sentencepiece: false })
}

/// `▁` stands for a space and, with `add_space_prefix` (the default), starts the text;
/// decoding drops that first space again. transformers ignores `add_space_prefix = false`
/// (always prefixing); this honours it, because llama.cpp, which wrote the flag, does.
fn sentencepiece(metadata: &GgufMetadata) -> Result<Parts, TokenizerError> {
    let prefix = metadata.get_bool(ADD_SPACE_PREFIX)?.unwrap_or(true);
    let pre_tokenizer = json!({
        "type": "Metaspace",
        "replacement": SPACE,
        "prepend_scheme": if prefix { "first" } else { "never" },
        "split": false,
    });
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": SPACE}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let decoder = json!({"type": "Sequence", "decoders": decoders});
    Ok(Parts { pre_tokenizer, decoder, sentencepiece: true })
}

/// `"left right"` strings into pairs.
fn parse_merges<'a>(merges: &[&'a str]) -> Result<Vec<(&'a str, &'a str)>, TokenizerError> {
    merges
        .iter()
        .enumerate()
        .map(|(index, merge)| {
            let mut parts = merge.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(left), Some(right), None) => Ok((left, right)),
                _ => Err(TokenizerError::InvalidMetadata {
                    key: MERGES.into(),
                    problem: format!("merge {index} ({merge:?}) is not two tokens separated by one space"),
                }),
            }
        })
        .collect()
}

fn scores(metadata: &GgufMetadata, n_tokens: usize) -> Result<Vec<f32>, TokenizerError> {
    let scores = metadata.get_f32_array(SCORES)?.ok_or_else(|| missing(SCORES))?;
    check_len(SCORES, scores.len(), n_tokens)?;
    Ok(scores)
}

/// The merges a SentencePiece vocabulary implies, exactly as transformers'
/// `generate_merges` recovers them: every split of a piece into two vocabulary tokens,
/// ordered by the piece's score (best first), then by longer left and right halves;
/// splits of one piece by the halves' ids. The sort is stable, like Python's, so
/// remaining ties keep vocabulary order.
fn merges_from_scores<'a>(tokens: &[&'a str], scores: &[f32]) -> Vec<(&'a str, &'a str)> {
    // Python dicts: a repeated token keeps its first position and its last id and score.
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    let mut order: Vec<&str> = Vec::with_capacity(tokens.len());
    let mut best: HashMap<&str, f32> = HashMap::with_capacity(tokens.len());
    for (id, (&token, &score)) in tokens.iter().zip(scores).enumerate() {
        if ids.insert(token, id).is_none() {
            order.push(token);
        }
        best.insert(token, score);
    }

    let mut merges: Vec<(&str, &str, f32)> = Vec::new();
    for piece in order {
        let start = merges.len();
        for (split, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(split);
            if ids.contains_key(left) && ids.contains_key(right) {
                merges.push((left, right, best[piece]));
            }
        }
        merges[start..].sort_by_key(|&(left, right, _)| (ids[left], ids[right]));
    }
    let chars = |s: &str| s.chars().count();
    merges.sort_by(|a, b| {
        b.2.partial_cmp(&a.2)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| chars(b.0).cmp(&chars(a.0)))
            .then_with(|| chars(b.1).cmp(&chars(a.1)))
    });
    merges.into_iter().map(|(left, right, _)| (left, right)).collect()
}

fn check_len(key: &str, len: usize, n_tokens: usize) -> Result<(), TokenizerError> {
    if len == n_tokens {
        return Ok(());
    }
    Err(TokenizerError::InvalidMetadata {
        key: key.into(),
        problem: format!("has {len} entries for {n_tokens} tokens"),
    })
}

fn missing(key: &str) -> TokenizerError {
    TokenizerError::MissingKey(key.into())
}
