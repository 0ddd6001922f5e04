//! Loading a model directory over HTTP into a [`JsJudge`]: the manifest and tokenizer, the
//! fit checks ([`fit`]), the GPU buffers allocated before a byte of weights is fetched, then
//! the shards, verified and cached ([`loader`]), uploaded as they arrive. A GGUF URL goes to
//! [`super::gguf`], which shares the steps around its download ([`prepare`], [`allocate`],
//! [`finish`]).

use std::cell::RefCell;
use std::collections::HashMap;

use wasm_bindgen::JsValue;

use super::arguments::LoadSettings;
use super::class::JsJudge;
use super::loader::{self, ShardStats};
use super::opfs::Source;
use super::types::{ArchitectureInfo, ModelInfo};
use super::{fit, WebError};
use crate::engine::Engine;
use crate::format::manifest::{MANIFEST_FILE, TOKENIZER_FILE};
use crate::format::Manifest;
use crate::judge::session::Judge;
use crate::kernels::{Gpu, GpuOptions, GpuTensor};
use crate::model::{LlamaModel, LoadError, LoadOptions, ShardUploader};
use crate::tokenizer::Tokenizer;

/// `Judge.load`: the manifest and tokenizer, the fit, the GPU, then the verified shards; a
/// GGUF URL is loaded by [`super::gguf::load`].
pub async fn load(model_url: &str, settings: LoadSettings) -> Result<JsJudge, WebError> {
    if super::gguf::is_gguf_url(model_url) {
        return super::gguf::load(model_url, settings).await;
    }
    if settings.signal.is_some() {
        return Err(WebError::InvalidInput(
            "signal: only a GGUF file's load can be cancelled yet, not a model directory's".into(),
        ));
    }
    loader::require_webgpu()?;
    let base = loader::base_url(model_url)?;
    let cache = loader::open_cache().await;
    let manifest_url = format!("{base}{MANIFEST_FILE}");
    let manifest = Manifest::from_json(&loader::fetch_text(&manifest_url, cache.as_ref()).await?)
        .map_err(|e| WebError::Model(format!("{manifest_url}: {e}")))?;
    let tokenizer_url = format!("{base}{TOKENIZER_FILE}");
    let tokenizer = Tokenizer::from_json(&loader::fetch_text(&tokenizer_url, cache.as_ref()).await?)
        .map_err(|e| WebError::Model(format!("{tokenizer_url}: {e}")))?;
    let prepared = prepare(&manifest, &settings).await?;
    let device = prepared.gpu.device.clone();
    let progress = progress_callback(&settings);
    let uploaded = async {
        let (uploader, estimate) =
            allocate(&prepared, &manifest, || ShardUploader::new(&prepared.gpu, &manifest)).await?;
        let uploader = RefCell::new(uploader);
        let accept = |index: usize, bytes: &[u8]| uploader.borrow_mut().upload_shard(index, bytes);
        let stats = loader::load_shards(&base, &manifest, cache.as_ref(), &settings.shards, &progress, &accept).await?;
        Ok::<_, WebError>((uploader.into_inner().finish()?, stats, estimate))
    };
    let (weights, stats, estimate) = match uploaded.await {
        Ok(done) => done,
        Err(error) => {
            device.destroy();
            return Err(error);
        }
    };
    finish(prepared, estimate, weights, manifest, tokenizer, LoadedFrom::Directory(base), stats).await
}

/// Where a loaded model came from, as `info()` tells.
pub(super) enum LoadedFrom {
    /// A model directory, by its base URL.
    Directory(String),
    /// A GGUF model: its URL and files' sha256s, and whether those were the host's or the
    /// page's.
    Gguf(Source),
}

/// A model's GPU and what fits on it, decided before any weight is fetched.
pub(super) struct Prepared {
    pub gpu: Gpu,
    estimate: fit::Estimate,
}

/// The GPU, and the estimate of what fits on it with the context and batch asked for and the
/// adapter's prefill chunk (`manifest`'s architecture and tensors are read, not its shards).
pub(super) async fn prepare(manifest: &Manifest, settings: &LoadSettings) -> Result<Prepared, WebError> {
    let context = fit::context_length(&manifest.architecture, settings.context)?;
    let gpu_options = GpuOptions { allow_subgroups: settings.subgroups, matvec: settings.matvec, ..Default::default() };
    let gpu = Gpu::new(gpu_options).await?;
    let a = &manifest.architecture;
    let options = LoadOptions { context, ..LoadOptions::for_adapter(a, &gpu, manifest.widest_ordered_input()) };
    let sequences = fit::batch_size(manifest, &options, settings.batch_size, gpu.max_binding());
    let estimate = fit::estimate(manifest, LoadOptions { sequences, ..options });
    Ok(Prepared { gpu, estimate })
}

/// `onProgress(loaded, total)` as a closure; what the callback throws is logged.
pub(super) fn progress_callback(settings: &LoadSettings) -> impl Fn(u64, u64) + '_ {
    |loaded: u64, total: u64| {
        if let Some(callback) = &settings.on_progress {
            if let Err(error) = callback.call2(&JsValue::NULL, &(loaded as f64).into(), &(total as f64).into()) {
                web_sys::console::error_2(&"webjudge: onProgress threw".into(), &error);
            }
        }
    }
}

/// Checks the adapter's limits, allocates every weight buffer (`make`) and probes the KV
/// cache's and activations' (all before downloading; a batch whose KV cache cannot be
/// allocated is halved until it can, down to one sequence). Returns what `make` made and
/// the estimate of what fits.
pub(super) async fn allocate<T>(
    prepared: &Prepared,
    manifest: &Manifest,
    make: impl FnOnce() -> Result<T, LoadError>,
) -> Result<(T, fit::Estimate), WebError> {
    let gpu = &prepared.gpu;
    let estimate = prepared.estimate.clone();
    fit::check_limits(
        &estimate,
        &manifest.architecture,
        gpu.limits.max_storage_buffer_binding_size,
        gpu.limits.max_buffer_size,
    )?;
    let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let made = make();
    if let Some(error) = scope.pop().await {
        return Err(fit::out_of_memory(&estimate, true, &error.to_string()));
    }
    let made = made?;
    // The KV cache and activations are allocated with the model after the download
    // (they need the uploaded weights); buffers of their sizes made now and released
    // tell whether they will fit before anything is fetched.
    let mut estimate = estimate;
    loop {
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let layers = manifest.architecture.n_layers;
        let probes: Vec<wgpu::Buffer> = (0..2 * layers)
            .map(|_| gpu.storage("kv cache probe", estimate.kv_layer_buffer))
            .chain([gpu.storage("activations probe", estimate.activations)])
            .collect();
        let failed = scope.pop().await;
        probes.iter().for_each(wgpu::Buffer::destroy);
        match failed {
            None => break,
            Some(_) if estimate.options.sequences > 1 => {
                let sequences = estimate.options.sequences / 2;
                estimate = fit::estimate(manifest, LoadOptions { sequences, ..estimate.options });
            }
            Some(error) => return Err(fit::out_of_memory(&estimate, false, &error.to_string())),
        }
    }
    Ok((made, estimate))
}

/// The model built over the uploaded `weights`, and the `Judge` JavaScript gets.
pub(super) async fn finish(
    prepared: Prepared,
    estimate: fit::Estimate,
    weights: HashMap<String, GpuTensor>,
    manifest: Manifest,
    tokenizer: Tokenizer,
    from: LoadedFrom,
    stats: ShardStats,
) -> Result<JsJudge, WebError> {
    let gpu = prepared.gpu;
    let context = estimate.options.context;
    let device = gpu.device.clone();
    let adapter = gpu.describe();
    let subgroups = gpu.subgroups;
    let matvec = gpu.matvec;
    let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let architecture = manifest.architecture.clone();
    let model = LlamaModel::new(gpu, architecture, weights, estimate.options.clone());
    if let Some(error) = scope.pop().await {
        device.destroy();
        return Err(fit::out_of_memory(&estimate, false, &error.to_string()));
    }
    let model = model.inspect_err(|_| device.destroy())?;
    let a = &manifest.architecture;
    let (model_url, sha256, sha256_verified) = match from {
        LoadedFrom::Directory(base) => (base, None, false),
        LoadedFrom::Gguf(source) => (source.url.clone(), Some(source.sha256()), source.verified),
    };
    let info = ModelInfo {
        model_url,
        sha256,
        sha256_verified,
        adapter,
        subgroups,
        matvec,
        context_length: context,
        batch_size: model.sequences(),
        prefill_chunk: model.prefill_chunk(),
        weight_bytes: manifest.total_bytes(),
        kv_cache_bytes: estimate.kv_cache,
        from_cache: stats.downloaded == 0,
        downloaded_bytes: stats.downloaded_bytes,
        judge: manifest.judge,
        architecture: ArchitectureInfo {
            layers: a.n_layers,
            hidden: a.hidden,
            heads: a.n_heads,
            kv_heads: a.n_kv_heads,
            head_dim: a.head_dim,
            ffn: a.ffn,
            vocab: a.vocab,
            context: a.context_length,
        },
    };
    Ok(JsJudge::new(Judge::new(Engine::new(model, tokenizer, manifest)), info, stats))
}
