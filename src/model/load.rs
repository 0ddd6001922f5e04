//! Putting a model directory's weights on the GPU, one shard at a time.
//!
//! Buffers for every tensor part are created up front (so an adapter too small for the
//! model fails before anything is downloaded); shards then arrive in any order, are
//! checked against the manifest's size and sha256, and their parts are copied in. The
//! browser feeds shards as they are fetched, the CLI as it reads files: the same code. A GGUF
//! loaded directly has no shards to verify: its parts are written into the buffers
//! [`allocate_tensors`] makes as they are repacked.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::format::manifest::MAX_BINDING_BYTES;
use crate::format::{hex, DType, Manifest, ManifestError, TensorEntry};
use crate::kernels::{Gpu, GpuError, GpuTensor};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("shard {index} does not exist: the manifest lists {count} shards")]
    UnknownShard { index: usize, count: usize },
    #[error("shard {file} is {found} bytes, the manifest says {expected}")]
    ShardSize { file: String, expected: u64, found: u64 },
    #[error("shard {file} is corrupt: sha256 {found}, the manifest says {expected}")]
    ShardHash { file: String, expected: String, found: String },
    #[error("shards not loaded: {0}")]
    MissingShards(String),
    #[error(
        "tensor {tensor} has a {bytes}-byte part, the adapter binds at most {limit} bytes \
         (convert with smaller parts: webjudge splits tensors at {MAX_BINDING_BYTES} bytes)"
    )]
    BindingTooLarge { tensor: String, bytes: u64, limit: u64 },
    #[error("--context {context} is not within the model's context of 1..={max} positions")]
    Context { context: usize, max: usize },
    #[error(
        "--prefill-chunk {chunk} is not within 1..={max} tokens, the most one step of this model takes on this \
         adapter (its dispatch grid and buffer bindings)"
    )]
    PrefillChunk { chunk: usize, max: usize },
    #[error(
        "the KV cache for {sequences} sequence(s) of {context} positions needs {needed} bytes per layer buffer, \
         the adapter binds at most {limit}; load with a shorter context or fewer sequences"
    )]
    ContextTooLong { context: usize, sequences: usize, needed: u64, limit: u64 },
    #[error("input order {tensor} is not a permutation of its {inputs} inputs: entry {index} is {value}, {problem}")]
    InputOrder { tensor: String, inputs: usize, index: usize, value: u32, problem: &'static str },
    #[cfg(not(target_arch = "wasm32"))]
    #[error(transparent)]
    Read(#[from] crate::format::checked_file::ReadError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

/// Receives a model's shards and copies their tensor parts into GPU buffers.
pub struct ShardUploader<'a> {
    gpu: &'a Gpu,
    manifest: &'a Manifest,
    tensors: HashMap<String, GpuTensor>,
    loaded: Vec<bool>,
}

impl<'a> ShardUploader<'a> {
    /// Allocates every tensor's buffers after checking each part fits one binding.
    pub fn new(gpu: &'a Gpu, manifest: &'a Manifest) -> Result<Self, LoadError> {
        let tensors = allocate_tensors(gpu, &manifest.tensors)?;
        Ok(Self { gpu, manifest, tensors, loaded: vec![false; manifest.shards.len()] })
    }

    /// Verifies shard `index` and uploads the tensor parts stored in it.
    pub fn upload_shard(&mut self, index: usize, bytes: &[u8]) -> Result<(), LoadError> {
        let count = self.manifest.shards.len();
        let shard = self.manifest.shards.get(index).ok_or(LoadError::UnknownShard { index, count })?;
        verify_shard(&shard.file, shard.size, &shard.sha256, bytes)?;
        for entry in &self.manifest.tensors {
            let tensor = &self.tensors[&entry.name];
            for (part_index, part) in entry.parts.iter().enumerate().filter(|(_, p)| p.shard == index) {
                // The manifest was validated: parts lie inside their shard.
                let range = part.offset as usize..(part.offset + part.length) as usize;
                if entry.dtype == DType::U32 {
                    check_permutation(&entry.name, &bytes[range.clone()])?;
                }
                tensor.write_part(self.gpu, part_index, &bytes[range]);
            }
        }
        self.loaded[index] = true;
        self.gpu.check()?;
        Ok(())
    }

    /// The uploaded tensors by name, once every shard has arrived.
    pub fn finish(self) -> Result<HashMap<String, GpuTensor>, LoadError> {
        let missing: Vec<_> = self
            .manifest
            .shards
            .iter()
            .zip(&self.loaded)
            .filter(|(_, done)| !**done)
            .map(|(s, _)| s.file.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(LoadError::MissingShards(missing.join(", ")));
        }
        Ok(self.tensors)
    }
}

/// Zeroed buffers for every part of `entries`, by name, each part checked to fit one
/// binding first; [`GpuTensor::write_part`] fills them.
pub fn allocate_tensors(gpu: &Gpu, entries: &[TensorEntry]) -> Result<HashMap<String, GpuTensor>, LoadError> {
    let limit = gpu.max_binding();
    let mut tensors = HashMap::new();
    for entry in entries {
        if let Some(part) = entry.parts.iter().find(|p| p.length > limit) {
            return Err(LoadError::BindingTooLarge { tensor: entry.name.clone(), bytes: part.length, limit });
        }
        tensors.insert(entry.name.clone(), GpuTensor::allocate(gpu, entry));
    }
    gpu.check()?;
    Ok(tensors)
}

/// An input order's indices must be a permutation of `0..n`: a gather through anything
/// else would read outside the input or drop some of it.
fn check_permutation(tensor: &str, bytes: &[u8]) -> Result<(), LoadError> {
    let inputs = bytes.len() / 4;
    let mut seen = vec![false; inputs];
    for (index, word) in bytes.chunks_exact(4).enumerate() {
        let value = u32::from_le_bytes(word.try_into().expect("4 bytes"));
        let problem = match seen.get_mut(value as usize) {
            None => "outside them",
            Some(true) => "a repeat",
            Some(slot) => {
                *slot = true;
                continue;
            }
        };
        return Err(LoadError::InputOrder { tensor: tensor.into(), inputs, index, value, problem });
    }
    Ok(())
}

/// Checks a shard's bytes against its manifest entry.
pub fn verify_shard(file: &str, size: u64, sha256: &str, bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() as u64 != size {
        return Err(LoadError::ShardSize { file: file.into(), expected: size, found: bytes.len() as u64 });
    }
    let found = hex(&Sha256::digest(bytes));
    if !found.eq_ignore_ascii_case(sha256) {
        return Err(LoadError::ShardHash { file: file.into(), expected: sha256.into(), found });
    }
    Ok(())
}
