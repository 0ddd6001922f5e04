//! Auto-J's test-data rows, and the finished rows of an interrupted batch run.
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
//! wasm32 too; the CLI reads and rewrites them.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use super::protocol::{Item, Protocol, ProtocolError};
use super::verdict::Winner;

/// One test-data row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// 0-based position among the file's non-empty lines.
    pub index: usize,
    pub item: Item,
    /// The human label, where the row has one.
    pub label: Option<Winner>,
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
    #[error("field \"label\" must be 0 (response 1 better), 1 (response 2 better), 2 (tie) or null; found {0}")]
    Label(String),
    #[error("field \"scenario\" must be a string or null; found {0}")]
    Scenario(String),
    #[error("an output record must be a JSON object with a non-negative integer \"index\"")]
    OutputIndex,
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

    fn at_line(line: usize, problem: Problem) -> Self {
        DatasetError { place: Place { line: Some(line), row: None }, problem }
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
        None if object.contains_key("response 1") || object.contains_key("response 2") => Protocol::PairwiseTie,
        None if object.contains_key("response") => Protocol::Single,
        None => return Err(fail(Problem::NoResponse)),
    };
    let item = Item::from_autoj_row(&value, protocol).map_err(|error| fail(Problem::Item(error)))?;
    Ok(Row { index, item, label: label(object).map_err(fail)?, scenario: scenario(object).map_err(fail)? })
}

fn label(object: &Map<String, Value>) -> Result<Option<Winner>, Problem> {
    match object.get("label") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            value.as_i64().and_then(Winner::from_autoj_label).map(Some).ok_or_else(|| Problem::Label(value.to_string()))
        }
    }
}

fn scenario(object: &Map<String, Value>) -> Result<Option<String>, Problem> {
    match object.get("scenario") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(scenario)) => Ok(Some(scenario.clone())),
        Some(value) => Err(Problem::Scenario(value.to_string())),
    }
}

/// Every row of a test-data file given as lines (`str::lines`), numbered as [`parse_row`]
/// documents; errors name the 1-based file line as well as the row.
pub fn parse_rows<'a, I: IntoIterator<Item = &'a str>>(
    lines: I,
    protocol: Option<Protocol>,
) -> impl Iterator<Item = Result<Row, DatasetError>> + use<'a, I> {
    lines.into_iter().enumerate().filter(|(_, line)| !line.trim().is_empty()).enumerate().map(
        move |(index, (line_index, line))| {
            parse_row_as(line, index, protocol).map_err(|mut error| {
                error.place.line = Some(line_index + 1);
                error
            })
        },
    )
}

/// What an existing output file says about an interrupted run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Finished {
    /// The `index` of every complete record.
    pub indices: BTreeSet<usize>,
    /// The 1-based line of a last record cut off mid-write, which was ignored: the file should
    /// be rewritten without it (keep the lines before it) before appending.
    pub truncated_line: Option<usize>,
}

/// The rows an output JSONL (one record per line, each with `"index"`) already holds.
///
/// The last non-empty line may be an incomplete record from an interrupted write (JSON that
/// ends too early): it is ignored and reported in [`Finished::truncated_line`]. Any other
/// unreadable line, or a record without a non-negative integer `index`, is an error naming
/// its line.
pub fn finished_indices<'a>(output_lines: impl IntoIterator<Item = &'a str>) -> Result<Finished, DatasetError> {
    let mut finished = Finished::default();
    let mut lines = output_lines.into_iter().enumerate().filter(|(_, line)| !line.trim().is_empty()).peekable();
    while let Some((line_index, line)) = lines.next() {
        let number = line_index + 1;
        let record: Value = match serde_json::from_str(line) {
            Ok(record) => record,
            Err(error) if error.is_eof() && lines.peek().is_none() => {
                finished.truncated_line = Some(number);
                break;
            }
            Err(error) => return Err(DatasetError::at_line(number, Problem::Json(error.to_string()))),
        };
        let index = record
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|index| usize::try_from(index).ok())
            .ok_or_else(|| DatasetError::at_line(number, Problem::OutputIndex))?;
        finished.indices.insert(index);
    }
    Ok(finished)
}
