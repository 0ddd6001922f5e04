//! `webjudge parse`: the verdicts of critiques. Reads JSONL rows with an `output` field (a
//! critique) on stdin and writes one JSON object per line: Auto-J's `{"winner":
//! "response1"|"response2"|"tie"|null}` (pairwise) or `{"rating": number|null}` (single);
//! Prometheus' `{"score": 1-5|null}` (absolute) or `{"winner": "A"|"B"|null}` (relative).
//! Scripts depend on this format.

use std::io::{BufRead, BufWriter, Write};

use serde_json::Value;
use webjudge::judge::session::Verdict;
use webjudge::judge::Protocol;

use super::CliResult;

#[derive(clap::Args)]
pub struct Args {
    /// `pairwise` or `single` (Auto-J's parsers read both languages), `prometheus_absolute` or
    /// `prometheus_relative` (any protocol name: the `_ref` ones parse alike).
    #[arg(long)]
    pub protocol: Protocol,
}

pub fn run(args: Args) -> CliResult {
    map_jsonl(|row| {
        let critique = match row.get("output") {
            Some(Value::String(critique)) => critique,
            Some(_) => return Err("field \"output\" is not a string".into()),
            None => return Err("field \"output\" is missing".into()),
        };
        Ok(serde_json::to_value(Verdict::parse(args.protocol, critique))?)
    })
}

/// Reads JSON rows from stdin (blank lines skipped), writes `convert(row)` per row on stdout;
/// an error names its 1-based line number.
pub(super) fn map_jsonl(mut convert: impl FnMut(&Value) -> Result<Value, Box<dyn std::error::Error>>) -> CliResult {
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (index, line) in std::io::stdin().lock().lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|error| format!("line {number}: {error}"))?;
        // Editors on some systems start UTF-8 files with a byte order mark.
        let line = if number == 1 { line.strip_prefix('\u{feff}').unwrap_or(&line) } else { &line };
        if line.trim().is_empty() {
            continue;
        }
        let row: Value = serde_json::from_str(line).map_err(|error| format!("line {number}: not JSON: {error}"))?;
        let converted = convert(&row).map_err(|error| format!("line {number}: {error}"))?;
        writeln!(out, "{converted}")?;
    }
    out.flush()?;
    Ok(())
}
