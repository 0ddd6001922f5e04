//! Flow-Judge's metrics: what it scores against, and the parts of its prompt they fill, as
//! flow-judge 0.1.2's `flow_judge/utils/prompt_formatter.py` writes them (`format_vars`,
//! `format_rubric`) and its `metrics/presets.py` defines them.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::protocol::{Protocol, ProtocolError, Rubric};

/// A metric: criteria and the score descriptions of its rubric (flow-judge's `Metric`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowMetric {
    pub criteria: String,
    pub rubric: Vec<FlowRubricItem>,
}

/// One score of a metric's rubric (flow-judge's `RubricItem`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRubricItem {
    pub score: i64,
    pub description: String,
}

/// A preset metric: flow-judge's, by its constant's name in lower case.
#[derive(Debug, Deserialize)]
pub struct FlowPreset {
    pub name: String,
    /// flow-judge's own name for it (`Metric.name`).
    pub title: String,
    #[serde(flatten)]
    pub metric: FlowMetric,
    /// The inputs the metric is written for, which flow-judge requires exactly.
    pub required_inputs: Vec<String>,
}

/// flow-judge's presets that webjudge's items can fill: the response correctness ones (the
/// query and a reference answer). Its faithfulness and relevance presets need a `context`
/// input, which webjudge's items do not carry.
pub static PRESETS: LazyLock<Vec<FlowPreset>> =
    LazyLock::new(|| serde_json::from_str(include_str!("templates/flowjudge_presets.json")).expect("valid presets"));

impl FlowMetric {
    /// The metric a rubric names: a preset by name, a metric as given, or a Prometheus-style
    /// rubric's fields as a 1-5 metric.
    pub fn from_rubric(rubric: &Rubric) -> Result<FlowMetric, ProtocolError> {
        match rubric {
            Rubric::Text(name) => Ok(preset(name)?.metric.clone()),
            Rubric::Metric(metric) => Ok(metric.clone()),
            Rubric::Binary(_) => Err(ProtocolError::BinaryRubricIsSelenes),
            Rubric::Fields(fields) => Ok(FlowMetric {
                criteria: fields.criteria.clone(),
                rubric: [
                    &fields.score1_description,
                    &fields.score2_description,
                    &fields.score3_description,
                    &fields.score4_description,
                    &fields.score5_description,
                ]
                .into_iter()
                .zip(1..)
                .map(|(description, score)| FlowRubricItem { score, description: description.clone() })
                .collect(),
            }),
        }
    }

    /// The preset names, for messages.
    pub fn preset_names() -> String {
        PRESETS.iter().map(|preset| preset.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// `format_rubric`: the items sorted by score (a stable sort, as Python's `sorted`), one
    /// `- Score {score}: {description}` line each.
    pub fn rubric_text(&self) -> String {
        let mut items: Vec<&FlowRubricItem> = self.rubric.iter().collect();
        items.sort_by_key(|item| item.score);
        items.iter().map(|item| format!("- Score {}: {}", item.score, item.description)).collect::<Vec<_>>().join("\n")
    }
}

/// Refuses a preset metric under a protocol that does not show exactly the inputs it is
/// written for, as flow-judge's `validate_eval_input` does.
pub fn check_inputs(rubric: &Rubric, protocol: Protocol) -> Result<(), ProtocolError> {
    let Rubric::Text(name) = rubric else { return Ok(()) };
    let shown: &[&str] = if protocol.uses_reference() { &["query", "reference_answer"] } else { &["query"] };
    let preset = preset(name)?;
    match preset.required_inputs.iter().find(|input| !shown.contains(&input.as_str())) {
        Some(input) => Err(ProtocolError::MetricInput {
            metric: preset.name.clone(),
            input: input.clone(),
            protocol: protocol.name(),
        }),
        None => Ok(()),
    }
}

fn preset(name: &str) -> Result<&'static FlowPreset, ProtocolError> {
    PRESETS.iter().find(|preset| preset.name == name).ok_or_else(|| ProtocolError::UnknownFlowMetric(name.to_owned()))
}

/// `format_vars`: each named value as `<name>\nvalue\n</name>` (the name lower-cased, spaces
/// as underscores), joined by newlines.
pub fn format_vars(variables: &[(&str, &str)]) -> String {
    variables
        .iter()
        .map(|(name, value)| {
            let tag = name.to_lowercase().replace(' ', "_");
            format!("<{tag}>\n{value}\n</{tag}>")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
