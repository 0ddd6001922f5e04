//! `webjudge perplexity` against llama.cpp's own perplexity of the test model
//! (tools/reference/perplexity_reference.py), the every-position logits it reads against the
//! one-token-at-a-time path, and `--reference` on llama.cpp-quantized fixtures.

mod test_model;

use std::path::{Path, PathBuf};

use webjudge::engine::native::{load_dir, read_metadata};
use webjudge::engine::perplexity::{chunk_logits, text_tokens};
use webjudge::kernels::{GpuOptions, Sampling};
use webjudge::model::{LoadOptions, MAX_SEQUENCES};

use test_model::{converted_dir, golden, ids, scratch, webjudge, REPO};

const TEXT: &str = "tests/fixtures/perplexity/autoj_critique.txt";

/// Runs `webjudge perplexity` and returns its JSON line.
fn perplexity(args: &[&str]) -> serde_json::Value {
    let out = webjudge(&[&["perplexity", "--json"], args].concat(), "");
    assert!(out.status.success(), "perplexity failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().expect("a JSON line")).unwrap()
}

fn text() -> PathBuf {
    Path::new(REPO).join(TEXT)
}

/// Our tokens of the text are llama.cpp's (tokenized as text, no BOS for this model).
#[test]
fn text_tokens_are_llama_cpp_s() {
    let golden = golden("perplexity_smollm2.json");
    let (manifest, tokenizer) = read_metadata(&converted_dir()).unwrap();
    let text = std::fs::read_to_string(text()).unwrap();
    let tokens = text_tokens(&tokenizer, &manifest.architecture, &text).unwrap();
    assert_eq!(tokens, ids(&golden["tokens"]), "llama.cpp tokenizes the text otherwise");
}

/// Our perplexity of the first `chunks` chunks of `context` tokens against llama.cpp's
/// running perplexity after as many (the golden's `perplexity_after_chunk`).
fn compare_with_llama_cpp(context: u64, chunks: usize) {
    let golden = golden("perplexity_smollm2.json");
    let want = golden["contexts"].as_array().unwrap().iter().find(|c| c["context"] == context).unwrap();
    let dir = converted_dir();
    let (context, count) = (context.to_string(), chunks.to_string());
    let (dir, text) = (dir.to_str().unwrap(), text());
    let got =
        perplexity(&["--model", dir, "--text", text.to_str().unwrap(), "--context", &context, "--chunks", &count]);
    assert_eq!(got["chunks"], chunks);
    let scored = want["scored_tokens"].as_u64().unwrap() / want["chunks"].as_u64().unwrap() * chunks as u64;
    assert_eq!(got["tokens"], scored);
    let ours = got["perplexity"].as_f64().unwrap();
    let theirs = want["perplexity_after_chunk"][chunks - 1].as_f64().unwrap();
    let relative = (ours / theirs - 1.0).abs();
    println!(
        "context {context}, {chunks} chunks: ours {ours:.4}, llama.cpp {theirs:.4} ({:.3}% apart)",
        100.0 * relative
    );
    assert!(relative < PERPLEXITY_TOLERANCE, "ours {ours}, llama.cpp {theirs}");
}

/// Relative difference allowed from llama.cpp's perplexity. llama.cpp's CPU backend rounds
/// activations to 8 bits in its quantized dot products; webjudge keeps them f32 (with an f16
/// KV cache). Measured on lavapipe: 0.245% at context 128 over 1 chunk (3.8450 against
/// 3.8356), 0.195% over 2 (8.9267 against 8.9441). 1% is 4 times the larger; an off-by-one
/// position or a missed BOS moves it by tens of percent.
const PERPLEXITY_TOLERANCE: f64 = 0.01;

/// One chunk of 128 (63 scored tokens): the fast tier's check. 122 s on a 2-core machine
/// loaded by other builds, where prefill ran 25 times slower than BENCH.md's quiet lavapipe
/// figures; at those figures (64 prefilled tokens, 8 steps of 8 rows) about 10 s.
#[test]
fn perplexity_of_one_chunk_matches_llama_cpp() {
    compare_with_llama_cpp(128, 1);
}

/// The whole text at llama-perplexity's default context (2 chunks of 512): measured 18.6775
/// against llama.cpp's 18.6834 (−0.032%), 1016 s on the loaded machine.
#[test]
#[ignore = "full tier: make test"]
fn perplexity_at_the_default_context_matches_llama_cpp() {
    compare_with_llama_cpp(512, 2);
}

/// Largest |batched - one at a time| for a logit. Both paths are f32 over the same weights and
/// f16 KV cache and differ in their kernels' summation order (8-token against one-token
/// matrix-vector kernels): measured on lavapipe 2.1e-3 on logits up to 29.8; 1e-2 is 5 times
/// that, and a wrong row order or position would move logits by whole units.
const LOGIT_TOLERANCE: f32 = 1e-2;

/// The scored positions' logits, read from decode steps of 8 choosing rows, equal the
/// logits of the same tokens fed one at a time (`prefill` of one token, `logits(1)`), on
/// the K-quant fixture model (the same code path as any model's, and fast).
#[test]
fn every_position_logits_equal_one_token_at_a_time() {
    let dir = kquant_model("q4_k_m", "logits");
    let chunk: Vec<u32> = (0..40).map(|i| 3 + (i * 37) % 260).collect();
    let mut engine = load_dir(
        &dir,
        GpuOptions::default(),
        |o| LoadOptions { context: chunk.len(), sequences: MAX_SEQUENCES, ..o },
        &mut |_, _| {},
    )
    .unwrap();
    let vocab = engine.model().architecture().vocab;
    let mut batched = Vec::new();
    pollster::block_on(chunk_logits(engine.model_mut(), &chunk, &mut |position, row| {
        batched.push((position, row.to_vec()))
    }))
    .unwrap();
    let positions: Vec<usize> = batched.iter().map(|(p, _)| *p).collect();
    assert_eq!(positions, (20..39).collect::<Vec<_>>());

    let model = engine.model_mut();
    model.reset();
    let (mut worst, mut largest) = (0f32, 0f32);
    for (position, &id) in chunk[..39].iter().enumerate() {
        pollster::block_on(model.prefill(&[id], Sampling::Greedy)).unwrap();
        let Some((_, row)) = batched.iter().find(|(p, _)| *p == position) else { continue };
        let single = pollster::block_on(model.logits(1)).unwrap();
        assert_eq!(single.len(), vocab);
        for (a, b) in row.iter().zip(&single) {
            worst = worst.max((a - b).abs());
            largest = largest.max(b.abs());
        }
    }
    println!("largest logit difference, batched vs one token at a time: {worst:.2e} (largest logit {largest:.1})");
    assert!(worst < LOGIT_TOLERANCE, "{worst}");
}

/// The K-quant fixture model converted by `webjudge convert` (tests/fixtures/kquant_tiny).
/// Converted into this test's own `test` folder: the tests run in parallel.
fn kquant_model(mix: &str, test: &str) -> PathBuf {
    let out = scratch("perplexity", &format!("{test}-{mix}")).join("model");
    let gguf = Path::new(REPO).join(format!("tests/fixtures/kquant_tiny/{mix}.gguf"));
    let converted = webjudge(&["convert", gguf.to_str().unwrap(), "--out", out.to_str().unwrap()], "");
    assert!(converted.status.success(), "{}", String::from_utf8_lossy(&converted.stderr));
    out
}

/// A model against itself as reference: KL 0 (up to the reference's f32 spill) and the same
/// top token everywhere; against its Q5_K_M sibling (the same random weights quantized
/// otherwise): KL above 0.
#[test]
fn reference_kl_is_zero_against_itself_and_positive_against_another_quantization() {
    let (q4, q5) = (kquant_model("q4_k_m", "kl"), kquant_model("q5_k_m", "kl"));
    let text = text();
    let args = |model: &Path, reference: &Path| -> serde_json::Value {
        let (model, reference) = (model.to_str().unwrap(), reference.to_str().unwrap());
        let text = text.to_str().unwrap();
        perplexity(&["--model", model, "--reference", reference, "--text", text, "--context", "64", "--chunks", "4"])
    };
    let same = args(&q4, &q4);
    assert!(same["kl_mean"].as_f64().unwrap().abs() < 1e-6, "{same}");
    assert!(same["kl_max"].as_f64().unwrap().abs() < 1e-5, "{same}");
    assert_eq!(same["same_top"], 1.0, "{same}");
    assert_eq!(same["perplexity"], same["reference_perplexity"]);

    let other = args(&q4, &q5);
    println!("Q4_K_M against Q5_K_M: {other}");
    assert!(other["kl_mean"].as_f64().unwrap() > 1e-4, "{other}");
    let (mean, p99, max) =
        (other["kl_mean"].as_f64().unwrap(), other["kl_p99"].as_f64().unwrap(), other["kl_max"].as_f64().unwrap());
    assert!(mean <= p99 && p99 <= max, "{other}");
    assert_eq!(other["tokens"], same["tokens"]);
}

/// Refused before any weight is read, with the numbers: a text shorter than one chunk, and
/// a reference with another vocabulary.
#[test]
fn short_texts_and_foreign_references_are_refused() {
    let dir = converted_dir();
    let (dir, text) = (dir.to_str().unwrap(), text());
    let short = scratch("perplexity", "short").join("short.txt");
    std::fs::write(&short, "Too short to score.").unwrap();
    let out = webjudge(&["perplexity", "--model", dir, "--text", short.to_str().unwrap()], "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("tokens; one chunk needs 512: use --context"), "{stderr}");

    let foreign = kquant_model("q4_k_m", "refusal");
    let out = webjudge(
        &["perplexity", "--model", dir, "--reference", foreign.to_str().unwrap(), "--text", text.to_str().unwrap()],
        "",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the reference's vocabulary has 536 ids and the model's 49152"), "{stderr}");
}
