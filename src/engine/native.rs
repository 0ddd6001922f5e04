//! Loading a model directory from the local file system.

use std::io::Read;
use std::path::Path;

use super::{Engine, EngineError};
use crate::kernels::{Gpu, GpuOptions};
use crate::model::{LlamaModel, LoadError, LoadOptions, ShardUploader};
use crate::tokenizer::Tokenizer;
use crate::weights::manifest::{MANIFEST_FILE, TOKENIZER_FILE};
use crate::weights::Manifest;

/// `manifest.json` and `tokenizer.json` are far smaller than this; a larger one (or a
/// device such as /dev/zero in its place) is refused before it is read.
pub(crate) const MAX_METADATA_BYTES: u64 = 256 << 20;

/// Checks that `path` is a regular file of the size expected (a shard's, from the manifest)
/// or of at most [`MAX_METADATA_BYTES`], and returns its size.
fn checked_size(path: &Path, expected_size: Option<u64>) -> Result<u64, LoadError> {
    let metadata = std::fs::metadata(path).map_err(|e| LoadError::Io(format!("{}: {e}", path.display())))?;
    if !metadata.is_file() {
        return Err(LoadError::Io(format!("{}: not a regular file", path.display())));
    }
    match expected_size {
        Some(expected) if metadata.len() != expected => {
            Err(LoadError::ShardSize { file: path.display().to_string(), expected, found: metadata.len() })
        }
        None if metadata.len() > MAX_METADATA_BYTES => Err(LoadError::Io(format!(
            "{}: {} bytes, more than the {MAX_METADATA_BYTES} a model directory's metadata may have",
            path.display(),
            metadata.len()
        ))),
        _ => Ok(metadata.len()),
    }
}

/// Reads one file of the model directory, checked by [`checked_size`] first.
fn read(path: &Path, expected_size: Option<u64>) -> Result<Vec<u8>, LoadError> {
    let size = checked_size(path, expected_size)?;
    let failed = |e: std::io::Error| LoadError::Io(format!("{}: {e}", path.display()));
    let mut bytes = Vec::with_capacity(size as usize);
    // A file that grows while it is read is cut at its checked size (the hash check follows).
    std::fs::File::open(path).map_err(failed)?.take(size).read_to_end(&mut bytes).map_err(failed)?;
    Ok(bytes)
}

/// Reads `dir`'s manifest and tokenizer (no GPU needed).
pub fn read_metadata(dir: &Path) -> Result<(Manifest, Tokenizer), EngineError> {
    let manifest_text = read(&dir.join(MANIFEST_FILE), None)?;
    let manifest = Manifest::from_json(&String::from_utf8_lossy(&manifest_text)).map_err(LoadError::from)?;
    let tokenizer_text = read(&dir.join(TOKENIZER_FILE), None)?;
    let tokenizer = Tokenizer::from_json(&String::from_utf8_lossy(&tokenizer_text))?;
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
        checked_size(&dir.join(&shard.file), Some(shard.size))?;
    }
    let gpu = pollster::block_on(Gpu::new(gpu_options)).map_err(LoadError::from)?;
    // Refused before the weights are read, not after (the model checks them again).
    options.check(&architecture, manifest.widest_ordered_input(), &gpu.limits)?;
    let mut uploader = ShardUploader::new(&gpu, &manifest)?;
    let total = manifest.total_bytes();
    let mut done = 0;
    on_progress(done, total);
    for (index, shard) in manifest.shards.iter().enumerate() {
        let bytes = read(&dir.join(&shard.file), Some(shard.size))?;
        uploader.upload_shard(index, &bytes)?;
        done += shard.size;
        on_progress(done, total);
    }
    let weights = uploader.finish()?;
    let model = LlamaModel::new(gpu, architecture, weights, options)?;
    Ok(Engine::new(model, tokenizer, manifest))
}
