//! Loading a model directory from the local file system.

use std::path::Path;

use super::{Engine, EngineError};
use crate::format::checked_file::{self, ReadError, RegularFile};
use crate::format::manifest::{ManifestError, MANIFEST_FILE, TOKENIZER_FILE};
use crate::format::{Manifest, ShardEntry};
use crate::kernels::{Gpu, GpuOptions};
use crate::model::{LlamaModel, LoadError, LoadOptions, ShardUploader};
use crate::tokenizer::Tokenizer;

/// Opens a shard of `dir`, checked to be a regular file of the manifest's size.
fn open_shard(dir: &Path, shard: &ShardEntry) -> Result<RegularFile, LoadError> {
    let path = dir.join(&shard.file);
    let file = checked_file::open(&path)?;
    if file.size != shard.size {
        return Err(LoadError::ShardSize { file: path.display().to_string(), expected: shard.size, found: file.size });
    }
    Ok(file)
}

/// A model directory's manifest that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestFileError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{path}: {source}")]
    Parse { path: String, source: ManifestError },
}

/// `dir`'s manifest, and its bytes (a batch output names the model by their hash,
/// [`crate::judge::output::RunOptions::model_id`]).
pub fn read_manifest(dir: &Path) -> Result<(Manifest, Vec<u8>), ManifestFileError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = checked_file::read(&path, checked_file::MANIFEST)?;
    let manifest = Manifest::from_json(&String::from_utf8_lossy(&bytes))
        .map_err(|source| ManifestFileError::Parse { path: path.display().to_string(), source })?;
    Ok((manifest, bytes))
}

/// Reads `dir`'s manifest and tokenizer (no GPU needed).
pub fn read_metadata(dir: &Path) -> Result<(Manifest, Tokenizer), EngineError> {
    let manifest_text =
        checked_file::read(&dir.join(MANIFEST_FILE), checked_file::MANIFEST).map_err(LoadError::from)?;
    let manifest = Manifest::from_json(&String::from_utf8_lossy(&manifest_text)).map_err(LoadError::from)?;
    let tokenizer = Tokenizer::from_file(dir.join(TOKENIZER_FILE))?;
    Ok((manifest, tokenizer))
}

/// Reads and verifies `dir`'s manifest, tokenizer and shards onto a new GPU context.
/// `options` adjusts the context length and prefill chunk (default: the model's), which
/// are checked ([`LoadOptions::check`]) before any weight is read;
/// `on_progress(done, total)` reports shard bytes as they are uploaded.
pub fn load_dir(
    dir: &Path,
    gpu_options: GpuOptions,
    options: impl FnOnce(LoadOptions) -> LoadOptions,
    on_progress: &mut dyn FnMut(u64, u64),
) -> Result<Engine, EngineError> {
    let (manifest, tokenizer) = read_metadata(dir)?;
    let architecture = manifest.architecture.clone();
    let options = options(LoadOptions::for_model(&architecture));
    // Every shard is there and of its size before the GPU is touched.
    for shard in &manifest.shards {
        open_shard(dir, shard)?;
    }
    let gpu = pollster::block_on(Gpu::new(gpu_options)).map_err(LoadError::from)?;
    // Refused before the weights are read, not after (the model checks them again).
    options.check(&architecture, manifest.widest_ordered_input(), &gpu.limits)?;
    let mut uploader = ShardUploader::new(&gpu, &manifest)?;
    let total = manifest.total_bytes();
    let mut done = 0;
    on_progress(done, total);
    for (index, shard) in manifest.shards.iter().enumerate() {
        let bytes = open_shard(dir, shard)?.read_all().map_err(LoadError::from)?;
        uploader.upload_shard(index, &bytes)?;
        done += shard.size;
        on_progress(done, total);
    }
    let weights = uploader.finish()?;
    let model = LlamaModel::new(gpu, architecture, weights, options)?;
    Ok(Engine::new(model, tokenizer, manifest))
}
