//! A checkpoint's tensors, whichever format located them: [`super::safetensors`] from a
//! safetensors header, [`super::torch_pickle`] from a PyTorch archive's pickle. Either way
//! a tensor is a byte range of one of the checkpoint's files holding contiguous row-major
//! little-endian values, and it is read row range by row range, so a 13B conversion never
//! needs the whole model in memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use crate::format::checked_file::{self, ReadError};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: tensor {name}: {problem}", path.display())]
    Tensor { path: PathBuf, name: String, problem: String },
    #[error("tensor {0} is listed twice")]
    Duplicate(String),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// The dtypes webjudge reads from a checkpoint: the float ones and I32 for the packed
/// integer tensors of GPTQ checkpoints ([`super::gptq`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointDType {
    F32,
    F16,
    BF16,
    /// GPTQ's packed codes and group indices.
    I32,
}

impl CheckpointDType {
    pub fn size(self) -> u64 {
        match self {
            CheckpointDType::F32 | CheckpointDType::I32 => 4,
            CheckpointDType::F16 | CheckpointDType::BF16 => 2,
        }
    }

    /// Whether values read as f32 ([`Checkpoint::read_rows`]).
    pub fn is_float(self) -> bool {
        self != CheckpointDType::I32
    }
}

/// Where one tensor's data lies.
#[derive(Clone, Debug)]
pub struct CheckpointTensor {
    pub name: String,
    pub dtype: CheckpointDType,
    pub shape: Vec<usize>,
    /// Index into the checkpoint's files.
    pub file: usize,
    /// Absolute byte range in that file.
    pub range: Range<u64>,
}

impl CheckpointTensor {
    /// Rows of a matrix (1 for a vector or a scalar).
    pub fn rows(&self) -> usize {
        if self.shape.len() >= 2 {
            self.shape[0]
        } else {
            1
        }
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.shape.iter().skip(usize::from(self.shape.len() >= 2)).product()
    }

    pub fn row_bytes(&self) -> u64 {
        self.cols() as u64 * self.dtype.size()
    }

    /// Rows `rows` of a matrix as a tensor of their own, named `name` (a fused projection's
    /// part: its rows are contiguous bytes of the same file).
    pub fn row_slice(&self, rows: Range<usize>, name: String) -> CheckpointTensor {
        assert!(self.shape.len() == 2 && rows.start <= rows.end && rows.end <= self.rows(), "{rows:?} of {self:?}");
        let start = self.range.start + rows.start as u64 * self.row_bytes();
        CheckpointTensor {
            name,
            dtype: self.dtype,
            shape: vec![rows.len(), self.cols()],
            file: self.file,
            range: start..start + rows.len() as u64 * self.row_bytes(),
        }
    }
}

/// The tensors of one checkpoint, with open handles to its files.
pub struct Checkpoint {
    paths: Vec<PathBuf>,
    files: Vec<File>,
    tensors: BTreeMap<String, CheckpointTensor>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_owned(), source }
}

impl Checkpoint {
    /// A checkpoint of the given open files and the tensors located in them (each
    /// tensor's `file` indexes `files`); a tensor name listed twice is an error.
    pub(crate) fn new(files: Vec<(PathBuf, File)>, located: Vec<CheckpointTensor>) -> Result<Self, CheckpointError> {
        let (paths, files) = files.into_iter().unzip();
        let mut checkpoint = Self { paths, files, tensors: BTreeMap::new() };
        for tensor in located {
            debug_assert!(tensor.file < checkpoint.files.len(), "tensor {} lies in no file", tensor.name);
            if checkpoint.tensors.contains_key(&tensor.name) {
                return Err(CheckpointError::Duplicate(tensor.name));
            }
            checkpoint.tensors.insert(tensor.name.clone(), tensor);
        }
        Ok(checkpoint)
    }

    /// Checks that every tensor lies in the shard a weight map names, and that the map
    /// names every tensor.
    fn check_weight_map(&self, dir: &Path, map: &[(String, String)]) -> Result<(), String> {
        for (name, file) in map {
            let listed = self.tensors.get(name).map(|t| &self.paths[t.file]);
            if listed != Some(&dir.join(file)) {
                return Err(format!("tensor {name} is not in {file}"));
            }
        }
        if let Some(extra) = self.tensors.keys().find(|name| !map.iter().any(|(n, _)| n == *name)) {
            return Err(format!("tensor {extra} is in a shard but not in the weight map"));
        }
        Ok(())
    }

    pub fn tensors(&self) -> impl Iterator<Item = &CheckpointTensor> {
        self.tensors.values()
    }

    pub fn tensor(&self, name: &str) -> Option<&CheckpointTensor> {
        self.tensors.get(name)
    }

    /// Reads `rows` of a float tensor as f32 (a vector is one row).
    pub fn read_rows(&mut self, tensor: &CheckpointTensor, rows: Range<usize>) -> Result<Vec<f32>, CheckpointError> {
        if !tensor.dtype.is_float() {
            return Err(self.tensor_problem(tensor, format!("holds {:?} values, not floats", tensor.dtype)));
        }
        Ok(decode(tensor.dtype, &self.read_bytes(tensor, rows)?))
    }

    /// Reads a whole I32 tensor.
    pub fn read_i32(&mut self, tensor: &CheckpointTensor) -> Result<Vec<i32>, CheckpointError> {
        if tensor.dtype != CheckpointDType::I32 {
            return Err(self.tensor_problem(tensor, format!("holds {:?} values, not I32", tensor.dtype)));
        }
        let raw = self.read_bytes(tensor, 0..tensor.rows())?;
        Ok(raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    fn tensor_problem(&self, tensor: &CheckpointTensor, problem: String) -> CheckpointError {
        CheckpointError::Tensor { path: self.paths[tensor.file].clone(), name: tensor.name.clone(), problem }
    }

    fn read_bytes(&mut self, tensor: &CheckpointTensor, rows: Range<usize>) -> Result<Vec<u8>, CheckpointError> {
        if rows.start > rows.end || rows.end > tensor.rows() {
            return Err(self.tensor_problem(tensor, format!("rows {rows:?} are outside its {} rows", tensor.rows())));
        }
        let start = tensor.range.start + rows.start as u64 * tensor.row_bytes();
        let mut raw = vec![0u8; (rows.len() as u64 * tensor.row_bytes()) as usize];
        let path = &self.paths[tensor.file];
        let file = &mut self.files[tensor.file];
        file.seek(SeekFrom::Start(start)).map_err(io_error(path))?;
        file.read_exact(&mut raw).map_err(io_error(path))?;
        Ok(raw)
    }
}

/// Opens the checkpoint of a model directory in one format: the shards its `index_file`
/// lists (checked against the index's weight map once opened), else its `single_file`,
/// else the files `others` finds (an error when there are none).
pub(crate) fn open_dir<E: From<CheckpointError>>(
    dir: &Path,
    [index_file, single_file]: [&str; 2],
    open_files: fn(&[PathBuf]) -> Result<Checkpoint, E>,
    index_error: fn(String) -> E,
    others: impl FnOnce() -> Result<Vec<PathBuf>, E>,
) -> Result<Checkpoint, E> {
    let index = dir.join(index_file);
    if index.is_file() {
        let text = checked_file::read_to_string(&index, checked_file::JSON_METADATA).map_err(CheckpointError::from)?;
        let map = parse_weight_map(&text).map_err(index_error)?;
        let checkpoint = open_files(&shard_paths(dir, &map))?;
        checkpoint.check_weight_map(dir, &map).map_err(index_error)?;
        return Ok(checkpoint);
    }
    let single = dir.join(single_file);
    if single.is_file() {
        return open_files(&[single]);
    }
    open_files(&others()?)
}

/// The `weight_map` of a sharded checkpoint's index (safetensors or PyTorch): tensor
/// name and shard file, each file checked to lie in the model directory.
fn parse_weight_map(text: &str) -> Result<Vec<(String, String)>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let map = value.get("weight_map").and_then(|m| m.as_object()).ok_or("no weight_map object")?;
    let mut entries = Vec::with_capacity(map.len());
    for (name, file) in map {
        let file = file.as_str().ok_or_else(|| format!("{name}: file is not a string"))?;
        if file.contains(['/', '\\']) || file.starts_with('.') {
            return Err(format!("{name}: file {file:?} is outside the model directory"));
        }
        entries.push((name.clone(), file.to_owned()));
    }
    Ok(entries)
}

/// The distinct shard files of a weight map, sorted, in `dir`.
fn shard_paths(dir: &Path, map: &[(String, String)]) -> Vec<PathBuf> {
    let mut files: Vec<&str> = map.iter().map(|(_, f)| f.as_str()).collect();
    files.sort_unstable();
    files.dedup();
    files.into_iter().map(|f| dir.join(f)).collect()
}

/// Little-endian float values to f32 (exact for every float dtype).
fn decode(dtype: CheckpointDType, raw: &[u8]) -> Vec<f32> {
    match dtype {
        CheckpointDType::I32 => unreachable!("read_rows reads float tensors only"),
        CheckpointDType::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        CheckpointDType::F16 => raw.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        CheckpointDType::BF16 => raw.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
    }
}
