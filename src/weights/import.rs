//! What the GGUF and Hugging Face importers share: the conversion error, the output
//! directory (written under a temporary sibling name and renamed at the end, so a failed
//! conversion never leaves a directory that looks like a valid model), the smallest
//! shard, the one chat-template policy, the context a model directory records and the judge
//! family its manifest names.

use std::fs;
use std::path::{Path, PathBuf};

use super::gguf::GgufError;
use super::io_error_at;
use super::manifest::MANIFEST_FILE;
use crate::judge::JudgeFamily;
use crate::model::ChatTemplate;

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
    #[error("chat template: {0}")]
    ChatTemplate(String),
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
}

/// The context a model directory records (the engine never attends further): the model's
/// own, `trained`, or a smaller one `requested`. A sliding-window model attends to the last
/// `sliding_window` positions only, which the engine's full attention matches only within
/// a context no longer than the window, so a longer one is refused.
pub fn recorded_context(
    trained: usize,
    requested: Option<usize>,
    sliding_window: Option<usize>,
) -> Result<usize, ConvertError> {
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

/// The judge family named by the first of `names` (`(what the name is, the name)`, most
/// telling first) that contains "prometheus" (Prometheus 2) or "auto-j", "autoj" or "auto_j"
/// (Auto-J), ignoring case; no family when none does.
pub fn infer_judge(names: &[(&str, &str)]) -> JudgeDecision {
    for (what, name) in names {
        let lower = name.to_lowercase();
        let found = if lower.contains("prometheus") {
            Some((JudgeFamily::Prometheus, "prometheus"))
        } else {
            ["auto-j", "autoj", "auto_j"].into_iter().find(|m| lower.contains(m)).map(|m| (JudgeFamily::AutoJ, m))
        };
        if let Some((family, marker)) = found {
            return JudgeDecision { family: Some(family), reason: format!("{what} {name:?} contains {marker:?}") };
        }
    }
    let searched: Vec<String> = names.iter().map(|(what, name)| format!("{what} {name:?}")).collect();
    let searched = if searched.is_empty() { "no name".to_string() } else { searched.join(", ") };
    JudgeDecision { family: None, reason: format!("{searched} names neither Prometheus nor Auto-J") }
}

/// The output directory of a conversion, written under a temporary sibling name and
/// moved into place by [`OutputDir::commit`].
pub(crate) struct OutputDir {
    out_dir: PathBuf,
    existed: bool,
    temp: TempDir,
}

/// Why a conversion may not write where `--out` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputProblem {
    NotADirectory,
    NoName,
    /// A model directory (it has a manifest) with files in it; `overwrite` replaces it.
    NotEmpty,
    /// Not empty and not a model directory: never replaced, whatever the options.
    NotAModelDirectory,
    /// The conversion's input lies inside it: replacing it would delete the input.
    HoldsInput(PathBuf),
}

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
            Self::HoldsInput(input) => {
                write!(f, "holds the input {}; convert into a directory outside it", input.display())
            }
        }
    }
}

impl OutputDir {
    /// Creates the temporary sibling. `out_dir` may be missing or empty; with `overwrite` it
    /// may also be a model directory, which is replaced, but never one that holds `input`
    /// (its own GGUF file, or a checkpoint converted into itself) nor one that is not a
    /// model directory: `--force` must not be able to delete a user's files.
    pub(crate) fn prepare(out_dir: &Path, input: &Path, overwrite: bool) -> Result<Self, ConvertError> {
        let refuse = |problem| ConvertError::Output { path: out_dir.to_owned(), problem };
        let existing_is_empty = match fs::read_dir(out_dir) {
            Ok(mut entries) => Some(entries.next().is_none()),
            Err(_) if fs::symlink_metadata(out_dir).is_ok() => return Err(refuse(OutputProblem::NotADirectory)),
            Err(_) => None,
        };
        if existing_is_empty.is_some() {
            let inside = |path: &Path| fs::canonicalize(path).map_err(|e| io_at(path, e));
            if inside(input)?.starts_with(inside(out_dir)?) {
                return Err(refuse(OutputProblem::HoldsInput(input.to_owned())));
            }
        }
        if existing_is_empty == Some(false) {
            if !out_dir.join(MANIFEST_FILE).is_file() {
                return Err(refuse(OutputProblem::NotAModelDirectory));
            }
            if !overwrite {
                return Err(refuse(OutputProblem::NotEmpty));
            }
        }
        let temp = TempDir(Some(sibling(out_dir, "converting").ok_or_else(|| refuse(OutputProblem::NoName))?));
        if temp.path().exists() {
            fs::remove_dir_all(temp.path()).map_err(|e| io_at(temp.path(), e))?;
        }
        Ok(Self { out_dir: out_dir.to_owned(), existed: existing_is_empty.is_some(), temp })
    }

    /// Where the files are written until [`Self::commit`].
    pub(crate) fn path(&self) -> &Path {
        self.temp.path()
    }

    /// Replaces the output directory with the written one. The old directory is moved
    /// aside first and removed only once the new one is in place, so a failure leaves one
    /// of the two complete.
    pub(crate) fn commit(self) -> Result<(), ConvertError> {
        let replaced = match self.existed {
            true => {
                let aside = sibling(&self.out_dir, "replaced").expect("prepare checked the name");
                fs::rename(&self.out_dir, &aside).map_err(|e| io_at(&self.out_dir, e))?;
                Some(aside)
            }
            false => None,
        };
        if let Err(error) = fs::rename(self.temp.path(), &self.out_dir) {
            if let Some(aside) = &replaced {
                let _ = fs::rename(aside, &self.out_dir);
            }
            return Err(io_at(&self.out_dir, error));
        }
        self.temp.keep();
        if let Some(aside) = replaced {
            fs::remove_dir_all(&aside).map_err(|e| io_at(&aside, e))?;
        }
        Ok(())
    }
}

/// `.NAME.WHAT-PID` beside `dir`: hidden, and unique to this process.
fn sibling(dir: &Path, what: &str) -> Option<PathBuf> {
    let mut name = std::ffi::OsString::from(".");
    name.push(dir.file_name()?);
    name.push(format!(".{what}-{}", std::process::id()));
    Some(dir.with_file_name(name))
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

/// The one policy every importer picks the prompt wrapper by. Only ChatML and the LLaMA-2
/// `[INST]` wrapper are recognized; with no template, `[INST]` where the tokenizer is
/// LLaMA's SentencePiece one (LLaMA-2 and its fine-tunes, Auto-J among them). Anything
/// else is an error naming `tokenizer`, because guessing a wrapper would quietly degrade
/// every answer the model gives.
pub fn chat_template_policy(
    template: Option<&str>,
    llama_sentencepiece: bool,
    tokenizer: &str,
) -> Result<ChatTemplate, ConvertError> {
    match template {
        Some(t) if t.contains("<|im_start|>") => Ok(ChatTemplate::chatml(default_system_message(t).as_deref())),
        Some(t) if t.contains("[INST]") => Ok(ChatTemplate::llama2()),
        None if llama_sentencepiece => Ok(ChatTemplate::llama2()),
        Some(_) => Err(ConvertError::ChatTemplate(
            "the chat template is neither ChatML (<|im_start|>) nor LLaMA-2 ([INST]), the two wrappers webjudge supports".into(),
        )),
        None => Err(ConvertError::ChatTemplate(format!(
            "the chat template is missing and the tokenizer ({tokenizer}) does not imply LLaMA-2's [INST] wrapper"
        ))),
    }
}

/// The system message a ChatML Jinja template inserts when the conversation has none:
/// the first literal between `<|im_start|>system\n` and `<|im_end|>` (with the newline
/// written either raw or as a `\n` escape). A span holding template syntax (`{`, `}`,
/// or `+` concatenating the caller's message) is not a default and is skipped.
pub fn default_system_message(template: &str) -> Option<String> {
    for (marker, escaped) in [("<|im_start|>system\n", false), ("<|im_start|>system\\n", true)] {
        for (start, _) in template.match_indices(marker) {
            let rest = &template[start + marker.len()..];
            let Some(end) = rest.find("<|im_end|>") else { continue };
            let text = &rest[..end];
            if text.is_empty() || text.contains(['{', '}', '+']) {
                continue;
            }
            return Some(if escaped { text.replace("\\n", "\n") } else { text.to_owned() });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// prometheus-7b-v2.0's `tokenizer_config.json` template, Mistral-7B-Instruct-v0.2's: the
    /// judge's system message goes inside the first `[INST]`, as fastchat's "mistral" does.
    const MISTRAL_INSTRUCT_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

    #[test]
    fn mistral_instruct_template_is_the_inst_wrapper() {
        let template = chat_template_policy(Some(MISTRAL_INSTRUCT_TEMPLATE), false, "LlamaTokenizerFast").unwrap();
        assert_eq!(template, ChatTemplate::llama2());
        assert_eq!(template.wrap("judge this"), "[INST] judge this [/INST]");
    }

    #[test]
    fn context_is_the_model_s_unless_smaller_and_within_the_window() {
        assert_eq!(recorded_context(32768, None, None).unwrap(), 32768);
        assert_eq!(recorded_context(32768, Some(4096), Some(4096)).unwrap(), 4096);
        assert_eq!(recorded_context(4096, None, Some(32768)).unwrap(), 4096);
        let refused = recorded_context(32768, None, Some(4096)).unwrap_err();
        assert!(matches!(refused, ConvertError::SlidingWindow { window: 4096, context: 32768 }));
        assert!(refused.to_string().starts_with("sliding_window 4096 < context 32768: "), "{refused}");
        assert!(refused.to_string().ends_with("convert with --context N <= 4096"), "{refused}");
        for requested in [0, 32769] {
            let error = recorded_context(32768, Some(requested), None).unwrap_err();
            assert!(matches!(error, ConvertError::Context { trained: 32768, .. }), "{error}");
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
        assert_eq!(none.reason, r#"directory name "llama-2-13b" names neither Prometheus nor Auto-J"#);
        let given = JudgeChoice::Given(None).decide(&[("directory name", "prometheus")]);
        assert_eq!(given.family, None);
    }
}
