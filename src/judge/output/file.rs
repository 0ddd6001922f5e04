//! A batch output on disk, from the start of a run to its end: opened only if it is a regular
//! file and not the input, locked against a second run, resumed by [`resume_output`]'s rules,
//! appended to record by record, and put in input order at the end.
//!
//! Every rewrite (a repair when resuming, the reordering at the end) goes to the real file,
//! its symlinks resolved once when the run starts: written beside it with the same mode and
//! owner and renamed over it, so a failure leaves the file as it was and a symlink keeps
//! pointing at it. A file with other hard links is rewritten in place instead (a rename would
//! split the links), after its new content is safe beside it.

use std::fs::{self, File, Metadata, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use same_file::Handle;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{in_input_order, resume_output, Resume, ResumeError, RunOptions};
use crate::format::checked_file::describe;
use crate::format::hex;
use platform::OpenOptionsExt;

/// The longest file name most file systems take (NAME_MAX).
const MAX_NAME_BYTES: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "{}: is {kind}, not a regular file: records are appended to a regular file, which is resumed and \
         reordered (write to standard output with --output -)",
        path.display()
    )]
    NotARegularFile { path: PathBuf, kind: &'static str },
    #[error("{}: is the input file; write the records to another file", path.display())]
    IsTheInput { path: PathBuf },
    #[error(
        "{}: another webjudge run is writing it ({holder}); wait for it to end, or use another --output",
        path.display()
    )]
    Locked { path: PathBuf, holder: String },
    #[error("{}: {source}", path.display())]
    Resume { path: PathBuf, source: ResumeError },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: writing its new copy {} failed: {source}; {} was left as it was", path.display(), temp.display(), path.display())]
    Rewrite { path: PathBuf, temp: PathBuf, source: io::Error },
    #[error(
        "{}: rewriting it in place failed: {source}; its whole new content is in {}",
        path.display(), temp.display()
    )]
    RewriteInPlace { path: PathBuf, temp: PathBuf, source: io::Error },
    #[error(
        "{}: writing a record failed: {source}; the run stopped there, with every record before it kept \
         (run the same command again to resume)",
        path.display()
    )]
    Append { path: PathBuf, source: io::Error },
}

/// A batch output held for one run. Dropping it releases the lock.
pub struct OutputFile {
    /// The path as given, for messages.
    shown: PathBuf,
    /// Where the records go: the given path with its symlinks resolved, once.
    real: PathBuf,
    file: File,
    _lock: OutputLock,
}

impl OutputFile {
    /// Opens `path` (creating it if missing) for a run made with `run`, and reads what an
    /// earlier run left in it: the rows already judged, after dropping a record cut off by an
    /// interruption and error records to retry. Refused, untouched: anything but a regular
    /// file, the `input` file itself, a file another run holds, a file of other records.
    pub fn open(path: &Path, run: &RunOptions, input: Option<&Path>) -> Result<(OutputFile, Resume), OutputError> {
        let real = real_path(path)?;
        if let Ok(existing) = fs::metadata(&real) {
            check_regular(path, &existing)?;
            if input.is_some_and(|input| same_file::is_same_file(input, &real).unwrap_or(false)) {
                return Err(OutputError::IsTheInput { path: path.to_owned() });
            }
        }
        let lock = OutputLock::acquire(&real, path)?;
        let mut file = open_regular(path, &real)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|source| OutputError::Io { path: path.to_owned(), source })?;
        let resume =
            resume_output(&bytes, run).map_err(|source| OutputError::Resume { path: path.to_owned(), source })?;
        let mut output = OutputFile { shown: path.to_owned(), real, file, _lock: lock };
        if let Some(content) = &resume.rewrite {
            output.replace(content)?;
        }
        Ok((output, resume))
    }

    /// Appends one record as a line. A record the write could not finish is cut off again,
    /// so the file holds whole records only; the caller stops the run on an error.
    pub fn append(&mut self, record: &impl Serialize) -> Result<(), OutputError> {
        let line = serde_json::to_vec(record)
            .map_err(|e| OutputError::Append { path: self.shown.clone(), source: e.into() })?;
        self.append_line(line)
    }

    /// Appends a record serialized elsewhere (a worker process's), checked to be one JSON
    /// value on one line, as [`Self::append`] does.
    pub fn append_json(&mut self, record: &str) -> Result<(), OutputError> {
        let failed = |source| OutputError::Append { path: self.shown.clone(), source };
        serde_json::from_str::<serde::de::IgnoredAny>(record).map_err(|e| failed(e.into()))?;
        if record.contains('\n') {
            return Err(failed(io::Error::new(io::ErrorKind::InvalidData, "a record must be one line")));
        }
        self.append_line(record.as_bytes().to_vec())
    }

    fn append_line(&mut self, mut line: Vec<u8>) -> Result<(), OutputError> {
        let failed = |source| OutputError::Append { path: self.shown.clone(), source };
        line.push(b'\n');
        let before = self.file.metadata().map_err(failed)?.len();
        if let Err(error) = self.file.write_all(&line) {
            // Our own partial bytes at the end of a file we hold the lock on.
            let _ = self.file.set_len(before);
            return Err(failed(error));
        }
        Ok(())
    }

    /// Ends the run: the records put in input order (rewritten only if they are not), and
    /// the file's content returned for the run's report.
    pub fn finish(mut self) -> Result<Vec<u8>, OutputError> {
        let io_failed = |source| OutputError::Io { path: self.shown.clone(), source };
        let mut bytes = Vec::new();
        self.file.rewind().and_then(|()| self.file.read_to_end(&mut bytes)).map_err(io_failed)?;
        match in_input_order(&bytes).map_err(|source| OutputError::Resume { path: self.shown.clone(), source })? {
            Some(sorted) => {
                self.replace(&sorted)?;
                Ok(sorted)
            }
            None => Ok(bytes),
        }
    }

    /// Gives the file `content`: written beside it and renamed over it (same mode and owner),
    /// or, for a file with other hard links, written into it once a copy is safe beside it.
    fn replace(&mut self, content: &[u8]) -> Result<(), OutputError> {
        let metadata = self.file.metadata().map_err(|source| OutputError::Io { path: self.shown.clone(), source })?;
        let temp = beside(&self.real, &format!(".rewriting-{}", std::process::id()));
        let written = write_copy(&temp, &metadata, content);
        let failed = |source| OutputError::Rewrite { path: self.shown.clone(), temp: temp.clone(), source };
        if platform::hard_links(&metadata) > 1 {
            written.map_err(|e| {
                let _ = fs::remove_file(&temp);
                failed(e)
            })?;
            let in_place =
                self.file.set_len(0).and_then(|()| self.file.write_all(content)).and_then(|()| self.file.sync_all());
            in_place.map_err(|source| OutputError::RewriteInPlace {
                path: self.shown.clone(),
                temp: temp.clone(),
                source,
            })?;
            let _ = fs::remove_file(&temp);
            return Ok(());
        }
        let renamed = written.and_then(|()| fs::rename(&temp, &self.real));
        if let Err(error) = renamed {
            let _ = fs::remove_file(&temp);
            return Err(failed(error));
        }
        // The handle still names the file that was renamed over.
        self.file = open_regular(&self.shown, &self.real)?;
        Ok(())
    }
}

/// `path` with its symlinks resolved; for a file yet to be created, its directory's.
fn real_path(path: &Path) -> Result<PathBuf, OutputError> {
    let failed = |source| OutputError::Io { path: path.to_owned(), source };
    match fs::canonicalize(path) {
        Ok(real) => Ok(real),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            if fs::symlink_metadata(path).is_ok() {
                // A link to a pipe with no path (/dev/stdout in a pipeline), or to nothing:
                // creating through that would put the records who knows where.
                if let Ok(linked) = fs::metadata(path) {
                    check_regular(path, &linked)?;
                }
                return Err(OutputError::NotARegularFile {
                    path: path.to_owned(),
                    kind: "a symlink to a missing file",
                });
            }
            let name = path.file_name().ok_or_else(|| failed(io::Error::other("names no file")))?;
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            Ok(fs::canonicalize(dir).map_err(failed)?.join(name))
        }
        Err(error) => Err(failed(error)),
    }
}

fn check_regular(path: &Path, metadata: &Metadata) -> Result<(), OutputError> {
    match metadata.is_file() {
        true => Ok(()),
        false => Err(OutputError::NotARegularFile { path: path.to_owned(), kind: describe(metadata.file_type()) }),
    }
}

/// Opens (or creates) `real` to read and append, refusing anything that is not a regular
/// file: checked on the opened file, and opened without waiting, as a pipe would make it.
fn open_regular(shown: &Path, real: &Path) -> Result<File, OutputError> {
    let failed = |source| OutputError::Io { path: shown.to_owned(), source };
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .custom_flags(platform::DO_NOT_WAIT)
        .open(real)
        .map_err(failed)?;
    check_regular(shown, &file.metadata().map_err(failed)?)?;
    Ok(file)
}

/// Writes `content` to a new file `temp` with `like`'s permissions and (where allowed) owner.
fn write_copy(temp: &Path, like: &Metadata, content: &[u8]) -> io::Result<()> {
    // Left by a process that died with this one's id: ours to replace.
    match fs::remove_file(temp) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut file = OpenOptions::new().write(true).create_new(true).open(temp)?;
    platform::keep_owner(&file, like);
    file.set_permissions(like.permissions())?;
    file.write_all(content)?;
    file.sync_all()
}

/// A hidden file beside `real`: `.NAME{suffix}`, or, where that name would be too long,
/// `.webjudge-HASH{suffix}` with the start of NAME's sha256.
fn beside(real: &Path, suffix: &str) -> PathBuf {
    let name = real.file_name().expect("a real path names a file").as_encoded_bytes();
    let readable = [b".", name, suffix.as_bytes()].concat();
    let hidden = match String::from_utf8(readable) {
        Ok(readable) if readable.len() <= MAX_NAME_BYTES => readable,
        _ => format!(".webjudge-{}{suffix}", hex(&Sha256::digest(name)[..8])),
    };
    real.with_file_name(hidden)
}

/// An advisory lock on an output, held while a run writes it: a file `.NAME.lock` beside it,
/// locked and naming the run that holds it, removed when the run ends. (The output itself
/// cannot carry the lock: a rewrite renames a new file over it.) A run killed outright
/// leaves the file, unlocked; the next run takes it over.
struct OutputLock {
    path: PathBuf,
    _file: File,
}

impl OutputLock {
    fn acquire(real: &Path, shown: &Path) -> Result<OutputLock, OutputError> {
        let path = beside(real, ".lock");
        let failed = |source| OutputError::Io { path: path.clone(), source };
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                // Never write through a link planted in its place.
                .custom_flags(platform::DO_NOT_WAIT | platform::NO_FOLLOW)
                .open(&path)
                .map_err(failed)?;
            check_regular(&path, &file.metadata().map_err(failed)?)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = (&file).take(4096).read_to_string(&mut holder);
                    let holder =
                        if holder.trim().is_empty() { "its lock file names no process" } else { holder.trim() };
                    return Err(OutputError::Locked { path: shown.to_owned(), holder: holder.to_owned() });
                }
                Err(TryLockError::Error(error)) => return Err(failed(error)),
            }
            // Its last holder removes the file when done: one locked after that is no lock.
            let locked = Handle::from_file(file.try_clone().map_err(failed)?).map_err(failed)?;
            if Handle::from_path(&path).is_ok_and(|current| current == locked) {
                let command: Vec<String> = std::env::args().collect();
                let holder = format!("pid {}: {}", std::process::id(), command.join(" "));
                // Only a courtesy to the next run: the lock holds without it (a full disk).
                let _ = file.set_len(0).and_then(|()| file.write_all(holder.as_bytes()));
                return Ok(OutputLock { path, _file: file });
            }
        }
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked, so no other run can lock it in between and lose it.
        let _ = fs::remove_file(&self.path);
    }
}

/// Where Unix and other systems differ: hard links, owners, and opening
/// without following a link or waiting for a pipe's other end.
#[cfg(unix)]
mod platform {
    use std::fs::{File, Metadata};
    use std::os::unix::fs::MetadataExt;

    pub use std::os::unix::fs::OpenOptionsExt;

    pub const DO_NOT_WAIT: i32 = libc::O_NONBLOCK;
    pub const NO_FOLLOW: i32 = libc::O_NOFOLLOW;

    pub fn hard_links(metadata: &Metadata) -> u64 {
        metadata.nlink()
    }

    /// Only root may give a file away; anyone else's copy is theirs already.
    pub fn keep_owner(file: &File, like: &Metadata) {
        let _ = std::os::unix::fs::fchown(file, Some(like.uid()), Some(like.gid()));
    }
}

#[cfg(not(unix))]
mod platform {
    use std::fs::{File, Metadata, OpenOptions};

    pub const DO_NOT_WAIT: i32 = 0;
    pub const NO_FOLLOW: i32 = 0;

    pub trait OpenOptionsExt {
        fn custom_flags(&mut self, flags: i32) -> &mut Self;
    }

    impl OpenOptionsExt for OpenOptions {
        fn custom_flags(&mut self, _: i32) -> &mut Self {
            self
        }
    }

    pub fn hard_links(_: &Metadata) -> u64 {
        1
    }

    pub fn keep_owner(_: &File, _: &Metadata) {}
}
