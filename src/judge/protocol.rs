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

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::policy::ProtocolRequest;
use crate::format::{ChatTemplate, ChatTemplateError, JudgeFamily, Message, RenderedChat};

/// What a family means to the judge layer: its protocols.
impl JudgeFamily {
    /// The family's own protocols.
    pub fn protocols(self) -> impl Iterator<Item = Protocol> {
        Protocol::ALL.into_iter().filter(move |protocol| protocol.family() == self)
    }

    /// The protocol a judge of the family runs when none is named: Auto-J's English ones,
    /// Prometheus' without a reference answer ([`ProtocolRequest::choose`]'s rule).
    pub fn default_protocol(self, pairwise: bool) -> Protocol {
        let request = ProtocolRequest { asked: Some(self), pairwise, ..ProtocolRequest::default() };
        request.choose().expect("a request with no language always has a protocol")
    }
}

impl FromStr for JudgeFamily {
    type Err = ProtocolError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "autoj" | "auto-j" | "auto_j" => Ok(JudgeFamily::AutoJ),
            "prometheus" => Ok(JudgeFamily::Prometheus),
            _ => Err(ProtocolError::UnknownFamily(name.to_owned())),
        }
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
}

impl Protocol {
    pub const ALL: [Protocol; 8] = [
        Protocol::PairwiseTie,
        Protocol::Single,
        Protocol::ZhPairwiseTie,
        Protocol::ZhSingle,
        Protocol::PrometheusAbsolute,
        Protocol::PrometheusAbsoluteRef,
        Protocol::PrometheusRelative,
        Protocol::PrometheusRelativeRef,
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
        }
    }

    /// The judge family trained on the protocol.
    pub fn family(&self) -> JudgeFamily {
        match self {
            Protocol::PairwiseTie | Protocol::Single | Protocol::ZhPairwiseTie | Protocol::ZhSingle => {
                JudgeFamily::AutoJ
            }
            _ => JudgeFamily::Prometheus,
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
        )
    }

    pub fn is_chinese(&self) -> bool {
        matches!(self, Protocol::ZhPairwiseTie | Protocol::ZhSingle)
    }

    /// The protocol shows the judge a reference answer (`reference_answer`).
    pub fn uses_reference(&self) -> bool {
        matches!(self, Protocol::PrometheusAbsoluteRef | Protocol::PrometheusRelativeRef)
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
        }
    }

    /// The system prompt prometheus-eval sets (`ABS_SYSTEM_PROMPT`, `REL_SYSTEM_PROMPT`); Auto-J
    /// uses none.
    pub fn system_prompt(&self) -> Option<&'static str> {
        match (self.family(), self.is_pairwise()) {
            (JudgeFamily::AutoJ, _) => None,
            (JudgeFamily::Prometheus, false) => Some(include_str!("templates/prometheus_absolute_system.txt")),
            (JudgeFamily::Prometheus, true) => Some(include_str!("templates/prometheus_relative_system.txt")),
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
    /// `instruction` and `response_A`, `response_B` or `response`, with `rubric` and
    /// `reference_answer` where present. Other fields are ignored.
    pub fn from_row(row: &serde_json::Value, protocol: Protocol) -> Result<Item, ProtocolError> {
        let row = row.as_object().ok_or(ProtocolError::NotAnObject)?;
        let text = |field: &'static str| match row.get(field) {
            Some(serde_json::Value::String(text)) => Ok(text.clone()),
            Some(_) => Err(ProtocolError::NotText { field }),
            None => Err(ProtocolError::MissingField { field, protocol: protocol.name() }),
        };
        let [query, first, second, single] = match protocol.family() {
            JudgeFamily::AutoJ => ["prompt", "response 1", "response 2", "response"],
            JudgeFamily::Prometheus => ["instruction", "response_A", "response_B", "response"],
        };
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
/// as it goes into the prompt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Rubric {
    /// A built-in name (`helpfulness`, `harmlessness`, `honesty`, `factual_validity`,
    /// `reasoning`) or any other text, used as given.
    Text(String),
    Fields(ScoreRubric),
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

    /// The rubric's text in the prompt. The relative protocols take only the first line of a
    /// built-in rubric (its criteria), as `load_rubric(name, "relative")` does, and likewise of
    /// a custom rubric's fields (webjudge's extension: prometheus-eval leaves building a
    /// relative rubric to the caller); text is used as given.
    pub fn text(&self, relative: bool) -> String {
        let first_line =
            |text: &str| if relative { text.split('\n').next().unwrap_or("").to_owned() } else { text.to_owned() };
        match self {
            Rubric::Text(text) => match Rubric::BUILT_IN.iter().find(|(name, _)| name == text) {
                Some((_, rubric)) => first_line(rubric),
                None => text.clone(),
            },
            Rubric::Fields(fields) => {
                first_line(&format_once(include_str!("templates/prometheus_score_rubric.txt"), |field| {
                    Some(match field {
                        "criteria" => fields.criteria.as_str(),
                        "score1_description" => &fields.score1_description,
                        "score2_description" => &fields.score2_description,
                        "score3_description" => &fields.score3_description,
                        "score4_description" => &fields.score4_description,
                        "score5_description" => &fields.score5_description,
                        _ => return None,
                    })
                }))
            }
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("protocol {protocol} is {}'s, but the model is a {} judge (its protocols: {served})", family.title(), model.title())]
    NotServed { protocol: &'static str, family: JudgeFamily, model: JudgeFamily, served: String },
    #[error("unknown judge family {0:?} (expected autoj or prometheus)")]
    UnknownFamily(String),
    #[error("unknown protocol {0:?} (expected one of {names})", names = Protocol::names())]
    UnknownProtocol(String),
    #[error("protocol {protocol} judges {expected}, but the item has {found}")]
    Mismatch { protocol: &'static str, expected: &'static str, found: &'static str },
    #[error("a test-data row must be a JSON object")]
    NotAnObject,
    #[error("field {field:?} is missing (protocol {protocol})")]
    MissingField { field: &'static str, protocol: &'static str },
    #[error("field {field:?} is not a string")]
    NotText { field: &'static str },
    #[error(
        "protocol {protocol} grades against a rubric: give \"rubric\" (a built-in name: helpfulness, \
         harmlessness, honesty, factual_validity or reasoning; a rubric's text; or its fields criteria and \
         score1_description to score5_description)"
    )]
    NoRubric { protocol: &'static str },
    #[error(
        "field \"rubric\" must be a built-in rubric's name, a rubric's text, or an object with the fields \
         criteria and score1_description to score5_description"
    )]
    BadRubric,
    #[error("protocol {protocol} shows the judge a reference answer: give \"reference_answer\" (or use {without})")]
    NoReferenceAnswer { protocol: &'static str, without: &'static str },
    #[error("language must be \"en\" or \"zh\", not {0:?}")]
    UnknownLanguage(String),
    #[error("language applies to Auto-J's protocols only")]
    LanguageIsAutoJ,
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

/// The user message for `item`: for Auto-J exactly `TEMPLATE.format(prompt=query,
/// response=response1, response_another=response2)`; for Prometheus the system prompt, a
/// newline and `TEMPLATE.format(instruction=query, response=response | response_A=response1,
/// response_B=response2, rubric=…, reference_answer=…)` (see the module documentation).
pub fn render(protocol: Protocol, item: &Item) -> Result<String, ProtocolError> {
    let (query, response, response_another) = match (protocol.is_pairwise(), item) {
        (true, Item::Pair { query, response1, response2, .. }) => (query, response1, Some(response2)),
        (false, Item::Single { query, response, .. }) => (query, response, None),
        _ => {
            let expected = if protocol.is_pairwise() { "a pair of responses" } else { "a single response" };
            return Err(ProtocolError::Mismatch { protocol: protocol.name(), expected, found: item.kind() });
        }
    };
    let Some(system) = protocol.system_prompt() else {
        return Ok(format_once(protocol.template(), |field| match field {
            "prompt" => Some(query.as_str()),
            "response" => Some(response.as_str()),
            "response_another" => response_another.map(String::as_str),
            _ => None,
        }));
    };
    let rubric =
        item.rubric().ok_or(ProtocolError::NoRubric { protocol: protocol.name() })?.text(protocol.is_pairwise());
    let reference_answer = match (protocol.uses_reference(), item.reference_answer()) {
        (true, None) => {
            let without =
                if protocol.is_pairwise() { Protocol::PrometheusRelative } else { Protocol::PrometheusAbsolute };
            return Err(ProtocolError::NoReferenceAnswer { protocol: protocol.name(), without: without.name() });
        }
        (_, answer) => answer,
    };
    let message = format_once(protocol.template(), |field| match field {
        "instruction" => Some(query.as_str()),
        "response" if response_another.is_none() => Some(response.as_str()),
        "response_A" => response_another.map(|_| response.as_str()),
        "response_B" => response_another.map(String::as_str),
        "rubric" => Some(rubric.as_str()),
        "reference_answer" => reference_answer,
        _ => None,
    });
    Ok(format!("{system}\n{message}"))
}

/// The whole model input: the rendered user message, the conversation's one message, in
/// the model's chat template (Auto-J: LLaMA-2's `[INST]` wrapper; Prometheus 2:
/// Mistral-7B-Instruct-v0.2's template). A model without a template cannot be judged with:
/// the error names the template its judges were trained with.
pub fn chat_input(
    protocol: Protocol,
    item: &Item,
    template: Option<&ChatTemplate>,
) -> Result<RenderedChat, ProtocolError> {
    let wrapper = match protocol.family() {
        JudgeFamily::AutoJ => "Auto-J's: LLaMA-2's \"[INST] {input} [/INST]\"",
        JudgeFamily::Prometheus => "Prometheus 2's: Mistral-7B-Instruct-v0.2's \"<s>[INST] {input} [/INST]\"",
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
        for protocol in Protocol::ALL {
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
