//! Loading a model directory from the local file system.

use std::path::Path;

use super::{Engine, EngineError};
use crate::kernels::{Gpu, GpuOptions};
use crate::model::{LlamaModel, LoadError, LoadOptions, ShardUploader};
use crate::tokenizer::Tokenizer;
use crate::weights::manifest::{MANIFEST_FILE, TOKENIZER_FILE};
use crate::weights::Manifest;

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|e| LoadError::Io(format!("{}: {e}", path.display())))
}

/// Reads and verifies `dir`'s manifest, tokenizer and shards onto a new GPU context.
/// `options` adjusts the context length and prefill chunk (default: the model's);
/// `on_progress(done, total)` reports shard bytes as they are uploaded.
pub fn load_dir(
    dir: &Path,
    gpu_options: GpuOptions,
    options: impl FnOnce(LoadOptions) -> LoadOptions,
    on_progress: &mut dyn FnMut(u64, u64),
) -> Result<Engine, EngineError> {
    let manifest_text = read(&dir.join(MANIFEST_FILE))?;
    let manifest = Manifest::from_json(&String::from_utf8_lossy(&manifest_text)).map_err(LoadError::from)?;
    let tokenizer_text = read(&dir.join(TOKENIZER_FILE))?;
    let tokenizer = Tokenizer::from_json(&String::from_utf8_lossy(&tokenizer_text))?;
    let gpu = pollster::block_on(Gpu::new(gpu_options)).map_err(LoadError::from)?;
    let mut uploader = ShardUploader::new(&gpu, &manifest)?;
    let total = manifest.total_bytes();
    let mut done = 0;
    on_progress(done, total);
    for (index, shard) in manifest.shards.iter().enumerate() {
        let bytes = read(&dir.join(&shard.file))?;
        uploader.upload_shard(index, &bytes)?;
        done += shard.size;
        on_progress(done, total);
    }
    let weights = uploader.finish()?;
    let architecture = manifest.architecture.clone();
    let options = options(LoadOptions::for_model(&architecture));
    let model = LlamaModel::new(gpu, architecture, weights, options)?;
    Ok(Engine::new(model, tokenizer, manifest))
}
