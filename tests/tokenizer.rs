//! The tokenizer against Hugging Face goldens: SmolLM2's byte-level BPE built from the
//! real GGUF (tests/golden/smollm2_tokenizer.json) and a small
//! SentencePiece-style GGUF vocabulary (tests/fixtures, from
//! tools/reference/tokenizer_fixture.py), plus streaming and error cases.

use std::path::{Path, PathBuf};

mod test_model;

use serde::Deserialize;
use webjudge::format::gguf::{GgufArray, GgufFile, GgufMetadata, GgufValue};
use webjudge::tokenizer::{
    tokenizer_json_from_gguf, tokenizer_json_from_sentencepiece, SentencePieceModel, TextStream, Tokenizer,
    TokenizerError,
};

#[derive(Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    /// `decode(ids)` with special tokens kept; absent where it equals `text`.
    decoded: Option<String>,
    /// transformers' ids under its plain ByteLevel split (SmolLM2 cases with digits only).
    transformers_gguf_ids: Option<Vec<u32>>,
}

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn golden(relative: &str) -> Golden {
    let text = std::fs::read_to_string(repo_path(relative)).expect("golden file");
    serde_json::from_str(&text).expect("golden JSON")
}

/// SmolLM2's GGUF metadata (the test model, fetched and verified on first use).
fn smollm2_metadata() -> GgufMetadata {
    GgufFile::open(test_model::gguf()).expect("the test model is a readable GGUF").metadata
}

fn llama_metadata() -> GgufMetadata {
    GgufFile::open(repo_path("tests/fixtures/llama_vocab.gguf")).expect("fixture GGUF").metadata
}

fn build(metadata: &GgufMetadata) -> Tokenizer {
    Tokenizer::from_json(&tokenizer_json_from_gguf(metadata).expect("tokenizer.json")).expect("loadable tokenizer.json")
}

/// Streams `ids` one at a time: the text of the pieces plus the flush.
fn stream(tokenizer: &Tokenizer, ids: &[u32]) -> String {
    let mut stream = TextStream::new();
    let mut streamed = String::new();
    for &id in ids {
        let piece = stream.push(tokenizer, id).unwrap();
        assert!(!piece.contains('\u{FFFD}'), "ids {ids:?}: streamed an incomplete character in {piece:?}");
        streamed += &piece;
    }
    streamed + &stream.finish(tokenizer).unwrap()
}

/// Streams every prefix of every case's ids, so streams also end mid-character. Where
/// the prefix decodes to whole characters the stream spells exactly `decode(prefix)`;
/// where it ends mid-character, the stream is the complete text so far (a prefix of the
/// case's text) followed by U+FFFD for the incomplete rest.
fn check_streams(tokenizer: &Tokenizer, cases: &[Case]) {
    for case in cases {
        let complete = case.decoded.as_ref().unwrap_or(&case.text);
        for end in 0..=case.ids.len() {
            let ids = &case.ids[..end];
            let expected = tokenizer.decode(ids).unwrap();
            let streamed = stream(tokenizer, ids);
            if expected.contains('\u{FFFD}') {
                let whole = streamed.trim_end_matches('\u{FFFD}');
                assert!(whole.len() < streamed.len() && complete.starts_with(whole), "ids {ids:?}: {streamed:?}");
            } else {
                assert_eq!(streamed, expected, "streaming ids {ids:?}");
            }
        }
    }
}

/// Exact ids and decoded text for every case, then streaming.
fn check_goldens(tokenizer: &Tokenizer, cases: &[Case]) {
    for case in cases {
        assert_eq!(tokenizer.encode(&case.text).unwrap(), case.ids, "encoding {:?}", case.text);
        let decoded = case.decoded.as_ref().unwrap_or(&case.text);
        assert_eq!(&tokenizer.decode(&case.ids).unwrap(), decoded, "decoding {:?}", case.ids);
    }
    check_streams(tokenizer, cases);
}

#[test]
fn smollm2_matches_goldens() {
    let metadata = smollm2_metadata();
    let tokenizer = build(&metadata);
    assert_eq!(tokenizer.vocab_size(), 49152);
    assert_eq!(tokenizer.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(tokenizer.token_to_id("<|im_end|>"), Some(2));
    check_goldens(&tokenizer, &golden("tests/golden/smollm2_tokenizer.json").cases);
}

/// "default" is plain GPT-2 splitting: transformers' own GGUF conversion of SmolLM2.
#[test]
fn smollm2_with_default_pre_tokenizer_matches_transformers() {
    let mut metadata = smollm2_metadata();
    metadata.insert("tokenizer.ggml.pre".into(), GgufValue::String("default".into()));
    let tokenizer = build(&metadata);
    let golden = golden("tests/golden/smollm2_tokenizer.json");
    let mut differing = 0;
    for case in &golden.cases {
        let expected = case.transformers_gguf_ids.as_ref().unwrap_or(&case.ids);
        differing += usize::from(case.transformers_gguf_ids.is_some());
        assert_eq!(&tokenizer.encode(&case.text).unwrap(), expected, "encoding {:?}", case.text);
    }
    assert!(differing > 0, "the goldens no longer exercise the difference");
}

/// LLaMA-3's split regex compiles and round-trips, and splits where it differs from GPT-2's.
#[test]
fn llama_bpe_pre_tokenizer_splits_like_llama3() {
    let mut metadata = smollm2_metadata();
    metadata.insert("tokenizer.ggml.pre".into(), GgufValue::String("llama-bpe".into()));
    let tokenizer = build(&metadata);
    for case in &golden("tests/golden/smollm2_tokenizer.json").cases {
        let ids = tokenizer.encode(&case.text).unwrap();
        assert_eq!(tokenizer.decode(&ids).unwrap(), case.text);
    }
    // `\s*[\r\n]+` ends a newline run before the spaces that follow it; GPT-2's
    // `\s+(?!\S)` takes all but the last space along ("ĊĊĠ", "Ġb").
    let ids = |tokens: &[&str]| -> Vec<u32> { tokens.iter().map(|t| tokenizer.token_to_id(t).unwrap()).collect() };
    assert_eq!(tokenizer.encode("a\n\n  b").unwrap(), ids(&["a", "ĊĊ", "Ġ", "Ġb"]));
}

#[test]
fn llama_fixture_matches_transformers() {
    let tokenizer = build(&llama_metadata());
    assert_eq!(tokenizer.vocab_size(), 536);
    assert_eq!(tokenizer.token_to_id("<s>"), Some(1));
    assert_eq!(tokenizer.token_to_id("<sep>"), Some(535));
    let cases = golden("tests/fixtures/llama_vocab_golden.json").cases;
    assert!(cases.iter().all(|case| case.decoded.is_some()), "fixture goldens carry decoded text");
    check_goldens(&tokenizer, &cases);
}

/// Without the prefix space nothing is added or stripped, so decoding (after BOS)
/// gives back exactly the text.
#[test]
fn llama_without_space_prefix_round_trips_exactly() {
    let mut metadata = llama_metadata();
    metadata.insert("tokenizer.ggml.add_space_prefix".into(), GgufValue::Bool(false));
    let tokenizer = build(&metadata);
    for case in &golden("tests/fixtures/llama_vocab_golden.json").cases {
        let ids = tokenizer.encode(&case.text).unwrap();
        assert_eq!(ids[0], 1, "BOS first");
        assert_eq!(tokenizer.decode(&ids[1..]).unwrap(), case.text);
    }
    let prefixed = build(&llama_metadata());
    assert_eq!(tokenizer.encode(" Hello world").unwrap(), prefixed.encode("Hello world").unwrap());
    assert_ne!(tokenizer.encode("Hello world").unwrap(), prefixed.encode("Hello world").unwrap());
}

#[test]
fn add_flags_control_bos_and_eos() {
    let mut metadata = llama_metadata();
    metadata.insert("tokenizer.ggml.add_bos_token".into(), GgufValue::Bool(false));
    metadata.insert("tokenizer.ggml.add_eos_token".into(), GgufValue::Bool(true));
    let tokenizer = build(&metadata);
    let ids = tokenizer.encode("Hello world").unwrap();
    assert_eq!(ids, [477, 326, 2]);
    assert_eq!(tokenizer.decode(&ids).unwrap(), "Hello world</s>");

    metadata.remove("tokenizer.ggml.add_bos_token");
    metadata.remove("tokenizer.ggml.bos_token_id");
    let error = tokenizer_json_from_gguf(&metadata).unwrap_err();
    assert!(error.to_string().contains("tokenizer.ggml.bos_token_id"), "{error}");
}

/// Merges stored in the file take precedence over ones recovered from scores.
#[test]
fn llama_uses_stored_merges() {
    let mut metadata = llama_metadata();
    metadata.remove("tokenizer.ggml.scores");
    let error = tokenizer_json_from_gguf(&metadata).unwrap_err();
    assert!(matches!(&error, TokenizerError::MissingKey(key) if key == "tokenizer.ggml.scores"), "{error}");

    metadata.insert("tokenizer.ggml.merges".into(), GgufArray::String(["h e"].into_iter().collect()).into());
    let tokenizer = build(&metadata);
    let id = |token: &str| tokenizer.token_to_id(token).unwrap();
    assert_eq!(tokenizer.encode("he").unwrap(), [1, id("\u{2581}"), id("he")]);
}

fn error_for(edit: impl FnOnce(&mut GgufMetadata)) -> String {
    let mut metadata = llama_metadata();
    edit(&mut metadata);
    tokenizer_json_from_gguf(&metadata).unwrap_err().to_string()
}

#[test]
fn metadata_errors_name_the_problem() {
    let message = error_for(|m| {
        m.insert("tokenizer.ggml.model".into(), GgufValue::String("bert".into()));
    });
    assert!(message.contains("\"bert\""), "{message}");

    let message = error_for(|m| {
        m.insert("tokenizer.ggml.model".into(), GgufValue::String("gpt2".into()));
        m.insert("tokenizer.ggml.pre".into(), GgufValue::String("deepseek-llm".into()));
    });
    assert!(message.contains("\"deepseek-llm\""), "{message}");

    let message = error_for(|m| {
        m.insert("tokenizer.ggml.model".into(), GgufValue::String("gpt2".into()));
    });
    assert!(message.contains("tokenizer.ggml.merges"), "{message}");

    for key in ["tokenizer.ggml.model", "tokenizer.ggml.tokens"] {
        let message = error_for(|m| {
            m.remove(key);
        });
        assert!(message.contains(key), "{message}");
    }

    let message = error_for(|m| {
        m.insert("tokenizer.ggml.tokens".into(), GgufValue::U32(3));
    });
    assert!(message.contains("tokenizer.ggml.tokens") && message.contains("array of strings"), "{message}");

    let message = error_for(|m| {
        m.insert("tokenizer.ggml.scores".into(), GgufArray::F32(vec![0.0]).into());
    });
    assert!(message.contains("tokenizer.ggml.scores") && message.contains("536 tokens"), "{message}");

    let message = error_for(|m| {
        m.insert("tokenizer.ggml.eos_token_id".into(), GgufValue::U32(536));
    });
    assert!(message.contains("tokenizer.ggml.eos_token_id") && message.contains("536"), "{message}");

    let message = error_for(|m| {
        m.insert("tokenizer.ggml.merges".into(), GgufArray::String(["a b c"].into_iter().collect()).into());
    });
    assert!(message.contains("\"a b c\""), "{message}");
}

#[test]
fn invalid_tokenizer_json_is_an_error() {
    assert!(matches!(Tokenizer::from_json("{\"model\": 1}"), Err(TokenizerError::InvalidJson(_))));
    let missing = Tokenizer::from_file(repo_path("tests/fixtures/no such file.json")).err().unwrap();
    assert!(missing.to_string().contains("no such file.json"), "{missing}");
}

// SentencePiece `tokenizer.model` (tests/fixtures/spm_bpe.model, a BPE model with byte
// fallback trained by tools/reference/sentencepiece_fixture.py) against transformers'
// conversion of the same file.

fn spm_fixture() -> Vec<u8> {
    std::fs::read(repo_path("tests/fixtures/spm_bpe.model")).expect("fixture tokenizer.model")
}

fn spm_error(bytes: &[u8]) -> String {
    match tokenizer_json_from_sentencepiece(bytes, None, None) {
        Err(e @ TokenizerError::SentencePiece(_)) => e.to_string(),
        Err(other) => panic!("expected a SentencePiece error, got {other}"),
        Ok(_) => panic!("{bytes:?} parsed"),
    }
}

#[test]
fn sentencepiece_model_matches_transformers() {
    let bytes = spm_fixture();
    let model = SentencePieceModel::parse(&bytes).unwrap();
    assert_eq!(model.pieces.len(), 400);
    assert_eq!((model.unk_id, model.bos_id, model.eos_id, model.pad_id), (Some(0), Some(1), Some(2), None));
    assert!(model.byte_fallback && model.add_dummy_prefix);
    assert_eq!(model.pieces[3], "<0x00>");
    assert_eq!(model.types[3], 6, "byte pieces have type BYTE");

    let json = tokenizer_json_from_sentencepiece(&bytes, None, None).unwrap();
    let tokenizer = Tokenizer::from_json(&json).unwrap();
    assert_eq!(tokenizer.vocab_size(), 400);
    assert_eq!(tokenizer.token_to_id("<s>"), Some(1));
    check_goldens(&tokenizer, &golden("tests/fixtures/spm_bpe_golden.json").cases);

    // tokenizer_config.json's flags: no BOS, EOS appended.
    let json = tokenizer_json_from_sentencepiece(&bytes, Some(false), Some(true)).unwrap();
    let tokenizer = Tokenizer::from_json(&json).unwrap();
    let ids = tokenizer.encode("Hello world").unwrap();
    assert_eq!(ids.first(), golden("tests/fixtures/spm_bpe_golden.json").cases[0].ids.get(1));
    assert_eq!(ids.last(), Some(&2));
}

/// Hand-written protobuf: a key (field number, wire type) then its payload.
fn key(field: u8, wire: u8) -> u8 {
    (field << 3) | wire
}

fn len_field(field: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![key(field, 2), payload.len() as u8];
    out.extend_from_slice(payload);
    out
}

fn piece(text: &str) -> Vec<u8> {
    len_field(1, &len_field(1, text.as_bytes()))
}

#[test]
fn malformed_sentencepiece_models_are_errors() {
    let bytes = spm_fixture();
    // Every truncation either parses (it ends between fields) or is an error; none panics.
    for end in 0..bytes.len() {
        let _ = tokenizer_json_from_sentencepiece(&bytes[..end], None, None);
    }
    let error = spm_error(&bytes[..bytes.len() - 1]);
    assert!(error.contains("truncated"), "{error}");
    assert!(spm_error(&[]).contains("UNIGRAM"), "an empty model has no trainer spec: unigram");

    let bpe = len_field(2, &[key(3, 0), 2]);
    let unigram = len_field(2, &[key(3, 0), 1]);
    let model = |parts: &[&[u8]]| parts.concat();

    assert!(spm_error(&model(&[&piece("<unk>"), &unigram])).contains("UNIGRAM"));
    assert!(spm_error(&model(&[&piece("<unk>"), &len_field(2, &[key(3, 0), 7])])).contains("model type 7"));
    // A varint longer than ten bytes.
    let error = spm_error(&model(&[&[key(1, 2)], &[0xff; 11]]));
    assert!(error.contains("varint"), "{error}");
    // Pieces must be length-delimited, not a varint.
    let error = spm_error(&model(&[&[key(1, 0), 1], &bpe]));
    assert!(error.contains("ModelProto.pieces") && error.contains("length-delimited"), "{error}");
    // A score must be a fixed32 float.
    let bad_score = len_field(1, &[&len_field(1, b"a")[..], &[key(2, 0), 1]].concat());
    assert!(spm_error(&model(&[&bad_score, &bpe])).contains("SentencePiece.score"));
    // Groups (wire types 3 and 4) and wire types 6 and 7 do not exist here.
    assert!(spm_error(&[key(1, 3)]).contains("wire type 3"));
    assert!(spm_error(&[key(1, 7)]).contains("wire type 7"));
    // A length past the end of the message.
    assert!(spm_error(&[key(1, 2), 5, b'a']).contains("truncated"));
    // Piece text must be UTF-8, types 1 to 6, and ids inside the vocabulary.
    assert!(spm_error(&model(&[&len_field(1, &len_field(1, &[0xff])), &bpe])).contains("UTF-8"));
    let bad_type = len_field(1, &[&len_field(1, b"a")[..], &[key(3, 0), 9]].concat());
    assert!(spm_error(&model(&[&bad_type, &bpe])).contains("type 9"));
    assert!(spm_error(&model(&[&piece("<unk>"), &bpe])).contains("bos_id 1"));
    assert!(spm_error(&bpe).contains("no pieces"));
    // A piece without text.
    assert!(spm_error(&model(&[&len_field(1, &[]), &bpe])).contains("no text"));

    // The smallest valid model: three pieces, BPE; defaults for the special ids.
    let ok = model(&[&piece("<unk>"), &piece("<s>"), &piece("</s>"), &bpe]);
    let parsed = SentencePieceModel::parse(&ok).unwrap();
    assert_eq!(parsed.pieces, ["<unk>", "<s>", "</s>"]);
    assert!(parsed.add_dummy_prefix && !parsed.byte_fallback);
}

/// Added tokens' `lstrip` and `rstrip` take the whitespace beside them as `tokenizers` does
/// (Phi-3's chat markers take the newline after them): over the Phi-3 fixture's tokenizer
/// (tools/reference/phi3_fixture.py; its markers made non-special so that text matches them,
/// and `<|end|>` given `lstrip` too), the ids of text matched marker by marker equal the
/// library's own.
#[test]
fn added_tokens_strip_whitespace_as_tokenizers_does() {
    let path = repo_path("tests/fixtures/phi3_tiny/tokenizer.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for token in json["added_tokens"].as_array_mut().unwrap() {
        token["special"] = false.into();
        if token["content"] == "<|end|>" {
            token["lstrip"] = true.into();
        }
    }
    let tokenizer = Tokenizer::from_json(&json.to_string()).unwrap();
    let texts = [
        "<|user|>\nHello world<|end|>\n<|assistant|>\n",
        "a  <|end|>  b",
        "<|user|> \t\n <|end|><|end|>\n\n",
        "  <|end|>",
        "<|assistant|>",
        "x <|endoftext|> y <|user|>\u{3000}z",
    ];
    for text in texts {
        assert_eq!(tokenizer.encode_text(text).unwrap(), tokenizer.encode(text).unwrap(), "{text:?}");
    }
}
