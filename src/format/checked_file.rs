//! The one way a command reads a file it is given: a model directory's, a checkpoint's, or
//! another input it names. Only a regular file is read (a FIFO would block forever,
//! `/dev/zero` never ends), and a file read whole only up to the limit of its kind, checked
//! before a byte is read or allocated.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::manifest::MAX_MANIFEST_BYTES;

/// What a file read whole holds: the limit on its size, and how an error names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileKind {
    /// Completes "more than the 64 MiB … may have".
    pub what: &'static str,
    pub max_bytes: u64,
}

/// `manifest.json`: the limit its writer keeps to ([`MAX_MANIFEST_BYTES`]).
pub const MANIFEST: FileKind = FileKind { what: "a manifest", max_bytes: MAX_MANIFEST_BYTES };
/// `config.json`, `tokenizer_config.json`, `quantize_config.json`, a checkpoint's
/// `*.index.json`: real ones take kilobytes; an index listing tens of thousands of tensors a
/// few megabytes.
pub const JSON_METADATA: FileKind = FileKind { what: "a JSON metadata file", max_bytes: 64 << 20 };
/// `tokenizer.json` or `tokenizer.model`: LLaMA-3's and Qwen2's `tokenizer.json` take about
/// 9 MB, the largest vocabularies (Gemma's 256k tokens) about 33 MB.
pub const TOKENIZER: FileKind = FileKind { what: "a tokenizer", max_bytes: 128 << 20 };
/// `chat_template.jinja`: real templates take a few kilobytes.
pub const CHAT_TEMPLATE: FileKind = FileKind { what: "a chat template", max_bytes: 1 << 20 };
/// Text a command holds whole in memory: a dataset to judge, prompts, benchmark text. Judge
/// benchmarks take megabytes.
pub const TEXT_INPUT: FileKind = FileKind { what: "a text input", max_bytes: 1 << 30 };

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {file_type}, not a regular file", path.display())]
    NotRegular { path: PathBuf, file_type: &'static str },
    #[error("{}: {size} bytes, more than the {} MiB ({max_bytes} bytes) {what} may have", path.display(), max_bytes >> 20)]
    TooLarge { path: PathBuf, size: u64, max_bytes: u64, what: &'static str },
    #[error("{}: its {size} bytes cannot be allocated", path.display())]
    OutOfMemory { path: PathBuf, size: u64 },
}

/// A regular file open for reading, and its size when it was opened.
#[derive(Debug)]
pub struct RegularFile {
    pub file: File,
    pub size: u64,
    path: PathBuf,
}

/// Opens `path` if it is a regular file (symlinks followed), without blocking.
pub fn open(path: &Path) -> Result<RegularFile, ReadError> {
    let io_error = |source| ReadError::Io { path: path.to_owned(), source };
    let mut options = OpenOptions::new();
    options.read(true);
    // Opening a FIFO for reading blocks until a writer comes. Non-blocking, the open returns
    // and the file opened is checked, so nothing can swap it between a check and the open.
    // Reads of a regular file ignore the flag.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    if !metadata.is_file() {
        return Err(ReadError::NotRegular { path: path.to_owned(), file_type: describe(metadata.file_type()) });
    }
    Ok(RegularFile { file, size: metadata.len(), path: path.to_owned() })
}

/// Reads the whole of a regular file of at most `kind.max_bytes`.
pub fn read(path: &Path, kind: FileKind) -> Result<Vec<u8>, ReadError> {
    open(path)?.read_limited(kind)
}

/// [`read`], as UTF-8 text.
pub fn read_to_string(path: &Path, kind: FileKind) -> Result<String, ReadError> {
    String::from_utf8(read(path, kind)?).map_err(|e| ReadError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not UTF-8 text: {e}")),
    })
}

/// [`read_to_string`], or `None` where there is no such file (some files of a model
/// directory are optional).
pub fn read_to_string_if_present(path: &Path, kind: FileKind) -> Result<Option<String>, ReadError> {
    match read_to_string(path, kind) {
        Ok(text) => Ok(Some(text)),
        Err(ReadError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl RegularFile {
    /// Reads `range` of the file (a GGUF tensor's bytes), naming the file if it cannot:
    /// one cut short since it was opened ends in an error, not in fewer bytes.
    pub fn read_range(&mut self, range: std::ops::Range<u64>) -> Result<Vec<u8>, ReadError> {
        use std::io::{Seek, SeekFrom};
        let mut bytes = vec![0u8; (range.end - range.start) as usize];
        let read = self.file.seek(SeekFrom::Start(range.start)).and_then(|_| self.file.read_exact(&mut bytes));
        read.map_err(|source| ReadError::Io { path: self.path.clone(), source })?;
        Ok(bytes)
    }

    /// Reads the whole file if it has at most `kind.max_bytes`, refused before reading.
    pub fn read_limited(self, kind: FileKind) -> Result<Vec<u8>, ReadError> {
        if self.size > kind.max_bytes {
            return Err(ReadError::TooLarge {
                path: self.path,
                size: self.size,
                max_bytes: kind.max_bytes,
                what: kind.what,
            });
        }
        self.read_all()
    }

    /// Reads the file's bytes as of its opening: one that grows meanwhile is cut there, and
    /// a size memory cannot hold is an error, not an abort.
    pub fn read_all(self) -> Result<Vec<u8>, ReadError> {
        let mut bytes = Vec::new();
        let capacity = usize::try_from(self.size).ok().filter(|&n| bytes.try_reserve_exact(n).is_ok());
        if capacity.is_none() {
            return Err(ReadError::OutOfMemory { path: self.path, size: self.size });
        }
        let read = self.file.take(self.size).read_to_end(&mut bytes);
        read.map_err(|source| ReadError::Io { path: self.path, source })?;
        Ok(bytes)
    }
}

/// What a file that is not a regular one is, for messages: "a FIFO", "a directory", ….
pub fn describe(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}
