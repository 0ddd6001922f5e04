//! The judges' prompt protocols, rendered byte for byte as their own code does.
//!
//! Auto-J builds a judge input as `llama2_wrapper(TEMPLATE.format(prompt=…, response=…,
//! response_another=…))`: Python `str.format` over one of four templates (shipped here verbatim
//! in `templates/`), then `"[INST] {input} [/INST]"` with no system message. `str.format` scans
//! the template once and never the substituted values, so user text containing `{response}`,
//! `{{` or `[/INST]` stays literal; [`render`] does the same.
//!
//! Prometheus 2 (prometheus-eval 0.1.20's `PrometheusEval`) fills one of four templates with
//! `str.format(instruction=…, response=… | response_A=…, response_B=…, rubric=…,
//! reference_answer=…)` and wraps it in fastchat's `"mistral"` conversation with the grading
//! mode's system prompt: `[INST] {system}\n{message} [/INST]`. [`render`] returns the system
//! prompt, a newline and the filled template as the user message, so the model's own
//! `[INST] {input} [/INST]` template (Mistral's, which has no system turn) produces fastchat's
//! text exactly. Rubrics are [`Rubric`]s: a built-in one by name, a custom one's fields, or text.
//!
//! The Llama-3.1, Qwen2.5 and Phi-3.5 judges take one user message, filled as their references
//! fill it (docs/judges.md): Skywork-Critic as rm-gallery 0.1.7's `SkyworkCriticTemplate`
//! renders JudgeBench's `skywork_critic_prompt.jinja2` (plain substitution; Jinja drops the
//! file's final newline); Selene Mini's training templates (atla-ai/selene-mini's
//! `prompt-templates/*.yaml`, which its model card points to) with `str.format`;
//! CompassJudger-1 with opencompass' JudgerBench `alignbench_judge_prompt` or
//! `arenahard_judge_prompt`; Flow-Judge with flow-judge 0.1.2's `format_user_prompt`
//! ([`super::flow_metric`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::flow_metric::{self, FlowMetric, PRESETS};
use crate::format::{ChatTemplate, ChatTemplateError, JudgeFamily, Message, RenderedChat};

/// What a family means to the judge layer: its protocols.
impl JudgeFamily {
    /// The family's own protocols.
    pub fn protocols(self) -> impl Iterator<Item = Protocol> {
        Protocol::ALL.into_iter().filter(move |protocol| protocol.family() == self)
    }
}

impl FromStr for JudgeFamily {
    type Err = ProtocolError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "auto-j" | "auto_j" => Ok(JudgeFamily::AutoJ),
            _ => JudgeFamily::ALL
                .into_iter()
                .find(|family| family.name() == name)
                .ok_or_else(|| ProtocolError::UnknownFamily(name.to_owned())),
        }
    }
}

/// The field names of a family's test-data rows: its reference's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowFields {
    pub query: &'static str,
    pub first: &'static str,
    pub second: &'static str,
    pub single: &'static str,
}

impl JudgeFamily {
    /// The field names of the family's rows ([`Item::from_row`]).
    pub fn row_fields(self) -> RowFields {
        let [query, first, second, single] = match self {
            JudgeFamily::AutoJ => ["prompt", "response 1", "response 2", "response"],
            JudgeFamily::Prometheus => ["instruction", "response_A", "response_B", "response"],
            JudgeFamily::Skywork | JudgeFamily::CompassJudger => ["question", "response_A", "response_B", "response"],
            JudgeFamily::Selene => ["user_input", "assistant_response_a", "assistant_response_b", "assistant_response"],
            JudgeFamily::FlowJudge => ["query", "response_A", "response_B", "response"],
        };
        RowFields { query, first, second, single }
    }
}

/// A judging protocol: what the judge is shown and how its verdict reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Auto-J: compare two responses; the verdict is Response 1, Response 2 or Tie.
    #[serde(alias = "pairwise")]
    PairwiseTie,
    /// Auto-J: critique one response and rate it 1 to 10.
    Single,
    /// Auto-J: the Chinese version of `pairwise_tie`.
    #[serde(alias = "zh_pairwise")]
    ZhPairwiseTie,
    /// Auto-J: the Chinese version of `single`.
    ZhSingle,
    /// Prometheus 2: grade one response against a rubric, 1 to 5 (`ABSOLUTE_PROMPT_WO_REF`).
    PrometheusAbsolute,
    /// Prometheus 2: the same with a reference answer that scores 5 (`ABSOLUTE_PROMPT`).
    PrometheusAbsoluteRef,
    /// Prometheus 2: choose the better of responses A and B under a rubric (`RELATIVE_PROMPT_WO_REF`).
    PrometheusRelative,
    /// Prometheus 2: the same with a reference answer (`RELATIVE_PROMPT`).
    PrometheusRelativeRef,
    /// Skywork-Critic: the better of assistants A and B, `[[A]]` or `[[B]]`.
    Skywork,
    /// Selene Mini: a 1-5 score against criteria and score descriptions (`absolute-scoring`).
    SeleneAbsolute,
    /// Selene Mini: the same with a reference answer (`absolute-scoring-with-reference`).
    SeleneAbsoluteRef,
    /// Selene Mini: response A or B under criteria (`pairwise`).
    SelenePairwise,
    /// Selene Mini: Yes or No against criteria and their descriptions (`classification`).
    SeleneClassification,
    /// Selene Mini: the same with a reference answer (`classification-with-reference`).
    SeleneClassificationRef,
    /// CompassJudger-1: the better of assistants A and B (JudgerBench's AlignBench prompt).
    #[serde(rename = "compassjudger")]
    CompassJudger,
    /// CompassJudger-1: A or B much or slightly better, or a tie (JudgerBench's Arena-Hard
    /// prompt).
    #[serde(rename = "compassjudger_arena")]
    CompassJudgerArena,
    /// Flow-Judge: a score on a metric's rubric, the query as the task's input.
    #[serde(rename = "flowjudge")]
    FlowJudge,
    /// Flow-Judge: the same with the reference answer as a second input.
    #[serde(rename = "flowjudge_ref")]
    FlowJudgeRef,
}

impl Protocol {
    pub const ALL: [Protocol; 18] = [
        Protocol::PairwiseTie,
        Protocol::Single,
        Protocol::ZhPairwiseTie,
        Protocol::ZhSingle,
        Protocol::PrometheusAbsolute,
        Protocol::PrometheusAbsoluteRef,
        Protocol::PrometheusRelative,
        Protocol::PrometheusRelativeRef,
        Protocol::Skywork,
        Protocol::SeleneAbsolute,
        Protocol::SeleneAbsoluteRef,
        Protocol::SelenePairwise,
        Protocol::SeleneClassification,
        Protocol::SeleneClassificationRef,
        Protocol::CompassJudger,
        Protocol::CompassJudgerArena,
        Protocol::FlowJudge,
        Protocol::FlowJudgeRef,
    ];

    /// The protocol's name (Auto-J's own names for its four).
    pub fn name(&self) -> &'static str {
        match self {
            Protocol::PairwiseTie => "pairwise_tie",
            Protocol::Single => "single",
            Protocol::ZhPairwiseTie => "zh_pairwise_tie",
            Protocol::ZhSingle => "zh_single",
            Protocol::PrometheusAbsolute => "prometheus_absolute",
            Protocol::PrometheusAbsoluteRef => "prometheus_absolute_ref",
            Protocol::PrometheusRelative => "prometheus_relative",
            Protocol::PrometheusRelativeRef => "prometheus_relative_ref",
            Protocol::Skywork => "skywork",
            Protocol::SeleneAbsolute => "selene_absolute",
            Protocol::SeleneAbsoluteRef => "selene_absolute_ref",
            Protocol::SelenePairwise => "selene_pairwise",
            Protocol::SeleneClassification => "selene_classification",
            Protocol::SeleneClassificationRef => "selene_classification_ref",
            Protocol::CompassJudger => "compassjudger",
            Protocol::CompassJudgerArena => "compassjudger_arena",
            Protocol::FlowJudge => "flowjudge",
            Protocol::FlowJudgeRef => "flowjudge_ref",
        }
    }

    /// The judge family trained on the protocol.
    pub fn family(&self) -> JudgeFamily {
        match self {
            Protocol::PairwiseTie | Protocol::Single | Protocol::ZhPairwiseTie | Protocol::ZhSingle => {
                JudgeFamily::AutoJ
            }
            Protocol::PrometheusAbsolute
            | Protocol::PrometheusAbsoluteRef
            | Protocol::PrometheusRelative
            | Protocol::PrometheusRelativeRef => JudgeFamily::Prometheus,
            Protocol::Skywork => JudgeFamily::Skywork,
            Protocol::SeleneAbsolute
            | Protocol::SeleneAbsoluteRef
            | Protocol::SelenePairwise
            | Protocol::SeleneClassification
            | Protocol::SeleneClassificationRef => JudgeFamily::Selene,
            Protocol::CompassJudger | Protocol::CompassJudgerArena => JudgeFamily::CompassJudger,
            Protocol::FlowJudge | Protocol::FlowJudgeRef => JudgeFamily::FlowJudge,
        }
    }

    /// The protocol compares two responses (else it grades one).
    pub fn is_pairwise(&self) -> bool {
        matches!(
            self,
            Protocol::PairwiseTie
                | Protocol::ZhPairwiseTie
                | Protocol::PrometheusRelative
                | Protocol::PrometheusRelativeRef
                | Protocol::Skywork
                | Protocol::SelenePairwise
                | Protocol::CompassJudger
                | Protocol::CompassJudgerArena
        )
    }

    pub fn is_chinese(&self) -> bool {
        matches!(self, Protocol::ZhPairwiseTie | Protocol::ZhSingle)
    }

    /// The protocol shows the judge a reference answer (`reference_answer`).
    pub fn uses_reference(&self) -> bool {
        matches!(
            self,
            Protocol::PrometheusAbsoluteRef
                | Protocol::PrometheusRelativeRef
                | Protocol::SeleneAbsoluteRef
                | Protocol::SeleneClassificationRef
                | Protocol::FlowJudgeRef
        )
    }

    /// The same protocol without the reference answer, for a protocol that shows one.
    fn without_reference(&self) -> Option<Protocol> {
        match self {
            Protocol::PrometheusAbsoluteRef => Some(Protocol::PrometheusAbsolute),
            Protocol::PrometheusRelativeRef => Some(Protocol::PrometheusRelative),
            Protocol::SeleneAbsoluteRef => Some(Protocol::SeleneAbsolute),
            Protocol::SeleneClassificationRef => Some(Protocol::SeleneClassification),
            Protocol::FlowJudgeRef => Some(Protocol::FlowJudge),
            _ => None,
        }
    }

    /// The verdict a protocol's judge states, which decides its parser's result, a row's gold
    /// label and the batch metrics.
    pub fn verdict_kind(&self) -> VerdictKind {
        if matches!(self, Protocol::SeleneClassification | Protocol::SeleneClassificationRef) {
            return VerdictKind::Classification;
        }
        match (self.family(), self.is_pairwise()) {
            (JudgeFamily::AutoJ, true) => VerdictKind::AutoJWinner,
            (JudgeFamily::AutoJ, false) => VerdictKind::AutoJRating,
            (_, true) => VerdictKind::Preference,
            (_, false) => VerdictKind::Score,
        }
    }

    /// The scores a gold label may hold, for a protocol whose verdict is a score: 1 to 5, and
    /// for Flow-Judge 0 to 5 (its metrics' rubrics go from 0-1 to 1-5).
    pub fn label_scores(&self) -> std::ops::RangeInclusive<u8> {
        match self.family() {
            JudgeFamily::FlowJudge => 0..=5,
            _ => 1..=5,
        }
    }

    /// The Python format string, byte-exact as in Auto-J's `constants_prompt.py` /
    /// `zh_constants_prompt.py` and prometheus-eval's `prompts.py`.
    pub fn template(&self) -> &'static str {
        match self {
            Protocol::PairwiseTie => include_str!("templates/pairwise_tie.txt"),
            Protocol::Single => include_str!("templates/single.txt"),
            Protocol::ZhPairwiseTie => include_str!("templates/zh_pairwise_tie.txt"),
            Protocol::ZhSingle => include_str!("templates/zh_single.txt"),
            Protocol::PrometheusAbsolute => include_str!("templates/prometheus_absolute.txt"),
            Protocol::PrometheusAbsoluteRef => include_str!("templates/prometheus_absolute_ref.txt"),
            Protocol::PrometheusRelative => include_str!("templates/prometheus_relative.txt"),
            Protocol::PrometheusRelativeRef => include_str!("templates/prometheus_relative_ref.txt"),
            Protocol::Skywork => include_str!("templates/skywork.txt"),
            Protocol::SeleneAbsolute => include_str!("templates/selene_absolute.txt"),
            Protocol::SeleneAbsoluteRef => include_str!("templates/selene_absolute_ref.txt"),
            Protocol::SelenePairwise => include_str!("templates/selene_pairwise.txt"),
            Protocol::SeleneClassification => include_str!("templates/selene_classification.txt"),
            Protocol::SeleneClassificationRef => include_str!("templates/selene_classification_ref.txt"),
            Protocol::CompassJudger => include_str!("templates/compassjudger.txt"),
            Protocol::CompassJudgerArena => include_str!("templates/compassjudger_arena.txt"),
            Protocol::FlowJudge | Protocol::FlowJudgeRef => include_str!("templates/flowjudge.txt"),
        }
    }

    /// The system prompt prometheus-eval sets (`ABS_SYSTEM_PROMPT`, `REL_SYSTEM_PROMPT`); the
    /// other judges' references use none.
    pub fn system_prompt(&self) -> Option<&'static str> {
        match (self.family(), self.is_pairwise()) {
            (JudgeFamily::Prometheus, false) => Some(include_str!("templates/prometheus_absolute_system.txt")),
            (JudgeFamily::Prometheus, true) => Some(include_str!("templates/prometheus_relative_system.txt")),
            _ => None,
        }
    }

    /// Whether a model of family `model` (a manifest's `judge`) runs the protocol: a judge
    /// runs its own family's protocols; a model that is no known judge runs any.
    pub fn check_served_by(self, model: Option<JudgeFamily>) -> Result<(), ProtocolError> {
        match model {
            Some(model) if model != self.family() => Err(ProtocolError::NotServed {
                protocol: self.name(),
                family: self.family(),
                model,
                served: model.protocols().map(|protocol| protocol.name()).collect::<Vec<_>>().join(", "),
            }),
            _ => Ok(()),
        }
    }

    /// The protocols' names, for messages.
    pub fn names() -> String {
        Protocol::ALL.map(|protocol| protocol.name()).join(", ")
    }
}

/// What a judge's verdict is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerdictKind {
    /// Auto-J's pairwise verdict: response 1, response 2 or a tie.
    AutoJWinner,
    /// Auto-J's 1-10 rating.
    AutoJRating,
    /// Response A or B.
    Preference,
    /// A score on the protocol's scale.
    Score,
    /// Yes or No (Selene Mini's classification).
    Classification,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = ProtocolError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "pairwise" => Ok(Protocol::PairwiseTie),
            "zh_pairwise" => Ok(Protocol::ZhPairwiseTie),
            _ => Protocol::ALL
                .into_iter()
                .find(|protocol| protocol.name() == name)
                .ok_or_else(|| ProtocolError::UnknownProtocol(name.to_owned())),
        }
    }
}

/// What is judged: a query with two responses, or with one, and for Prometheus the rubric
/// and the reference answer.
///
/// Serialized as `{"query", "response1", "response2"}` or `{"query", "response"}`, with
/// `rubric` and `reference_answer` where given; also deserializes straight from Auto-J's
/// test-data rows (`prompt`, `response 1`, `response 2`) and prometheus-eval's field names
/// (`instruction`, `response_A`, `response_B`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Item {
    Pair {
        #[serde(alias = "prompt", alias = "instruction")]
        query: String,
        #[serde(alias = "response 1", alias = "response_A")]
        response1: String,
        #[serde(alias = "response 2", alias = "response_B")]
        response2: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rubric: Option<Rubric>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference_answer: Option<String>,
    },
    Single {
        #[serde(alias = "prompt", alias = "instruction")]
        query: String,
        response: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rubric: Option<Rubric>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference_answer: Option<String>,
    },
}

impl Item {
    /// A query with two responses, without rubric or reference answer.
    pub fn pair(query: impl Into<String>, response1: impl Into<String>, response2: impl Into<String>) -> Item {
        Item::Pair {
            query: query.into(),
            response1: response1.into(),
            response2: response2.into(),
            rubric: None,
            reference_answer: None,
        }
    }

    /// A query with one response, without rubric or reference answer.
    pub fn single(query: impl Into<String>, response: impl Into<String>) -> Item {
        Item::Single { query: query.into(), response: response.into(), rubric: None, reference_answer: None }
    }

    /// The same item graded against `rubric`.
    pub fn with_rubric(mut self, rubric: Rubric) -> Item {
        *self.rubric_mut() = Some(rubric);
        self
    }

    /// The same item with a reference answer.
    pub fn with_reference_answer(mut self, answer: impl Into<String>) -> Item {
        match &mut self {
            Item::Pair { reference_answer, .. } | Item::Single { reference_answer, .. } => {
                *reference_answer = Some(answer.into())
            }
        }
        self
    }

    /// The same pair with the responses in the other order; `None` for a single response.
    pub fn swapped(&self) -> Option<Item> {
        match self {
            Item::Pair { query, response1, response2, rubric, reference_answer } => Some(Item::Pair {
                query: query.clone(),
                response1: response2.clone(),
                response2: response1.clone(),
                rubric: rubric.clone(),
                reference_answer: reference_answer.clone(),
            }),
            Item::Single { .. } => None,
        }
    }

    pub fn query(&self) -> &str {
        match self {
            Item::Pair { query, .. } | Item::Single { query, .. } => query,
        }
    }

    pub fn rubric(&self) -> Option<&Rubric> {
        match self {
            Item::Pair { rubric, .. } | Item::Single { rubric, .. } => rubric.as_ref(),
        }
    }

    fn rubric_mut(&mut self) -> &mut Option<Rubric> {
        match self {
            Item::Pair { rubric, .. } | Item::Single { rubric, .. } => rubric,
        }
    }

    pub fn reference_answer(&self) -> Option<&str> {
        match self {
            Item::Pair { reference_answer, .. } | Item::Single { reference_answer, .. } => reference_answer.as_deref(),
        }
    }

    pub fn is_pair(&self) -> bool {
        matches!(self, Item::Pair { .. })
    }

    fn kind(&self) -> &'static str {
        if self.is_pair() {
            "a pair of responses"
        } else {
            "a single response"
        }
    }

    /// The item of one test-data row for `protocol`, by the field names of the protocol's own
    /// code: Auto-J's `prompt` and `response 1`, `response 2` or `response`; prometheus-eval's
    /// `instruction` and `response_A`, `response_B` or `response`; JudgeBench's `question`,
    /// `response_A` and `response_B` (Skywork-Critic, CompassJudger); Selene's card's
    /// `user_input` and `assistant_response_a`, `assistant_response_b` or
    /// `assistant_response`; flow-judge's `query` and `response`; with `rubric` and
    /// `reference_answer` where present. Other fields are ignored.
    pub fn from_row(row: &serde_json::Value, protocol: Protocol) -> Result<Item, ProtocolError> {
        let row = row.as_object().ok_or(ProtocolError::NotAnObject)?;
        let text = |field: &'static str| match row.get(field) {
            Some(serde_json::Value::String(text)) => Ok(text.clone()),
            Some(_) => Err(ProtocolError::NotText { field }),
            None => Err(ProtocolError::MissingField { field, protocol: protocol.name() }),
        };
        let RowFields { query, first, second, single } = protocol.family().row_fields();
        let item = if protocol.is_pairwise() {
            Item::pair(text(query)?, text(first)?, text(second)?)
        } else {
            Item::single(text(query)?, text(single)?)
        };
        if protocol.family() == JudgeFamily::AutoJ {
            return Ok(item);
        }
        let item = match row.get("rubric") {
            None | Some(serde_json::Value::Null) => item,
            Some(rubric) => item.with_rubric(Rubric::deserialize(rubric).map_err(|_| ProtocolError::BadRubric)?),
        };
        Ok(match row.get("reference_answer") {
            None | Some(serde_json::Value::Null) => item,
            Some(_) => item.with_reference_answer(text("reference_answer")?),
        })
    }
}

/// What Prometheus grades against: a built-in rubric by name (prometheus-eval's
/// `load_rubric`), a rubric's fields (filled into `SCORE_RUBRIC_TEMPLATE`), or a rubric's text
/// as it goes into the prompt. Selene Mini takes the fields (criteria and score descriptions;
/// its pairwise protocol the criteria or text); Flow-Judge a metric: a preset's name, a
/// [`FlowMetric`], or the fields as a 1-5 metric.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Rubric {
    /// A built-in name (`helpfulness`, `harmlessness`, `honesty`, `factual_validity`,
    /// `reasoning`; for Flow-Judge a preset metric's) or any other text, used as given.
    Text(String),
    Fields(ScoreRubric),
    Metric(FlowMetric),
    Binary(BinaryRubric),
}

/// A Yes/No rubric: Selene Mini's classification criteria and what each answer means (its
/// templates' `rubric_objective`, `rubric_yes_description`, `rubric_no_description`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryRubric {
    pub criteria: String,
    pub yes_description: String,
    pub no_description: String,
}

/// A custom rubric's fields, as prometheus-eval's `SCORE_RUBRIC_TEMPLATE` names them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreRubric {
    pub criteria: String,
    pub score1_description: String,
    pub score2_description: String,
    pub score3_description: String,
    pub score4_description: String,
    pub score5_description: String,
}

impl Rubric {
    /// prometheus-eval's built-in rubrics, by the names `load_rubric` takes.
    pub const BUILT_IN: [(&'static str, &'static str); 5] = [
        ("helpfulness", include_str!("templates/rubric_helpfulness.txt")),
        ("harmlessness", include_str!("templates/rubric_harmlessness.txt")),
        ("honesty", include_str!("templates/rubric_honesty.txt")),
        ("factual_validity", include_str!("templates/rubric_factual_validity.txt")),
        ("reasoning", include_str!("templates/rubric_reasoning.txt")),
    ];

    /// A rubric as a caller writes it (`judge --rubric`, the Python package's `rubric=`): a
    /// JSON object of a rubric's fields, a Flow-Judge metric or a Yes/No rubric, else a built-in
    /// name or a rubric's text.
    pub fn from_argument(text: &str) -> Result<Rubric, ProtocolError> {
        if !text.trim_start().starts_with('{') {
            return Ok(Rubric::Text(text.to_owned()));
        }
        serde_json::from_str::<Rubric>(text).map_err(|_| ProtocolError::RubricArgument)
    }

    /// prometheus-eval's `SCORE_RUBRIC_TEMPLATE`, which a rubric's fields fill.
    pub const SCORE_RUBRIC_TEMPLATE: &'static str = include_str!("templates/prometheus_score_rubric.txt");

    /// The judge a rubric suggests for a model of no known family: Flow-Judge for its metrics
    /// and presets, Selene Mini for a Yes/No rubric, else Prometheus 2.
    pub fn suggested_family(&self) -> JudgeFamily {
        match self {
            Rubric::Metric(_) => JudgeFamily::FlowJudge,
            Rubric::Binary(_) => JudgeFamily::Selene,
            Rubric::Text(name) if PRESETS.iter().any(|preset| &preset.name == name) => JudgeFamily::FlowJudge,
            _ => JudgeFamily::Prometheus,
        }
    }

    /// The rubric's text in the prompt. The relative protocols take only the first line of a
    /// built-in rubric (its criteria), as `load_rubric(name, "relative")` does, and likewise of
    /// a custom rubric's fields (webjudge's extension: prometheus-eval leaves building a
    /// relative rubric to the caller); text is used as given. A Flow-Judge metric is no
    /// Prometheus rubric.
    pub fn text(&self, relative: bool) -> Result<String, ProtocolError> {
        let first_line =
            |text: &str| if relative { text.split('\n').next().unwrap_or("").to_owned() } else { text.to_owned() };
        Ok(match self {
            Rubric::Text(text) => match Rubric::BUILT_IN.iter().find(|(name, _)| name == text) {
                Some((_, rubric)) => first_line(rubric),
                None => text.clone(),
            },
            Rubric::Metric(_) | Rubric::Binary(_) => return Err(ProtocolError::NotPrometheusRubric),
            Rubric::Fields(fields) => first_line(&format_once(Rubric::SCORE_RUBRIC_TEMPLATE, |field| {
                Some(match field {
                    "criteria" => fields.criteria.as_str(),
                    "score1_description" => &fields.score1_description,
                    "score2_description" => &fields.score2_description,
                    "score3_description" => &fields.score3_description,
                    "score4_description" => &fields.score4_description,
                    "score5_description" => &fields.score5_description,
                    _ => return None,
                })
            })),
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("protocol {protocol} is {}'s, but the model is a {} judge (its protocols: {served})", family.title(), model.title())]
    NotServed { protocol: &'static str, family: JudgeFamily, model: JudgeFamily, served: String },
    #[error("unknown judge family {0:?} (expected one of {names})", names = JudgeFamily::ALL.map(|f| f.name()).join(", "))]
    UnknownFamily(String),
    #[error("unknown protocol {0:?} (expected one of {names})", names = Protocol::names())]
    UnknownProtocol(String),
    #[error("protocol {protocol} judges {expected}, but the item has {found}")]
    Mismatch { protocol: &'static str, expected: &'static str, found: &'static str },
    #[error("family: Auto-J's protocols run with pairwise and single")]
    AutoJRubric,
    #[error("a test-data row must be a JSON object")]
    NotAnObject,
    #[error("field {field:?} is missing (protocol {protocol})")]
    MissingField { field: &'static str, protocol: &'static str },
    #[error("field {field:?} is not a string")]
    NotText { field: &'static str },
    #[error("protocol {protocol} grades against a rubric: give \"rubric\" ({forms})", forms = rubric_forms(protocol))]
    NoRubric { protocol: &'static str },
    #[error(
        "field \"rubric\" must be a built-in rubric's name, a rubric's text, an object with the fields \
         criteria and score1_description to score5_description, or a Flow-Judge metric (criteria and rubric: \
         [{{score, description}}, …])"
    )]
    BadRubric,
    #[error("protocol {protocol} grades against criteria and score descriptions: give \"rubric\" ({forms})", forms = rubric_forms(protocol))]
    SeleneRubric { protocol: &'static str },
    #[error(
        "a Flow-Judge metric (criteria and a rubric of scores) or a Yes/No rubric is no Prometheus 2 rubric: \
         Prometheus 2 takes a built-in rubric's name, text, or criteria and score1_description to score5_description"
    )]
    NotPrometheusRubric,
    #[error("a Yes/No rubric (criteria, yes_description, no_description) grades only with selene_classification and selene_classification_ref")]
    BinaryRubricIsSelenes,
    #[error("unknown Flow-Judge metric {0:?} (presets: {names})", names = FlowMetric::preset_names())]
    UnknownFlowMetric(String),
    #[error("Flow-Judge's metric {metric:?} needs the input {input:?}, which protocol {protocol} does not show (use flowjudge_ref with a reference answer)")]
    MetricInput { metric: String, input: String, protocol: &'static str },
    #[error("{} judges {} only", family.title(), if *pairwise { "single responses" } else { "pairs of responses" })]
    KindNotJudged { family: JudgeFamily, pairwise: bool },
    #[error(
        "{} gives no Yes/No answer for {} (Selene Mini's classification of single responses does)",
        family.title(),
        if *pairwise { "pairs" } else { "single responses" }
    )]
    NoClassification { family: JudgeFamily, pairwise: bool },
    #[error("{} has no protocol with a reference answer for {}", family.title(), if *pairwise { "pairs" } else { "single responses" })]
    NoReferenceProtocol { family: JudgeFamily, pairwise: bool },
    #[error("protocol {protocol} shows the judge a reference answer: give \"reference_answer\" (or use {without})")]
    NoReferenceAnswer { protocol: &'static str, without: &'static str },
    #[error("language must be \"en\" or \"zh\", not {0:?}")]
    UnknownLanguage(String),
    #[error("language applies to Auto-J's protocols only")]
    LanguageIsAutoJ,
    #[error(
        "--rubric is no rubric's JSON fields (criteria, score1_description to score5_description), Flow-Judge \
         metric (criteria, rubric: [{{score, description}}]) or Yes/No rubric (criteria, yes_description, \
         no_description)"
    )]
    RubricArgument,
    #[error("--swap needs a pairwise protocol, not {protocol}")]
    SwapNeedsPair { protocol: &'static str },
    #[error("give protocol or language, not both (Auto-J's Chinese protocols are zh_pairwise_tie and zh_single)")]
    ProtocolAndLanguage,
    #[error(
        "protocol {protocol} needs the model's chat template ({wrapper}), and the model directory has none: \
         convert the checkpoint again with --chat-template FILE"
    )]
    NoChatTemplate { protocol: &'static str, wrapper: &'static str },
    #[error(transparent)]
    ChatTemplate(#[from] ChatTemplateError),
}

/// The forms of a `rubric` that `protocol` takes, for messages.
fn rubric_forms(protocol: &str) -> &'static str {
    match protocol.parse::<Protocol>().map(|protocol| (protocol.family(), protocol.is_pairwise())) {
        Ok((JudgeFamily::Selene, false)) if protocol.starts_with("selene_classification") => {
            "an object with criteria, yes_description and no_description"
        }
        Ok((JudgeFamily::Selene, false)) => "an object with criteria and score1_description to score5_description",
        Ok((JudgeFamily::Selene, true)) => "the criteria's text, or an object with criteria",
        Ok((JudgeFamily::FlowJudge, _)) => {
            "a preset metric's name, an object with criteria and rubric: [{score, description}, …], or one with \
             criteria and score1_description to score5_description"
        }
        _ => {
            "a built-in name: helpfulness, harmlessness, honesty, factual_validity or reasoning; a rubric's text; \
             or its fields criteria and score1_description to score5_description"
        }
    }
}

/// The user message for `item`: for Auto-J exactly `TEMPLATE.format(prompt=query,
/// response=response1, response_another=response2)`; for Prometheus the system prompt, a
/// newline and `TEMPLATE.format(instruction=query, response=response | response_A=response1,
/// response_B=response2, rubric=…, reference_answer=…)`; for the others their references'
/// message (see the module documentation).
pub fn render(protocol: Protocol, item: &Item) -> Result<String, ProtocolError> {
    let (query, response, response_another) = match (protocol.is_pairwise(), item) {
        (true, Item::Pair { query, response1, response2, .. }) => (query.as_str(), response1.as_str(), Some(response2)),
        (false, Item::Single { query, response, .. }) => (query.as_str(), response.as_str(), None),
        _ => {
            let expected = if protocol.is_pairwise() { "a pair of responses" } else { "a single response" };
            return Err(ProtocolError::Mismatch { protocol: protocol.name(), expected, found: item.kind() });
        }
    };
    let response_another = response_another.map(String::as_str);
    let reference_answer = match (protocol.uses_reference(), item.reference_answer()) {
        (true, None) => {
            let without = protocol.without_reference().map_or("", |without| without.name());
            return Err(ProtocolError::NoReferenceAnswer { protocol: protocol.name(), without });
        }
        (true, answer) => answer,
        (false, _) => None,
    };
    let rubric = || item.rubric().ok_or(ProtocolError::NoRubric { protocol: protocol.name() });
    let template = protocol.template();
    let message = match protocol.family() {
        JudgeFamily::AutoJ => format_once(template, |field| match field {
            "prompt" => Some(query),
            "response" => Some(response),
            "response_another" => response_another,
            _ => None,
        }),
        JudgeFamily::Prometheus => {
            let rubric = rubric()?.text(protocol.is_pairwise())?;
            format_once(template, |field| match field {
                "instruction" => Some(query),
                "response" if response_another.is_none() => Some(response),
                "response_A" => response_another.map(|_| response),
                "response_B" => response_another,
                "rubric" => Some(rubric.as_str()),
                "reference_answer" => reference_answer,
                _ => None,
            })
        }
        JudgeFamily::Skywork => format_once(template, |field| match field {
            "input" => Some(query),
            "response_a" => Some(response),
            "response_b" => response_another,
            _ => None,
        }),
        JudgeFamily::CompassJudger => format_once(template, |field| match field {
            "question" => Some(query),
            "prediction" => Some(response),
            "ref" => response_another,
            _ => None,
        }),
        JudgeFamily::Selene => {
            let rubric = rubric()?;
            let classifies = protocol.verdict_kind() == VerdictKind::Classification;
            let (fields, binary) = match rubric {
                Rubric::Fields(fields) => (Some(fields), None),
                Rubric::Binary(binary) => (None, Some(binary)),
                _ => (None, None),
            };
            let objective = match (rubric, protocol.is_pairwise(), classifies) {
                (Rubric::Binary(binary), _, true) => binary.criteria.as_str(),
                (Rubric::Fields(fields), _, false) => fields.criteria.as_str(),
                (Rubric::Text(text), true, _) => text.as_str(),
                _ => return Err(ProtocolError::SeleneRubric { protocol: protocol.name() }),
            };
            format_once(template, |field| match field {
                "user_input" => Some(query),
                "assistant_response" => Some(response),
                "assistant_response_a" => Some(response),
                "assistant_response_b" => response_another,
                "rubric_objective" => Some(objective),
                "rubric_score_1_description" => fields.map(|f| f.score1_description.as_str()),
                "rubric_score_2_description" => fields.map(|f| f.score2_description.as_str()),
                "rubric_score_3_description" => fields.map(|f| f.score3_description.as_str()),
                "rubric_score_4_description" => fields.map(|f| f.score4_description.as_str()),
                "rubric_score_5_description" => fields.map(|f| f.score5_description.as_str()),
                "rubric_yes_description" => binary.map(|b| b.yes_description.as_str()),
                "rubric_no_description" => binary.map(|b| b.no_description.as_str()),
                "reference_response" => reference_answer,
                _ => None,
            })
        }
        JudgeFamily::FlowJudge => {
            let rubric = rubric()?;
            flow_metric::check_inputs(rubric, protocol)?;
            let metric = FlowMetric::from_rubric(rubric)?;
            let mut inputs = vec![("query", query)];
            inputs.extend(reference_answer.map(|answer| ("reference_answer", answer)));
            let (inputs, output, rubric) = (
                flow_metric::format_vars(&inputs),
                flow_metric::format_vars(&[("response", response)]),
                metric.rubric_text(),
            );
            format_once(template, |field| match field {
                "INPUTS" => Some(inputs.as_str()),
                "OUTPUT" => Some(output.as_str()),
                "EVALUATION_CRITERIA" => Some(metric.criteria.as_str()),
                "RUBRIC" => Some(rubric.as_str()),
                _ => None,
            })
        }
    };
    Ok(match protocol.system_prompt() {
        Some(system) => format!("{system}\n{message}"),
        None => message,
    })
}

/// The whole model input: the rendered user message, the conversation's one message, in
/// the model's chat template (Auto-J: LLaMA-2's `[INST]` wrapper; Prometheus 2:
/// Mistral-7B-Instruct-v0.2's template; the others their base model's). A model without a
/// template cannot be judged with: the error names the template its judges were trained with.
pub fn chat_input(
    protocol: Protocol,
    item: &Item,
    template: Option<&ChatTemplate>,
) -> Result<RenderedChat, ProtocolError> {
    let wrapper = match protocol.family() {
        JudgeFamily::AutoJ => "Auto-J's: LLaMA-2's \"[INST] {input} [/INST]\"",
        JudgeFamily::Prometheus => "Prometheus 2's: Mistral-7B-Instruct-v0.2's \"<s>[INST] {input} [/INST]\"",
        JudgeFamily::Skywork | JudgeFamily::Selene => "Llama-3.1-Instruct's",
        JudgeFamily::CompassJudger => "Qwen2.5-Instruct's",
        JudgeFamily::FlowJudge => "Phi-3.5-mini-instruct's",
    };
    let template = template.ok_or(ProtocolError::NoChatTemplate { protocol: protocol.name(), wrapper })?;
    Ok(template.render(&[Message::user(&render(protocol, item)?)])?)
}

/// The text of [`chat_input`].
pub fn model_input(protocol: Protocol, item: &Item, template: Option<&ChatTemplate>) -> Result<String, ProtocolError> {
    Ok(chat_input(protocol, item, template)?.text)
}

/// Python `str.format` restricted to what the templates use: `{name}` fields and `{{`/`}}`
/// escapes, in one left-to-right pass over the template only. The templates are fixed and
/// tested, so an unknown field cannot occur; it would be kept literally.
fn format_once<'a>(template: &str, value: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        let field = tail.strip_prefix('{').and_then(|open| open.find('}').map(|end| &open[..end]));
        match field.and_then(|name| value(name).map(|v| (name, v))) {
            Some((name, substituted)) => {
                out.push_str(substituted);
                rest = &tail[name.len() + 2..];
            }
            None => {
                out.push_str(&tail[..1]);
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_have_exactly_the_fields_their_judges_format() {
        const SCORE_DESCRIPTIONS: [&str; 5] = [
            "{rubric_score_1_description}",
            "{rubric_score_2_description}",
            "{rubric_score_3_description}",
            "{rubric_score_4_description}",
            "{rubric_score_5_description}",
        ];
        for protocol in Protocol::ALL {
            let selene: Vec<&str>;
            let template = protocol.template();
            let fields: Vec<&str> = template.match_indices('{').map(|(at, _)| &template[at..]).collect();
            let expected: &[&str] = match (protocol.family(), protocol.is_pairwise(), protocol.uses_reference()) {
                (JudgeFamily::AutoJ, true, _) => &["{prompt}", "{response}", "{response_another}"],
                (JudgeFamily::AutoJ, false, _) => &["{prompt}", "{response}"],
                (JudgeFamily::Prometheus, false, false) => &["{instruction}", "{response}", "{rubric}"],
                (JudgeFamily::Prometheus, false, true) => {
                    &["{instruction}", "{response}", "{reference_answer}", "{rubric}"]
                }
                (JudgeFamily::Prometheus, true, false) => {
                    &["{instruction}", "{response_A}", "{response_B}", "{rubric}"]
                }
                (JudgeFamily::Prometheus, true, true) => {
                    &["{instruction}", "{response_A}", "{response_B}", "{reference_answer}", "{rubric}"]
                }
                (JudgeFamily::Skywork, _, _) => &["{input}", "{response_a}", "{response_b}"],
                (JudgeFamily::CompassJudger, _, _) => &["{question}", "{prediction}", "{ref}"],
                (JudgeFamily::Selene, true, _) => {
                    &["{user_input}", "{assistant_response_a}", "{assistant_response_b}", "{rubric_objective}"]
                }
                (JudgeFamily::Selene, false, reference) => {
                    let rubric: &[&str] = if protocol.verdict_kind() == VerdictKind::Classification {
                        &["{rubric_yes_description}", "{rubric_no_description}"]
                    } else {
                        &SCORE_DESCRIPTIONS
                    };
                    selene = ["{user_input}", "{assistant_response}", "{rubric_objective}"]
                        .iter()
                        .chain(rubric)
                        .chain(reference.then_some(&"{reference_response}"))
                        .copied()
                        .collect();
                    &selene
                }
                (JudgeFamily::FlowJudge, _, _) => &["{INPUTS}", "{OUTPUT}", "{EVALUATION_CRITERIA}", "{RUBRIC}"],
            };
            assert_eq!(fields.len(), expected.len(), "{protocol}");
            for (field, name) in fields.iter().zip(expected) {
                assert!(field.starts_with(name), "{protocol}: {field:.30}");
            }
            assert_eq!(template.matches('}').count(), expected.len(), "{protocol}");
        }
    }

    #[test]
    fn format_once_handles_escapes_and_never_rescans() {
        let out = format_once("a {{x}} {x} {y} }} {", |f| (f == "x").then_some("{y}"));
        assert_eq!(out, "a {x} {y} {y} } {");
    }
}
