//! The choices every importer makes alike, with no file in sight (so the browser makes them
//! too, loading a GGUF): the one chat-template policy, the context a model records (LongRoPE's
//! cap, a sliding window), the judge family a manifest names, and the error an import ends in.

use std::path::PathBuf;

use crate::format::gguf::GgufError;
use crate::format::manifest::{MANIFEST_FILE, TOKENIZER_FILE};
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
    #[error("tensor {tensor}: {found} bytes of the file arrived, {expected} were asked for")]
    SourceBytes { tensor: String, expected: u64, found: u64 },
    #[error("the file is {expected} bytes, {received} arrived")]
    FileSize { expected: u64, received: u64 },
    #[error("the file's sha256 is {found}, not the {expected} expected (the host's or the page's): refused, nothing of it kept")]
    FileHash { expected: String, found: String },
    #[error(transparent)]
    Manifest(#[from] crate::format::ManifestError),
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
    /// An error of a file's contents, which its own message does not name.
    #[error("{}: {source}", path.display())]
    InFile { path: PathBuf, source: Box<ConvertError> },
}

impl ConvertError {
    /// This error, naming the file whose contents it is about (an error reading the file
    /// names it already).
    pub fn in_file(self, path: &std::path::Path) -> Self {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            ConvertError::Gguf(GgufError::Read(_)) => self,
            error => ConvertError::InFile { path: path.to_owned(), source: Box::new(error) },
        }
    }
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
