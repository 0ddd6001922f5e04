//! A reader of PyTorch `torch.save` checkpoints (`pytorch_model.bin`, or the shards a
//! `pytorch_model.bin.index.json` lists), the format Auto-J-13B is published in.
//!
//! Since PyTorch 1.6 such a file is a zip archive `<archive>/data.pkl`,
//! `<archive>/data/<key>`, ...: the pickle holds the state dict, each tensor a call of
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` whose storage is
//! a persistent id `('storage', torch.HalfStorage, key, location, numel)`, and the raw
//! little-endian storage bytes are the entry `data/<key>`. The archive's directory and
//! local headers are read by the `zip` crate. PyTorch writes every entry stored
//! (uncompressed), so a tensor is a byte range of the `.bin` file and is read row range by
//! row range through the [`Checkpoint`], like a safetensors tensor: a shard is never
//! loaded whole.
//!
//! The pickle is never executed. A small interpreter understands exactly the opcodes
//! `torch.save` emits for a state dict and builds plain values; the only globals it
//! accepts are `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and
//! `torch.*Storage` types, and any other global or opcode is an error naming it. Only
//! contiguous row-major F32, F16 and BF16 tensors are accepted, and I32 (`IntStorage`) for
//! the packed tensors of GPTQ checkpoints.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive};

use super::checkpoint::{self, Checkpoint, CheckpointDType, CheckpointError, CheckpointTensor};
use crate::format::checked_file::{self, ReadError, RegularFile};

/// Sharded checkpoints list their files here.
pub const INDEX_FILE: &str = "pytorch_model.bin.index.json";
/// The file of an unsharded checkpoint.
pub const SINGLE_FILE: &str = "pytorch_model.bin";
/// The largest `data.pkl` read (a 13B shard's is tens of kilobytes).
pub const MAX_PICKLE_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TorchError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}: the file is truncated, or is not a zip archive (checkpoints saved by PyTorch before 1.6 are not supported; re-save them with a newer torch)", path.display())]
    NotZip { path: PathBuf, source: ZipError },
    #[error("{}: {problem}", path.display())]
    Zip { path: PathBuf, problem: String },
    #[error("{}: data.pkl at byte {offset}: {problem}", path.display())]
    Pickle { path: PathBuf, offset: usize, problem: String },
    #[error("{}: tensor {name}: {problem}", path.display())]
    Tensor { path: PathBuf, name: String, problem: String },
    #[error("{INDEX_FILE}: {0}")]
    Index(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{} holds neither {SINGLE_FILE}, {INDEX_FILE} nor any *.bin file", .0.display())]
    NoWeights(PathBuf),
    #[error(transparent)]
    Read(#[from] ReadError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TorchError + '_ {
    move |source| TorchError::Io { path: path.to_owned(), source }
}

/// The `pytorch_model*.bin` files of a directory, or when there are none every `*.bin`
/// file (AutoGPTQ names its weights `gptq_model-4bit-128g.bin`), sorted.
fn bin_files(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "bin"))
        .collect();
    let pytorch = |p: &PathBuf| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("pytorch_model"));
    if paths.iter().any(pytorch) {
        paths.retain(pytorch);
    }
    paths.sort();
    paths
}

/// Whether `dir` holds a PyTorch checkpoint (an index or a `.bin` file).
pub fn has_weights(dir: &Path) -> bool {
    dir.join(INDEX_FILE).is_file() || !bin_files(dir).is_empty()
}

/// Opens the PyTorch checkpoint of a Hugging Face model directory: the shards
/// `pytorch_model.bin.index.json` lists, `pytorch_model.bin`, or else every
/// `pytorch_model*.bin` file (every `*.bin` file when none is named so).
pub fn open_dir(dir: &Path) -> Result<Checkpoint, TorchError> {
    checkpoint::open_dir(dir, [INDEX_FILE, SINGLE_FILE], open_files, TorchError::Index, || match bin_files(dir) {
        paths if paths.is_empty() => Err(TorchError::NoWeights(dir.to_owned())),
        paths => Ok(paths),
    })
}

/// Opens the given `.bin` files as one checkpoint; a tensor name in two files is an error.
pub fn open_files(paths: &[PathBuf]) -> Result<Checkpoint, TorchError> {
    let mut files = Vec::with_capacity(paths.len());
    let mut located = Vec::new();
    for (index, path) in paths.iter().enumerate() {
        let mut archive = Archive::open(path)?;
        located.extend(archive.locate_tensors(index)?);
        files.push((path.clone(), archive.zip.into_inner()));
    }
    Ok(Checkpoint::new(files, located)?)
}

/// One `.bin` zip archive. The `zip` crate reads its directory and each entry's local
/// header; tensor data is never read here, only located: stored entries are byte ranges
/// of the file, which the [`Checkpoint`] reads row range by row range.
struct Archive<'a> {
    path: &'a Path,
    zip: ZipArchive<File>,
    size: u64,
}

impl<'a> Archive<'a> {
    fn open(path: &'a Path) -> Result<Self, TorchError> {
        let RegularFile { file, size, .. } = checked_file::open(path)?;
        let zip = ZipArchive::new(file).map_err(|source| TorchError::NotZip { path: path.to_owned(), source })?;
        Ok(Self { path, zip, size })
    }

    fn problem(&self, problem: impl Into<String>) -> TorchError {
        TorchError::Zip { path: self.path.to_owned(), problem: problem.into() }
    }

    /// Where the data of the stored entry `name` lies; `None` when there is no such entry.
    fn data_range(&mut self, name: &str) -> Result<Option<Range<u64>>, TorchError> {
        let Some(index) = self.zip.index_for_name(name) else {
            return Ok(None);
        };
        let (encrypted, method, size, compressed_size, start) = {
            let entry = self.zip.by_index_raw(index).map_err(|e| entry_problem(self.path, name, e))?;
            // `data_start` is known once `by_index_raw` has read the local header.
            (entry.encrypted(), entry.compression(), entry.size(), entry.compressed_size(), entry.data_start())
        };
        if encrypted {
            return Err(self.problem(format!("entry {name} is encrypted")));
        }
        if method != CompressionMethod::Stored {
            return Err(self.problem(format!(
                "entry {name} is compressed ({method}); webjudge reads only stored entries, as torch.save writes them"
            )));
        }
        if size != compressed_size {
            return Err(self.problem(format!("stored entry {name} has differing sizes")));
        }
        let start = start.ok_or_else(|| self.problem(format!("entry {name}: its local header was not read")))?;
        match start.checked_add(size) {
            Some(end) if end <= self.size => Ok(Some(start..end)),
            _ => Err(self.problem(format!("entry {name} runs past the end of the file (truncated?)"))),
        }
    }

    /// The first `len` bytes of a stored entry [`Self::data_range`] found.
    fn read_entry(&mut self, name: &str, len: u64) -> Result<Vec<u8>, TorchError> {
        let index = self.zip.index_for_name(name).ok_or_else(|| self.problem(format!("entry {name} is missing")))?;
        let mut entry = self.zip.by_index_raw(index).map_err(|e| entry_problem(self.path, name, e))?;
        let mut bytes = vec![0u8; len as usize];
        entry.read_exact(&mut bytes).map_err(io_error(self.path))?;
        Ok(bytes)
    }

    /// Locates the tensors of the archive; `index` becomes their `file`.
    fn locate_tensors(&mut self, index: usize) -> Result<Vec<CheckpointTensor>, TorchError> {
        let names: Vec<String> = self
            .zip
            .file_names()
            .map(|name| name.map(|name| name.into_owned()))
            .collect::<Result<_, _>>()
            .map_err(|e| self.problem(format!("an entry name is unreadable: {e}")))?;
        let pickles: Vec<&String> =
            names.iter().filter(|n| n.strip_suffix("/data.pkl").is_some_and(|p| !p.contains('/'))).collect();
        let [pickle] = pickles[..] else {
            return Err(self.problem(format!("expected one <archive>/data.pkl entry, found {}", pickles.len())));
        };
        let prefix = pickle.strip_suffix("data.pkl").unwrap_or_default().to_owned();
        let byteorder = format!("{prefix}byteorder");
        if let Some(range) = self.data_range(&byteorder)? {
            let order = self.read_entry(&byteorder, (range.end - range.start).min(16))?;
            if order != b"little" {
                return Err(self.problem(format!(
                    "byteorder is {:?}; only little-endian is read",
                    String::from_utf8_lossy(&order)
                )));
            }
        }
        let range = self.data_range(pickle)?.expect("the entry was listed");
        if range.end - range.start > MAX_PICKLE_BYTES {
            return Err(self.problem(format!("data.pkl exceeds {MAX_PICKLE_BYTES} bytes")));
        }
        let bytes = self.read_entry(pickle, range.end - range.start)?;
        let path = self.path;
        let pickled = parse_state_dict(&bytes).map_err(|(offset, problem)| TorchError::Pickle {
            path: path.to_owned(),
            offset,
            problem,
        })?;
        let mut tensors = Vec::with_capacity(pickled.len());
        for t in pickled {
            let bad = |problem: String| TorchError::Tensor { path: path.to_owned(), name: t.name.clone(), problem };
            let dtype = t.storage.dtype.ok_or_else(|| {
                bad(format!(
                    "storage type torch.{} is not supported; webjudge reads F32, F16, BF16 and I32",
                    t.storage.type_name
                ))
            })?;
            let entry_name = format!("{prefix}data/{}", t.storage.key);
            let data = self
                .data_range(&entry_name)?
                .ok_or_else(|| bad(format!("its storage {:?} ({entry_name}) is not in the archive", t.storage.key)))?;
            let element = dtype.size();
            let storage_bytes = t.storage.numel.checked_mul(element).filter(|&b| b <= data.end - data.start);
            let Some(storage_bytes) = storage_bytes else {
                return Err(bad(format!(
                    "its storage of {} elements needs more than the {} bytes of {entry_name}",
                    t.storage.numel,
                    data.end - data.start
                )));
            };
            let numel = t.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
            let span = numel.and_then(|n| t.offset.checked_add(n)).and_then(|end| end.checked_mul(element));
            let Some(end) = span.filter(|&end| end <= storage_bytes) else {
                return Err(bad(format!(
                    "shape {:?} at offset {} runs past its storage of {} elements",
                    t.shape, t.offset, t.storage.numel
                )));
            };
            if t.stride.len() != t.shape.len() {
                return Err(bad(format!("stride {:?} does not match shape {:?}", t.stride, t.shape)));
            }
            let mut expected = 1u64;
            for (&d, &s) in t.shape.iter().zip(&t.stride).rev() {
                if d != 1 && s != expected && numel != Some(0) {
                    return Err(bad(format!(
                        "stride {:?} of shape {:?} is not contiguous row-major; save .contiguous() tensors",
                        t.stride, t.shape
                    )));
                }
                expected = expected.saturating_mul(d as u64);
            }
            tensors.push(CheckpointTensor {
                name: t.name,
                dtype,
                shape: t.shape,
                file: index,
                range: data.start + t.offset * element..data.start + end,
            });
        }
        Ok(tensors)
    }
}

fn entry_problem(path: &Path, name: &str, error: ZipError) -> TorchError {
    TorchError::Zip { path: path.to_owned(), problem: format!("entry {name}: {error}") }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A storage as the pickle's persistent id describes it.
#[derive(Debug, PartialEq)]
pub struct StorageRef {
    /// `None` for storage types other than Float, Half, BFloat16 and Int.
    pub dtype: Option<CheckpointDType>,
    /// The type's name, as `HalfStorage`.
    pub type_name: String,
    pub key: String,
    pub numel: u64,
}

/// A tensor of the state dict, as pickled.
#[derive(Debug)]
pub struct PickledTensor {
    pub name: String,
    pub storage: Rc<StorageRef>,
    /// In elements.
    pub offset: u64,
    pub shape: Vec<usize>,
    pub stride: Vec<u64>,
}

#[derive(Clone, Debug)]
enum Global {
    OrderedDict,
    RebuildTensor,
    Storage(Option<CheckpointDType>, String),
}

#[derive(Clone, Debug)]
enum Value {
    None,
    Bool,
    Int(i64),
    Str(Rc<str>),
    /// Containers carry their nesting depth, which is bounded so that no pickle can
    /// nest values deeply enough to overflow the stack when they are dropped.
    Tuple(u8, Rc<Vec<Value>>),
    List(u8, Rc<Vec<Value>>),
    Dict(u8, Rc<Vec<(Value, Value)>>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<PickledTensor>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool => "bool",
            Value::Int(_) => "int",
            Value::Str(_) => "str",
            Value::Tuple(..) => "tuple",
            Value::List(..) => "list",
            Value::Dict(..) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

impl Value {
    fn depth(&self) -> u8 {
        match self {
            Value::Tuple(depth, _) | Value::List(depth, _) | Value::Dict(depth, _) => *depth,
            _ => 0,
        }
    }
}

/// The deepest nesting of containers accepted (a state dict needs 4).
const MAX_NESTING: u8 = 32;

/// The depth of a container holding `items`.
fn nest<'v>(items: impl Iterator<Item = &'v Value>) -> Result<u8, String> {
    let depth = 1 + items.map(Value::depth).max().unwrap_or(0);
    if depth > MAX_NESTING {
        return Err(format!("values nest deeper than {MAX_NESTING} levels"));
    }
    Ok(depth)
}

fn global(module: &str, name: &str) -> Result<Global, String> {
    match (module, name) {
        ("collections", "OrderedDict") => Ok(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Ok(Global::RebuildTensor),
        ("torch", name) if name.ends_with("Storage") && name.len() > "Storage".len() => {
            let dtype = match name {
                "FloatStorage" => Some(CheckpointDType::F32),
                "HalfStorage" => Some(CheckpointDType::F16),
                "BFloat16Storage" => Some(CheckpointDType::BF16),
                "IntStorage" => Some(CheckpointDType::I32),
                _ => None,
            };
            Ok(Global::Storage(dtype, name.to_owned()))
        }
        _ => Err(format!("global {module}.{name} is not allowed: a state dict of tensors needs only collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch.*Storage")),
    }
}

fn opcode_name(op: u8) -> &'static str {
    match op {
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        b'I' => "INT",
        b'L' => "LONG",
        0x8b => "LONG4",
        b'F' => "FLOAT",
        b'G' => "BINFLOAT",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        0x8d => "BINUNICODE8",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8e => "BINBYTES8",
        0x96 => "BYTEARRAY8",
        b'P' => "PERSID",
        b'p' => "PUT",
        b'g' => "GET",
        b'l' => "LIST",
        b'd' => "DICT",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        0x82..=0x84 => "EXT",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "unknown",
    }
}

/// A pickle being read: the input, position, stack, mark stack and memo.
struct Machine<'a> {
    bytes: &'a [u8],
    at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let bytes = self.bytes.get(self.at..self.at.checked_add(n).ok_or("length overflows")?);
        let bytes = bytes.ok_or_else(|| format!("the pickle ends inside an argument of {n} bytes (truncated?)"))?;
        self.at += n;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32_at(self.take(4)?, 0))
    }

    fn line(&mut self) -> Result<&'a str, String> {
        let rest = &self.bytes[self.at..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or("GLOBAL name is not terminated (truncated?)")?;
        self.at += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| "GLOBAL name is not UTF-8".into())
    }

    fn string(&mut self, len: usize) -> Result<Value, String> {
        let bytes = self.take(len)?;
        let text = std::str::from_utf8(bytes).map_err(|_| "a string is not UTF-8")?;
        Ok(Value::Str(text.into()))
    }

    fn pop(&mut self) -> Result<Value, String> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err("the stack is empty above the mark".into());
        }
        self.stack.pop().ok_or_else(|| "the stack is empty".into())
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        self.stack.last_mut().ok_or_else(|| "the stack is empty".into())
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self.marks.pop().ok_or("no MARK on the stack")?;
        Ok(self.stack.split_off(mark))
    }

    fn tuple(&mut self, n: usize) -> Result<(), String> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() < floor + n {
            return Err(format!("a tuple of {n} needs more values than the stack holds"));
        }
        let items = self.stack.split_off(self.stack.len() - n);
        self.stack.push(Value::Tuple(nest(items.iter())?, Rc::new(items)));
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), String> {
        if !items.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of values".into());
        }
        let depth = nest(items.iter())?;
        let Value::Dict(dict_depth, dict) = self.top()? else {
            return Err("SETITEM(S) on something other than a dict".into());
        };
        *dict_depth = depth.max(*dict_depth);
        let dict = Rc::make_mut(dict);
        let mut items = items.into_iter();
        while let (Some(key), Some(value)) = (items.next(), items.next()) {
            dict.push((key, value));
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), String> {
        let depth = nest(items.iter())?;
        let Value::List(list_depth, list) = self.top()? else {
            return Err("APPEND(S) on something other than a list".into());
        };
        *list_depth = depth.max(*list_depth);
        Rc::make_mut(list).extend(items);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> Result<(), String> {
        let value = self.memo.get(&index).cloned().ok_or_else(|| format!("memo entry {index} was never stored"))?;
        self.stack.push(value);
        Ok(())
    }

    fn memo_put(&mut self, index: u32) -> Result<(), String> {
        let value = self.stack.last().cloned().ok_or("the stack is empty")?;
        self.memo.insert(index, value);
        Ok(())
    }

    /// Runs one opcode; `Some` when it was STOP.
    fn step(&mut self, op: u8) -> Result<Option<Value>, String> {
        match op {
            0x80 => {
                let version = self.byte()?;
                if version > 5 {
                    return Err(format!("pickle protocol {version} is unknown"));
                }
            }
            0x95 => {
                self.take(8)?;
            }
            b'}' => self.stack.push(Value::Dict(1, Rc::default())),
            b']' => self.stack.push(Value::List(1, Rc::default())),
            b')' => self.stack.push(Value::Tuple(1, Rc::default())),
            b'(' => self.marks.push(self.stack.len()),
            b'X' => {
                let len = self.u32()? as usize;
                let value = self.string(len)?;
                self.stack.push(value);
            }
            0x8c => {
                let len = self.byte()? as usize;
                let value = self.string(len)?;
                self.stack.push(value);
            }
            b'J' => {
                let value = i32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "short")?);
                self.stack.push(Value::Int(value.into()));
            }
            b'K' => {
                let value = self.byte()?;
                self.stack.push(Value::Int(value.into()));
            }
            b'M' => {
                let b = self.take(2)?;
                self.stack.push(Value::Int(u16_at(b, 0).into()));
            }
            0x8a => {
                let n = self.byte()? as usize;
                if n > 8 {
                    return Err(format!("LONG1 of {n} bytes exceeds 64 bits"));
                }
                let b = self.take(n)?;
                let mut raw = [if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xFF } else { 0 }; 8];
                raw[..n].copy_from_slice(b);
                self.stack.push(Value::Int(i64::from_le_bytes(raw)));
            }
            b't' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Tuple(nest(items.iter())?, Rc::new(items)));
            }
            0x85..=0x87 => self.tuple((op - 0x84) as usize)?,
            b'q' => {
                let index = self.byte()?;
                self.memo_put(index.into())?;
            }
            b'r' => {
                let index = self.u32()?;
                self.memo_put(index)?;
            }
            0x94 => self.memo_put(self.memo.len() as u32)?,
            b'h' => {
                let index = self.byte()?;
                self.memo_get(index.into())?;
            }
            b'j' => {
                let index = self.u32()?;
                self.memo_get(index)?;
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.stack.push(Value::Global(global(module, name)?));
            }
            0x93 => {
                let (Value::Str(name), Value::Str(module)) = (self.pop()?, self.pop()?) else {
                    return Err("STACK_GLOBAL needs two strings".into());
                };
                self.stack.push(Value::Global(global(&module, &name)?));
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let Value::Tuple(_, args) = args else {
                    return Err(format!("REDUCE with {} arguments instead of a tuple", args.kind()));
                };
                let value = match callable {
                    Value::Global(Global::OrderedDict) if args.is_empty() => Value::Dict(1, Rc::default()),
                    Value::Global(Global::OrderedDict) => {
                        return Err("collections.OrderedDict is called with arguments".into())
                    }
                    Value::Global(Global::RebuildTensor) => Value::Tensor(Rc::new(rebuild_tensor(&args)?)),
                    Value::Global(Global::Storage(_, name)) => return Err(format!("torch.{name} is called")),
                    other => return Err(format!("REDUCE calls a {}", other.kind())),
                };
                self.stack.push(value);
            }
            b'Q' => {
                let pid = self.pop()?;
                self.stack.push(Value::Storage(Rc::new(storage(&pid)?)));
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.set_items(vec![key, value])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.set_items(items)?;
            }
            b'a' => {
                let item = self.pop()?;
                self.append(vec![item])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.append(items)?;
            }
            b'b' => {
                // OrderedDict's state (a state dict's `_metadata`) carries no tensors.
                self.pop()?;
                if !matches!(self.top()?, Value::Dict(..)) {
                    return Err("BUILD on something other than an OrderedDict".into());
                }
            }
            b'N' => self.stack.push(Value::None),
            0x88 => self.stack.push(Value::Bool),
            0x89 => self.stack.push(Value::Bool),
            b'.' => {
                let value = self.pop()?;
                if !self.stack.is_empty() || !self.marks.is_empty() {
                    return Err("STOP leaves values on the stack".into());
                }
                return Ok(Some(value));
            }
            op => return Err(format!("opcode 0x{op:02x} ({}) is not supported", opcode_name(op))),
        }
        Ok(None)
    }
}

fn int(value: &Value, what: &str) -> Result<u64, String> {
    match value {
        Value::Int(i) => u64::try_from(*i).map_err(|_| format!("{what} is negative")),
        other => Err(format!("{what} is a {} instead of an int", other.kind())),
    }
}

fn ints(value: &Value, what: &str) -> Result<Vec<u64>, String> {
    match value {
        Value::Tuple(_, items) => items.iter().map(|v| int(v, what)).collect(),
        other => Err(format!("{what} is a {} instead of a tuple", other.kind())),
    }
}

/// `('storage', torch.HalfStorage, key, location, numel)`.
fn storage(pid: &Value) -> Result<StorageRef, String> {
    let Value::Tuple(_, items) = pid else {
        return Err(format!("persistent id is a {} instead of a tuple", pid.kind()));
    };
    match &items[..] {
        [Value::Str(tag), Value::Global(Global::Storage(dtype, name)), Value::Str(key), Value::Str(_), numel]
            if &**tag == "storage" =>
        {
            Ok(StorageRef {
                dtype: *dtype,
                type_name: name.clone(),
                key: key.to_string(),
                numel: int(numel, "storage size")?,
            })
        }
        _ => Err("persistent id is not ('storage', torch.*Storage, key, location, numel)".into()),
    }
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
fn rebuild_tensor(args: &[Value]) -> Result<PickledTensor, String> {
    let (storage, offset, size, stride) = match args {
        [Value::Storage(s), offset, size, stride, Value::Bool, Value::Dict(_, hooks), ..]
            if args.len() <= 7 && hooks.is_empty() =>
        {
            (s, offset, size, stride)
        }
        _ => {
            return Err("_rebuild_tensor_v2 arguments are not (storage, offset, size, stride, requires_grad, {})".into())
        }
    };
    let shape = ints(size, "size")?
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| "size overflows".to_string()))
        .collect::<Result<_, _>>()?;
    Ok(PickledTensor {
        name: String::new(),
        storage: storage.clone(),
        offset: int(offset, "storage offset")?,
        shape,
        stride: ints(stride, "stride")?,
    })
}

/// Interprets a `data.pkl` holding a state dict (a dict or OrderedDict of tensor name
/// to tensor) without executing anything. Errors carry the byte offset of the opcode.
pub fn parse_state_dict(bytes: &[u8]) -> Result<Vec<PickledTensor>, (usize, String)> {
    let mut machine = Machine { bytes, at: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() };
    let value = loop {
        let start = machine.at;
        let op = machine.byte().map_err(|_| (start, "the pickle ends before STOP (truncated?)".to_string()))?;
        if let Some(value) = machine.step(op).map_err(|problem| (start, problem))? {
            break value;
        }
    };
    let end = machine.at;
    let Value::Dict(_, items) = value else {
        return Err((end, format!("the pickle holds a {} instead of a state dict", value.kind())));
    };
    let mut tensors = Vec::with_capacity(items.len());
    for (key, value) in items.iter() {
        let (Value::Str(name), Value::Tensor(tensor)) = (key, value) else {
            return Err((
                end,
                format!("the state dict maps a {} to a {}, not a name to a tensor", key.kind(), value.kind()),
            ));
        };
        tensors.push(PickledTensor {
            name: name.to_string(),
            storage: tensor.storage.clone(),
            offset: tensor.offset,
            shape: tensor.shape.clone(),
            stride: tensor.stride.clone(),
        });
    }
    Ok(tensors)
}
