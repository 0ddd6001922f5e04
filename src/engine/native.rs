//! Loading a model from the local file system: a model directory, or a GGUF file directly.
//!
//! A GGUF file is loaded by the plan `convert` writes a directory by ([`GgufPlan`]): each
//! tensor part is read from the file, repacked and uploaded in turn, so no more than one part
//! is in memory at a time, and the manifest is the one `convert` would write (its shards'
//! hashes computed over the repacked bytes as they go by), so the model is the same model by
//! every measure: ids, a batch output's model hash.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::{Engine, EngineError};
use crate::format::checked_file::{self, ReadError, RegularFile};
use crate::format::gguf::{split_name, GgufError, GgufFile};
use crate::format::layout::ShardHashes;
use crate::format::manifest::{ManifestError, DEFAULT_SHARD_BYTES, MANIFEST_FILE, TOKENIZER_FILE};
use crate::format::{Manifest, ShardEntry, TensorEntry};
use crate::import::gguf::{GgufPlan, ImportOptions};
use crate::import::ConvertError;
use crate::kernels::{Gpu, GpuOptions};
use crate::model::{allocate_tensors, LlamaModel, LoadError, LoadOptions, ShardUploader};
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

/// Whether `path` names a GGUF file rather than a model directory: anything there but a
/// directory is read as one (the reader says so when it is no GGUF); a missing path is a
/// GGUF only by its `.gguf` name, so a mistyped directory's error names its manifest.
pub fn is_gguf(path: &Path) -> bool {
    match path.metadata() {
        Ok(metadata) => !metadata.is_dir(),
        Err(_) => path.extension().is_some_and(|extension| extension.eq_ignore_ascii_case("gguf")),
    }
}

/// A model's manifest that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestFileError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{path}: {source}")]
    Parse { path: String, source: ManifestError },
    /// A GGUF file's, whose manifest is made by repacking it (the message names the file).
    #[error("{0}")]
    Gguf(String),
}

/// `path`'s manifest, and its bytes (a batch output names the model by their hash,
/// [`crate::judge::output::RunOptions::model_id`]); for a GGUF file, those `convert` would
/// write (a pass over the file).
pub fn read_manifest(path: &Path) -> Result<(Manifest, Vec<u8>), ManifestFileError> {
    if is_gguf(path) {
        let manifest = read_metadata(path).map_err(|e| ManifestFileError::Gguf(e.to_string()))?.0;
        let bytes = manifest.to_json().into_bytes();
        return Ok((manifest, bytes));
    }
    let manifest_path = path.join(MANIFEST_FILE);
    let bytes = checked_file::read(&manifest_path, checked_file::MANIFEST)?;
    let manifest = Manifest::from_json(&String::from_utf8_lossy(&bytes))
        .map_err(|source| ManifestFileError::Parse { path: manifest_path.display().to_string(), source })?;
    Ok((manifest, bytes))
}

/// Reads `path`'s manifest and tokenizer (no GPU needed). A GGUF file's manifest is the one
/// `convert` would write, which takes repacking and hashing every tensor on the CPU: a
/// pass over the whole file.
pub fn read_metadata(path: &Path) -> Result<(Manifest, Tokenizer), EngineError> {
    if is_gguf(path) {
        let mut gguf = GgufSource::open(path)?;
        let entries = gguf.plan.layout(DEFAULT_SHARD_BYTES);
        let manifest = gguf.stream(entries, &mut |_, _, _| {}, &mut |_, _| {})?;
        return Ok((manifest, gguf.plan.tokenizer));
    }
    let manifest_text =
        checked_file::read(&path.join(MANIFEST_FILE), checked_file::MANIFEST).map_err(LoadError::from)?;
    let manifest = Manifest::from_json(&String::from_utf8_lossy(&manifest_text)).map_err(LoadError::from)?;
    let tokenizer = Tokenizer::from_file(path.join(TOKENIZER_FILE))?;
    Ok((manifest, tokenizer))
}

/// Reads `path`'s tokenizer: a model directory's `tokenizer.json`, or the one a GGUF
/// file's metadata makes (its header only).
pub fn read_tokenizer(path: &Path) -> Result<Tokenizer, EngineError> {
    match is_gguf(path) {
        true => Ok(GgufSource::open(path)?.plan.tokenizer),
        false => Ok(Tokenizer::from_file(path.join(TOKENIZER_FILE))?),
    }
}

/// Loads a model directory ([`load_dir`]) or a GGUF file ([`load_gguf`]), as `path` is.
pub fn load_path(
    path: &Path,
    gpu_options: GpuOptions,
    options: impl FnOnce(LoadOptions) -> LoadOptions,
    on_progress: &mut dyn FnMut(u64, u64),
) -> Result<Engine, EngineError> {
    match is_gguf(path) {
        true => load_gguf(path, gpu_options, options, on_progress),
        false => load_dir(path, gpu_options, options, on_progress),
    }
}

/// Reads and verifies `dir`'s manifest, tokenizer and shards onto a new GPU context.
/// `options` adjusts the adapter's defaults ([`LoadOptions::for_adapter`]), which
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
    // Every shard is there and of its size before the GPU is touched.
    for shard in &manifest.shards {
        open_shard(dir, shard)?;
    }
    let gpu = pollster::block_on(Gpu::new(gpu_options)).map_err(LoadError::from)?;
    let widest_ordered_input = manifest.widest_ordered_input();
    let options = options(LoadOptions::for_adapter(&architecture, &gpu, widest_ordered_input));
    // Refused before the weights are read, not after (the model checks them again).
    options.check(&architecture, widest_ordered_input, &gpu)?;
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

/// Loads the GGUF file at `path` onto a new GPU context, as `convert` would have converted
/// it with its defaults; everything the plan checks (architecture, tensors, types,
/// tokenizer, chat template) and `options` ([`LoadOptions::check`]) are refused before any
/// weight is read. `on_progress(done, total)` reports the file's tensor bytes uploaded.
pub fn load_gguf(
    path: &Path,
    gpu_options: GpuOptions,
    options: impl FnOnce(LoadOptions) -> LoadOptions,
    on_progress: &mut dyn FnMut(u64, u64),
) -> Result<Engine, EngineError> {
    let mut gguf = GgufSource::open(path)?;
    let architecture = gguf.plan.architecture.clone();
    let gpu = pollster::block_on(Gpu::new(gpu_options)).map_err(LoadError::from)?;
    // A GGUF file's weights have no input orders.
    let options = options(LoadOptions::for_adapter(&architecture, &gpu, 0));
    options.check(&architecture, 0, &gpu)?;
    let entries = gguf.plan.layout(DEFAULT_SHARD_BYTES);
    let weights = allocate_tensors(&gpu, &entries)?;
    let mut upload =
        |entry: &TensorEntry, part: usize, bytes: &[u8]| weights[&entry.name].write_part(&gpu, part, bytes);
    let manifest = gguf.stream(entries, &mut upload, on_progress)?;
    gpu.check().map_err(LoadError::from)?;
    let model = LlamaModel::new(gpu, architecture, weights, options)?;
    Ok(Engine::new(model, gguf.plan.tokenizer, manifest))
}

/// A GGUF file open for reading (llama.cpp's split files as one, end to end), and its plan.
struct GgufSource {
    /// The path opened (a split file's first part), which errors of the contents name.
    path: PathBuf,
    /// Each file, and where each starts in the joined file.
    files: Vec<RegularFile>,
    starts: Vec<u64>,
    plan: GgufPlan,
}

impl GgufSource {
    /// Opens `path`, and where its name is a split part's (`NAME-00001-of-00003.gguf`) every
    /// part, each of which must be there.
    fn open(path: &Path) -> Result<Self, ConvertError> {
        let file_name = path.file_name().and_then(|n| n.to_str());
        let paths = match file_name.and_then(split_name) {
            Some((_, count, name)) => (1..=count).map(|n| path.with_file_name(name(n))).collect(),
            None => vec![path.to_owned()],
        };
        let mut files = Vec::new();
        let mut starts = Vec::new();
        let mut headers = Vec::new();
        let mut start = 0;
        for path in &paths {
            let file = checked_file::open(path).map_err(GgufError::from)?;
            let header = GgufFile::read(&file.file).map_err(|e| ConvertError::from(e).in_file(path))?;
            files.push(file);
            starts.push(start);
            start += header.file_size;
            headers.push(header);
        }
        let in_file = |error: ConvertError| error.in_file(path);
        let gguf = match headers.len() {
            1 => headers.pop().expect("one header"),
            _ => GgufFile::join_splits(headers).map_err(|e| in_file(e.into()))?,
        };
        let apart = GgufPlan::read_apart(&gguf, |range| read_joined(&mut files, &starts, range)).map_err(in_file)?;
        let plan = GgufPlan::new(&gguf, file_name, &ImportOptions::default(), &apart).map_err(in_file)?;
        Ok(Self { path: path.to_owned(), files, starts, plan })
    }

    /// Reads and repacks every part of `entries` (the plan's layout) in order, giving each
    /// to `on_part` with its part index, and returns the manifest they make.
    fn stream(
        &mut self,
        entries: Vec<TensorEntry>,
        on_part: &mut dyn FnMut(&TensorEntry, usize, &[u8]),
        on_progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Manifest, EngineError> {
        let total = self.plan.source_bytes();
        let mut done = 0;
        on_progress(done, total);
        let mut hashes = ShardHashes::default();
        for (tensor, entry) in self.plan.tensors.iter().zip(&entries) {
            for (index, part) in entry.parts.iter().enumerate() {
                let rows = part.row_start..part.row_start + part.rows;
                let source = read_joined(&mut self.files, &self.starts, tensor.source_range(rows.clone()))?;
                let words = tensor.repack(rows.clone(), &source).map_err(|e| e.in_file(&self.path))?;
                let bytes: &[u8] = bytemuck::cast_slice(&words);
                hashes.append(part.shard, bytes);
                on_part(entry, index, bytes);
                done += tensor.source_bytes(&rows);
                on_progress(done, total);
            }
        }
        let plan = &self.plan;
        let manifest = Manifest::assemble(
            plan.architecture.clone(),
            plan.chat_template.clone(),
            plan.judge.family,
            entries,
            hashes.finish(),
        );
        Ok(manifest.map_err(LoadError::from)?)
    }
}

/// Bytes `range` of `files` laid end to end (each starting at `starts`), which lie in one of
/// them.
fn read_joined(files: &mut [RegularFile], starts: &[u64], range: Range<u64>) -> Result<Vec<u8>, ConvertError> {
    let (index, range) = GgufFile::split_part_range(starts, range);
    Ok(files[index].read_range(range).map_err(GgufError::from)?)
}
