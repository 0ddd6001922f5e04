//! The browser build in real headless Chromium (WebGPU on SwiftShader), inside a
//! dedicated worker as the page runs it: run by tools/test_wasm.sh through
//! wasm-bindgen-test-runner and chromedriver.
//!
//! - the forward pass of a small random model on the browser's WebGPU against the CPU
//!   reference (src/model/reference.rs), logits step by step;
//! - the JS API on the real test model served over HTTP by tests/browser/server.mjs:
//!   greedy ids equal to the transformers golden, both judge protocols' results,
//!   streaming, cancellation, serialized calls, typed errors, unload;
//! - the loader: a second load takes every shard from the cache (no shard request);
//!   a corrupted shard is rejected, fetched again and never cached; a transfer cut off
//!   mid-shard resumes with a Range request (or restarts where Range is ignored); a
//!   stalled one is aborted after a timeout and resumed;
//!   clearing the cache; device loss surfaces as DeviceLost and loading again recovers;
//! - the fit checks' refusals and their numbers;
//! - `judge.profile`: a sane per-kernel table of a decode step and a prefill chunk.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use webjudge::format::schema::{expected_tensors, GlobalWeight, LayerBias, LayerWeights};
use webjudge::format::{dequantize, encode, Architecture, DType, Manifest, TensorEntry, TensorPart};
use webjudge::kernels::{Gpu, GpuOptions, GpuTensor, Sampling};
use webjudge::model::reference::{self, CpuModel, ModelWeights};
use webjudge::model::{verify_shard, LlamaModel, LoadOptions, CPU_PREFILL_CHUNK, GPU_PREFILL_CHUNK};
use webjudge::web::{
    built_in_rubrics, defaults, fit, loader, pairwise_metrics, preference_metrics, protocols, score_metrics,
    JsJudge as Judge,
};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(url: &str) -> Promise;
}

/// tools/test_wasm.sh starts tests/browser/server.mjs and passes its address at build time.
fn server() -> &'static str {
    env!("WEBJUDGE_TEST_SERVER", "WEBJUDGE_TEST_SERVER is unset: run the browser tests with tools/test_wasm.sh")
}

/// A model URL of `mode` (see tests/browser/server.mjs) under this test's own `tag`.
fn model_url(mode: &str, tag: &str) -> String {
    format!("{}/{mode}-{tag}/", server())
}

#[derive(serde::Deserialize, Debug)]
struct Request {
    file: String,
    range: Option<String>,
    status: Option<u16>,
}

/// The requests the server saw under `tag`.
async fn server_log(tag: &str) -> Vec<Request> {
    let response: web_sys::Response =
        JsFuture::from(global_fetch(&format!("{}/log?tag={tag}", server()))).await.unwrap().unchecked_into();
    let json = JsFuture::from(response.json().unwrap()).await.unwrap();
    serde_wasm_bindgen::from_value(json).unwrap()
}

fn shard_requests(log: &[Request]) -> Vec<&Request> {
    log.iter().filter(|r| r.file.starts_with("weights-")).collect()
}

fn object(fields: &[(&str, JsValue)]) -> Object {
    let object = Object::new();
    for (name, value) in fields {
        Reflect::set(&object, &(*name).into(), value).unwrap();
    }
    object
}

fn get(value: &JsValue, name: &str) -> JsValue {
    Reflect::get(value, &name.into()).unwrap()
}

fn number(value: &JsValue, name: &str) -> f64 {
    get(value, name).as_f64().unwrap_or_else(|| panic!("{name} is not a number: {:?}", get(value, name)))
}

fn string(value: &JsValue, name: &str) -> String {
    get(value, name).as_string().unwrap_or_else(|| panic!("{name} is not a string: {:?}", get(value, name)))
}

/// The JS error a promise rejected with: (name, message).
/// The TypeScript declarations of the API's results (wasm-bindgen writes them into
/// `webjudge.d.ts`).
const DECLARATIONS: &str = include_str!("../src/web/types.d.ts");

/// The fields `interface` declares, with those of the interface it extends (nested object
/// types' fields count too: the check below is one-sided).
fn declared(interface: &str) -> Vec<String> {
    let head = format!("export interface {interface} ");
    let start = DECLARATIONS.find(&head).unwrap_or_else(|| panic!("src/web/types.d.ts declares no {interface}"));
    let (header, body) = DECLARATIONS[start + head.len()..].split_once('{').unwrap();
    let body = &body[..body.find("\n}").unwrap()];
    let mut fields: Vec<String> = body
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let name: String = line.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            (!name.is_empty() && line[name.len()..].starts_with(['?', ':'])).then_some(name)
        })
        .collect();
    if let Some(parent) = header.trim().strip_prefix("extends ") {
        fields.extend(declared(parent.trim()));
    }
    fields
}

/// Fails when a result has a field its TypeScript interface does not declare: a field added
/// to a Rust result type must be added to src/web/types.d.ts too.
fn assert_declared(value: &JsValue, interface: &str) {
    let fields = declared(interface);
    for key in Object::keys(value.unchecked_ref::<Object>()).iter() {
        let key = key.as_string().unwrap();
        assert!(fields.contains(&key), "a {interface} has {key:?}, which src/web/types.d.ts does not declare");
    }
}

async fn rejection(promise: Promise) -> (String, String) {
    let error = JsFuture::from(promise).await.expect_err("the call should have failed");
    let error: js_sys::Error = error.dyn_into().expect("rejected with an Error");
    (error.name().into(), error.message().into())
}

async fn load(url: &str, options: &[(&str, JsValue)]) -> Judge {
    Judge::load(url.to_string(), Some(object(options))).await.unwrap_or_else(|e| {
        let e: js_sys::Error = e.unchecked_into();
        panic!("loading {url}: {}: {}", String::from(e.name()), String::from(e.message()))
    })
}

/// The error name and message of a load that must fail.
async fn load_refusal(url: &str, options: &[(&str, JsValue)]) -> (String, String) {
    let error = Judge::load(url.to_string(), Some(object(options))).await.err().expect("the load should have failed");
    let error: js_sys::Error = error.unchecked_into();
    (error.name().into(), error.message().into())
}

async fn clear(url: &str) {
    Judge::clear_cache(Some(url.to_string())).await.unwrap();
}

fn golden() -> serde_json::Value {
    serde_json::from_str(include_str!("golden/smollm2_generate.json")).unwrap()
}

/// Greedy ids of the golden's first case, as transformers produced them.
fn golden_case() -> (String, Vec<u32>) {
    let case = &golden()["cases"][0];
    let ids = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    (case["prompt"].as_str().unwrap().to_string(), ids)
}

/// Tokens generated per check: SwiftShader on two cores decodes the 135M model at ~20 s a token.
const TOKENS: usize = 2;

async fn generate_ids(judge: &Judge, prompt: &str, tokens: usize) -> Vec<u32> {
    let options = object(&[("maxNewTokens", (tokens as u32).into())]);
    let started = web_time::Instant::now();
    let result = JsFuture::from(judge.generate(prompt.into(), Some(options))).await.unwrap();
    web_sys::console::log_1(
        &format!(
            "generate {tokens} tokens: {} ms (first token {:.0} ms, decode {:.2} tokens/s)",
            started.elapsed().as_millis(),
            number(&result, "timeToFirstTokenMs"),
            number(&result, "decodeTokensPerSecond")
        )
        .into(),
    );
    serde_wasm_bindgen::from_value(get(&result, "ids")).unwrap()
}

// ---------------------------------------------------------------------------------
// The forward pass on the browser's WebGPU against the CPU reference.

/// xorshift64*: deterministic weights without an RNG crate (rand needs an OS source
/// on wasm32).
struct Random(u64);

impl Random {
    fn uniform(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
                (bits as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }
}

fn tiny_architecture() -> Architecture {
    Architecture {
        n_layers: 2,
        hidden: 64,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 16,
        ffn: 128,
        vocab: 256,
        rope_theta: 10000.0,
        rope_frequency_divisors: Vec::new(),
        qkv_bias: false,
        rope_attention_factor: 1.0,
        norm_eps: 1e-5,
        context_length: 96,
        tied_embeddings: true,
        bos_id: None,
        eos_ids: vec![],
        add_bos: false,
    }
}

/// The dtypes real models use: q8 embedding, q4 matrices (f32 norms).
fn q4_model_dtype(name: &str) -> DType {
    if name == GlobalWeight::TokenEmbedding.name() {
        DType::Q8
    } else {
        DType::Q4
    }
}

/// Random weights in the dtypes `dtype_of` names for each matrix (f32 norms), uploaded to
/// the GPU, and the same values dequantized for the CPU.
fn tiny_model(gpu: &Gpu, a: &Architecture, dtype_of: fn(&str) -> DType) -> (HashMap<String, GpuTensor>, ModelWeights) {
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let mut gpu_weights = HashMap::new();
    let mut cpu: HashMap<String, Vec<f32>> = HashMap::new();
    for (name, shape) in expected_tensors(a, usize::MAX).unwrap() {
        let (rows, cols) = if shape.len() == 2 { (shape[0], shape[1]) } else { (1, shape[0]) };
        let (dtype, values) = if shape.len() == 1 {
            (DType::F32, random.uniform(cols, 0.5).into_iter().map(|v| 1.0 + v).collect())
        } else if name == GlobalWeight::TokenEmbedding.name() {
            (dtype_of(&name), random.uniform(rows * cols, 1.0))
        } else {
            (dtype_of(&name), random.uniform(rows * cols, 2.0 / (cols as f32).sqrt()))
        };
        let group = if dtype.is_quantized() { dtype.fixed_group().unwrap_or(32) as usize } else { 0 };
        let words = encode(dtype, &values, group);
        let entry = TensorEntry {
            name: name.clone(),
            dtype,
            shape: shape.clone(),
            group_size: group,
            parts: vec![TensorPart { row_start: 0, rows, shard: 0, offset: 0, length: words.len() as u64 * 4 }],
            input_order: None,
        };
        gpu_weights.insert(name.clone(), GpuTensor::upload(gpu, &entry, [bytemuck::cast_slice(&words)]));
        cpu.insert(name, dequantize(dtype, &words, rows, cols, group.max(1)));
    }
    let mut take = |name: &str| cpu.remove(name).unwrap();
    let layers = (0..a.n_layers).map(|layer| LayerWeights::from_fn(|weight| take(&weight.name(layer)))).collect();
    let biases = |layer| LayerBias::ALL.iter().flat_map(|bias| take(&bias.name(layer))).collect();
    let qkv_biases = a.qkv_bias.then(|| (0..a.n_layers).map(biases).collect());
    let weights = ModelWeights {
        embedding: take(GlobalWeight::TokenEmbedding.name()),
        layers,
        qkv_biases,
        final_norm: take(GlobalWeight::OutputNorm.name()),
        lm_head: None,
    };
    (gpu_weights, weights)
}

/// |gpu - cpu| relative to the largest logit: f32 summation order and the f16 KV cache
/// (which the reference rounds identically) leave ~1e-5; a wrong kernel leaves > 1e-2.
fn worst_deviation(gpu: &[f32], cpu: &[f32]) -> f32 {
    let scale = cpu.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    gpu.iter().zip(cpu).map(|(g, c)| (g - c).abs() / scale).fold(0.0, f32::max)
}

async fn check_forward(allow_subgroups: bool, a: Architecture, dtype_of: fn(&str) -> DType) {
    let gpu = Gpu::new(GpuOptions { allow_subgroups, ..Default::default() }).await.expect("WebGPU adapter");
    let subgroups = gpu.subgroups;
    let (gpu_weights, cpu_weights) = tiny_model(&gpu, &a, dtype_of);
    // Chunks of 16: the 70-token prompt takes four tiled chunks and a 6-token one, and
    // attention walks keys past its first 64-key tile in prefill and decode.
    let mut model =
        LlamaModel::new(gpu, a.clone(), gpu_weights, LoadOptions { context: 96, prefill_chunk: 16, sequences: 1 })
            .unwrap();
    let mut cpu = CpuModel::new(&a, &cpu_weights);
    let prompt: Vec<u32> = (0..70u32).map(|i| (i * 37 + 11) % 256).collect();
    let mut want = Vec::new();
    for &id in &prompt {
        want = cpu.forward(id);
    }
    let mut id = model.prefill(&prompt, Sampling::Greedy).await.unwrap();
    let mut worst = 0.0f32;
    for step in 0..6 {
        let logits = model.logits(1).await.unwrap();
        let deviation = worst_deviation(&logits, &want);
        assert!(deviation < 1e-3, "step {step} (subgroups {subgroups}): logits deviate by {deviation} of the largest");
        worst = worst.max(deviation);
        assert_eq!(id as usize, reference::argmax(&logits), "step {step}: the chosen id is not the argmax");
        want = cpu.forward(id);
        id = model.decode(Sampling::Greedy).await.unwrap();
    }
    let dtypes = format!("{:?}", [GlobalWeight::TokenEmbedding.name(), "blk.0.attn_q.weight"].map(dtype_of));
    web_sys::console::log_1(
        &format!("forward {dtypes} vs CPU reference (subgroups {subgroups}): worst {worst:.2e}").into(),
    );
}

#[wasm_bindgen_test]
async fn forward_matches_cpu_reference_workgroup_reductions() {
    check_forward(false, tiny_architecture(), q4_model_dtype).await;
}

/// With subgroup reductions where the browser exposes them (otherwise the same path).
#[wasm_bindgen_test]
async fn forward_matches_cpu_reference_subgroups() {
    check_forward(true, tiny_architecture(), q4_model_dtype).await;
}

/// The dtypes of the GGUF files `convert` keeps as they are: K-quants, q5 and bf16, one per
/// kind of weight, on rows of whole 256-value super-blocks.
fn k_quant_model_dtype(name: &str) -> DType {
    use webjudge::format::schema::{layer_role, LayerWeight};
    let role = |weight: LayerWeight| layer_role(name) == Some(weight.suffix());
    match () {
        _ if name == GlobalWeight::TokenEmbedding.name() => DType::Q4K,
        _ if role(LayerWeight::AttnQ) || role(LayerWeight::AttnK) => DType::Q4K,
        _ if role(LayerWeight::AttnV) || role(LayerWeight::FfnDown) => DType::Q6K,
        _ if role(LayerWeight::AttnOutput) => DType::Q5K,
        _ if role(LayerWeight::FfnGate) => DType::Q5,
        _ => DType::Bf16,
    }
}

/// The forward pass over every dtype a K-quant GGUF brings, on the browser's WebGPU (no
/// `shader-f16`), against the CPU reference; with q/k/v biases, as a Qwen2.5 GGUF has.
#[wasm_bindgen_test]
async fn k_quant_forward_matches_cpu_reference() {
    let a = Architecture { hidden: 256, head_dim: 64, ffn: 512, qkv_bias: true, ..tiny_architecture() };
    check_forward(true, a, k_quant_model_dtype).await;
}

// ---------------------------------------------------------------------------------
// The JS API on the test model, and the loader.

/// First load downloads every shard (progress reaches the total); greedy ids equal the
/// transformers golden; a second load takes every shard from the cache with no shard
/// request; clearCache forgets exactly this model's files.
#[wasm_bindgen_test]
async fn load_generate_cache_and_clear() {
    let url = model_url("plain", "cache");
    clear(&url).await;
    let progress = Rc::new(RefCell::new(Vec::<(f64, f64)>::new()));
    let sink = Rc::clone(&progress);
    let on_progress = Closure::<dyn FnMut(f64, f64)>::new(move |l, t| sink.borrow_mut().push((l, t)));
    let started = web_time::Instant::now();
    let judge = load(&url, &[("onProgress", on_progress.as_ref().clone()), ("contextLength", 512.into())]).await;
    let network_ms = started.elapsed().as_millis();
    let info = judge.info().unwrap();
    assert_declared(&info, "ModelInfo");
    assert_declared(&get(&info, "architecture"), "Architecture");
    let total = number(&info, "weightBytes");
    let events = progress.borrow().clone();
    assert!(events.len() > 10, "byte-level progress: {} events", events.len());
    assert!(events.iter().all(|&(_, t)| t == total));
    assert!(events.windows(2).all(|w| w[0].0 <= w[1].0), "progress never went back without a retry");
    assert_eq!(events.last().unwrap().0, total);
    assert_eq!(get(&info, "fromCache").as_bool(), Some(false));
    assert_eq!(number(&info, "downloadedBytes"), total);
    assert_eq!(number(&info, "contextLength"), 512.0);
    assert_eq!(string(&info, "modelUrl"), url);
    assert_eq!(number(&get(&info, "architecture"), "layers"), 30.0);
    let stats = judge.shard_stats();
    assert_eq!((stats.downloaded, stats.from_cache, stats.rejected), (2, 0, 0));

    let (prompt, want) = golden_case();
    let ids = generate_ids(&judge, &prompt, TOKENS).await;
    assert_eq!(ids, want[..TOKENS], "greedy ids differ from transformers'");
    judge.unload().await.unwrap();

    let before = shard_requests(&server_log("cache").await).len();
    let started = web_time::Instant::now();
    let judge = load(&url, &[("contextLength", 512.into())]).await;
    let cached_ms = started.elapsed().as_millis();
    let info = judge.info().unwrap();
    assert_eq!(get(&info, "fromCache").as_bool(), Some(true));
    assert_eq!(number(&info, "downloadedBytes"), 0.0);
    assert_eq!(shard_requests(&server_log("cache").await).len(), before, "the second load requested shards");
    assert_eq!(judge.shard_stats().from_cache, 2);
    judge.unload().await.unwrap();
    web_sys::console::log_1(
        &format!("load of {total} bytes: network {network_ms} ms, cache {cached_ms} ms (with GPU upload)").into(),
    );

    // Clearing another model's files leaves these; clearing these empties them.
    clear(&model_url("plain", "other")).await;
    assert_eq!(cached_entries(&url).await, 4, "manifest, tokenizer and two shards");
    clear(&url).await;
    assert_eq!(cached_entries(&url).await, 0);
}

async fn cached_entries(base: &str) -> usize {
    let storage: web_sys::CacheStorage = get(&js_sys::global(), "caches").unchecked_into();
    let cache: web_sys::Cache = JsFuture::from(storage.open(loader::CACHE_NAME)).await.unwrap().unchecked_into();
    let keys: js_sys::Array = JsFuture::from(cache.keys()).await.unwrap().unchecked_into();
    keys.iter().filter(|r| r.unchecked_ref::<web_sys::Request>().url().starts_with(base)).count()
}

/// The first copy of shard 1 has a flipped byte: it is rejected, fetched again, and only
/// the good copy is cached (the next load takes it from the cache and accepts it).
#[wasm_bindgen_test]
async fn corrupt_shard_is_refetched_and_never_cached() {
    let url = model_url("corrupt", "bad");
    clear(&url).await;
    let judge = load(&url, &[("contextLength", 128.into())]).await;
    let stats = judge.shard_stats();
    assert_eq!((stats.rejected, stats.downloaded, stats.retried), (1, 2, 1));
    let log = server_log("bad").await;
    let first: Vec<_> = shard_requests(&log).into_iter().filter(|r| r.file.starts_with("weights-00001")).collect();
    assert_eq!(first.len(), 2, "the corrupt shard is fetched twice: {log:?}");
    judge.unload().await.unwrap();

    let judge = load(&url, &[("contextLength", 128.into())]).await;
    let stats = judge.shard_stats();
    assert_eq!((stats.from_cache, stats.rejected, stats.downloaded), (2, 0, 0), "the cached copy is the good one");
    judge.unload().await.unwrap();
    clear(&url).await;
}

/// Every shard's first transfer dies halfway; the loader continues from the bytes it has
/// with `Range: bytes=N-` and the server answers 206.
#[wasm_bindgen_test]
async fn cut_transfer_resumes_with_range() {
    let url = model_url("flaky", "resume");
    clear(&url).await;
    let judge = load(&url, &[("contextLength", 128.into()), ("parallel", 1.into())]).await;
    let stats = judge.shard_stats();
    assert_eq!((stats.downloaded, stats.resumed, stats.rejected), (2, 2, 0), "{stats:?}");
    let log = server_log("resume").await;
    let ranged: Vec<_> = shard_requests(&log).into_iter().filter(|r| r.range.is_some()).collect();
    assert_eq!(ranged.len(), 2, "{log:?}");
    assert!(ranged.iter().all(|r| r.status == Some(206) && r.range.as_deref() != Some("bytes=0-")));
    judge.unload().await.unwrap();
    clear(&url).await;
}

/// A server that ignores Range answers 200 with the whole file: the loader starts the
/// shard over instead of appending.
#[wasm_bindgen_test]
async fn cut_transfer_restarts_without_range_support() {
    let url = model_url("norange", "restart");
    clear(&url).await;
    let judge = load(&url, &[("contextLength", 128.into())]).await;
    let stats = judge.shard_stats();
    assert_eq!((stats.downloaded, stats.resumed, stats.retried, stats.rejected), (2, 0, 2, 0), "{stats:?}");
    judge.unload().await.unwrap();
    clear(&url).await;
}

/// The JS API's calls: results of both judge protocols (cancelled before they start:
/// SwiftShader on two cores prefills an Auto-J prompt at ~1 token/s, so real judgements
/// are left to the page's end-to-end test, tests/browser/), streaming and cancelling a
/// generation mid-way, two calls at once (serialized, identical), typed errors, unload.
#[wasm_bindgen_test]
async fn api_stream_cancel_serialize_and_errors() {
    let url = model_url("plain", "judge");
    let judge = load(&url, &[("contextLength", 1024.into())]).await;
    let input = object(&[
        ("query", "What is 2 + 2?".into()),
        ("response1", "4".into()),
        ("response2", "<img src=x onerror=alert(1)> 5".into()),
    ]);

    // An aborted signal: nothing is generated; the prompt is rendered and counted.
    let aborted = web_sys::AbortSignal::abort();
    let single = object(&[("query", "Say hi.".into()), ("response", "Hi!".into())]);
    let options = object(&[("signal", aborted.clone().into()), ("maxNewTokens", 8.into())]);
    let result = JsFuture::from(judge.single(single.into(), Some(options))).await.unwrap();
    assert_declared(&result, "SingleResult");
    assert!(get(&result, "rating").is_null());
    assert!(number(&result, "prompt_tokens") > 50.0);
    assert_eq!((string(&result, "finish").as_str(), number(&result, "generated_tokens")), ("cancelled", 0.0));
    let options = object(&[("signal", aborted.clone().into()), ("swap", true.into()), ("maxNewTokens", 8.into())]);
    let result = JsFuture::from(judge.pairwise(input.clone().into(), Some(options))).await.unwrap();
    let swapped = get(&result, "swapped");
    assert_declared(&result, "PairwiseResult");
    assert_declared(&swapped, "PairJudgement");
    assert_eq!(string(&swapped, "finish"), "cancelled");
    assert!(get(&result, "winner").is_null() && get(&result, "swapped_winner_mapped").is_null());
    assert!(get(&result, "combined").is_null() && get(&result, "consistent").as_bool() == Some(false));
    let options = object(&[("signal", aborted.into()), ("maxNewTokens", 8.into())]);
    let result = JsFuture::from(judge.generate("Hello".into(), Some(options))).await.unwrap();
    assert_declared(&result, "GenerateResult");
    assert_eq!(string(&result, "finish"), "cancelled");
    assert_eq!(get(&result, "ids").unchecked_into::<js_sys::Array>().length(), 0);

    // Aborting from onToken at the first piece stops before the next token; what was
    // streamed is the result's text.
    let controller = web_sys::AbortController::new().unwrap();
    let signal = controller.signal();
    let streamed = Rc::new(RefCell::new(String::new()));
    let sink = Rc::clone(&streamed);
    let stop = Closure::<dyn FnMut(String)>::new(move |text: String| {
        sink.borrow_mut().push_str(&text);
        controller.abort();
    });
    let options = object(&[("signal", signal.into()), ("maxNewTokens", 50.into()), ("onToken", stop.as_ref().clone())]);
    let (prompt, want) = golden_case();
    let result = JsFuture::from(judge.generate(prompt.clone(), Some(options))).await.unwrap();
    assert_eq!(string(&result, "finish"), "cancelled");
    let ids: Vec<u32> = serde_wasm_bindgen::from_value(get(&result, "ids")).unwrap();
    assert_eq!(ids, want[..1]);
    assert_eq!(*streamed.borrow(), string(&result, "text"));

    // Two calls at once run one after the other and agree.
    let options = || Some(object(&[("maxNewTokens", 1.into())]));
    let (a, b) = (judge.generate(prompt.clone(), options()), judge.generate(prompt.clone(), options()));
    let (a, b) = (JsFuture::from(a).await.unwrap(), JsFuture::from(b).await.unwrap());
    assert_eq!(string(&a, "text"), string(&b, "text"));
    assert_eq!(serde_wasm_bindgen::from_value::<Vec<u32>>(get(&b, "ids")).unwrap(), want[..1]);

    // Typed errors.
    let missing = object(&[("query", "q".into())]);
    let (name, message) = rejection(judge.pairwise(missing.into(), None)).await;
    assert_eq!((name.as_str(), message.as_str()), ("InvalidInput", "response1 must be a string"));
    let (name, _) = rejection(judge.pairwise(input.clone().into(), Some(object(&[("language", "fr".into())])))).await;
    assert_eq!(name, "InvalidInput");
    let long = object(&[("query", "word ".repeat(1200).into()), ("response", "ok".into())]);
    let (name, message) = rejection(judge.single(long.into(), None)).await;
    assert_eq!(name, "InputTooLong", "{message}");
    assert!(message.contains("1024-token context"), "{message}");

    judge.unload().await.unwrap();
    let (name, _) = rejection(judge.generate("Hello".into(), None)).await;
    assert_eq!(name, "Unloaded");
    assert!(judge.info().is_err());
}

/// A pair judged in both orders as one batch (two sequence slots) gives the critiques of the
/// forward and the swapped pair judged one at a time, streamed per order; `judgeBatch`
/// reports every item with the same critiques, and an item too long for the context as its
/// own error. The pair's prompt is 195 tokens: SwiftShader prefills it once (the other
/// inputs reuse what they share with it), and a few critique tokens show the sequences apart.
#[wasm_bindgen_test]
async fn swap_as_one_batch_matches_one_at_a_time() {
    let url = model_url("plain", "batch");
    let judge = load(&url, &[("contextLength", 256.into()), ("batchSize", 2.into())]).await;
    assert_eq!(number(&judge.info().unwrap(), "batchSize"), 2.0);
    let pair = |first: &str, second: &str| {
        object(&[("query", "2+2?".into()), ("response1", first.into()), ("response2", second.into())])
    };
    let tokens = || ("maxNewTokens", JsValue::from(3));

    let streamed = Rc::new(RefCell::new(HashMap::<String, String>::new()));
    let sink = Rc::clone(&streamed);
    let on_token = Closure::<dyn FnMut(String, String)>::new(move |text: String, order: String| {
        sink.borrow_mut().entry(order).or_default().push_str(&text);
    });
    let options = object(&[tokens(), ("swap", true.into()), ("onToken", on_token.as_ref().clone())]);
    let both = JsFuture::from(judge.pairwise(pair("4", "5").into(), Some(options))).await.unwrap();
    let swapped = get(&both, "swapped");
    // The two inputs share their first 80 tokens (up to response 1).
    let reused = number(&swapped, "reused_tokens");
    assert!((64.0..=80.0).contains(&reused), "the swapped order copies the shared prefix: {reused} tokens");
    let forward_alone = JsFuture::from(judge.pairwise(pair("4", "5").into(), Some(object(&[tokens()])))).await.unwrap();
    let swapped_alone = JsFuture::from(judge.pairwise(pair("5", "4").into(), Some(object(&[tokens()])))).await.unwrap();
    assert_eq!(string(&both, "critique"), string(&forward_alone, "critique"));
    assert_eq!(string(&swapped, "critique"), string(&swapped_alone, "critique"));
    assert_eq!(streamed.borrow()["forward"], string(&both, "critique"));
    assert_eq!(streamed.borrow()["swapped"], string(&swapped, "critique"));

    let judged = Rc::new(RefCell::new(HashMap::<u32, (JsValue, JsValue)>::new()));
    let sink = Rc::clone(&judged);
    let on_judged = Closure::<dyn FnMut(u32, JsValue, JsValue)>::new(move |index, result, error| {
        assert!(sink.borrow_mut().insert(index, (result, error)).is_none(), "item {index} reported once");
    });
    let too_long =
        object(&[("query", "word ".repeat(300).into()), ("response1", "a".into()), ("response2", "b".into())]);
    // A row as parseRows gives it: its index, scenario and label go into the record.
    let row = pair("5", "4");
    for (field, value) in [("index", JsValue::from(7)), ("scenario", "chitchat".into()), ("label", "tie".into())] {
        Reflect::set(&row, &field.into(), &value).unwrap();
    }
    let items: js_sys::Array = [pair("4", "5"), too_long, row].iter().collect();
    let options = object(&[tokens(), ("onJudged", on_judged.as_ref().clone())]);
    JsFuture::from(judge.judge_batch(items.into(), options)).await.unwrap();
    let judged = judged.take();
    assert_eq!(judged.len(), 3);
    let (first, third) = (&judged[&0].0, &judged[&2].0);
    assert_eq!(string(first, "critique"), string(&forward_alone, "critique"));
    assert_eq!((number(first, "index"), get(first, "label").is_null()), (0.0, true));
    assert_eq!(string(third, "critique"), string(&swapped_alone, "critique"));
    assert_eq!(
        (number(third, "index"), string(third, "scenario"), string(third, "label")),
        (7.0, "chitchat".into(), "tie".into())
    );
    let (record, error) = &judged[&1];
    assert_eq!(String::from(error.unchecked_ref::<js_sys::Error>().name()), "InputTooLong");
    assert_eq!(string(record, "error"), String::from(error.unchecked_ref::<js_sys::Error>().message()));
    judge.unload().await.unwrap();
}

/// A destroyed device surfaces as DeviceLost on the next call and every later one;
/// loading again gives a working judge.
#[wasm_bindgen_test]
async fn device_loss_then_reload() {
    let url = model_url("plain", "lost");
    let judge = load(&url, &[("contextLength", 128.into())]).await;
    judge.with_engine(|engine| engine.model().gpu().device.destroy()).await.unwrap();
    for _ in 0..2 {
        let options = Some(object(&[("maxNewTokens", 2.into())]));
        let (name, message) = rejection(judge.generate("Hello".into(), options)).await;
        assert_eq!(name, "DeviceLost", "{message}");
    }
    let judge = load(&url, &[("contextLength", 128.into())]).await;
    let (prompt, want) = golden_case();
    assert_eq!(generate_ids(&judge, &prompt, 1).await, want[..1]);
    judge.unload().await.unwrap();
    clear(&url).await;
}

/// `judge.profile` in the browser (a short context keeps the prefill chunk, the room left
/// after the prompt, small): every kernel of both steps timed, the shares summing to 1, and
/// the weight kernels reading each matrix once per decoded token.
#[wasm_bindgen_test]
async fn profile_times_every_kernel() {
    let url = model_url("plain", "profile");
    // One sequence: the decode step profiled is one of `batchSize` sequences, and the weight
    // traffic checked below is one sequence's.
    let judge = load(&url, &[("contextLength", 12.into()), ("batchSize", 1.into())]).await;
    let (name, message) = rejection(judge.profile(Some(object(&[("contextTokens", 12.into())])))).await;
    assert_eq!(name, "InvalidInput", "{message}");

    let options = object(&[("contextTokens", 4.into()), ("runs", 1.into())]);
    let profile = JsFuture::from(judge.profile(Some(options))).await.unwrap();
    assert_declared(&profile, "Profile");
    let decode: js_sys::Array = get(&profile, "decode").unchecked_into();
    decode.iter().for_each(|kernel| assert_declared(&kernel, "KernelTime"));
    let profile: serde_json::Value = serde_wasm_bindgen::from_value(profile).unwrap();
    let markdown = profile["markdown"].as_str().unwrap();
    web_sys::console::log_1(&markdown.into());
    assert!(["timestamps", "wall_per_submit"].contains(&profile["clock"].as_str().unwrap()));
    assert_eq!(profile["contextTokens"], 4);
    assert_eq!(profile["prefill"]["tokens"], 8);
    let check_step = |kernels: &serde_json::Value| {
        let kernels = kernels.as_array().unwrap();
        let mut labels: Vec<&str> = kernels.iter().map(|k| k["kernel"].as_str().unwrap()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), kernels.len(), "one row per kernel label");
        assert!(labels.iter().all(|label| !label.is_empty() && markdown.contains(&format!("| {label} |"))));
        for kernel in kernels {
            assert!(kernel["msPerToken"].as_f64().unwrap() > 0.0, "{kernel}");
            assert!(kernel["callsPerToken"].as_f64().unwrap() > 0.0, "{kernel}");
        }
        let shares: f64 = kernels.iter().map(|k| k["share"].as_f64().unwrap()).sum();
        assert!((shares - 1.0).abs() < 1e-6, "shares sum to {shares}");
    };
    check_step(&profile["decode"]);
    check_step(&profile["prefill"]["kernels"]);

    // Weight bytes read per decoded token: every matrix once (and one embedding row).
    let read: f64 = profile["decode"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| Some(k["weightGbPerSecond"].as_f64()? * k["msPerToken"].as_f64().unwrap() * 1e6))
        .sum();
    let manifest = fetch_manifest(&url).await;
    let matrices: u64 =
        manifest.tensors.iter().filter(|t| t.shape.len() == 2).flat_map(|t| t.parts.iter().map(|p| p.length)).sum();
    assert!((read / matrices as f64 - 1.0).abs() < 0.01, "{read} bytes read per token, matrices hold {matrices}");
    judge.unload().await.unwrap();
}

async fn fetch_manifest(url: &str) -> Manifest {
    let response = JsFuture::from(global_fetch(&format!("{url}manifest.json"))).await.unwrap();
    let text = JsFuture::from(response.unchecked_into::<web_sys::Response>().text().unwrap()).await.unwrap();
    Manifest::from_json(&text.as_string().unwrap()).unwrap()
}

/// A transfer that goes silent halfway (no error, no bytes) is aborted after the stall
/// timeout and resumed with a Range request. The loader alone, without a GPU.
#[wasm_bindgen_test]
async fn stalled_transfer_is_aborted_and_resumed() {
    let url = model_url("stall", "stall");
    let manifest = fetch_manifest(&url).await;
    let options = loader::ShardOptions { parallel: 2, retries: 3, backoff_ms: 10, stall_ms: 2500 };
    let accept = |index: usize, bytes: &[u8]| {
        let shard = &manifest.shards[index];
        verify_shard(&shard.file, shard.size, &shard.sha256, bytes)
    };
    let started = web_time::Instant::now();
    let stats = loader::load_shards(&url, &manifest, None, &options, &|_, _| {}, &accept).await.unwrap();
    assert_eq!((stats.downloaded, stats.rejected), (2, 0), "{stats:?}");
    // Each stalled shard is retried and resumes from the bytes that reached the page. On a
    // loaded machine the stall timeout can fire before a shard's first chunk was read (seen
    // in CI): that shard starts over instead, so one resume is the least asked for.
    assert!(stats.resumed >= 1 && stats.retried >= 2, "{stats:?}");
    // Both shards stall at once for 2.5 s; the server would have kept them silent for 20 s.
    let seconds = started.elapsed().as_secs_f64();
    assert!(seconds < 15.0, "took {seconds:.1} s");
}

/// Refusals before any download, with their numbers.
#[wasm_bindgen_test]
async fn fit_refusals() {
    let url = model_url("plain", "fit");
    let (name, message) = load_refusal(&url, &[("contextLength", 9000.into())]).await;
    assert_eq!(name, "InvalidInput");
    assert_eq!(message, "contextLength 9000 exceeds the model's context of 8192 tokens");
    let (name, message) = load_refusal(&url, &[("batchSize", 9.into())]).await;
    assert_eq!(name, "InvalidInput");
    assert_eq!(message, "batchSize 9 exceeds the 8 sequences the engine decodes together");
    assert!(shard_requests(&server_log("fit").await).is_empty(), "nothing downloaded");

    let manifest = fetch_manifest(&url).await;
    let at = |context, sequences| LoadOptions { context, prefill_chunk: CPU_PREFILL_CHUNK, sequences };
    let estimate = fit::estimate(&manifest, at(8192, 1));
    // 30 layers x K and V x 8192 positions x 192 values x 2 bytes.
    assert_eq!(estimate.kv_cache, 30 * 2 * 8192 * 192 * 2);
    assert_eq!(estimate.kv_layer_buffer, 8192 * 192 * 2);
    assert!(estimate.weights >= manifest.total_bytes() - 4096 && estimate.weights <= manifest.total_bytes() + 4096);
    // A GPU's 512-token chunk: 384 tokens more of every per-token activation, 19,200 bytes of
    // f32s each (residual, normed, q and attended of 576 values, q/k/v of 960, gate of 1536),
    // and its id and place.
    let longer = fit::estimate(&manifest, LoadOptions { prefill_chunk: GPU_PREFILL_CHUNK, ..at(8192, 1) });
    let grown = longer.activations - estimate.activations;
    assert!((384 * 19_200..=384 * 19_300).contains(&grown), "{grown}");

    // An adapter binding 1 MiB cannot hold the 18 MiB embedding part.
    let refusal = fit::check_limits(&estimate, &manifest.architecture, 1 << 20, 1 << 30).unwrap_err().to_string();
    assert!(refusal.starts_with("tensor token_embd.weight has a "), "{refusal}");
    assert!(refusal.contains("binds at most 1.0 MiB"), "{refusal}");
    // Binding 2 MiB: a 3 MiB KV layer buffer does not fit; 5461 positions would, rounded to 5376.
    let mut small = estimate.clone();
    small.largest_part.1 = 1 << 20;
    let refusal = fit::check_limits(&small, &manifest.architecture, 2 << 20, 1 << 30).unwrap_err().to_string();
    assert_eq!(
        refusal,
        "the KV cache at context 8192 needs 3.0 MiB per layer buffer, but this adapter binds at most 2.0 MiB; \
         try contextLength: 5376"
    );
    let oom = fit::out_of_memory(&estimate, false, "out of memory").to_string();
    assert!(oom.starts_with("model needs 279."), "{oom}");
    assert!(oom.contains("KV cache 180.0 MiB at context 8192"), "{oom}");
    assert!(oom.ends_with("try contextLength: 4096"), "{oom}");

    // Batching: a KV cache slot per sequence, chosen from the weights' size and the binding.
    let batched = fit::estimate(&manifest, at(512, 4));
    assert_eq!(batched.kv_cache, 4 * 30 * 2 * 512 * 192 * 2);
    assert!(fit::out_of_memory(&batched, false, "oom").to_string().contains("at context 512 for 4 sequences"));
    let binding = 1 << 30;
    assert_eq!(fit::batch_size(&manifest, &at(8192, 1), None, binding), 1, "one slot (180 MiB) outweighs the weights");
    assert_eq!(fit::batch_size(&manifest, &at(512, 1), None, binding), 8);
    assert_eq!(fit::batch_size(&manifest, &at(512, 1), Some(3), binding), 3);
    // Two 3 MiB slots per layer buffer in a 7 MiB binding.
    assert_eq!(fit::batch_size(&manifest, &at(8192, 1), Some(8), 7 << 20), 2);
}

/// The exports that need no model: the defaults and the protocol table the page reads (the
/// CLI's), and the metrics of no records, each as its declarations say.
#[wasm_bindgen_test]
fn model_free_exports_match_their_declarations() {
    let settings = defaults();
    assert_declared(&settings, "Defaults");
    assert_eq!((number(&settings, "maxNewTokens"), number(&settings, "generateMaxNewTokens")), (1024.0, 256.0));
    let table: js_sys::Array = protocols().unchecked_into();
    let names: Vec<String> = table.iter().map(|protocol| string(&protocol, "name")).collect();
    assert_eq!(names, webjudge::judge::Protocol::ALL.map(|protocol| protocol.name().to_string()));
    for protocol in table.iter() {
        assert_declared(&protocol, "ProtocolInfo");
    }
    let compare = table.iter().find(|protocol| string(protocol, "name") == "prometheus_relative_ref").unwrap();
    assert_eq!((string(&compare, "method"), get(&compare, "reference").as_bool()), ("compare".into(), Some(true)));
    let method =
        |name: &str| string(&table.iter().find(|protocol| string(protocol, "name") == name).unwrap(), "method");
    assert_eq!(
        ["skywork", "compassjudger_arena", "selene_absolute_ref", "selene_classification", "flowjudge"].map(method),
        ["compare", "compare", "rubric", "classify", "rubric"]
    );
    let presets: js_sys::Array = built_in_rubrics(Some("flowjudge".into())).unwrap().unchecked_into();
    let names: Vec<String> = presets.iter().map(|preset| string(&preset, "name")).collect();
    assert_eq!(names, ["response_correctness_binary", "response_correctness_3point", "response_correctness_5point"]);
    let selene: js_sys::Array = built_in_rubrics(Some("selene".into())).unwrap().unchecked_into();
    assert_eq!(selene.length(), 0);
    let none = || js_sys::Array::new().into();
    assert_declared(&pairwise_metrics(none()).unwrap(), "PairwiseMetrics");
    assert_declared(&preference_metrics(none()).unwrap(), "PreferenceMetrics");
    assert_declared(&score_metrics(none()).unwrap(), "ScoreMetrics");
}
