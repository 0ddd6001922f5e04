//! Prometheus 2's metrics, as its paper reports them (and the newer rubric judges', the same
//! way; Selene Mini's Yes/No answers by accuracy): accuracy against gold `A`/`B` labels for
//! relative grading; Pearson, Spearman and Kendall correlation with gold scores for absolute
//! grading (as `scipy.stats.pearsonr`, `spearmanr` and `kendalltau` compute them: Spearman over
//! average ranks, Kendall's tau-b, both with ties).
//!
//! Rows without a gold label are left out and counted. An unparsed preference is never
//! correct and stays in the accuracy's denominator; an unparsed score has no value to
//! correlate, so such rows are left out of the correlations and counted in `unparsed`.
//! With both orders judged, the accuracy is the combined verdict's (the two orders agreeing;
//! a disagreement is a tie, which no gold `A`/`B` label matches) and consistency is the share
//! of rows whose two orders agree.

use serde::Serialize;
use serde_json::Value;

use super::verdict::Winner;

/// Relative grading against gold preferences.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PreferenceMetrics {
    /// Labelled rows scored.
    pub rows: usize,
    /// Percent of them whose verdict is the gold one.
    pub accuracy: f64,
    /// Percent of rows judged in both orders whose two verdicts agree; `None` without any.
    pub consistency: Option<f64>,
    pub unparsed: usize,
    pub unlabelled: usize,
}

/// One relative-graded row: gold preference, verdict, and with both orders judged whether
/// they agreed.
#[derive(Clone, Copy, Debug)]
pub struct Preference {
    pub label: Option<Winner>,
    pub verdict: Option<Winner>,
    pub consistent: Option<bool>,
}

impl Preference {
    /// A judged record's row (`webjudge judge --output`'s, the wasm `judgeBatch`'s): its gold
    /// `label`, its verdict (with both orders judged, their combined one) and whether the orders
    /// agreed; `None` for a row that could not be judged (`error`). A Yes/No record (Selene
    /// Mini's classification: an `answer`) reads as a choice between Yes and No, so that its
    /// accuracy is a preference's.
    pub fn from_record(record: &Value) -> Option<Preference> {
        if record.get("error").is_some() {
            return None;
        }
        if let Some(answer) = record.get("answer") {
            let choice = |value: &Value| match value.as_str() {
                Some("Yes") => Some(Winner::Response1),
                Some("No") => Some(Winner::Response2),
                _ => None,
            };
            return Some(Preference { label: choice(&record["label"]), verdict: choice(answer), consistent: None });
        }
        let preference = |value: &Value| match value.as_str() {
            Some("A") => Some(Winner::Response1),
            Some("B") => Some(Winner::Response2),
            Some("tie") => Some(Winner::Tie),
            _ => None,
        };
        Some(Preference {
            label: preference(&record["label"]),
            verdict: preference(record.get("combined").unwrap_or(&record["winner"])),
            consistent: record["consistent"].as_bool(),
        })
    }
}

/// A judged record's `(gold, predicted)` scores for [`score_metrics`]; `None` for a row that
/// could not be judged (`error`).
pub fn scores_of_record(record: &Value) -> Option<(Option<f64>, Option<f64>)> {
    record.get("error").is_none().then(|| (record["label"].as_f64(), record["score"].as_f64()))
}

pub fn preference_metrics(rows: &[Preference]) -> PreferenceMetrics {
    let labelled: Vec<&Preference> = rows.iter().filter(|row| row.label.is_some()).collect();
    let correct = labelled.iter().filter(|row| row.verdict == row.label).count();
    let swapped: Vec<bool> = labelled.iter().filter_map(|row| row.consistent).collect();
    let percent = |part: usize, whole: usize| 100.0 * part as f64 / whole as f64;
    PreferenceMetrics {
        rows: labelled.len(),
        accuracy: percent(correct, labelled.len()),
        consistency: (!swapped.is_empty()).then(|| percent(swapped.iter().filter(|&&c| c).count(), swapped.len())),
        unparsed: labelled.iter().filter(|row| row.verdict.is_none()).count(),
        unlabelled: rows.len() - labelled.len(),
    }
}

/// Absolute grading against gold scores.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScoreMetrics {
    /// Rows with both a gold and a parsed score: the correlations' sample.
    pub rows: usize,
    /// `None` when undefined: fewer than two rows, or one side constant.
    pub pearson: Option<f64>,
    pub spearman: Option<f64>,
    pub kendall_tau_b: Option<f64>,
    /// Labelled rows whose score did not parse.
    pub unparsed: usize,
    pub unlabelled: usize,
}

/// `(gold, predicted)` per row; `None` where absent or unparsed.
pub fn score_metrics(rows: &[(Option<f64>, Option<f64>)]) -> ScoreMetrics {
    let pairs: Vec<(f64, f64)> = rows.iter().filter_map(|&(gold, score)| Some((gold?, score?))).collect();
    let (gold, scores): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
    ScoreMetrics {
        rows: pairs.len(),
        pearson: pearson(&gold, &scores),
        spearman: pearson(&average_ranks(&gold), &average_ranks(&scores)),
        kendall_tau_b: kendall_tau_b(&gold, &scores),
        unparsed: rows.iter().filter(|(gold, score)| gold.is_some() && score.is_none()).count(),
        unlabelled: rows.iter().filter(|(gold, _)| gold.is_none()).count(),
    }
}

fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() < 2 {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    (sxx > 0.0 && syy > 0.0).then(|| (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// 1-based ranks, tied values sharing the mean of their ranks.
fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        for &at in &order[start..end] {
            ranks[at] = rank;
        }
        start = end;
    }
    ranks
}

/// Kendall's tau-b: `(concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y))` over all
/// pairs. Quadratic, which a test set's few thousand rows afford.
fn kendall_tau_b(x: &[f64], y: &[f64]) -> Option<f64> {
    let (mut concordant, mut discordant, mut tied_x, mut tied_y) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            let dx = x[i].total_cmp(&x[j]) as i64;
            let dy = y[i].total_cmp(&y[j]) as i64;
            match (dx, dy) {
                (0, 0) => {}
                (0, _) => tied_x += 1,
                (_, 0) => tied_y += 1,
                _ if dx == dy => concordant += 1,
                _ => discordant += 1,
            }
        }
    }
    let pairs_x = (concordant + discordant + tied_y) as f64;
    let pairs_y = (concordant + discordant + tied_x) as f64;
    (pairs_x > 0.0 && pairs_y > 0.0).then(|| (concordant - discordant) as f64 / (pairs_x * pairs_y).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_share_ties() {
        assert_eq!(average_ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn undefined_correlations_are_none() {
        let metrics =
            score_metrics(&[(Some(3.0), Some(4.0)), (Some(3.0), Some(2.0)), (None, Some(1.0)), (Some(1.0), None)]);
        assert_eq!((metrics.rows, metrics.unparsed, metrics.unlabelled), (2, 1, 1));
        assert_eq!((metrics.pearson, metrics.spearman, metrics.kendall_tau_b), (None, None, None));
    }
}
