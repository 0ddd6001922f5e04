//! The tokenizer against Hugging Face goldens: SmolLM2's byte-level BPE built from the
//! real GGUF (tests/golden/smollm2_tokenizer.json) and a small
//! SentencePiece-style GGUF vocabulary (tests/fixtures, from
//! tools/reference/tokenizer_fixture.py), plus streaming and error cases.

use std::path::{Path, PathBuf};

mod test_model;

use serde::Deserialize;
use webjudge::tokenizer::{tokenizer_json_from_gguf, TextStream, Tokenizer, TokenizerError};
use webjudge::weights::gguf::{GgufFile, GgufMetadata, GgufValue};

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

    metadata.insert("tokenizer.ggml.merges".into(), GgufValue::Array(vec![GgufValue::String("h e".into())]));
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
        m.insert("tokenizer.ggml.pre".into(), GgufValue::String("qwen2".into()));
    });
    assert!(message.contains("\"qwen2\""), "{message}");

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
        m.insert("tokenizer.ggml.scores".into(), GgufValue::Array(vec![GgufValue::F32(0.0)]));
    });
    assert!(message.contains("tokenizer.ggml.scores") && message.contains("536 tokens"), "{message}");

    let message = error_for(|m| {
        m.insert("tokenizer.ggml.eos_token_id".into(), GgufValue::U32(536));
    });
    assert!(message.contains("tokenizer.ggml.eos_token_id") && message.contains("536"), "{message}");

    let message = error_for(|m| {
        m.insert("tokenizer.ggml.merges".into(), GgufValue::Array(vec![GgufValue::String("a b c".into())]));
    });
    assert!(message.contains("\"a b c\""), "{message}");
}

#[test]
fn invalid_tokenizer_json_is_an_error() {
    assert!(matches!(Tokenizer::from_json("{\"model\": 1}"), Err(TokenizerError::InvalidJson(_))));
    let missing = Tokenizer::from_file(repo_path("tests/fixtures/no such file.json")).err().unwrap();
    assert!(missing.to_string().contains("no such file.json"), "{missing}");
}
