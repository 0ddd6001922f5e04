//! A judged file's report: the judge's metrics over every labelled record of a batch output
//! (Auto-J's agreement table, accuracy, or score correlations), as the CLI prints it at the end
//! of `judge --input` and the Python package returns it.

use std::io::Write;

use serde_json::Value;

use super::autoj_metrics::{pairwise_metrics, Judged, ScenarioGroups};
use super::output::without_bom;
use super::prometheus_metrics::{preference_metrics, score_metrics, scores_of_record, Preference};
use super::protocol::{Protocol, VerdictKind};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("a record of the output is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Writes the judge's metrics over every labelled record of `output` (JSON Lines) to `out`:
/// a line of counts, the metrics in words, then the metrics as one JSON line.
pub fn report(protocol: Protocol, output: &[u8], out: &mut dyn Write) -> Result<(), ReportError> {
    let records: Vec<Value> = without_bom(output)
        .split(|&b| b == b'\n')
        .filter(|line| !line.trim_ascii().is_empty())
        .map(serde_json::from_slice)
        .collect::<Result<_, _>>()?;
    let errors = records.iter().filter(|r| r.get("error").is_some()).count();
    writeln!(out, "{} rows judged ({} could not be judged)", records.len(), errors)?;
    let judged = || records.iter().filter(|r| r.get("error").is_none());
    let summary = match protocol.verdict_kind() {
        VerdictKind::AutoJRating => {
            let ratings = judged().filter(|r| r["rating"].is_number()).count();
            writeln!(out, "{ratings} ratings parsed, {} unparsed", records.len() - errors - ratings)?;
            return Ok(());
        }
        VerdictKind::AutoJWinner => {
            let judged: Vec<Judged> = records.iter().filter_map(Judged::from_record).collect();
            let metrics = pairwise_metrics(&judged, &ScenarioGroups::autoj());
            if metrics.rows > 0 {
                out.write_all(metrics.original_table().as_bytes())?;
            }
            serde_json::to_string(&metrics)?
        }
        VerdictKind::Preference | VerdictKind::Classification => {
            let rows: Vec<Preference> = records.iter().filter_map(Preference::from_record).collect();
            let metrics = preference_metrics(&rows);
            if metrics.rows > 0 {
                writeln!(
                    out,
                    "accuracy {:.2}% over {} labelled rows ({} unparsed)",
                    metrics.accuracy, metrics.rows, metrics.unparsed
                )?;
            }
            serde_json::to_string(&metrics)?
        }
        VerdictKind::Score => {
            let rows: Vec<(Option<f64>, Option<f64>)> = records.iter().filter_map(scores_of_record).collect();
            let metrics = score_metrics(&rows);
            let show = |value: Option<f64>| value.map_or("undefined".to_owned(), |v| format!("{v:.4}"));
            if metrics.rows > 0 {
                writeln!(
                    out,
                    "over {} rows with gold and parsed scores: Pearson {}, Spearman {}, Kendall tau-b {} ({} unparsed)",
                    metrics.rows,
                    show(metrics.pearson),
                    show(metrics.spearman),
                    show(metrics.kendall_tau_b),
                    metrics.unparsed
                )?;
            }
            serde_json::to_string(&metrics)?
        }
    };
    writeln!(out, "{summary}")?;
    Ok(())
}
