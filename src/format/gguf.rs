//! GGUF reader (v2 and v3): metadata, tensor directory and tensor bytes.
//!
//! Every count, length and offset is checked against the file size before use, so a
//! truncated or malformed file is an error, never a panic or a huge allocation. The
//! reader only parses the header; tensor bytes stay in the file and are read by
//! whoever needs them ([`GgufFile::tensor_range`] says where they lie).
//!
//! Layout (all little-endian): magic `GGUF`, `u32` version, `u64` tensor count, `u64`
//! metadata count, the metadata key/value pairs, the tensor infos (name, `u32` number
//! of dims, `u64` dims with `dims[0]` the contiguous one, `u32` ggml type, `u64` offset
//! relative to the data section), then padding up to `general.alignment` (default 32)
//! where the data section starts.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::ops::Range;

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    /// Boxed: values stay as small as a string, whatever the array.
    Array(Box<GgufArray>),
}

impl From<GgufArray> for GgufValue {
    fn from(array: GgufArray) -> Self {
        GgufValue::Array(Box::new(array))
    }
}

/// A metadata array, held about as compactly as the file holds it: one typed vector (a
/// [`GgufValue`] per item would take 32 bytes for a one-byte item), strings back to back in
/// one buffer. Only arrays of arrays, which no real file has, take a few times their bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    String(GgufStrings),
    Array(Vec<GgufArray>),
}

/// Strings back to back in one buffer, with where each ends (both exactly as long as needed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GgufStrings {
    text: Box<str>,
    ends: Box<[usize]>,
}

impl GgufStrings {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(start, &end)| &self.text[start..end])
    }
}

impl<S: AsRef<str>> FromIterator<S> for GgufStrings {
    fn from_iter<I: IntoIterator<Item = S>>(strings: I) -> Self {
        let (mut text, mut ends) = (String::new(), Vec::new());
        for string in strings {
            text.push_str(string.as_ref());
            ends.push(text.len());
        }
        Self { text: text.into(), ends: ends.into() }
    }
}

impl GgufArray {
    pub fn len(&self) -> usize {
        match self {
            GgufArray::U8(items) => items.len(),
            GgufArray::I8(items) => items.len(),
            GgufArray::U16(items) => items.len(),
            GgufArray::I16(items) => items.len(),
            GgufArray::U32(items) => items.len(),
            GgufArray::I32(items) => items.len(),
            GgufArray::U64(items) => items.len(),
            GgufArray::I64(items) => items.len(),
            GgufArray::F32(items) => items.len(),
            GgufArray::F64(items) => items.len(),
            GgufArray::Bool(items) => items.len(),
            GgufArray::String(items) => items.len(),
            GgufArray::Array(items) => items.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name of the item type, for error messages.
    pub fn item_type(&self) -> &'static str {
        match self {
            GgufArray::U8(_) => "u8",
            GgufArray::I8(_) => "i8",
            GgufArray::U16(_) => "u16",
            GgufArray::I16(_) => "i16",
            GgufArray::U32(_) => "u32",
            GgufArray::I32(_) => "i32",
            GgufArray::U64(_) => "u64",
            GgufArray::I64(_) => "i64",
            GgufArray::F32(_) => "f32",
            GgufArray::F64(_) => "f64",
            GgufArray::Bool(_) => "bool",
            GgufArray::String(_) => "string",
            GgufArray::Array(_) => "array",
        }
    }

    /// The items of a string array (none of an empty array of any type).
    pub fn strings(&self) -> Option<Vec<&str>> {
        match self {
            GgufArray::String(strings) => Some(strings.iter().collect()),
            other => other.is_empty().then(Vec::new),
        }
    }

    /// The items of an integer array converted to `T`, if every one fits (none of an empty
    /// array of any type): writers differ in the width they use.
    pub fn integers<T: TryFrom<i128>>(&self) -> Option<Vec<T>> {
        fn each<S: Copy + Into<i128>, T: TryFrom<i128>>(items: &[S]) -> Option<Vec<T>> {
            items.iter().map(|&item| T::try_from(item.into()).ok()).collect()
        }
        match self {
            GgufArray::U8(items) => each(items),
            GgufArray::I8(items) => each(items),
            GgufArray::U16(items) => each(items),
            GgufArray::I16(items) => each(items),
            GgufArray::U32(items) => each(items),
            GgufArray::I32(items) => each(items),
            GgufArray::U64(items) => each(items),
            GgufArray::I64(items) => each(items),
            other => other.is_empty().then(Vec::new),
        }
    }

    /// The items of an F32 or F64 (narrowed) array (none of an empty array of any type).
    pub fn floats(&self) -> Option<Vec<f32>> {
        match self {
            GgufArray::F32(items) => Some(items.clone()),
            GgufArray::F64(items) => Some(items.iter().map(|&x| x as f32).collect()),
            other => other.is_empty().then(Vec::new),
        }
    }
}

/// Metadata keys in file order are not needed; sorted access is.
pub type GgufMetadata = BTreeMap<String, GgufValue>;

pub const GGML_TYPE_F32: u32 = 0;
pub const GGML_TYPE_F16: u32 = 1;
pub const GGML_TYPE_Q4_0: u32 = 2;
pub const GGML_TYPE_Q4_1: u32 = 3;
pub const GGML_TYPE_Q8_0: u32 = 8;

/// A ggml type: id, name, and `(values per block, bytes per block)` where this reader
/// knows the layout.
type GgmlTypeRow = (u32, &'static str, Option<(u64, u64)>);

/// ggml types by id. Types without a size (the IQ family and other newer formats) are
/// named in errors, but their data cannot be bounds-checked or sized, so no converter
/// can accept them.
const GGML_TYPES: &[GgmlTypeRow] = &[
    (0, "F32", Some((1, 4))),
    (1, "F16", Some((1, 2))),
    (2, "Q4_0", Some((32, 18))),
    (3, "Q4_1", Some((32, 20))),
    (6, "Q5_0", Some((32, 22))),
    (7, "Q5_1", Some((32, 24))),
    (8, "Q8_0", Some((32, 34))),
    (9, "Q8_1", Some((32, 36))),
    (10, "Q2_K", Some((256, 84))),
    (11, "Q3_K", Some((256, 110))),
    (12, "Q4_K", Some((256, 144))),
    (13, "Q5_K", Some((256, 176))),
    (14, "Q6_K", Some((256, 210))),
    (15, "Q8_K", Some((256, 292))),
    (16, "IQ2_XXS", None),
    (17, "IQ2_XS", None),
    (18, "IQ3_XXS", None),
    (19, "IQ1_S", None),
    (20, "IQ4_NL", None),
    (21, "IQ3_S", None),
    (22, "IQ2_S", None),
    (23, "IQ4_XS", None),
    (24, "I8", Some((1, 1))),
    (25, "I16", Some((1, 2))),
    (26, "I32", Some((1, 4))),
    (27, "I64", Some((1, 8))),
    (28, "F64", Some((1, 8))),
    (29, "IQ1_M", None),
    (30, "BF16", Some((1, 2))),
    (34, "TQ1_0", None),
    (35, "TQ2_0", None),
    (39, "MXFP4", None),
];

/// The name of a ggml type id (`"unknown"` for ids this reader has never heard of).
pub fn ggml_type_name(ggml_type: u32) -> &'static str {
    GGML_TYPES.iter().find(|t| t.0 == ggml_type).map_or("unknown", |t| t.1)
}

/// `(values per block, bytes per block)` of a ggml type, when known.
pub fn ggml_block_layout(ggml_type: u32) -> Option<(u64, u64)> {
    GGML_TYPES.iter().find(|t| t.0 == ggml_type).and_then(|t| t.2)
}

/// The largest number of dimensions ggml tensors have.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays deeper than this are rejected: no real key nests at all, and
/// unbounded recursion on crafted input would overflow the stack.
const MAX_ARRAY_DEPTH: u32 = 4;
const DEFAULT_ALIGNMENT: u64 = 32;
/// llama.cpp's split metadata: which part (from 0), of how many, and the tensors of all.
const SPLIT_NO: &str = "split.no";
const SPLIT_COUNT: &str = "split.count";
const SPLIT_TENSORS: &str = "split.tensors.count";

/// The part number and count of a llama.cpp split file's name (`NAME-00002-of-00003.gguf`:
/// 2 and 3), and the name of its part `n` (from 1).
pub fn split_name(file_name: &str) -> Option<(usize, usize, impl Fn(usize) -> String + '_)> {
    let stem = file_name.strip_suffix(".gguf")?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (prefix, number) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(count) || !digits(number) {
        return None;
    }
    let (number, count) = (number.parse().ok()?, count.parse::<usize>().ok()?);
    (1..=count)
        .contains(&number)
        .then_some((number, count, move |n: usize| format!("{prefix}-{n:05}-of-{count:05}.gguf")))
}

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("I/O error reading GGUF: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a GGUF file: the first bytes are {found:02x?} ({}), not \"GGUF\"", String::from_utf8_lossy(found).escape_debug())]
    BadMagic { found: Vec<u8> },
    #[error(
        "GGUF version {version} (0x{version:08x}) is not supported: this reader handles little-endian versions 2 and 3"
    )]
    UnsupportedVersion { version: u32 },
    #[error(
        "GGUF file truncated: reading {what} at offset {offset} needs {needed} bytes, but the file has {file_size}"
    )]
    Truncated { what: String, offset: u64, needed: u64, file_size: u64 },
    #[error("GGUF {what} at offset {offset} is {count}, more than the {remaining} bytes left in the file can hold")]
    TooLarge { what: String, offset: u64, count: u64, remaining: u64 },
    #[error("GGUF file malformed at offset {offset}: {problem}")]
    Malformed { offset: u64, problem: String },
    #[error("general.alignment {0} is not a positive power of two")]
    BadAlignment(u64),
    #[error("tensor {tensor}: data offset {offset} is not a multiple of the alignment {alignment}")]
    Misaligned { tensor: String, offset: u64, alignment: u64 },
    #[error("tensor {tensor}: data {start}..{end} lies outside the file ({file_size} bytes)")]
    OutOfBounds { tensor: String, start: u64, end: u64, file_size: u64 },
    #[error("tensor {tensor}: ggml type {type_name} ({ggml_type}) is not supported")]
    UnsupportedType { tensor: String, ggml_type: u32, type_name: &'static str },
    #[error("tensor {tensor}: dims {dims:?} {problem}")]
    BadShape { tensor: String, dims: Vec<u64>, problem: String },
    #[error("metadata {key} is {found}, expected {expected}")]
    MetadataType { key: String, expected: &'static str, found: String },
    #[error("GGUF {what} at offset {offset} needs {bytes} bytes of memory, more than can be allocated")]
    OutOfMemory { what: String, offset: u64, bytes: u64 },
    #[cfg(not(target_arch = "wasm32"))]
    #[error(transparent)]
    Read(#[from] super::checked_file::ReadError),
}

/// One entry of the tensor directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` is the contiguous one (a matrix's columns).
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    /// Offset of the data relative to [`GgufFile::data_offset`].
    pub offset: u64,
}

impl GgufTensorInfo {
    pub fn type_name(&self) -> &'static str {
        ggml_type_name(self.ggml_type)
    }

    /// Number of values; an error when the product overflows.
    pub fn n_elements(&self) -> Result<u64, GgufError> {
        self.dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .ok_or_else(|| self.bad_shape("hold more values than fit in 64 bits"))
    }

    /// Bytes of the tensor's data, for types whose block layout is known. The
    /// contiguous dimension must hold whole blocks.
    pub fn byte_size(&self) -> Result<u64, GgufError> {
        let (block, block_bytes) = ggml_block_layout(self.ggml_type).ok_or_else(|| GgufError::UnsupportedType {
            tensor: self.name.clone(),
            ggml_type: self.ggml_type,
            type_name: self.type_name(),
        })?;
        let first = self.dims.first().copied().unwrap_or(1);
        if first % block != 0 {
            return Err(self.bad_shape(format!("split {} blocks of {block} values", self.type_name())));
        }
        (self.n_elements()? / block)
            .checked_mul(block_bytes)
            .ok_or_else(|| self.bad_shape("take more bytes than fit in 64 bits"))
    }

    fn bad_shape(&self, problem: impl Into<String>) -> GgufError {
        GgufError::BadShape { tensor: self.name.clone(), dims: self.dims.clone(), problem: problem.into() }
    }
}

/// A parsed GGUF header.
#[derive(Clone, Debug)]
pub struct GgufFile {
    pub version: u32,
    pub metadata: GgufMetadata,
    pub tensors: Vec<GgufTensorInfo>,
    /// `general.alignment`, or 32.
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    pub file_size: u64,
}

impl GgufFile {
    /// Parses the header of the GGUF file at `path`, a regular file.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self, GgufError> {
        Self::read(super::checked_file::open(path.as_ref())?.file)
    }

    /// Parses the header of a GGUF stream (from its start) and checks that every
    /// tensor of a known type lies, aligned, inside the stream.
    pub fn read(reader: impl Read + Seek) -> Result<Self, GgufError> {
        let mut reader = BufReader::with_capacity(1 << 16, reader);
        let file_size = reader.seek(SeekFrom::End(0))?;
        reader.seek(SeekFrom::Start(0))?;
        Self::read_sized(reader, file_size)
    }

    /// Parses the header from `prefix`, the first bytes of a file of `file_size` bytes (a
    /// server's, fetched by a range request): `Ok(None)` where the header runs past the prefix,
    /// so a longer one is needed.
    pub fn read_prefix(prefix: &[u8], file_size: u64) -> Result<Option<Self>, GgufError> {
        match Self::read_sized(prefix, file_size) {
            Err(GgufError::Truncated { offset, needed, .. })
                if offset.saturating_add(needed) <= file_size && prefix.len() as u64 <= file_size =>
            {
                Ok(None)
            }
            parsed => parsed.map(Some),
        }
    }

    fn read_sized(reader: impl Read, file_size: u64) -> Result<Self, GgufError> {
        let mut r = Reader { inner: reader, pos: 0, file_size };

        let magic = r.take_array::<4>("magic")?;
        if &magic != b"GGUF" {
            return Err(GgufError::BadMagic { found: magic.to_vec() });
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion { version });
        }
        // Smallest possible entries: a tensor info is an empty name (8), n_dims (4),
        // type (4) and offset (8); a key/value pair an empty key (8), a type (4) and
        // a one-byte value.
        let n_tensors = r.count("tensor count", 24)?;
        let n_kv = r.count("metadata count", 13)?;

        let mut metadata = GgufMetadata::new();
        for _ in 0..n_kv {
            let at = r.pos;
            let key = r.name("metadata key")?;
            let value_type = r.u32("metadata value type")?;
            let value = r.value(value_type, &key)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(GgufError::Malformed { offset: at, problem: format!("metadata key {key} appears twice") });
            }
        }

        let mut tensors = Vec::with_capacity(n_tensors.min(1 << 16) as usize);
        let mut names = HashSet::new();
        for _ in 0..n_tensors {
            let at = r.pos;
            let name = r.name("tensor name")?;
            let n_dims = r.u32("tensor dimension count")?;
            if n_dims > MAX_DIMS {
                return Err(GgufError::Malformed {
                    offset: at,
                    problem: format!("tensor {name} has {n_dims} dimensions, at most {MAX_DIMS} are allowed"),
                });
            }
            let dims = (0..n_dims).map(|_| r.u64("tensor dimension")).collect::<Result<Vec<_>, _>>()?;
            let ggml_type = r.u32("tensor type")?;
            let offset = r.u64("tensor offset")?;
            if !names.insert(name.clone()) {
                return Err(GgufError::Malformed { offset: at, problem: format!("tensor {name} appears twice") });
            }
            tensors.push(GgufTensorInfo { name, dims, ggml_type, offset });
        }

        let alignment = match metadata.get_u64("general.alignment")? {
            None => DEFAULT_ALIGNMENT,
            Some(a) if a.is_power_of_two() => a,
            Some(a) => return Err(GgufError::BadAlignment(a)),
        };
        let data_offset = r.pos.div_ceil(alignment).saturating_mul(alignment);
        let file = GgufFile { version, metadata, tensors, alignment, data_offset, file_size };
        for tensor in &file.tensors {
            if tensor.offset % alignment != 0 {
                return Err(GgufError::Misaligned { tensor: tensor.name.clone(), offset: tensor.offset, alignment });
            }
            match file.tensor_range(tensor) {
                Ok(_) | Err(GgufError::UnsupportedType { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(file)
    }

    /// llama.cpp's split files (`gguf-split`: `NAME-00001-of-00003.gguf` …) as one file: the
    /// first part's metadata and every part's tensors, each offset as if the parts lay end to
    /// end (a tensor never spans two). Each part must say it is that part of that many, and
    /// the first how many tensors they hold in all.
    pub fn join_splits(parts: Vec<GgufFile>) -> Result<GgufFile, GgufError> {
        let malformed = |problem: String| GgufError::Malformed { offset: 0, problem };
        let count = parts.len() as u64;
        for (index, part) in parts.iter().enumerate() {
            let (no, of) = (part.metadata.get_u64(SPLIT_NO)?, part.metadata.get_u64(SPLIT_COUNT)?);
            if (no, of) != (Some(index as u64), Some(count)) {
                return Err(malformed(format!(
                    "split part {} of {count} says {SPLIT_NO} {no:?}, {SPLIT_COUNT} {of:?}",
                    index + 1
                )));
            }
        }
        let mut parts = parts.into_iter();
        let mut joined = parts.next().ok_or_else(|| malformed("no split parts".into()))?;
        let base = joined.data_offset;
        let mut start = joined.file_size;
        let mut names: HashSet<String> = joined.tensors.iter().map(|t| t.name.clone()).collect();
        for part in parts {
            for mut tensor in part.tensors {
                if !names.insert(tensor.name.clone()) {
                    return Err(malformed(format!("tensor {} appears in two split parts", tensor.name)));
                }
                tensor.offset = start + part.data_offset + tensor.offset - base;
                joined.tensors.push(tensor);
            }
            start += part.file_size;
        }
        joined.file_size = start;
        let promised = joined.metadata.get_u64(SPLIT_TENSORS)?;
        if promised != Some(joined.tensors.len() as u64) {
            return Err(malformed(format!(
                "{SPLIT_TENSORS} is {promised:?}, the {count} split parts hold {} tensors",
                joined.tensors.len()
            )));
        }
        Ok(joined)
    }

    /// Where bytes `range` of split files laid end to end (as [`Self::join_splits`] lays them,
    /// file `i` starting at `starts[i]`, the first at 0) lie: the file holding them (a tensor
    /// never spans two) and the range within it.
    pub fn split_part_range(starts: &[u64], range: Range<u64>) -> (usize, Range<u64>) {
        let index = starts.iter().rposition(|&start| start <= range.start).expect("the first file starts at 0");
        (index, range.start - starts[index]..range.end - starts[index])
    }

    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Absolute byte range of a tensor's data, checked to lie inside the file.
    pub fn tensor_range(&self, tensor: &GgufTensorInfo) -> Result<Range<u64>, GgufError> {
        let size = tensor.byte_size()?;
        let out_of_bounds = |start: u64, end: u64| GgufError::OutOfBounds {
            tensor: tensor.name.clone(),
            start,
            end,
            file_size: self.file_size,
        };
        let start = self.data_offset.checked_add(tensor.offset).ok_or_else(|| out_of_bounds(u64::MAX, u64::MAX))?;
        let end = start.checked_add(size).ok_or_else(|| out_of_bounds(start, u64::MAX))?;
        if end > self.file_size {
            return Err(out_of_bounds(start, end));
        }
        Ok(start..end)
    }
}

/// Typed access to metadata. Each getter returns `Ok(None)` when the key is absent
/// and an error when it holds a value of another kind; integers convert between
/// widths when the value fits, because writers differ in the width they use.
pub trait GgufMetadataExt {
    fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError>;
    fn get_u32(&self, key: &str) -> Result<Option<u32>, GgufError>;
    /// F32 or F64 (narrowed).
    fn get_f32(&self, key: &str) -> Result<Option<f32>, GgufError>;
    fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError>;
    fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError>;
    fn get_array(&self, key: &str) -> Result<Option<&GgufArray>, GgufError>;
    fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>, GgufError>;
    fn get_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>, GgufError>;
    /// F32 or F64 (narrowed) items.
    fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>, GgufError>;
}

impl GgufMetadataExt for GgufMetadata {
    fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        typed(self, key, "an unsigned integer", |v| v.as_i128().and_then(|i| u64::try_from(i).ok()))
    }

    fn get_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        typed(self, key, "an unsigned 32-bit integer", |v| v.as_i128().and_then(|i| u32::try_from(i).ok()))
    }

    fn get_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        typed(self, key, "a float", |v| match *v {
            GgufValue::F32(x) => Some(x),
            GgufValue::F64(x) => Some(x as f32),
            _ => None,
        })
    }

    fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        typed(self, key, "a bool", |v| match *v {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        })
    }

    fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        typed(self, key, "a string", |v| match v {
            GgufValue::String(s) => Some(s.as_str()),
            _ => None,
        })
    }

    fn get_array(&self, key: &str) -> Result<Option<&GgufArray>, GgufError> {
        typed(self, key, "an array", |v| match v {
            GgufValue::Array(array) => Some(array.as_ref()),
            _ => None,
        })
    }

    fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>, GgufError> {
        typed(self, key, "an array of strings", |v| match v {
            GgufValue::Array(array) => array.strings(),
            _ => None,
        })
    }

    fn get_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>, GgufError> {
        typed(self, key, "an array of 32-bit integers", |v| match v {
            GgufValue::Array(array) => array.integers(),
            _ => None,
        })
    }

    fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>, GgufError> {
        typed(self, key, "an array of floats", |v| match v {
            GgufValue::Array(array) => array.floats(),
            _ => None,
        })
    }
}

fn typed<'a, T>(
    metadata: &'a GgufMetadata,
    key: &str,
    expected: &'static str,
    convert: impl FnOnce(&'a GgufValue) -> Option<T>,
) -> Result<Option<T>, GgufError> {
    let Some(value) = metadata.get(key) else { return Ok(None) };
    convert(value).map(Some).ok_or_else(|| GgufError::MetadataType {
        key: key.into(),
        expected,
        found: value.describe(),
    })
}

impl GgufValue {
    /// Any integer value, widened.
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            GgufValue::U8(v) => v.into(),
            GgufValue::I8(v) => v.into(),
            GgufValue::U16(v) => v.into(),
            GgufValue::I16(v) => v.into(),
            GgufValue::U32(v) => v.into(),
            GgufValue::I32(v) => v.into(),
            GgufValue::U64(v) => v.into(),
            GgufValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// A short description for error messages (the type, and the value when short).
    pub fn describe(&self) -> String {
        match self {
            GgufValue::String(s) if s.chars().count() > 40 => format!("a string of {} bytes", s.len()),
            GgufValue::String(s) => format!("the string {s:?}"),
            GgufValue::Array(array) => format!("an array of {} {} values", array.len(), array.item_type()),
            other => format!("{other:?}"),
        }
    }
}

/// A byte stream that knows its position and the file size, so every read can be
/// checked before it happens.
struct Reader<R> {
    inner: R,
    pos: u64,
    file_size: u64,
}

impl<R: Read> Reader<R> {
    fn remaining(&self) -> u64 {
        self.file_size.saturating_sub(self.pos)
    }

    fn ensure(&self, needed: u64, what: &str) -> Result<(), GgufError> {
        if needed > self.remaining() {
            return Err(GgufError::Truncated {
                what: what.into(),
                offset: self.pos,
                needed,
                file_size: self.file_size,
            });
        }
        Ok(())
    }

    fn take_array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        self.ensure(N as u64, what)?;
        let mut bytes = [0u8; N];
        self.read_into(&mut bytes, what)?;
        Ok(bytes)
    }

    /// Reads exactly `buf.len()` bytes, already checked to be in the file. A stream
    /// that ends early anyway (it shrank while being read) is still reported as
    /// truncated.
    fn read_into(&mut self, buf: &mut [u8], what: &str) -> Result<(), GgufError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(GgufError::Truncated {
                what: what.into(),
                offset: self.pos,
                needed: buf.len() as u64,
                file_size: self.file_size,
            }),
            Err(e) => Err(e.into()),
        }
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        self.take_array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        self.take_array(what).map(u64::from_le_bytes)
    }

    /// A `u64` count of items of at least `min_item_bytes` each, checked against the
    /// bytes left before anything is allocated for them.
    fn count(&mut self, what: &str, min_item_bytes: u64) -> Result<u64, GgufError> {
        let offset = self.pos;
        let count = self.u64(what)?;
        if count.saturating_mul(min_item_bytes) > self.remaining() {
            return Err(GgufError::TooLarge { what: what.into(), offset, count, remaining: self.remaining() });
        }
        Ok(count)
    }

    /// An empty vector with room for `count` items, which the caller has checked the bytes
    /// left in the file can hold: an error, not an abort, where memory cannot.
    fn allocate<T>(&self, count: u64, what: &str) -> Result<Vec<T>, GgufError> {
        let mut items = Vec::new();
        match usize::try_from(count) {
            Ok(count) if items.try_reserve_exact(count).is_ok() => Ok(items),
            _ => Err(GgufError::OutOfMemory {
                what: what.into(),
                offset: self.pos,
                bytes: count.saturating_mul(std::mem::size_of::<T>() as u64),
            }),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let offset = self.pos;
        let len = self.count(&format!("{what} length"), 1)?;
        let mut bytes = self.allocate(len, what)?;
        bytes.resize(len as usize, 0);
        self.read_into(&mut bytes, what)?;
        String::from_utf8(bytes)
            .map_err(|e| GgufError::Malformed { offset, problem: format!("{what} is not UTF-8: {e}") })
    }

    /// A metadata key or tensor name: text without control characters, which would reach
    /// a terminal raw when an error names it.
    fn name(&mut self, what: &str) -> Result<String, GgufError> {
        let offset = self.pos;
        let name = self.string(what)?;
        if name.chars().any(char::is_control) {
            return Err(GgufError::Malformed {
                offset,
                problem: format!("{what} {name:?} contains control characters"),
            });
        }
        Ok(name)
    }

    fn value(&mut self, value_type: u32, key: &str) -> Result<GgufValue, GgufError> {
        let what = format!("value of {key}");
        Ok(match value_type {
            0 => GgufValue::U8(u8::from_le_bytes(self.take_array(&what)?)),
            1 => GgufValue::I8(i8::from_le_bytes(self.take_array(&what)?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.take_array(&what)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.take_array(&what)?)),
            4 => GgufValue::U32(u32::from_le_bytes(self.take_array(&what)?)),
            5 => GgufValue::I32(i32::from_le_bytes(self.take_array(&what)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.take_array(&what)?)),
            7 => GgufValue::Bool(self.take_array::<1>(&what)?[0] != 0),
            8 => GgufValue::String(self.string(&what)?),
            9 => self.array(key, 0)?.into(),
            10 => GgufValue::U64(u64::from_le_bytes(self.take_array(&what)?)),
            11 => GgufValue::I64(i64::from_le_bytes(self.take_array(&what)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.take_array(&what)?)),
            other => return Err(unknown_value_type(self.pos, key, other)),
        })
    }

    /// An array (its item type, count and items) at nesting `depth`, into one typed vector.
    fn array(&mut self, key: &str, depth: u32) -> Result<GgufArray, GgufError> {
        let at = self.pos;
        if depth >= MAX_ARRAY_DEPTH {
            return Err(GgufError::Malformed {
                offset: at,
                problem: format!("{key}: arrays nest deeper than {MAX_ARRAY_DEPTH} levels"),
            });
        }
        let item_type = self.u32(&format!("array item type of {key}"))?;
        let min_item_bytes = match item_type {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10..=12 => 8,
            9 => 12,
            other => return Err(unknown_value_type(at, key, other)),
        };
        let count = self.count(&format!("array length of {key}"), min_item_bytes)?;
        let what = format!("array of {key}");
        Ok(match item_type {
            0 => GgufArray::U8(self.numbers(count, &what, u8::from_le_bytes)?),
            1 => GgufArray::I8(self.numbers(count, &what, i8::from_le_bytes)?),
            2 => GgufArray::U16(self.numbers(count, &what, u16::from_le_bytes)?),
            3 => GgufArray::I16(self.numbers(count, &what, i16::from_le_bytes)?),
            4 => GgufArray::U32(self.numbers(count, &what, u32::from_le_bytes)?),
            5 => GgufArray::I32(self.numbers(count, &what, i32::from_le_bytes)?),
            6 => GgufArray::F32(self.numbers(count, &what, f32::from_le_bytes)?),
            7 => GgufArray::Bool(self.numbers(count, &what, |[byte]: [u8; 1]| byte != 0)?),
            8 => GgufArray::String(self.strings(count, &what)?),
            9 => {
                let mut items = self.allocate(count, &what)?;
                for _ in 0..count {
                    items.push(self.array(key, depth + 1)?);
                }
                GgufArray::Array(items)
            }
            10 => GgufArray::U64(self.numbers(count, &what, u64::from_le_bytes)?),
            11 => GgufArray::I64(self.numbers(count, &what, i64::from_le_bytes)?),
            12 => GgufArray::F64(self.numbers(count, &what, f64::from_le_bytes)?),
            _ => unreachable!("the item type was checked above"),
        })
    }

    /// `count` numbers of `N` bytes each, which the caller has checked the file holds, read
    /// a block at a time.
    fn numbers<T, const N: usize>(
        &mut self,
        count: u64,
        what: &str,
        decode: fn([u8; N]) -> T,
    ) -> Result<Vec<T>, GgufError> {
        let mut items = self.allocate(count, what)?;
        let mut block = [0u8; 4096];
        let mut left = items.capacity(); // exactly `count`
        while left > 0 {
            let n = left.min(block.len() / N);
            let bytes = &mut block[..n * N];
            self.read_into(bytes, what)?;
            items.extend(bytes.chunks_exact(N).map(|item| decode(item.try_into().expect("chunks of N bytes"))));
            left -= n;
        }
        Ok(items)
    }

    /// `count` strings, each a `u64` length and UTF-8 bytes, into one buffer.
    fn strings(&mut self, count: u64, what: &str) -> Result<GgufStrings, GgufError> {
        let mut ends = self.allocate(count, what)?;
        let mut text: Vec<u8> = Vec::new();
        for index in 0..count {
            let len = self.count(what, 1)?;
            let start = text.len();
            if text.try_reserve(len as usize).is_err() {
                return Err(GgufError::OutOfMemory { what: what.into(), offset: self.pos, bytes: len });
            }
            text.resize(start + len as usize, 0);
            let offset = self.pos;
            self.read_into(&mut text[start..], what)?;
            if let Err(e) = std::str::from_utf8(&text[start..]) {
                return Err(GgufError::Malformed {
                    offset,
                    problem: format!("{what}: string {index} is not UTF-8: {e}"),
                });
            }
            ends.push(text.len());
        }
        let text = String::from_utf8(text).expect("every string was checked to be UTF-8");
        Ok(GgufStrings { text: text.into(), ends: ends.into() })
    }
}

fn unknown_value_type(offset: u64, key: &str, value_type: u32) -> GgufError {
    GgufError::Malformed { offset, problem: format!("metadata {key} has unknown value type {value_type}") }
}
