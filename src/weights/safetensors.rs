//! A reader of Hugging Face safetensors files, single or sharded.
//!
//! Format: a `u64` little-endian header length `n`, `n` bytes of JSON mapping each
//! tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative to
//! the end of the header; a `__metadata__` entry holds strings and is ignored), then the
//! data. Every length, offset and shape is checked against the file before anything is
//! read, and tensors are read row range by row range, so a 13B conversion never needs
//! the whole model in memory. Only F32, F16 and BF16 are accepted, and I32 for the
//! packed integer tensors of GPTQ checkpoints ([`super::gptq`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use half::{bf16, f16};

/// The largest header accepted (the format's own reference implementation uses 100 MB).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;
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
    #[error("{}: tensor {name}: {problem}", path.display())]
    Tensor { path: PathBuf, name: String, problem: String },
    #[error("{}: tensor {name} has dtype {dtype:?}; webjudge reads F32, F16, BF16 and I32", path.display())]
    UnsupportedDType { path: PathBuf, name: String, dtype: String },
    #[error("{INDEX_FILE}: {0}")]
    Index(String),
    #[error("tensor {0} is listed twice")]
    Duplicate(String),
    #[error("{} holds neither {SINGLE_FILE}, {INDEX_FILE} nor any *.safetensors file", .0.display())]
    NoWeights(PathBuf),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StDType {
    F32,
    F16,
    BF16,
    /// GPTQ's packed codes and group indices.
    I32,
}

impl StDType {
    pub fn size(self) -> u64 {
        match self {
            StDType::F32 | StDType::I32 => 4,
            StDType::F16 | StDType::BF16 => 2,
        }
    }

    /// Whether values read as f32 ([`SafeTensors::read_rows`]).
    pub fn is_float(self) -> bool {
        self != StDType::I32
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "F32" => Some(StDType::F32),
            "F16" => Some(StDType::F16),
            "BF16" => Some(StDType::BF16),
            "I32" => Some(StDType::I32),
            _ => None,
        }
    }
}

/// Where one tensor's data lies.
#[derive(Clone, Debug)]
pub struct StTensor {
    pub name: String,
    pub dtype: StDType,
    pub shape: Vec<usize>,
    /// Index into the checkpoint's files.
    pub file: usize,
    /// Absolute byte range in that file.
    pub range: Range<u64>,
}

impl StTensor {
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
}

/// The tensors of one checkpoint, with open handles to its files.
pub struct SafeTensors {
    paths: Vec<PathBuf>,
    files: Vec<File>,
    tensors: BTreeMap<String, StTensor>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SafetensorsError + '_ {
    move |source| SafetensorsError::Io { path: path.to_owned(), source }
}

impl SafeTensors {
    /// Opens the checkpoint of a Hugging Face model directory: `model.safetensors`, the
    /// shards `model.safetensors.index.json` lists, or else every `*.safetensors` file.
    pub fn open_dir(dir: &Path) -> Result<Self, SafetensorsError> {
        let index = dir.join(INDEX_FILE);
        if index.is_file() {
            let text = std::fs::read_to_string(&index).map_err(io_error(&index))?;
            let map = parse_weight_map(&text).map_err(SafetensorsError::Index)?;
            let checkpoint = Self::open_files(&shard_paths(dir, &map))?;
            checkpoint.check_weight_map(dir, &map).map_err(SafetensorsError::Index)?;
            return Ok(checkpoint);
        }
        let single = dir.join(SINGLE_FILE);
        if single.is_file() {
            return Self::open_files(&[single]);
        }
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_error(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        if paths.is_empty() {
            return Err(SafetensorsError::NoWeights(dir.to_owned()));
        }
        paths.sort();
        Self::open_files(&paths)
    }

    /// Opens the given files as one checkpoint; a tensor name in two files is an error.
    pub fn open_files(paths: &[PathBuf]) -> Result<Self, SafetensorsError> {
        let mut checkpoint = Self { paths: Vec::new(), files: Vec::new(), tensors: BTreeMap::new() };
        for (index, path) in paths.iter().enumerate() {
            let mut file = File::open(path).map_err(io_error(path))?;
            let size = file.metadata().map_err(io_error(path))?.len();
            for tensor in read_header(&mut file, size, path, index)? {
                if checkpoint.tensors.contains_key(&tensor.name) {
                    return Err(SafetensorsError::Duplicate(tensor.name));
                }
                checkpoint.tensors.insert(tensor.name.clone(), tensor);
            }
            checkpoint.paths.push(path.clone());
            checkpoint.files.push(file);
        }
        Ok(checkpoint)
    }

    /// A checkpoint of tensors another reader located: each tensor's `file` indexes
    /// `paths` and its `range` holds its raw little-endian values (the PyTorch reader
    /// uses this for the stored entries of `.bin` zip archives).
    pub fn from_located(paths: Vec<PathBuf>, located: Vec<StTensor>) -> Result<Self, SafetensorsError> {
        let mut checkpoint = Self { paths: Vec::new(), files: Vec::new(), tensors: BTreeMap::new() };
        for path in paths {
            checkpoint.files.push(File::open(&path).map_err(io_error(&path))?);
            checkpoint.paths.push(path);
        }
        for tensor in located {
            if tensor.file >= checkpoint.paths.len() {
                return Err(SafetensorsError::Tensor {
                    path: PathBuf::new(),
                    name: tensor.name,
                    problem: format!("file index {} is out of range", tensor.file),
                });
            }
            if checkpoint.tensors.contains_key(&tensor.name) {
                return Err(SafetensorsError::Duplicate(tensor.name));
            }
            checkpoint.tensors.insert(tensor.name.clone(), tensor);
        }
        Ok(checkpoint)
    }

    /// Checks that every tensor lies in the shard a weight map names, and that the map
    /// names every tensor.
    pub(crate) fn check_weight_map(&self, dir: &Path, map: &[(String, String)]) -> Result<(), String> {
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

    pub fn tensors(&self) -> impl Iterator<Item = &StTensor> {
        self.tensors.values()
    }

    pub fn tensor(&self, name: &str) -> Option<&StTensor> {
        self.tensors.get(name)
    }

    /// Reads `rows` of a float tensor as f32 (a vector is one row).
    pub fn read_rows(&mut self, tensor: &StTensor, rows: Range<usize>) -> Result<Vec<f32>, SafetensorsError> {
        if !tensor.dtype.is_float() {
            return Err(self.tensor_problem(tensor, format!("holds {:?} values, not floats", tensor.dtype)));
        }
        Ok(decode(tensor.dtype, &self.read_bytes(tensor, rows)?))
    }

    /// Reads a whole I32 tensor.
    pub fn read_i32(&mut self, tensor: &StTensor) -> Result<Vec<i32>, SafetensorsError> {
        if tensor.dtype != StDType::I32 {
            return Err(self.tensor_problem(tensor, format!("holds {:?} values, not I32", tensor.dtype)));
        }
        let raw = self.read_bytes(tensor, 0..tensor.rows())?;
        Ok(raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    fn tensor_problem(&self, tensor: &StTensor, problem: String) -> SafetensorsError {
        SafetensorsError::Tensor { path: self.paths[tensor.file].clone(), name: tensor.name.clone(), problem }
    }

    fn read_bytes(&mut self, tensor: &StTensor, rows: Range<usize>) -> Result<Vec<u8>, SafetensorsError> {
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

/// The `weight_map` of a sharded checkpoint's index (safetensors or PyTorch): tensor
/// name and shard file, each file checked to lie in the model directory.
pub(crate) fn parse_weight_map(text: &str) -> Result<Vec<(String, String)>, String> {
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
pub(crate) fn shard_paths(dir: &Path, map: &[(String, String)]) -> Vec<PathBuf> {
    let mut files: Vec<&str> = map.iter().map(|(_, f)| f.as_str()).collect();
    files.sort_unstable();
    files.dedup();
    files.into_iter().map(|f| dir.join(f)).collect()
}

/// Little-endian float values to f32 (exact for every float dtype).
fn decode(dtype: StDType, raw: &[u8]) -> Vec<f32> {
    match dtype {
        StDType::I32 => unreachable!("read_rows reads float tensors only"),
        StDType::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        StDType::F16 => raw.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        StDType::BF16 => raw.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
    }
}

fn read_header(file: &mut File, size: u64, path: &Path, index: usize) -> Result<Vec<StTensor>, SafetensorsError> {
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
    parse_header(&header, size - 8 - length, 8 + length, path, index)
}

/// Parses the JSON header; `data_bytes` is what follows it, starting at `data_start`.
fn parse_header(
    header: &[u8],
    data_bytes: u64,
    data_start: u64,
    path: &Path,
    index: usize,
) -> Result<Vec<StTensor>, SafetensorsError> {
    let value: serde_json::Value = serde_json::from_slice(header)
        .map_err(|e| SafetensorsError::Header { path: path.to_owned(), problem: format!("invalid JSON: {e}") })?;
    let object = value.as_object().ok_or_else(|| SafetensorsError::Header {
        path: path.to_owned(),
        problem: "header is not a JSON object".into(),
    })?;
    let mut tensors = Vec::new();
    for (name, entry) in object {
        if name == "__metadata__" {
            continue;
        }
        let bad = |problem: String| SafetensorsError::Tensor { path: path.to_owned(), name: name.clone(), problem };
        let dtype_name = entry.get("dtype").and_then(|d| d.as_str()).ok_or_else(|| bad("dtype is missing".into()))?;
        let dtype = StDType::parse(dtype_name).ok_or_else(|| SafetensorsError::UnsupportedDType {
            path: path.to_owned(),
            name: name.clone(),
            dtype: dtype_name.into(),
        })?;
        let shape = entry
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad("shape is missing".into()))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| bad("shape holds something other than non-negative integers".into()))?;
        let offsets = entry
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .and_then(|o| match o[..] {
                [ref begin, ref end] => Some((begin.as_u64()?, end.as_u64()?)),
                _ => None,
            })
            .ok_or_else(|| bad("data_offsets is not a pair of non-negative integers".into()))?;
        let (begin, end) = offsets;
        if begin > end || end > data_bytes {
            return Err(bad(format!("data offsets [{begin}, {end}] lie outside the {data_bytes} data bytes")));
        }
        let bytes = shape
            .iter()
            .try_fold(dtype.size(), |n, &d| n.checked_mul(d as u64))
            .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
        if bytes != end - begin {
            return Err(bad(format!(
                "shape {shape:?} of {dtype_name} needs {bytes} bytes but the offsets span {}",
                end - begin
            )));
        }
        tensors.push(StTensor {
            name: name.clone(),
            dtype,
            shape,
            file: index,
            range: data_start + begin..data_start + end,
        });
    }
    Ok(tensors)
}
