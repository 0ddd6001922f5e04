//! Auto-J's prompt protocols, rendered byte for byte as its code does.
//!
//! Auto-J builds a judge input as `llama2_wrapper(TEMPLATE.format(prompt=…, response=…,
//! response_another=…))`: Python `str.format` over one of four templates (shipped here verbatim
//! in `templates/`), then `"[INST] {input} [/INST]"` with no system message. `str.format` scans
//! the template once and never the substituted values, so user text containing `{response}`,
//! `{{` or `[/INST]` stays literal; [`render`] does the same.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::ChatTemplate;

/// A family of judge models: the protocols a model was trained on. A model directory's
/// manifest names its family ([`crate::weights::Manifest::judge`]) so that the CLI, the API and
/// the page choose its protocols and refuse the other family's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeFamily {
    /// Auto-J (GAIR): `pairwise_tie`, `single` and their Chinese versions.
    #[serde(rename = "autoj")]
    AutoJ,
    /// Prometheus 2 (prometheus-eval): rubric grading, absolute and relative.
    Prometheus,
}

impl JudgeFamily {
    pub fn name(&self) -> &'static str {
        match self {
            JudgeFamily::AutoJ => "autoj",
            JudgeFamily::Prometheus => "prometheus",
        }
    }
}

impl fmt::Display for JudgeFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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

/// One of Auto-J's four judging protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Compare two responses; the verdict is Response 1, Response 2 or Tie.
    #[serde(alias = "pairwise")]
    PairwiseTie,
    /// Critique one response and rate it 1 to 10.
    Single,
    /// The Chinese version of `pairwise_tie`.
    #[serde(alias = "zh_pairwise")]
    ZhPairwiseTie,
    /// The Chinese version of `single`.
    ZhSingle,
}

impl Protocol {
    pub const ALL: [Protocol; 4] =
        [Protocol::PairwiseTie, Protocol::Single, Protocol::ZhPairwiseTie, Protocol::ZhSingle];

    /// The name Auto-J's code uses for the protocol.
    pub fn name(&self) -> &'static str {
        match self {
            Protocol::PairwiseTie => "pairwise_tie",
            Protocol::Single => "single",
            Protocol::ZhPairwiseTie => "zh_pairwise_tie",
            Protocol::ZhSingle => "zh_single",
        }
    }

    pub fn is_pairwise(&self) -> bool {
        matches!(self, Protocol::PairwiseTie | Protocol::ZhPairwiseTie)
    }

    pub fn is_chinese(&self) -> bool {
        matches!(self, Protocol::ZhPairwiseTie | Protocol::ZhSingle)
    }

    /// The Python format string, byte-exact as in Auto-J's `constants_prompt.py` /
    /// `zh_constants_prompt.py`.
    pub fn template(&self) -> &'static str {
        match self {
            Protocol::PairwiseTie => include_str!("templates/pairwise_tie.txt"),
            Protocol::Single => include_str!("templates/single.txt"),
            Protocol::ZhPairwiseTie => include_str!("templates/zh_pairwise_tie.txt"),
            Protocol::ZhSingle => include_str!("templates/zh_single.txt"),
        }
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

/// What is judged: a query with two responses, or with one.
///
/// Serialized as `{"query", "response1", "response2"}` or `{"query", "response"}`; also
/// deserializes straight from Auto-J's test-data rows (`prompt`, `response 1`, `response 2`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Item {
    Pair {
        #[serde(alias = "prompt")]
        query: String,
        #[serde(alias = "response 1")]
        response1: String,
        #[serde(alias = "response 2")]
        response2: String,
    },
    Single {
        #[serde(alias = "prompt")]
        query: String,
        response: String,
    },
}

impl Item {
    /// The same pair with the responses in the other order; `None` for a single response.
    pub fn swapped(&self) -> Option<Item> {
        match self {
            Item::Pair { query, response1, response2 } => {
                Some(Item::Pair { query: query.clone(), response1: response2.clone(), response2: response1.clone() })
            }
            Item::Single { .. } => None,
        }
    }

    pub fn query(&self) -> &str {
        match self {
            Item::Pair { query, .. } | Item::Single { query, .. } => query,
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

    /// The item of one Auto-J test-data row for `protocol`: `prompt` and `response 1`,
    /// `response 2` (pairwise) or `response` (single); other fields are ignored.
    pub fn from_autoj_row(row: &serde_json::Value, protocol: Protocol) -> Result<Item, ProtocolError> {
        let row = row.as_object().ok_or(ProtocolError::NotAnObject)?;
        let text = |field: &'static str| match row.get(field) {
            Some(serde_json::Value::String(text)) => Ok(text.clone()),
            Some(_) => Err(ProtocolError::NotText { field }),
            None => Err(ProtocolError::MissingField { field, protocol: protocol.name() }),
        };
        Ok(if protocol.is_pairwise() {
            Item::Pair { query: text("prompt")?, response1: text("response 1")?, response2: text("response 2")? }
        } else {
            Item::Single { query: text("prompt")?, response: text("response")? }
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("unknown judge family {0:?} (expected autoj or prometheus)")]
    UnknownFamily(String),
    #[error("unknown protocol {0:?} (expected pairwise_tie, single, zh_pairwise_tie or zh_single)")]
    UnknownProtocol(String),
    #[error("protocol {protocol} judges {expected}, but the item has {found}")]
    Mismatch { protocol: &'static str, expected: &'static str, found: &'static str },
    #[error("a test-data row must be a JSON object")]
    NotAnObject,
    #[error("field {field:?} is missing (protocol {protocol})")]
    MissingField { field: &'static str, protocol: &'static str },
    #[error("field {field:?} is not a string")]
    NotText { field: &'static str },
}

/// The user message for `item`, exactly as Auto-J's `TEMPLATE.format(prompt=query,
/// response=response1, response_another=response2)` builds it.
pub fn render(protocol: Protocol, item: &Item) -> Result<String, ProtocolError> {
    let (query, response, response_another) = match (protocol.is_pairwise(), item) {
        (true, Item::Pair { query, response1, response2 }) => (query, response1, Some(response2)),
        (false, Item::Single { query, response }) => (query, response, None),
        _ => {
            let expected = if protocol.is_pairwise() { "a pair of responses" } else { "a single response" };
            return Err(ProtocolError::Mismatch { protocol: protocol.name(), expected, found: item.kind() });
        }
    };
    Ok(format_once(protocol.template(), |field| match field {
        "prompt" => Some(query.as_str()),
        "response" => Some(response.as_str()),
        "response_another" => response_another.map(String::as_str),
        _ => None,
    }))
}

/// The whole model input: the rendered user message wrapped in `template` (Auto-J models:
/// [`ChatTemplate::llama2`]).
pub fn model_input(protocol: Protocol, item: &Item, template: &ChatTemplate) -> Result<String, ProtocolError> {
    Ok(template.wrap(&render(protocol, item)?))
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
    fn templates_have_exactly_the_fields_auto_j_formats() {
        for protocol in Protocol::ALL {
            let template = protocol.template();
            let fields: Vec<&str> = template.match_indices('{').map(|(at, _)| &template[at..]).collect();
            let expected: &[&str] = if protocol.is_pairwise() {
                &["{prompt}", "{response}", "{response_another}"]
            } else {
                &["{prompt}", "{response}"]
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
