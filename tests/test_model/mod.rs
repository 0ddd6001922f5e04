//! The test model, fetched and converted once and shared by the test binaries.
//!
//! `WEBJUDGE_TEST_GGUF` may name the SmolLM2-135M-Instruct Q4_1 GGUF (`make test` sets it);
//! without it `tools/fetch_test_model.sh` fetches and verifies the file into the cache.

#![allow(dead_code)] // each test binary uses part of this module

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use webjudge::format::manifest::{ShardEntry, TensorEntry, TensorPart, FORMAT_VERSION, MANIFEST_FILE};
use webjudge::format::schema::expected_tensors;
use webjudge::format::{Architecture, ChatTemplate, DType, JinjaTemplate, Manifest};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Path of the test model's GGUF.
pub fn gguf() -> PathBuf {
    static GGUF: OnceLock<PathBuf> = OnceLock::new();
    GGUF.get_or_init(|| {
        if let Some(path) = std::env::var_os("WEBJUDGE_TEST_GGUF") {
            return PathBuf::from(path);
        }
        let out = Command::new("bash")
            .arg(Path::new(REPO).join("tools/fetch_test_model.sh"))
            .output()
            .expect("run tools/fetch_test_model.sh");
        assert!(out.status.success(), "fetching the test model failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).expect("utf-8 path");
        PathBuf::from(stdout.lines().last().expect("the script prints the path").trim())
    })
    .clone()
}

/// The test model converted by `webjudge convert` into a model directory.
pub fn converted_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("smollm2-135m-instruct");
        if dir.join("manifest.json").exists() {
            return dir;
        }
        // Test binaries run in parallel: convert privately, then move into place once.
        let private = dir.with_extension(format!("converting-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&private);
        let status = Command::new(env!("CARGO_BIN_EXE_webjudge"))
            .arg("convert")
            .arg(gguf())
            .arg("--out")
            .arg(&private)
            .status()
            .expect("run webjudge convert");
        assert!(status.success(), "webjudge convert of the test model failed");
        if std::fs::rename(&private, &dir).is_err() {
            assert!(dir.join("manifest.json").exists(), "could not move the converted model into {}", dir.display());
            let _ = std::fs::remove_dir_all(&private);
        }
        dir
    })
    .clone()
}

/// A committed golden file under tests/golden.
pub fn golden(name: &str) -> serde_json::Value {
    let path = Path::new(REPO).join("tests/golden").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The ids of a JSON array of integers.
pub fn ids(value: &serde_json::Value) -> Vec<u32> {
    value.as_array().expect("an array of ids").iter().map(|v| v.as_u64().expect("an id") as u32).collect()
}

/// Runs the webjudge binary with `args`, `stdin` piped in.
pub fn webjudge(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_webjudge"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("webjudge runs");
    // A run refused over its arguments exits without reading stdin.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// A fresh, empty directory for one test's files: `name` under `group` in Cargo's
/// temporary directory for tests.
pub fn scratch(group: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(group).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// ChatML around one user message, after `system`'s turn if given, as a `{input}` wrapper
/// (the form manifests of format versions 1 to 3 hold).
pub fn chatml_wrapper(system: Option<&str>) -> ChatTemplate {
    let system = system.map(|s| format!("<|im_start|>system\n{s}<|im_end|>\n")).unwrap_or_default();
    ChatTemplate::Wrapper {
        template: format!("{system}<|im_start|>user\n{{input}}<|im_end|>\n<|im_start|>assistant\n"),
    }
}

/// The test model's own chat template, as converting its GGUF records it.
pub fn smollm2_template() -> ChatTemplate {
    let path = Path::new(REPO).join("tests/fixtures/chat_templates/smollm2-135m-instruct.jinja");
    ChatTemplate::Jinja(JinjaTemplate {
        origin: "GGUF tokenizer.chat_template".into(),
        jinja: std::fs::read_to_string(path).unwrap(),
        bos_token: Some("<|im_start|>".into()),
        eos_token: Some("<|im_end|>".into()),
    })
}

/// A model directory holding only a manifest (a ChatML model of one small layer): enough for
/// the commands that read the chat template or the model's identity, not for generating.
pub fn manifest_only_model(dir: &Path) -> Manifest {
    let mut manifest = Manifest {
        format_version: FORMAT_VERSION,
        architecture: Architecture {
            n_layers: 1,
            hidden: 16,
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 8,
            ffn: 16,
            vocab: 32,
            rope_theta: 10000.0,
            rope_frequency_divisors: Vec::new(),
            qkv_bias: false,
            rope_attention_factor: 1.0,
            norm_eps: 1e-5,
            context_length: 64,
            tied_embeddings: true,
            bos_id: None,
            eos_ids: vec![2],
            add_bos: false,
        },
        chat_template: Some(chatml_wrapper(Some("You are a judge."))),
        judge: None,
        tensors: vec![],
        shards: vec![],
    };
    let mut offset = 0;
    for (name, shape) in expected_tensors(&manifest.architecture, usize::MAX).unwrap() {
        let rows = if shape.len() == 2 { shape[0] } else { 1 };
        let length = 4 * shape.iter().product::<usize>() as u64;
        let parts = vec![TensorPart { row_start: 0, rows, shard: 0, offset, length }];
        manifest.tensors.push(TensorEntry { name, dtype: DType::F32, shape, group_size: 0, parts, input_order: None });
        offset += length;
    }
    manifest.shards.push(ShardEntry { file: "weights-00001.bin".into(), size: offset, sha256: "0".repeat(64) });
    std::fs::write(dir.join(MANIFEST_FILE), manifest.to_json()).unwrap();
    manifest
}
