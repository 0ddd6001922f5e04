//! The output directory the GGUF and Hugging Face converters share: written under a
//! temporary sibling name and renamed at the end, so a failed conversion never leaves a
//! directory that looks like a valid model; replacing only what a conversion wrote; tidying
//! what killed conversions left beside it. The choices they share with loading a GGUF
//! directly (chat template, context, judge family, the error) are [`crate::import`]'s.

use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::io_error_at;
use super::writer::is_shard_file_name;
use crate::format::checked_file::{self, ReadError};
use crate::format::manifest::{Manifest, MANIFEST_FILE, TOKENIZER_FILE};
use crate::import::{ConvertError, OutputProblem};

/// The output directory of a conversion, written under a temporary sibling name and
/// moved into place by [`OutputDir::commit`].
pub(crate) struct OutputDir {
    /// `--out`, or the directory it links to.
    out_dir: PathBuf,
    existed: bool,
    overwrite: bool,
    temp: TempDir,
}

impl OutputDir {
    /// Creates the temporary sibling. `out_dir` may be missing or empty; with `overwrite` it
    /// may also be a model directory, which is replaced, but never one that holds `input`
    /// (its own GGUF file, or a checkpoint converted into itself) nor one holding anything a
    /// conversion does not write ([`written_files`]): `--force` must not be able to delete a
    /// user's files. A link is followed: the directory it names is replaced, the link kept.
    pub(crate) fn prepare(out_dir: &Path, input: &Path, overwrite: bool) -> Result<Self, ConvertError> {
        let out_dir = real_output(out_dir);
        let refuse = |problem| ConvertError::Output { path: out_dir.clone(), problem };
        let temp = sibling(&out_dir, Temporary::Converting).ok_or_else(|| refuse(OutputProblem::NoName))?;
        let existed = match fs::symlink_metadata(&out_dir) {
            Ok(metadata) if metadata.is_dir() => true,
            Ok(_) => return Err(refuse(OutputProblem::NotADirectory)),
            Err(error) if error.kind() == ErrorKind::NotFound => false,
            Err(error) => return Err(io_at(&out_dir, error)),
        };
        if existed {
            let inside = |path: &Path| fs::canonicalize(path).map_err(|e| io_at(path, e));
            if inside(input)?.starts_with(inside(&out_dir)?) {
                return Err(refuse(OutputProblem::HoldsInput(input.to_owned())));
            }
            replaceable(&out_dir, overwrite)?;
        }
        // `--out` may name a directory in folders yet to be made (`target/models/m`).
        if let Some(parent) = temp.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| io_at(parent, e))?;
        }
        fs::create_dir(&temp).map_err(|error| match error.kind() {
            ErrorKind::AlreadyExists => refuse(OutputProblem::TemporaryTaken(temp.clone())),
            _ => io_at(&temp, error),
        })?;
        Ok(Self { out_dir, existed, overwrite, temp: TempDir(Some(temp)) })
    }

    /// Where the files are written until [`Self::commit`].
    pub(crate) fn path(&self) -> &Path {
        self.temp.path()
    }

    /// Replaces the output directory with the written one. The old directory is checked
    /// again (files may have appeared in it while converting), moved aside and removed only
    /// once the new one is in place, so a failure leaves one of the two complete.
    pub(crate) fn commit(self) -> Result<(), ConvertError> {
        let replaced = match self.existed {
            true => {
                let written = replaceable(&self.out_dir, self.overwrite)?;
                let aside = sibling(&self.out_dir, Temporary::Replaced).expect("prepare checked the name");
                fs::rename(&self.out_dir, &aside).map_err(|e| io_at(&self.out_dir, e))?;
                Some((aside, written))
            }
            false => None,
        };
        if let Err(error) = fs::rename(self.temp.path(), &self.out_dir) {
            if let Some((aside, _)) = &replaced {
                let _ = fs::rename(aside, &self.out_dir);
            }
            return Err(io_at(&self.out_dir, error));
        }
        self.temp.keep();
        match replaced {
            Some((aside, written)) => remove_written(&aside, &written),
            None => Ok(()),
        }
    }
}

/// `out_dir`, or the directory it links to: a link's target is what gets replaced (the
/// link is kept), and the temporaries go beside it.
fn real_output(out_dir: &Path) -> PathBuf {
    match fs::symlink_metadata(out_dir) {
        Ok(metadata) if metadata.is_symlink() => fs::canonicalize(out_dir).unwrap_or_else(|_| out_dir.to_owned()),
        _ => out_dir.to_owned(),
    }
}

/// The files of the existing directory `out_dir` when a conversion may replace it: none,
/// or (with `overwrite`) only files a conversion writes.
fn replaceable(out_dir: &Path, overwrite: bool) -> Result<Vec<OsString>, ConvertError> {
    let refuse = |problem| ConvertError::Output { path: out_dir.to_owned(), problem };
    let written = written_files(out_dir, true)?.map_err(refuse)?;
    match written.is_empty() || overwrite {
        true => Ok(written),
        false => Err(refuse(OutputProblem::NotEmpty)),
    }
}

/// The entries of `dir` when every one is a regular file (not a link, a folder or a
/// device) that a conversion writes: `manifest.json` parsing as a webjudge manifest,
/// `tokenizer.json` and the shards that manifest lists. Without a manifest, which only a
/// conversion's leftovers may lack (`manifest_required` false: killed before writing it,
/// or while removing a replaced directory), shards are known by the names the writer
/// gives them. Otherwise, why `dir` is not a conversion's.
fn written_files(dir: &Path, manifest_required: bool) -> Result<Result<Vec<OsString>, OutputProblem>, ConvertError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_at(dir, e))? {
        let entry = entry.map_err(|e| io_at(dir, e))?;
        let file_type = entry.file_type().map_err(|e| io_at(&entry.path(), e))?;
        entries.push((entry.file_name(), file_type));
    }
    let manifest = match entries.iter().find(|(name, _)| name == MANIFEST_FILE) {
        Some((_, file_type)) if file_type.is_file() => match read_manifest(&dir.join(MANIFEST_FILE))? {
            Ok(manifest) => Some(manifest),
            Err(why) => return Ok(Err(OutputProblem::ForeignManifest(why))),
        },
        None if manifest_required && !entries.is_empty() => return Ok(Err(OutputProblem::NotAModelDirectory)),
        // A manifest.json that is not a regular file is named below.
        _ => None,
    };
    let written = |name: &str| match &manifest {
        _ if name == MANIFEST_FILE || name == TOKENIZER_FILE => true,
        Some(manifest) => manifest.shards.iter().any(|shard| shard.file == name),
        None => is_shard_file_name(name),
    };
    let mut foreign: Vec<_> = entries
        .iter()
        .filter(|(name, file_type)| !(file_type.is_file() && name.to_str().is_some_and(written)))
        .collect();
    if foreign.is_empty() {
        return Ok(Ok(entries.into_iter().map(|(name, _)| name).collect()));
    }
    foreign.sort_by(|a, b| a.0.cmp(&b.0));
    let named = |(name, file_type): &&(OsString, fs::FileType)| {
        format!("{}{}", name.to_string_lossy(), if file_type.is_dir() { "/" } else { "" })
    };
    Ok(Err(OutputProblem::ForeignFiles(foreign.iter().map(named).collect())))
}

/// The manifest at `path`, or why it is not a webjudge manifest.
fn read_manifest(path: &Path) -> Result<Result<Manifest, String>, ConvertError> {
    let bytes = match checked_file::read(path, checked_file::MANIFEST) {
        Ok(bytes) => bytes,
        Err(ReadError::Io { source, .. }) => return Err(io_at(path, source)),
        Err(why) => return Ok(Err(why.to_string())),
    };
    Ok(Manifest::from_json(&String::from_utf8_lossy(&bytes)).map_err(|error| error.to_string()))
}

/// Removes `dir`, whose `files` [`written_files`] proved a conversion's: the manifest last,
/// so that a removal cut short leaves a directory that still proves itself, and the
/// directory only if nothing else appeared in it meanwhile.
fn remove_written(dir: &Path, files: &[OsString]) -> Result<(), ConvertError> {
    let mut files = files.to_vec();
    files.sort_by_key(|name| name == MANIFEST_FILE);
    for name in files {
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Err(error) if error.kind() != ErrorKind::NotFound => return Err(io_at(&path, error)),
            _ => {}
        }
    }
    fs::remove_dir(dir).map_err(|e| io_at(dir, e))
}

/// The temporary directories a conversion makes beside its output ([`sibling`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Temporary {
    /// The new model directory being written.
    Converting,
    /// The old one, moved aside until the new one is in place.
    Replaced,
}

impl Temporary {
    fn name(self) -> &'static str {
        match self {
            Self::Converting => "converting",
            Self::Replaced => "replaced",
        }
    }
}

/// `.NAME.WHAT-PID` beside `dir`: hidden, and unique to this process.
fn sibling(dir: &Path, what: Temporary) -> Option<PathBuf> {
    let mut name = OsString::from(".");
    name.push(dir.file_name()?);
    name.push(format!(".{}-{}", what.name(), std::process::id()));
    Some(dir.with_file_name(name))
}

/// Which of [`sibling`]'s temporaries of the output directory named `out_name` `entry` is,
/// and the id of the process that made it.
fn temporary_of(out_name: &str, entry: &str) -> Option<(Temporary, u32)> {
    let (what, pid) = entry.strip_prefix('.')?.strip_prefix(out_name)?.strip_prefix('.')?.split_once('-')?;
    let what = [Temporary::Converting, Temporary::Replaced].into_iter().find(|t| t.name() == what)?;
    match pid.bytes().all(|b| b.is_ascii_digit()) {
        true => Some((what, pid.parse().ok()?)),
        false => None,
    }
}

/// What [`tidy_leftovers`] did with a temporary directory an earlier conversion left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tidied {
    /// The output directory, moved aside by a conversion killed before it put the new one
    /// in its place, moved back.
    Restored { from: PathBuf, to: PathBuf },
    /// Removed: its process is gone and it held only files a conversion writes.
    Removed(PathBuf),
    /// Left: its process is still running.
    Running { path: PathBuf, pid: u32 },
    /// Left: it holds something a conversion does not write, or could not be tidied (why).
    Kept { path: PathBuf, reason: String },
}

impl std::fmt::Display for Tidied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Restored { from, to } => write!(
                f,
                "restored {} from {}, where a conversion killed while replacing it had moved it",
                to.display(),
                from.display()
            ),
            Self::Removed(path) => write!(f, "removed {}, left by a conversion that did not finish", path.display()),
            Self::Running { path, pid } => {
                write!(f, "left {}: process {pid}, which may be converting into it, is still running", path.display())
            }
            Self::Kept { path, reason } => write!(f, "left {}: {reason}", path.display()),
        }
    }
}

/// Tidies what conversions into `out_dir` that were killed (`kill -9`, a crash, a power
/// cut) left beside it ([`sibling`]), before converting into it again: where `out_dir` is
/// missing, the old model directory a conversion had moved aside is put back; the other
/// temporaries of processes that are gone are removed when they hold only files a
/// conversion writes ([`written_files`]); the rest are left. Nothing here fails a
/// conversion: what could not be tidied is said and left. Called before this process
/// converts into `out_dir`: temporaries with its own id count as an earlier process's.
pub fn tidy_leftovers(out_dir: &Path) -> Vec<Tidied> {
    let out_dir = real_output(out_dir);
    let Some(out_name) = out_dir.file_name().and_then(|name| name.to_str()) else { return Vec::new() };
    let parent = out_dir.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Ok(entries) = fs::read_dir(parent) else { return Vec::new() };
    let mut leftovers: Vec<(Temporary, u32, PathBuf)> = entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            let (what, pid) = temporary_of(out_name, name.to_str()?)?;
            Some((what, pid, out_dir.with_file_name(name)))
        })
        .collect();
    leftovers.sort_by(|a, b| a.2.cmp(&b.2));
    let mut tidied = Vec::new();
    // First, so that the others are judged beside the output directory as it should be.
    if fs::symlink_metadata(&out_dir).is_err_and(|error| error.kind() == ErrorKind::NotFound) {
        let moved_aside =
            |(what, pid, _): &(Temporary, u32, PathBuf)| *what == Temporary::Replaced && process_is_gone(*pid);
        if let Some(index) = leftovers.iter().position(moved_aside) {
            let (_, _, from) = leftovers.remove(index);
            tidied.push(match fs::rename(&from, &out_dir) {
                Ok(()) => Tidied::Restored { from, to: out_dir.clone() },
                Err(error) => Tidied::Kept {
                    reason: format!("could not move it back to {}: {error}", out_dir.display()),
                    path: from,
                },
            });
        }
    }
    for (_, pid, path) in leftovers {
        if !process_is_gone(pid) {
            tidied.push(Tidied::Running { path, pid });
            continue;
        }
        let removed = match fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_dir() => match written_files(&path, false) {
                Ok(Ok(written)) => remove_written(&path, &written).map_err(|error| error.to_string()),
                Ok(Err(problem)) => Err(format!("it {problem}")),
                Err(error) => Err(error.to_string()),
            },
            Ok(_) => Err("not a directory".to_string()),
            Err(error) => Err(error.to_string()),
        };
        tidied.push(match removed {
            Ok(()) => Tidied::Removed(path),
            Err(reason) => Tidied::Kept { path, reason },
        });
    }
    tidied
}

/// Whether process `pid` has exited. This process's own id counts as exited: it has not
/// made a temporary yet, so one with its id is an earlier process's.
#[cfg(unix)]
fn process_is_gone(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    // 0 and negative ids name process groups, not a process.
    let Some(pid) = libc::pid_t::try_from(pid).ok().filter(|&pid| pid > 0) else { return false };
    // Signal 0 only asks whether the process exists; EPERM says it does (another user's).
    // SAFETY: kill with signal 0 sends nothing and touches no memory.
    let result = unsafe { libc::kill(pid, 0) };
    result == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// No portable check: every temporary is taken for a running process's and left.
#[cfg(not(unix))]
fn process_is_gone(_pid: u32) -> bool {
    false
}

/// An I/O error that names its file.
fn io_at(path: &Path, error: std::io::Error) -> ConvertError {
    ConvertError::Io(io_error_at(path, error))
}

/// A directory being written, removed on drop unless kept, so a failed conversion
/// leaves nothing behind.
struct TempDir(Option<PathBuf>);

impl TempDir {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("only kept when done")
    }

    /// Called once the directory has been moved into place.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // Best effort: the error that got us here matters more than this one.
            let _ = fs::remove_dir_all(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_are_known_by_output_name_and_process_id() {
        let dir = Path::new("models").join("m");
        for what in [Temporary::Converting, Temporary::Replaced] {
            let temp = sibling(&dir, what).unwrap();
            let name = temp.file_name().unwrap().to_str().unwrap();
            assert_eq!(temporary_of("m", name), Some((what, std::process::id())));
            assert_eq!(temporary_of("m.x", name), None);
        }
        assert_eq!(temporary_of("m", ".m.replaced-7"), Some((Temporary::Replaced, 7)));
        for other in
            [".m.x.converting-1", ".m.converting-", ".m.converting-+1", ".m.converting-1a", ".m.replaced-4294967296"]
        {
            assert_eq!(temporary_of("m", other), None, "{other}");
        }
    }
}
