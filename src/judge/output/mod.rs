//! A batch output's life: which run its records belong to, what resuming keeps and drops,
//! and (natively, [`file`]) the file itself: locked for the run, repaired and put in input
//! order beside its real target. The CLI's `judge --output` uses it; so can any other
//! front end that judges a file (the rules here are pure and build for wasm32 too).
//!
//! An output is JSON Lines, one [`super::dataset::Record`] per judged row, each carrying the
//! [`RunOptions`] it was made with as `"run"`. A file is resumed only if every complete line
//! is such a record of the same run; anything else is refused and left as it is.

#[cfg(not(target_arch = "wasm32"))]
pub mod file;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::protocol::{Protocol, Rubric};
use crate::format::hex;
use crate::kernels::MatvecPath;

/// The byte order mark some editors put at the start of a UTF-8 file.
const BOM: &[u8] = b"\xef\xbb\xbf";

/// What a batch output is made with. Every record carries it (as `"run"`), so a resumed
/// run can refuse to mix records that would not be comparable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOptions {
    pub protocol: Protocol,
    /// The rubric given for rows without their own (Prometheus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rubric: Option<Rubric>,
    pub swap: bool,
    /// The model's identity: the start of its manifest's sha256.
    pub model: String,
    pub max_new_tokens: usize,
    /// KV cache positions the model was loaded with.
    pub context: usize,
    pub truncate: bool,
    /// How the decode matvecs multiplied x (`--matvec`): int8's critiques differ from exact's
    /// after some tokens. Absent for the exact path, as in records made before there was
    /// another.
    #[serde(default, skip_serializing_if = "MatvecPath::is_exact")]
    pub matvec: MatvecPath,
    /// The rows judged. Absent in records of webjudge versions that did not record it; those
    /// resume with any input, as they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputIdentity>,
}

/// Which input file a run judges: its content, named by its sha256 (a row's `index` means
/// nothing with another file's rows), and its name for messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputIdentity {
    /// The file's name as given (for messages only: the same rows elsewhere are the same input).
    pub file: String,
    /// The start of the sha256 of the file's bytes.
    pub sha256: String,
}

impl InputIdentity {
    pub fn of(file: &str, bytes: &[u8]) -> Self {
        InputIdentity { file: file.to_owned(), sha256: hex(&Sha256::digest(bytes)[..8]) }
    }
}

impl RunOptions {
    /// A model's identity in records: the start of the sha256 of its manifest's bytes.
    pub fn model_id(manifest_bytes: &[u8]) -> String {
        hex(&Sha256::digest(manifest_bytes))[..16].to_string()
    }

    /// The options that decide a finished record's verdict, by their CLI names, with their
    /// values here and in `other`, where they differ. Context and truncation only decide
    /// whether a row fits: a row that was judged stays valid when they change.
    fn verdict_differences(&self, other: &RunOptions) -> Vec<String> {
        let options = |o: &RunOptions| {
            [
                ("--protocol", o.protocol.name().to_string()),
                ("--rubric", o.rubric.as_ref().map_or("none".into(), |r| serde_json::to_string(r).unwrap_or_default())),
                ("--swap", o.swap.to_string()),
                ("--model (manifest sha256)", o.model.clone()),
                ("--max-new-tokens", o.max_new_tokens.to_string()),
                ("--matvec", o.matvec.name().to_string()),
            ]
        };
        options(other)
            .into_iter()
            .zip(options(self))
            .filter(|((_, was), (_, now))| was != now)
            .map(|((name, was), (_, now))| format!("{name} was {was}, now {now}"))
            .collect()
    }

    /// How `other`'s input differs from this run's, if both are known and differ: another
    /// file's rows, whose indices name other rows.
    fn input_difference(&self, other: &RunOptions) -> Option<String> {
        let (was, now) = (other.input.as_ref()?, self.input.as_ref()?);
        (was.sha256 != now.sha256).then(|| {
            format!("--input was {} (sha256 {}…), now {} (sha256 {}…)", was.file, was.sha256, now.file, now.sha256)
        })
    }
}

/// What an existing output file says about an interrupted run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    /// The `index` of every record kept: these rows are not judged again.
    pub done: BTreeSet<usize>,
    /// The 1-based line of a last record cut off mid-write, dropped.
    pub torn_line: Option<usize>,
    /// Rows recorded as errors under other options, dropped to be judged again.
    pub retried: Vec<usize>,
    /// The file's new content when it must change (records dropped, a final newline
    /// added); `None` when appending to it as it is is right.
    pub rewrite: Option<Vec<u8>>,
}

/// Why an existing output cannot be resumed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResumeError {
    #[error(
        "line {line} is not a judge output record ({problem}); refusing to change a file that is not a judge output"
    )]
    NotAnOutput { line: usize, problem: String },
    #[error("line {line} was made with other options ({}); use another --output, or delete the file to start over", differences.join(", "))]
    OptionsDiffer { line: usize, differences: Vec<String> },
}

/// Reads an existing batch output (JSON Lines, one record per row with `"index"` and
/// `"run"`) before a run with `current` options appends to it.
///
/// Works on bytes: an interruption can cut a record inside a UTF-8 character. Only the last
/// line can be cut off, and only one that starts a record (`{`), has no newline and is not
/// JSON is taken for one (any JSON value is complete, so a one-line JSON file that is no
/// record is refused, never taken for a cut-off record); any other unreadable line means the
/// file is no judge output, and it is refused, never rewritten. Records of another protocol,
/// order swapping, model, critique length or input are refused too; error records made under
/// other options are dropped so their rows are judged again. A byte order mark at the start
/// is read past and kept.
pub fn resume_output(bytes: &[u8], current: &RunOptions) -> Result<Resume, ResumeError> {
    let (bom, body) = split_bom(bytes);
    let mut resume = Resume::default();
    let mut kept = Vec::with_capacity(bytes.len() + 1);
    kept.extend_from_slice(bom);
    let mut changed = false;
    let mut lines = body.split_inclusive(|&b| b == b'\n').enumerate().peekable();
    while let Some((line_index, raw)) = lines.next() {
        let line = line_index + 1;
        let complete = raw.ends_with(b"\n");
        let content = raw.strip_suffix(b"\n").unwrap_or(raw);
        if content.trim_ascii().is_empty() {
            kept.extend_from_slice(raw);
            continue;
        }
        let record = match record_of(content) {
            Ok(record) => record,
            Err(_) if !complete && lines.peek().is_none() && is_cut_off_record(content) => {
                resume.torn_line = Some(line);
                changed = true;
                break;
            }
            Err(problem) => return Err(ResumeError::NotAnOutput { line, problem }),
        };
        // Another input's rows are other rows, whatever became of them.
        if let Some(difference) = current.input_difference(&record.run) {
            return Err(ResumeError::OptionsDiffer { line, differences: vec![difference] });
        }
        if record.error {
            if record.run != *current {
                resume.retried.push(record.index);
                changed = true;
                continue;
            }
        } else {
            let differences = current.verdict_differences(&record.run);
            if !differences.is_empty() {
                return Err(ResumeError::OptionsDiffer { line, differences });
            }
        }
        resume.done.insert(record.index);
        kept.extend_from_slice(raw);
        if !complete {
            kept.push(b'\n');
            changed = true;
        }
    }
    resume.retried.retain(|index| !resume.done.contains(index));
    resume.rewrite = changed.then_some(kept);
    Ok(resume)
}

/// The start of a record a write left unfinished: an object's opening that is not JSON yet.
fn is_cut_off_record(content: &[u8]) -> bool {
    content.starts_with(b"{") && serde_json::from_slice::<serde::de::IgnoredAny>(content).is_err()
}

/// A run's output with its records in input order (rows of a batch finish out of order), or
/// `None` when they already are. Blank lines go; a byte order mark stays.
pub fn in_input_order(bytes: &[u8]) -> Result<Option<Vec<u8>>, ResumeError> {
    let (bom, body) = split_bom(bytes);
    let mut records: Vec<(u64, &[u8])> = Vec::new();
    for (line_index, raw) in body.split_inclusive(|&b| b == b'\n').enumerate() {
        let content = raw.strip_suffix(b"\n").unwrap_or(raw);
        if content.trim_ascii().is_empty() {
            continue;
        }
        let record: Value = serde_json::from_slice(content)
            .map_err(|e| ResumeError::NotAnOutput { line: line_index + 1, problem: e.to_string() })?;
        records.push((record["index"].as_u64().unwrap_or(u64::MAX), content));
    }
    if records.is_sorted_by_key(|&(index, _)| index) {
        return Ok(None);
    }
    records.sort_by_key(|&(index, _)| index);
    let mut sorted = Vec::with_capacity(bytes.len() + 1);
    sorted.extend_from_slice(bom);
    for (_, content) in records {
        sorted.extend_from_slice(content);
        sorted.push(b'\n');
    }
    Ok(Some(sorted))
}

/// An output's bytes past the byte order mark an editor may have put first.
pub fn without_bom(bytes: &[u8]) -> &[u8] {
    split_bom(bytes).1
}

fn split_bom(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.strip_prefix(BOM) {
        Some(body) => (BOM, body),
        None => (&[], bytes),
    }
}

/// The parts of an output record that resuming reads.
struct OutputRecord {
    index: usize,
    run: RunOptions,
    error: bool,
}

fn record_of(line: &[u8]) -> Result<OutputRecord, String> {
    let value: Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let index = value
        .get("index")
        .and_then(Value::as_u64)
        .and_then(|index| usize::try_from(index).ok())
        .ok_or("no non-negative integer \"index\"")?;
    let run = value.get("run").ok_or("no \"run\" options (made by an older webjudge?)")?;
    let run = RunOptions::deserialize(run).map_err(|e| format!("\"run\": {e}"))?;
    Ok(OutputRecord { index, run, error: value.get("error").is_some() })
}
