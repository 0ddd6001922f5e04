//! A reader of Hugging Face safetensors files, single or sharded.
//!
//! Format: a `u64` little-endian header length `n`, `n` bytes of JSON mapping each
//! tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative to
//! the end of the header; a `__metadata__` entry holds strings and is ignored), then the
//! data. The header is parsed and validated by the format's own `safetensors` crate: its
//! tensors must tile the data exactly, in offset order, each spanning what its shape and
//! dtype need. Only F32, F16 and BF16 are accepted, and I32 for the packed integer
//! tensors of GPTQ checkpoints ([`super::gptq`]).
//!
//! The crate's `SafeTensors::read_metadata` and its tensor views want the whole file as
//! one byte slice, which means reading it into memory or mapping it (`unsafe`, and a file
//! truncated while mapped kills the process with SIGBUS). So only the header is read
//! here, validated with the crate's `Metadata`, and the [`Checkpoint`] reads tensors row
//! range by row range from the file.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensorError};

use super::checkpoint::{self, Checkpoint, CheckpointDType, CheckpointError, CheckpointTensor};
use crate::format::checked_file::{self, ReadError, RegularFile};

/// The largest header accepted: the `safetensors` crate's own limit.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Sharded checkpoints list their files here.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The file of an unsharded checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";

#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {problem}", path.display())]
    Header { path: PathBuf, problem: String },
    #[error("{}: {source}", path.display())]
    Invalid { path: PathBuf, source: SafeTensorError },
    #[error("{}: tensor {name} has dtype {dtype:?}; webjudge reads F32, F16, BF16 and I32", path.display())]
    UnsupportedDType { path: PathBuf, name: String, dtype: Dtype },
    #[error("{INDEX_FILE}: {0}")]
    Index(String),
    #[error("{} holds neither {SINGLE_FILE}, {INDEX_FILE} nor any *.safetensors file", .0.display())]
    NoWeights(PathBuf),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Read(#[from] ReadError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SafetensorsError + '_ {
    move |source| SafetensorsError::Io { path: path.to_owned(), source }
}

/// Opens the checkpoint of a Hugging Face model directory: the shards
/// `model.safetensors.index.json` lists, `model.safetensors`, or else every `*.safetensors`
/// file.
pub fn open_dir(dir: &Path) -> Result<Checkpoint, SafetensorsError> {
    checkpoint::open_dir(dir, [INDEX_FILE, SINGLE_FILE], open_files, SafetensorsError::Index, || {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_error(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        if paths.is_empty() {
            return Err(SafetensorsError::NoWeights(dir.to_owned()));
        }
        paths.sort();
        Ok(paths)
    })
}

/// Opens the given files as one checkpoint; a tensor name in two files is an error.
pub fn open_files(paths: &[PathBuf]) -> Result<Checkpoint, SafetensorsError> {
    let mut files = Vec::with_capacity(paths.len());
    let mut located = Vec::new();
    for (index, path) in paths.iter().enumerate() {
        let RegularFile { mut file, size, .. } = checked_file::open(path)?;
        located.extend(read_header(&mut file, size, path, index)?);
        files.push((path.clone(), file));
    }
    Ok(Checkpoint::new(files, located)?)
}

/// The header as the crate's `Metadata` deserializes it, read apart first so that an
/// unsupported dtype is named as such rather than as the size mismatch the crate's
/// validation would report for it.
#[derive(serde::Deserialize)]
struct Header {
    #[serde(rename = "__metadata__")]
    _metadata: Option<HashMap<String, String>>,
    #[serde(flatten)]
    tensors: HashMap<String, TensorInfo>,
}

fn checkpoint_dtype(dtype: Dtype) -> Option<CheckpointDType> {
    match dtype {
        Dtype::F32 => Some(CheckpointDType::F32),
        Dtype::F16 => Some(CheckpointDType::F16),
        Dtype::BF16 => Some(CheckpointDType::BF16),
        Dtype::I32 => Some(CheckpointDType::I32),
        _ => None,
    }
}

/// Locates the tensors of one file of `size` bytes; `index` becomes their `file`.
fn read_header(
    file: &mut File,
    size: u64,
    path: &Path,
    index: usize,
) -> Result<Vec<CheckpointTensor>, SafetensorsError> {
    let problem = |problem: String| SafetensorsError::Header { path: path.to_owned(), problem };
    if size < 8 {
        return Err(problem(format!("{size} bytes cannot hold the 8-byte header length")));
    }
    let mut length = [0u8; 8];
    file.read_exact(&mut length).map_err(io_error(path))?;
    let length = u64::from_le_bytes(length);
    if length > size - 8 {
        return Err(problem(format!("header length {length} runs past the end of the {size}-byte file")));
    }
    if length > MAX_HEADER_BYTES {
        return Err(problem(format!("header length {length} exceeds the limit of {MAX_HEADER_BYTES}")));
    }
    let mut header = vec![0u8; length as usize];
    file.read_exact(&mut header).map_err(io_error(path))?;
    let header: Header = serde_json::from_slice(&header).map_err(|e| problem(format!("invalid header: {e}")))?;
    let mut by_offset: Vec<(String, TensorInfo)> = header.tensors.into_iter().collect();
    by_offset.sort_by_key(|(_, info)| info.data_offsets);
    let data_start = 8 + length;
    let mut tensors = Vec::with_capacity(by_offset.len());
    for (name, info) in &by_offset {
        let dtype = checkpoint_dtype(info.dtype).ok_or_else(|| SafetensorsError::UnsupportedDType {
            path: path.to_owned(),
            name: name.clone(),
            dtype: info.dtype,
        })?;
        // Saturating: the offsets are only checked against the file below.
        let (begin, end) = info.data_offsets;
        tensors.push(CheckpointTensor {
            name: name.clone(),
            dtype,
            shape: info.shape.clone(),
            file: index,
            range: data_start.saturating_add(begin as u64)..data_start.saturating_add(end as u64),
        });
    }
    // The crate's validation, as its `read_metadata` runs it: offsets in order, tiling the
    // data with no gap or overlap, each span what its shape and dtype need.
    let metadata =
        Metadata::new(None, by_offset).map_err(|source| SafetensorsError::Invalid { path: path.to_owned(), source })?;
    let data_bytes = size - data_start;
    if metadata.data_len() as u64 != data_bytes {
        return Err(problem(format!(
            "the tensors span {} data bytes but {data_bytes} follow the header",
            metadata.data_len()
        )));
    }
    Ok(tensors)
}
