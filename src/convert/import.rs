//! What the GGUF and Hugging Face importers share: the conversion error, the output
//! directory (written under a temporary sibling name and renamed at the end, so a failed
//! conversion never leaves a directory that looks like a valid model; replacing only what
//! a conversion wrote; tidying what killed conversions left beside it), the smallest
//! shard, the one chat-template policy, the context a model directory records and the judge
//! family its manifest names.

use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::io_error_at;
use super::writer::is_shard_file_name;
use crate::format::checked_file::{self, ReadError};
use crate::format::gguf::GgufError;
use crate::format::manifest::{Manifest, MANIFEST_FILE, TOKENIZER_FILE};
use crate::format::{Architecture, ChatTemplate, ChatTemplateError, JinjaTemplate, JudgeFamily, Message};
use crate::tokenizer::Tokenizer;

/// Smaller shards gain nothing and could not even hold one row of most tensors.
pub const MIN_SHARD_BYTES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("architecture {0:?} is not supported: webjudge converts \"llama\" GGUF files")]
    Architecture(String),
    #[error("metadata key {0} is missing")]
    MissingKey(String),
    #[error("invalid architecture: {0}")]
    InvalidArchitecture(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("tensor {0} is missing")]
    MissingTensor(String),
    #[error("tensor {0} is not part of the llama architecture (extra tensors would be silently ignored)")]
    UnexpectedTensor(String),
    #[error("tensor {name}: GGUF dims {dims:?} give shape {found:?}, the architecture needs {expected:?}")]
    Shape { name: String, dims: Vec<u64>, found: Vec<u64>, expected: Vec<usize> },
    #[error("tensor {tensor}: ggml type {type_name} ({ggml_type}) cannot be converted losslessly (supported: F32, F16, Q8_0, Q4_0, Q4_1)")]
    UnsupportedType { tensor: String, ggml_type: u32, type_name: &'static str },
    #[error("tensor {tensor}: {problem}")]
    Value { tensor: String, problem: String },
    #[error(transparent)]
    ChatTemplate(#[from] ChatTemplateError),
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error("output {}: {problem}", path.display())]
    Output { path: PathBuf, problem: OutputProblem },
    #[error("max shard size {0} bytes is below the minimum of {MIN_SHARD_BYTES}")]
    ShardSize(u64),
    #[error("--context {requested} is not within the model's context of 1..={trained} positions")]
    Context { requested: usize, trained: usize },
    #[error(
        "sliding_window {window} < context {context}: webjudge attends to the whole context, the model only \
         to the last {window} positions; convert with --context N <= {window}"
    )]
    SlidingWindow { window: usize, context: usize },
    #[error(
        "--context {requested} is past LongRoPE's original context of {} positions: the model reaches its {} \
         only with LongRoPE's long factors, which webjudge does not apply; convert with --context N <= {}",
        cap.original, cap.extended, cap.original
    )]
    LongRope { requested: usize, cap: LongRopeCap },
}

/// A LongRoPE model's context as a model directory records it (Phi-3.5's `rope_scaling` of
/// type `longrope`): transformers rotates by the short factors while the sequence is within
/// the `original` context and by the long factors past it, up to `extended`
/// (`max_position_embeddings`); the engine applies only the short factors
/// ([`crate::format::Architecture::rope_frequency_divisors`]), so it records at most
/// `original` positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongRopeCap {
    pub original: usize,
    pub extended: usize,
}

impl LongRopeCap {
    /// The context a LongRoPE model may record: `original`, or a smaller one `requested`
    /// (checked further by [`recorded_context`]).
    pub fn trained_context(self, requested: Option<usize>) -> Result<usize, ConvertError> {
        match requested {
            Some(requested) if requested > self.original => Err(ConvertError::LongRope { requested, cap: self }),
            _ => Ok(self.original),
        }
    }
}

impl std::fmt::Display for LongRopeCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LongRoPE: context capped at its original {} positions (the model's {} need LongRoPE's long factors, \
             which webjudge does not apply)",
            self.original, self.extended
        )
    }
}

/// LongRoPE's cos and sin factor where a model names none, for a context extended `factor`
/// times past the `original` one: `sqrt(1 + ln(factor) / ln(original))`, 1 for no extension
/// (transformers' `_compute_longrope_parameters`, and llama.cpp's converter for Phi-3).
pub fn longrope_attention_factor(factor: f64, original: usize) -> f32 {
    if factor <= 1.0 {
        return 1.0;
    }
    (1.0 + factor.ln() / (original as f64).ln()).sqrt() as f32
}

/// The context a model directory records (the engine never attends further): the model's
/// own, `trained` (a LongRoPE model's capped at its original one, `longrope`), or a smaller
/// one `requested`. A sliding-window model attends to the last `sliding_window` positions
/// only, which the engine's full attention matches only within a context no longer than the
/// window, so a longer one is refused.
pub fn recorded_context(
    trained: usize,
    longrope: Option<LongRopeCap>,
    requested: Option<usize>,
    sliding_window: Option<usize>,
) -> Result<usize, ConvertError> {
    let trained = match longrope {
        Some(cap) => cap.trained_context(requested)?,
        None => trained,
    };
    let context = match requested {
        Some(requested) if requested == 0 || requested > trained => {
            return Err(ConvertError::Context { requested, trained })
        }
        requested => requested.unwrap_or(trained),
    };
    match sliding_window {
        Some(window) if window < context => Err(ConvertError::SlidingWindow { window, context }),
        _ => Ok(context),
    }
}

/// Which judge family a conversion records in the manifest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JudgeChoice {
    /// From the names the checkpoint carries ([`infer_judge`]).
    #[default]
    Infer,
    /// As given (`--judge`); `None` records no family.
    Given(Option<JudgeFamily>),
}

/// The family a conversion recorded, and why (for the converter to say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JudgeDecision {
    pub family: Option<JudgeFamily>,
    pub reason: String,
}

impl JudgeChoice {
    /// Decides the family; `names` are what [`infer_judge`] reads when inferring.
    pub fn decide(self, names: &[(&str, &str)]) -> JudgeDecision {
        match self {
            JudgeChoice::Infer => infer_judge(names),
            JudgeChoice::Given(family) => JudgeDecision { family, reason: "as given by --judge".into() },
        }
    }
}

/// The name fragments that mark each judge family in a checkpoint's names, ignoring case. A
/// bare "skywork" is not enough: Skywork's reward models are no generative judges.
const FAMILY_MARKERS: [(JudgeFamily, &[&str]); 6] = [
    (JudgeFamily::Prometheus, &["prometheus"]),
    (JudgeFamily::AutoJ, &["auto-j", "autoj", "auto_j"]),
    (JudgeFamily::Skywork, &["skywork-critic", "skywork_critic", "skyworkcritic"]),
    (JudgeFamily::Selene, &["selene"]),
    (JudgeFamily::CompassJudger, &["compassjudger", "compass-judger", "compass_judger"]),
    (JudgeFamily::FlowJudge, &["flow-judge", "flow_judge", "flowjudge"]),
];

/// The judge family named by the first of `names` (`(what the name is, the name)`, most
/// telling first) that contains one of a family's [`FAMILY_MARKERS`]; no family when none does.
pub fn infer_judge(names: &[(&str, &str)]) -> JudgeDecision {
    for (what, name) in names {
        let lower = name.to_lowercase();
        let found = FAMILY_MARKERS
            .iter()
            .find_map(|(family, markers)| markers.iter().find(|m| lower.contains(*m)).map(|m| (*family, *m)));
        if let Some((family, marker)) = found {
            return JudgeDecision { family: Some(family), reason: format!("{what} {name:?} contains {marker:?}") };
        }
    }
    let searched: Vec<String> = names.iter().map(|(what, name)| format!("{what} {name:?}")).collect();
    let searched = if searched.is_empty() { "no name".to_string() } else { searched.join(", ") };
    JudgeDecision { family: None, reason: format!("{searched} names no known judge") }
}

/// The output directory of a conversion, written under a temporary sibling name and
/// moved into place by [`OutputDir::commit`].
pub(crate) struct OutputDir {
    /// `--out`, or the directory it links to.
    out_dir: PathBuf,
    existed: bool,
    overwrite: bool,
    temp: TempDir,
}

/// Why a conversion may not write where `--out` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputProblem {
    NotADirectory,
    NoName,
    /// A model directory holding only what a conversion wrote; `overwrite` replaces it.
    NotEmpty,
    /// Not empty and not a model directory: never replaced, whatever the options.
    NotAModelDirectory,
    /// Its `manifest.json` is not a webjudge manifest (why): a web extension's, say. Never
    /// replaced.
    ForeignManifest(String),
    /// Entries a conversion does not write (a user's files, folders, links), sorted, a
    /// folder's name ending in `/`: never replaced.
    ForeignFiles(Vec<String>),
    /// The conversion's input lies inside it: replacing it would delete the input.
    HoldsInput(PathBuf),
    /// The conversion's temporary directory already exists there.
    TemporaryTaken(PathBuf),
}

/// How many of [`OutputProblem::ForeignFiles`] are named; the rest are counted.
const FOREIGN_FILES_NAMED: usize = 5;

impl std::fmt::Display for OutputProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotADirectory => f.write_str("exists and is not a directory"),
            Self::NoName => f.write_str("does not name a directory"),
            Self::NotEmpty => f.write_str("is a model directory and not empty"),
            Self::NotAModelDirectory => write!(
                f,
                "exists, is not empty and is not a webjudge model directory (no {MANIFEST_FILE}); \
                 convert into a new or empty directory"
            ),
            Self::ForeignManifest(why) => write!(
                f,
                "has a {MANIFEST_FILE} that is not a webjudge manifest ({why}); convert into a new or empty directory"
            ),
            Self::ForeignFiles(names) => {
                let named: Vec<&str> = names.iter().take(FOREIGN_FILES_NAMED).map(String::as_str).collect();
                write!(f, "holds files a conversion does not write: {}", named.join(", "))?;
                if names.len() > FOREIGN_FILES_NAMED {
                    write!(f, " and {} more", names.len() - FOREIGN_FILES_NAMED)?;
                }
                write!(
                    f,
                    " (webjudge replaces only {MANIFEST_FILE}, {TOKENIZER_FILE} and the shards its manifest lists)"
                )
            }
            Self::HoldsInput(input) => {
                write!(f, "holds the input {}; convert into a directory outside it", input.display())
            }
            Self::TemporaryTaken(temp) => {
                write!(f, "its temporary directory {} already exists; move it away", temp.display())
            }
        }
    }
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

/// A chat template's Jinja text and where it came from, which errors and the manifest name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateText {
    pub origin: String,
    pub jinja: String,
}

/// The one policy every importer picks the chat template by: the template `given`
/// (`--chat-template FILE`), else the checkpoint's `own`, is kept whole and rendered at
/// prompt time as transformers' `apply_chat_template` renders it, with the tokenizer's
/// `bos_token` and `eos_token`. It is rendered once here, around a user message holding
/// turn markers and braces as judged text may, so that a template webjudge cannot render,
/// that leaves the message out, or whose message it cannot tell from its own text, is
/// refused now, naming it. Without a
/// template: LLaMA-2's `[INST]` wrapper where the tokenizer is LLaMA's SentencePiece one
/// (LLaMA-2 and its fine-tunes, Auto-J among them), else none: the model generates from
/// plain text, and the judge protocols say which template they need.
pub fn chat_template_policy(
    given: Option<&TemplateText>,
    own: Option<TemplateText>,
    (bos_token, eos_token): (Option<String>, Option<String>),
    llama_sentencepiece: bool,
) -> Result<Option<ChatTemplate>, ConvertError> {
    let Some(TemplateText { origin, jinja }) = given.cloned().or(own) else {
        return Ok(llama_sentencepiece.then(ChatTemplate::llama2));
    };
    let template = ChatTemplate::Jinja(JinjaTemplate { origin, jinja, bos_token, eos_token });
    if template.render(&[Message::user(CONVERSION_PROBE)])?.contents.is_empty() {
        return Err(ChatTemplateError::DropsMessage { origin: template.origin().to_owned() }.into());
    }
    Ok(Some(template))
}

/// The BOS and EOS strings a template reads: those `named` (a tokenizer config's), else the
/// tokens of the architecture's BOS id and first EOS id, as transformers names them for a
/// GGUF file.
pub fn special_token_strings(
    named: (Option<String>, Option<String>),
    architecture: &Architecture,
    tokenizer: &Tokenizer,
) -> (Option<String>, Option<String>) {
    let token = |id: Option<&u32>| id.and_then(|&id| tokenizer.id_to_token(id));
    (named.0.or_else(|| token(architecture.bos_id.as_ref())), named.1.or_else(|| token(architecture.eos_ids.first())))
}

/// The user message a conversion renders its template around: the markers of the common
/// templates and Jinja's braces, as a judged response may hold them.
const CONVERSION_PROBE: &str = "Judge {input} {{ x }} {% y %}: <|im_end|>\n<|eot_id|> [/INST]</s> <|end|>";

#[cfg(test)]
mod tests {
    use super::*;

    fn text(jinja: &str) -> TemplateText {
        TemplateText { origin: "tokenizer_config.json".into(), jinja: jinja.into() }
    }

    #[test]
    fn the_given_template_then_the_checkpoint_s_then_llama_2_s_for_its_tokenizer() {
        let tokens = (Some("<s>".to_string()), Some("</s>".to_string()));
        let given = TemplateText { origin: "judge.jinja".into(), jinja: "{{ messages[0].content }}".into() };
        let own = text("{{ bos_token }}{{ messages[0].content }}");
        let chosen = chat_template_policy(Some(&given), Some(own.clone()), tokens.clone(), true).unwrap();
        assert_eq!(chosen.as_ref().map(ChatTemplate::origin), Some("judge.jinja"));
        let chosen = chat_template_policy(None, Some(own), tokens.clone(), true).unwrap().unwrap();
        assert_eq!(chosen.render(&[Message::user("x")]).unwrap().text, "<s>x");
        assert_eq!(chat_template_policy(None, None, tokens.clone(), true).unwrap(), Some(ChatTemplate::llama2()));
        assert_eq!(chat_template_policy(None, None, tokens.clone(), false).unwrap(), None);
        let unreadable = chat_template_policy(None, Some(text("{% for %}")), tokens.clone(), false).unwrap_err();
        assert!(unreadable.to_string().starts_with("chat template (tokenizer_config.json): "), "{unreadable}");
        let cutting = chat_template_policy(None, Some(text("{{ messages[0].content[:3] }}")), tokens, false);
        assert!(matches!(cutting, Err(ConvertError::ChatTemplate(ChatTemplateError::Untraceable { .. }))));
    }

    #[test]
    fn context_is_the_model_s_unless_smaller_and_within_the_window() {
        assert_eq!(recorded_context(32768, None, None, None).unwrap(), 32768);
        assert_eq!(recorded_context(32768, None, Some(4096), Some(4096)).unwrap(), 4096);
        assert_eq!(recorded_context(4096, None, None, Some(32768)).unwrap(), 4096);
        let refused = recorded_context(32768, None, None, Some(4096)).unwrap_err();
        assert!(matches!(refused, ConvertError::SlidingWindow { window: 4096, context: 32768 }));
        assert!(refused.to_string().starts_with("sliding_window 4096 < context 32768: "), "{refused}");
        assert!(refused.to_string().ends_with("convert with --context N <= 4096"), "{refused}");
        for requested in [0, 32769] {
            let error = recorded_context(32768, None, Some(requested), None).unwrap_err();
            assert!(matches!(error, ConvertError::Context { trained: 32768, .. }), "{error}");
        }
    }

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

    #[test]
    fn judge_family_from_the_first_name_that_has_one() {
        let infer = |names: &[(&str, &str)]| JudgeChoice::Infer.decide(names);
        let prometheus = infer(&[("directory name", "prometheus-7b-v2.0"), ("_name_or_path", "mistralai/Mistral-7B")]);
        assert_eq!(prometheus.family, Some(JudgeFamily::Prometheus));
        assert_eq!(prometheus.reason, r#"directory name "prometheus-7b-v2.0" contains "prometheus""#);
        let autoj = infer(&[("directory name", "weights"), ("general.name", "Autoj 13b")]);
        assert_eq!(autoj.family, Some(JudgeFamily::AutoJ));
        assert_eq!(infer(&[("directory name", "GAIR--Auto-J-13B")]).family, Some(JudgeFamily::AutoJ));
        let none = infer(&[("directory name", "llama-2-13b")]);
        assert_eq!(none.family, None);
        assert_eq!(none.reason, r#"directory name "llama-2-13b" names no known judge"#);
        for (name, family) in [
            ("Skywork-Critic-Llama-3.1-8B", JudgeFamily::Skywork),
            ("Selene-1-Mini-Llama-3.1-8B", JudgeFamily::Selene),
            ("CompassJudger-1-1.5B-Instruct", JudgeFamily::CompassJudger),
            ("Flow-Judge-v0.1", JudgeFamily::FlowJudge),
        ] {
            assert_eq!(infer(&[("general.name", name)]).family, Some(family), "{name}");
        }
        assert_eq!(infer(&[("general.name", "Skywork-Reward-Llama-3.1-8B")]).family, None);
        let given = JudgeChoice::Given(None).decide(&[("directory name", "prometheus")]);
        assert_eq!(given.family, None);
    }
}
