//! Test-data rows (Auto-J's, and rows for Prometheus 2 by prometheus-eval's field names), and
//! resuming an interrupted batch run from its output.
//!
//! Prometheus rows have `instruction`, `response` or `response_A` and `response_B`, optionally
//! `rubric` and `reference_answer` (see [`Item::from_row`]), and may carry a gold `label`:
//! `"A"` or `"B"` for the relative protocols, a score 1 to 5 for the absolute ones.
//!
//! Auto-J's test sets (`data/test/testdata_pairwise.jsonl`, `testdata_critique.jsonl`) are JSON
//! Lines with `prompt` and either `response 1`, `response 2` (pairwise) or `response` (single),
//! plus `scenario` and, for the pairwise set, the human `label`.
//!
//! The label encoding, as Auto-J's own code has it (GAIR-NLP/auto-j,
//! `codes/leaderboard/README.md`: "`0` and `1` means the first and second response is better,
//! respectively, and `2` means equally good (tie)"; `codes/leaderboard/pairwise_eval.py`
//! compares `sourcedata['label']  # 0,1,2` with the parser result of
//! `codes/usage/example.py::extract_pariwise_result`, which returns 0 for `response 1`, 1 for
//! `response 2`, 2 for `tie`): `0` → [`Winner::Response1`], `1` → [`Winner::Response2`],
//! `2` → [`Winner::Tie`].
//!
//! Rows are numbered as Auto-J's `read_jsonl` reads them: lines that are empty after trimming are
//! skipped, and [`Row::index`] counts the others from 0, so it matches the position Auto-J's
//! evaluation pairs predictions with. Nothing here touches files, so the module builds for
//! wasm32 too; a batch output's file is [`super::output`]'s.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::output::RunOptions;
use super::policy::ProtocolRequest;
use super::protocol::{Item, Protocol, ProtocolError, Rubric, VerdictKind};
use super::session::{Outcome, Verdict};
use super::verdict::Winner;
use crate::format::JudgeFamily;

/// One test-data row. Serialized (for the page, through the wasm `parseRows`): `index`,
/// `query`, `response1` and `response2` or `response`, `label`, `scenario`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// 0-based position among the file's non-empty lines.
    pub index: usize,
    /// The protocol the row was read for: the one asked for, or the one its fields suggest.
    #[serde(skip)]
    pub protocol: Protocol,
    #[serde(flatten)]
    pub item: Item,
    /// The human (gold) verdict, where the row has one.
    #[serde(serialize_with = "label_value")]
    pub label: Option<Verdict>,
    pub scenario: Option<String>,
}

/// Where a problem is: the 1-based line of the file (when the caller knows it) and the 0-based
/// row index among non-empty lines (for test data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub line: Option<usize>,
    pub row: Option<usize>,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.row) {
            (Some(line), Some(row)) => write!(f, "line {line} (row {row})"),
            (Some(line), None) => write!(f, "line {line}"),
            (None, Some(row)) => write!(f, "row {row}"),
            (None, None) => f.write_str("input"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Problem {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("a test-data row must be a JSON object")]
    NotAnObject,
    #[error("{0}")]
    Item(ProtocolError),
    #[error("no responses: a row needs \"response 1\" and \"response 2\" (pairwise) or \"response\" (single)")]
    NoResponse,
    #[error("field \"label\" must be {expected} or null; found {found}")]
    Label { expected: &'static str, found: String },
    #[error("field \"scenario\" must be a string or null; found {0}")]
    Scenario(String),
}

/// A row or output record that cannot be read, and where.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{place}: {problem}")]
pub struct DatasetError {
    pub place: Place,
    pub problem: Problem,
}

impl DatasetError {
    fn at_row(row: usize, problem: Problem) -> Self {
        DatasetError { place: Place { line: None, row: Some(row) }, problem }
    }
}

/// One row; pairwise when it has `response 1` or `response 2`, single otherwise.
pub fn parse_row(line: &str, index: usize) -> Result<Row, DatasetError> {
    parse_row_as(line, index, None)
}

/// One row read for `protocol` (its fields; others are ignored), or, with `None`, pairwise when
/// it has `response 1` or `response 2` and single otherwise.
pub fn parse_row_as(line: &str, index: usize, protocol: Option<Protocol>) -> Result<Row, DatasetError> {
    let fail = |problem| DatasetError::at_row(index, problem);
    let value: Value = serde_json::from_str(line).map_err(|error| fail(Problem::Json(error.to_string())))?;
    let object = value.as_object().ok_or_else(|| fail(Problem::NotAnObject))?;
    let protocol = match protocol {
        Some(protocol) => protocol,
        None => detected_protocol(object).ok_or_else(|| fail(Problem::NoResponse))?,
    };
    let item = Item::from_row(&value, protocol).map_err(|error| fail(Problem::Item(error)))?;
    let (label, scenario) = (label(object, protocol).map_err(fail)?, scenario(object).map_err(fail)?);
    Ok(Row { index, protocol, item, label, scenario })
}

/// The protocol a row's fields suggest: the family whose query field it has (Auto-J's
/// `prompt`, prometheus-eval's `instruction`, JudgeBench's `question` (read as Skywork-Critic's),
/// Selene's `user_input`, flow-judge's `query`; Auto-J's when none), that family's default
/// protocol for a pair when it has one of the family's second-response fields, else for a
/// single response when it has the family's response field (Selene's classification when
/// its rubric is a Yes/No one).
fn detected_protocol(object: &Map<String, Value>) -> Option<Protocol> {
    let by_query = [JudgeFamily::Prometheus, JudgeFamily::Skywork, JudgeFamily::Selene, JudgeFamily::FlowJudge];
    let family = by_query
        .into_iter()
        .find(|family| object.contains_key(family.row_fields().query))
        .unwrap_or(JudgeFamily::AutoJ);
    let fields = family.row_fields();
    // Auto-J's and prometheus-eval's rows are told apart by the query field alone: either
    // family's response fields make a pair.
    let pair_fields = match family {
        JudgeFamily::AutoJ | JudgeFamily::Prometheus => vec!["response 1", "response 2", "response_A", "response_B"],
        _ => vec![fields.first, fields.second],
    };
    let pairwise = pair_fields.iter().any(|field| object.contains_key(*field));
    if !pairwise && !object.contains_key(fields.single) {
        return None;
    }
    // A Yes/No rubric asks for Selene Mini's classification.
    let answer =
        object.get("rubric").is_some_and(|rubric| matches!(Rubric::deserialize(rubric), Ok(Rubric::Binary(_))));
    ProtocolRequest { asked: Some(family), pairwise, answer, ..ProtocolRequest::default() }.choose().ok()
}

/// The row's gold verdict, in the encoding of the protocol's family.
fn label(object: &Map<String, Value>, protocol: Protocol) -> Result<Option<Verdict>, Problem> {
    match object.get("label") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => parse_label(value, protocol).map(Some),
    }
}

/// A gold `label` in the encoding of the protocol's family (Auto-J's 0, 1, 2; `"A"`/`"B"`, or a
/// score 1 to 5 (Flow-Judge's 0 to 5), for the others: as records write them, so the wasm
/// `judgeBatch` reads rows' labels with it too).
pub fn parse_label(value: &Value, protocol: Protocol) -> Result<Verdict, Problem> {
    let (label, expected) = match protocol.verdict_kind() {
        VerdictKind::AutoJWinner => (
            value.as_i64().and_then(Winner::from_autoj_label).map(|w| Verdict::Pairwise(Some(w))),
            "0 (response 1 better), 1 (response 2 better), 2 (tie)",
        ),
        VerdictKind::AutoJRating => (None, "absent (Auto-J's single-response rows carry no label)"),
        VerdictKind::Preference => (
            match value.as_str() {
                Some("A") => Some(Verdict::Preference(Some(Winner::Response1))),
                Some("B") => Some(Verdict::Preference(Some(Winner::Response2))),
                _ => None,
            },
            "\"A\" or \"B\"",
        ),
        VerdictKind::Classification => (
            match value.as_str() {
                Some("Yes") => Some(Verdict::Answer(Some(true))),
                Some("No") => Some(Verdict::Answer(Some(false))),
                _ => None,
            },
            "\"Yes\" or \"No\"",
        ),
        VerdictKind::Score => {
            let scores = protocol.label_scores();
            let score =
                value.as_u64().and_then(|score| u8::try_from(score).ok()).filter(|score| scores.contains(score));
            (
                score.map(|score| Verdict::Score(Some(score))),
                if *scores.start() == 0 { "a score from 0 to 5" } else { "a score from 1 to 5" },
            )
        }
    };
    label.ok_or_else(|| Problem::Label { expected, found: value.to_string() })
}

/// A record's `label`: the verdict's value alone.
fn label_value<S: serde::Serializer>(label: &Option<Verdict>, serializer: S) -> Result<S::Ok, S::Error> {
    match label {
        Some(verdict) => verdict.serialize_value(serializer),
        None => serializer.serialize_none(),
    }
}

fn scenario(object: &Map<String, Value>) -> Result<Option<String>, Problem> {
    match object.get("scenario") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(scenario)) => Ok(Some(scenario.clone())),
        Some(value) => Err(Problem::Scenario(value.to_string())),
    }
}

/// The rows of a test-data file given as lines (`str::lines`): each row's index, as
/// [`parse_row`] documents the numbering, its 1-based line in the file, and its text.
pub fn row_lines<'a, I: IntoIterator<Item = &'a str>>(
    lines: I,
) -> impl Iterator<Item = (usize, usize, &'a str)> + use<'a, I> {
    // Editors on some systems start UTF-8 files with a byte order mark.
    let lines = lines
        .into_iter()
        .enumerate()
        .map(|(at, line)| (at, if at == 0 { line.trim_start_matches('\u{feff}') } else { line }));
    let rows = lines.filter(|(_, line)| !line.trim().is_empty()).enumerate();
    rows.map(|(index, (line_index, line))| (index, line_index + 1, line))
}

/// Every row of a test-data file given as lines (`str::lines`), numbered as [`parse_row`]
/// documents; errors name the 1-based file line as well as the row.
pub fn parse_rows<'a, I: IntoIterator<Item = &'a str>>(
    lines: I,
    protocol: Option<Protocol>,
) -> impl Iterator<Item = Result<Row, DatasetError>> + use<'a, I> {
    row_lines(lines).map(move |(index, line_number, line)| {
        parse_row_as(line, index, protocol).map_err(|mut error| {
            error.place.line = Some(line_number);
            error
        })
    })
}

/// A judged row as every output writes it: a line of `webjudge judge --output` and of the
/// page's export, an item of the wasm `judgeBatch`'s reports. `index`, `scenario` and `label`
/// name the row; then the judgement's fields ([`Outcome`]) or `error`; then, in the CLI's
/// output, the `run` options it was made with (resuming reads them back).
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    pub index: usize,
    pub scenario: Option<&'a str>,
    #[serde(serialize_with = "label_value")]
    pub label: Option<Verdict>,
    #[serde(flatten)]
    pub outcome: RowOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<&'a RunOptions>,
}

/// A row's judgement, or why it could not be judged (the error's message).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum RowOutcome {
    Judged(Outcome),
    Failed { error: String },
}

impl<'a> Record<'a> {
    pub fn new<E: fmt::Display>(row: &'a Row, outcome: Result<Outcome, E>, run: Option<&'a RunOptions>) -> Self {
        let outcome = match outcome {
            Ok(outcome) => RowOutcome::Judged(outcome),
            Err(error) => RowOutcome::Failed { error: error.to_string() },
        };
        Record { index: row.index, scenario: row.scenario.as_deref(), label: row.label, outcome, run }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Finish;
    use crate::judge::session::{Judgement, SwapJudgement};
    use crate::kernels::MatvecPath;

    fn judgement(winner: Winner) -> Judgement {
        Judgement {
            protocol: Protocol::PairwiseTie,
            verdict: Verdict::Pairwise(Some(winner)),
            critique: "c".into(),
            prompt_tokens: 9,
            reused_tokens: 2,
            generated_tokens: 3,
            truncated: false,
            finish: Finish::Eos,
            time_to_first_token_s: 1.5,
            prefill_tok_s: 4.0,
            decode_tok_s: 2.0,
        }
    }

    /// The fields every record writer shares and resuming, the metrics and the page read.
    #[test]
    fn records_serialize_with_the_output_fields() {
        let row = parse_row(
            r#"{"scenario": "chitchat", "label": 2, "prompt": "q", "response 1": "a", "response 2": "b"}"#,
            4,
        )
        .unwrap();
        let pair = SwapJudgement {
            forward: judgement(Winner::Response1),
            swapped: judgement(Winner::Response2),
            swapped_mapped: Verdict::Pairwise(Some(Winner::Response1)),
            consistent: true,
            combined: Verdict::Pairwise(Some(Winner::Response1)),
            shared_prefix_tokens: 2,
            prefill_saved_s: 0.5,
        };
        let run = RunOptions {
            protocol: Protocol::PairwiseTie,
            rubric: None,
            swap: true,
            model: "m".into(),
            max_new_tokens: 8,
            context: 64,
            truncate: false,
            matvec: MatvecPath::Exact,
            input: None,
        };
        let record = serde_json::to_value(Record::new(&row, Ok::<_, String>(Outcome::Both(pair)), Some(&run))).unwrap();
        let judged = serde_json::json!({
            "protocol": "pairwise_tie", "critique": "c", "prompt_tokens": 9, "reused_tokens": 2,
            "generated_tokens": 3, "truncated": false, "finish": "eos", "time_to_first_token_s": 1.5,
            "prefill_tok_s": 4.0, "decode_tok_s": 2.0,
        });
        let mut expected = judged.clone();
        let mut swapped = judged.clone();
        swapped["winner"] = "response2".into();
        for (key, value) in [
            ("index", 4.into()),
            ("scenario", "chitchat".into()),
            ("label", "tie".into()),
            ("winner", "response1".into()),
            ("swapped", swapped),
            ("swapped_winner_mapped", "response1".into()),
            ("consistent", true.into()),
            ("combined", "response1".into()),
            ("shared_prefix_tokens", 2.into()),
            ("prefill_saved_s", 0.5.into()),
            ("run", serde_json::to_value(&run).unwrap()),
        ] {
            expected[key] = value;
        }
        assert_eq!(record, expected);

        let failed = serde_json::to_value(Record::new(&row, Err::<Outcome, _>("too long"), None)).unwrap();
        assert_eq!(
            failed,
            serde_json::json!({"index": 4, "scenario": "chitchat", "label": "tie", "error": "too long"})
        );
    }
}
