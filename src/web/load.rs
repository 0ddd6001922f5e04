//! Loading a model directory over HTTP into a [`JsJudge`]: the manifest and tokenizer, the
//! fit checks ([`fit`]), the GPU buffers allocated before a byte of weights is fetched, then
//! the shards, verified and cached ([`loader`]), uploaded as they arrive.

use std::cell::RefCell;
use std::collections::HashMap;

use wasm_bindgen::JsValue;

use super::arguments::LoadSettings;
use super::class::JsJudge;
use super::loader::{self, ShardOptions, ShardStats};
use super::types::{ArchitectureInfo, ModelInfo};
use super::{fit, WebError};
use crate::engine::Engine;
use crate::format::manifest::{MANIFEST_FILE, TOKENIZER_FILE};
use crate::format::Manifest;
use crate::judge::session::Judge;
use crate::kernels::{Gpu, GpuOptions, GpuTensor};
use crate::model::{LlamaModel, ShardUploader};
use crate::tokenizer::Tokenizer;

/// `Judge.load`: the manifest and tokenizer, the fit, the GPU, then the verified shards.
pub async fn load(model_url: &str, settings: LoadSettings) -> Result<JsJudge, WebError> {
    loader::require_webgpu()?;
    let base = loader::base_url(model_url)?;
    let cache = loader::open_cache().await;
    let manifest_url = format!("{base}{MANIFEST_FILE}");
    let manifest = Manifest::from_json(&loader::fetch_text(&manifest_url, cache.as_ref()).await?)
        .map_err(|e| WebError::Model(format!("{manifest_url}: {e}")))?;
    let tokenizer_url = format!("{base}{TOKENIZER_FILE}");
    let tokenizer = Tokenizer::from_json(&loader::fetch_text(&tokenizer_url, cache.as_ref()).await?)
        .map_err(|e| WebError::Model(format!("{tokenizer_url}: {e}")))?;
    let context = fit::context_length(&manifest.architecture, settings.context)?;

    let gpu = Gpu::new(GpuOptions { allow_subgroups: settings.subgroups }).await?;
    let max_binding = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size);
    let sequences = fit::batch_size(&manifest, context, settings.batch_size, max_binding);
    let estimate = fit::estimate(&manifest, context, sequences);
    let device = gpu.device.clone();
    let progress = |loaded: u64, total: u64| {
        if let Some(callback) = &settings.on_progress {
            if let Err(error) = callback.call2(&JsValue::NULL, &(loaded as f64).into(), &(total as f64).into()) {
                web_sys::console::error_2(&"webjudge: onProgress threw".into(), &error);
            }
        }
    };
    let uploaded = upload(&gpu, &manifest, estimate, &base, cache.as_ref(), &settings.shards, &progress).await;
    let (weights, stats, estimate) = match uploaded {
        Ok(done) => done,
        Err(error) => {
            device.destroy();
            return Err(error);
        }
    };
    let adapter = gpu.describe();
    let subgroups = gpu.subgroups;
    let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let architecture = manifest.architecture.clone();
    let options = fit::load_options(context, estimate.sequences);
    let model = LlamaModel::new(gpu, architecture, weights, options);
    if let Some(error) = scope.pop().await {
        device.destroy();
        return Err(fit::out_of_memory(&estimate, false, &error.to_string()));
    }
    let model = model.inspect_err(|_| device.destroy())?;
    let a = &manifest.architecture;
    let info = ModelInfo {
        model_url: base,
        adapter,
        subgroups,
        context_length: context,
        batch_size: model.sequences(),
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

/// Checks the adapter's limits, allocates every weight buffer and probes the KV cache's
/// and activations' (all before downloading; a batch whose KV cache cannot be allocated is
/// halved until it can, down to one sequence), then streams the shards in. Returns the
/// estimate of what fits.
async fn upload(
    gpu: &Gpu,
    manifest: &Manifest,
    estimate: fit::Estimate,
    base: &str,
    cache: Option<&web_sys::Cache>,
    shards: &ShardOptions,
    progress: &dyn Fn(u64, u64),
) -> Result<(HashMap<String, GpuTensor>, ShardStats, fit::Estimate), WebError> {
    fit::check_limits(
        &estimate,
        &manifest.architecture,
        gpu.limits.max_storage_buffer_binding_size,
        gpu.limits.max_buffer_size,
    )?;
    let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let uploader = ShardUploader::new(gpu, manifest);
    if let Some(error) = scope.pop().await {
        return Err(fit::out_of_memory(&estimate, true, &error.to_string()));
    }
    let uploader = RefCell::new(uploader?);
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
            Some(_) if estimate.sequences > 1 => {
                estimate = fit::estimate(manifest, estimate.context, estimate.sequences / 2);
            }
            Some(error) => return Err(fit::out_of_memory(&estimate, false, &error.to_string())),
        }
    }
    let accept = |index: usize, bytes: &[u8]| uploader.borrow_mut().upload_shard(index, bytes);
    let stats = loader::load_shards(base, manifest, cache, shards, progress, &accept).await?;
    Ok((uploader.into_inner().finish()?, stats, estimate))
}
