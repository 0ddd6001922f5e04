//! The wasm exports that need no model (and no GPU): the metrics of batch records, test-data
//! rows, the built-in rubrics, and the defaults and protocols the page reads instead of
//! copying them.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::types::{self, BatchRow, BuiltInRubric, PairwiseMetrics};
use super::WebError;
use crate::judge::autoj_metrics::{self, Judged, ScenarioGroups};
use crate::judge::dataset::{self, Row};
use crate::judge::flow_metric::PRESETS;
use crate::judge::policy::{ProtocolRequest, DEFAULTS};
use crate::judge::prometheus_metrics::{self, Preference};
use crate::judge::{JudgeFamily, Protocol, Rubric, VerdictKind};

/// Auto-J's pairwise evaluation (agreement and swap consistency, per scenario group and
/// overall) of batch records, computed by the same code as `webjudge judge`'s metrics. Needs
/// no model (and no GPU).
#[wasm_bindgen(js_name = pairwiseMetrics, unchecked_return_type = "PairwiseMetrics")]
pub fn pairwise_metrics(
    #[wasm_bindgen(unchecked_param_type = "Partial<BatchRecord>[]")] records: JsValue,
) -> Result<JsValue, JsValue> {
    let records = records_of(records, "pairwiseMetrics")?;
    let judged: Vec<Judged> = records.iter().filter_map(Judged::from_record).collect();
    let figures = autoj_metrics::pairwise_metrics(&judged, &ScenarioGroups::autoj());
    Ok(types::to_js(&PairwiseMetrics::new(&figures)))
}

/// Prometheus 2's relative grading against gold `"A"`/`"B"` labels (accuracy, and consistency
/// of rows judged in both orders) of batch records, computed by the same code as `webjudge
/// judge`'s metrics. Needs no model.
#[wasm_bindgen(js_name = preferenceMetrics, unchecked_return_type = "PreferenceMetrics")]
pub fn preference_metrics(
    #[wasm_bindgen(unchecked_param_type = "Partial<BatchRecord>[]")] records: JsValue,
) -> Result<JsValue, JsValue> {
    let records = records_of(records, "preferenceMetrics")?;
    let rows: Vec<Preference> = records.iter().filter_map(Preference::from_record).collect();
    Ok(types::to_js(&prometheus_metrics::preference_metrics(&rows)))
}

/// Prometheus 2's absolute grading against gold scores (Pearson, Spearman, Kendall's tau-b) of
/// batch records, computed by the same code as `webjudge judge`'s metrics. Needs no model.
#[wasm_bindgen(js_name = scoreMetrics, unchecked_return_type = "ScoreMetrics")]
pub fn score_metrics(
    #[wasm_bindgen(unchecked_param_type = "Partial<BatchRecord>[]")] records: JsValue,
) -> Result<JsValue, JsValue> {
    let records = records_of(records, "scoreMetrics")?;
    let rows: Vec<_> = records.iter().filter_map(prometheus_metrics::scores_of_record).collect();
    Ok(types::to_js(&prometheus_metrics::score_metrics(&rows)))
}

/// The records a metrics export was given, as JSON objects.
fn records_of(records: JsValue, function: &str) -> Result<Vec<serde_json::Value>, WebError> {
    let records: Vec<serde_json::Value> = serde_wasm_bindgen::from_value(records)
        .map_err(|error| WebError::InvalidInput(format!("{function}: records must be an array of objects: {error}")))?;
    if let Some(position) = records.iter().position(|record| !record.is_object()) {
        return Err(WebError::InvalidInput(format!("{function}: record {position} is not an object")));
    }
    Ok(records)
}

/// The rows of a test-data file (JSON Lines), read by the same code as `webjudge judge
/// --input`: Auto-J's rows, or Prometheus 2's (prometheus-eval's field names, by
/// `instruction`); pairs or single responses by their fields, every row of one kind. Each row
/// carries the protocol it was read for (Prometheus': with a reference answer when the first row
/// has one), which `judgeBatch` takes. Needs no model (and no GPU).
#[wasm_bindgen(js_name = parseRows, unchecked_return_type = "BatchRow[]")]
pub fn parse_rows(text: &str) -> Result<JsValue, JsValue> {
    let rows: Vec<Row> = dataset::parse_rows(text.lines(), None)
        .collect::<Result<_, _>>()
        .map_err(|e| WebError::InvalidInput(e.to_string()))?;
    let Some(first) = rows.first() else {
        return Err(WebError::InvalidInput("the file has no rows".into()).into());
    };
    let protocols: Vec<Protocol> = rows.iter().map(|row| row.protocol).collect();
    let kind = |protocol: Protocol| match (protocol.family(), protocol.is_pairwise()) {
        (JudgeFamily::AutoJ, true) => "a pair",
        (JudgeFamily::AutoJ, false) => "a single response",
        (_, true) => "a Prometheus pair (by its instruction field)",
        (_, false) => "a Prometheus single response (by its instruction field)",
    };
    if let Some(other) = protocols.iter().position(|&protocol| protocol != protocols[0]) {
        let message = format!(
            "row {other} is {}, but row 0 is {}: a file holds one kind",
            kind(protocols[other]),
            kind(protocols[0])
        );
        return Err(WebError::InvalidInput(message).into());
    }
    // The rule `judgeBatch` and the CLI apply: Prometheus' `_ref` when the first row has a
    // reference answer.
    let request = ProtocolRequest {
        asked: Some(protocols[0].family()),
        pairwise: protocols[0].is_pairwise(),
        reference: first.item.reference_answer().is_some(),
        answer: protocols[0].verdict_kind() == VerdictKind::Classification,
        ..ProtocolRequest::default()
    };
    let protocol = request.choose().map_err(WebError::from)?;
    Ok(types::to_js(&rows.iter().map(|row| BatchRow { protocol, row }).collect::<Vec<_>>()))
}

/// A judge's built-in rubrics by name, each with the text the judge is shown: by default
/// prometheus-eval's (`load_rubric`'s names; absolute grading's text, of which relative grading
/// takes the first line: the criteria); for `flowjudge` flow-judge's preset metrics (criteria,
/// a blank line, the rubric); none for the other judges. Needs no model.
#[wasm_bindgen(js_name = builtInRubrics, unchecked_return_type = "{ name: BuiltInRubric | FlowPreset; text: string }[]")]
pub fn built_in_rubrics(
    #[wasm_bindgen(unchecked_param_type = "JudgeFamily")] family: Option<String>,
) -> Result<JsValue, JsValue> {
    let family = family.map(|name| name.parse::<JudgeFamily>()).transpose().map_err(WebError::from)?;
    let rubrics: Vec<BuiltInRubric> = match family.unwrap_or(JudgeFamily::Prometheus) {
        JudgeFamily::Prometheus => Rubric::BUILT_IN
            .iter()
            .map(|&(name, text)| BuiltInRubric { name: name.into(), text: text.into() })
            .collect(),
        JudgeFamily::FlowJudge => PRESETS
            .iter()
            .map(|preset| BuiltInRubric {
                name: preset.name.clone(),
                text: format!("{}\n\n{}", preset.metric.criteria, preset.metric.rubric_text()),
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(types::to_js(&rubrics))
}

/// The settings a call gets when it names none (`maxNewTokens`, `generateMaxNewTokens`), the
/// CLI's defaults too; the page shows them. Needs no model.
#[wasm_bindgen(unchecked_return_type = "Defaults")]
pub fn defaults() -> JsValue {
    types::to_js(&DEFAULTS)
}

/// One protocol as the page and `<web-judge>` offer it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolInfo {
    name: &'static str,
    family: JudgeFamily,
    pairwise: bool,
    /// Shows the judge a reference answer (`_ref`).
    reference: bool,
    /// Auto-J's: the `language` option that picks it.
    language: Option<&'static str>,
    /// The `Judge` method that runs it.
    method: &'static str,
}

/// Every protocol: its family, kind, and the `Judge` method (and Auto-J's `language`) that
/// runs it. Needs no model.
#[wasm_bindgen(unchecked_return_type = "ProtocolInfo[]")]
pub fn protocols() -> JsValue {
    let info = |protocol: Protocol| ProtocolInfo {
        name: protocol.name(),
        family: protocol.family(),
        pairwise: protocol.is_pairwise(),
        reference: protocol.uses_reference(),
        language: (protocol.family() == JudgeFamily::AutoJ).then_some(if protocol.is_chinese() { "zh" } else { "en" }),
        method: match (protocol.family(), protocol.verdict_kind()) {
            (_, VerdictKind::Classification) => "classify",
            (JudgeFamily::AutoJ, VerdictKind::AutoJWinner) => "pairwise",
            (JudgeFamily::AutoJ, _) => "single",
            (_, VerdictKind::Preference) => "compare",
            (_, _) => "rubric",
        },
    };
    types::to_js(&Protocol::ALL.map(info))
}
