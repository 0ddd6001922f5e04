//! Auto-J's pairwise evaluation: agreement with the human label and swap consistency, overall
//! and per scenario group, as its `codes/leaderboard/pairwise_eval.py` (GAIR-NLP/auto-j)
//! computes them.
//!
//! What the original does, per row (`check_res`, `register_scenario_wise_results`), with
//! `pred` the verdict on the given order and `pred_exchange` the verdict on the swapped order
//! mapped back (`exchange_to_ori_label`: 0 ↔ 1, 2 stays):
//! - `--type pairwise` (the judge saw the pair in both orders): a row is correct only when
//!   `pred_exchange == pred == label`; agreement = `100 * correct_both / total`; consistency =
//!   `100 * (1 - exchange_dont_agree / total)`, where a row disagrees when
//!   `pred_exchange != pred` (so tie ↔ tie is consistent, and a row that is consistent but wrong
//!   still counts as consistent).
//! - `--type single` (one order only): agreement = `100 * correct / total`, consistency `-`.
//! - Rows are tallied per scenario, scenarios summed into the groups of `scenario_group`
//!   (`utils_constants.py`; the same as `../shared/autoj/scenario_groups.json`) and into
//!   `Overall`; each figure is printed as `round(x, 2)`, groups in that file's order, then
//!   `Overall` (see [`Metrics::original_table`]).
//!
//! Where the original has no answer, this module extends it (the original would stop):
//! - Unparsed verdicts (Auto-J's parser returns -1): the original asserts every verdict is 0, 1
//!   or 2 and fails on -1. Here an unparsed verdict is never correct, and a swapped row with an
//!   unparsed verdict in either order is inconsistent (had the asserts been removed, two -1s
//!   would have compared equal and counted as consistent; a judge that cannot decide either way
//!   is not consistent). Such rows stay in every denominator and are counted in `unparsed`.
//! - Rows without a label are left out of every figure (the original needs a label on every
//!   row) and counted in [`Metrics::unlabelled`].
//! - A scenario outside the groups, or no scenario, counts in the overall figures only (the
//!   original fails on the lookup) and is counted in [`Metrics::ungrouped`]. A group without
//!   rows is left out (the original divides by zero).
//! - When only some rows were judged in both orders, each row is scored as its own kind (both
//!   orders right, or its one verdict right) and consistency is taken over the swapped rows.
//!
//! Auto-J has no metric for single-response ratings (its critique evaluation has GPT-4 compare
//! critiques), so none is offered here.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::verdict::Winner;

/// One judged row as the metrics see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judged {
    pub scenario: Option<String>,
    pub label: Option<Winner>,
    /// The verdict on the given order; `None` when unparsed.
    pub verdict: Option<Winner>,
    /// The verdict on the swapped order, already mapped back to the given order (`Some(None)`
    /// when unparsed); `None` when the pair was judged in one order only.
    pub swapped_verdict: Option<Option<Winner>>,
}

impl Judged {
    /// A row of the batch record shape (`webjudge judge --output` JSONL and the page's export;
    /// the page passes its records through the wasm `pairwiseMetrics`): `scenario`, `label`,
    /// `winner` and, for a pair judged in both orders, `swapped_winner_mapped`. `None` for a row
    /// that could not be judged (it has `error`): such rows are left out of every figure. A
    /// label or verdict that is missing or not `"response1"`, `"response2"` or `"tie"` counts as
    /// absent (unparsed).
    pub fn from_record(record: &serde_json::Value) -> Option<Judged> {
        if record.get("error").is_some() {
            return None;
        }
        let winner = |value: &serde_json::Value| Winner::deserialize(value).ok();
        Some(Judged {
            scenario: record["scenario"].as_str().map(str::to_string),
            label: winner(&record["label"]),
            verdict: winner(&record["winner"]),
            swapped_verdict: record.get("swapped_winner_mapped").map(winner),
        })
    }
}

/// Auto-J's scenario groups: group names in order, each with its scenarios.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioGroups {
    groups: Vec<(String, Vec<String>)>,
    group_of: BTreeMap<String, usize>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GroupsError {
    #[error("scenario groups: {0}")]
    Json(String),
    #[error("scenario groups: group {0:?} appears twice")]
    DuplicateGroup(String),
    #[error("scenario groups: scenario {scenario:?} is in both {first:?} and {second:?}")]
    DuplicateScenario { scenario: String, first: String, second: String },
    #[error("scenario groups: \"{OVERALL}\" is the name of the overall row, not a group")]
    ReservedName,
}

/// The row the original prints after the groups.
pub const OVERALL: &str = "Overall";

/// `scenario_group` of Auto-J's `codes/leaderboard/utils_constants.py`.
const AUTOJ_GROUPS: [(&str, &[&str]); 8] = [
    ("Summarization", &["post_summarization", "text_summarization", "note_summarization"]),
    ("Exam Questions", &["math_reasoning", "solving_exam_question_with_math", "solving_exam_question_without_math"]),
    (
        "Code",
        &[
            "code_simplification",
            "code_generation",
            "explaining_code",
            "code_correction_rewriting",
            "code_to_code_translation",
        ],
    ),
    (
        "Rewriting",
        &["text_simplification", "language_polishing", "instructional_rewriting", "text_correction", "paraphrasing"],
    ),
    (
        "Creative Writing",
        &[
            "writing_song_lyrics",
            "writing_social_media_post",
            "writing_blog_post",
            "writing_personal_essay",
            "creative_writing",
            "writing_advertisement",
            "writing_marketing_materials",
            "writing_presentation_script",
            "counterfactual",
        ],
    ),
    (
        "Functional Writing",
        &[
            "writing_product_description",
            "writing_job_application",
            "writing_news_article",
            "writing_biography",
            "writing_email",
            "writing_legal_document",
            "writing_technical_document",
            "writing_scientific_paper",
            "functional_writing",
            "writing_cooking_recipe",
        ],
    ),
    (
        "General Communication",
        &[
            "asking_how_to_question",
            "open_question",
            "analyzing_general",
            "explaining_general",
            "seeking_advice",
            "recommendation",
            "value_judgement",
            "verifying_fact",
            "chitchat",
            "roleplay",
            "planning",
            "brainstorming",
        ],
    ),
    (
        "NLP Tasks",
        &[
            "ranking",
            "text_to_text_translation",
            "data_analysis",
            "classification_identification",
            "title_generation",
            "question_generation",
            "reading_comprehension",
            "keywords_extraction",
            "information_extraction",
            "topic_modeling",
            "others",
        ],
    ),
];

impl ScenarioGroups {
    /// Auto-J's 8 groups of its 58 scenarios (built in, so no data file is needed at run time).
    pub fn autoj() -> Self {
        let groups = AUTOJ_GROUPS
            .iter()
            .map(|(name, scenarios)| (name.to_string(), scenarios.iter().map(|s| s.to_string()).collect()))
            .collect();
        Self::new(groups).expect("Auto-J's scenario groups are well formed")
    }

    /// Groups in order, each with its scenarios; a scenario may belong to one group only.
    pub fn new(groups: Vec<(String, Vec<String>)>) -> Result<Self, GroupsError> {
        let mut group_of = BTreeMap::new();
        for (position, (name, scenarios)) in groups.iter().enumerate() {
            if name == OVERALL {
                return Err(GroupsError::ReservedName);
            }
            if groups[..position].iter().any(|(other, _)| other == name) {
                return Err(GroupsError::DuplicateGroup(name.clone()));
            }
            for scenario in scenarios {
                if let Some(first) = group_of.insert(scenario.clone(), position) {
                    return Err(GroupsError::DuplicateScenario {
                        scenario: scenario.clone(),
                        first: groups[first].0.clone(),
                        second: name.clone(),
                    });
                }
            }
        }
        Ok(ScenarioGroups { groups, group_of })
    }

    /// A JSON object mapping each group name to its array of scenarios, like
    /// `scenario_groups.json`; the object's order is the groups' order.
    pub fn from_json(text: &str) -> Result<Self, GroupsError> {
        let OrderedGroups(groups) = serde_json::from_str(text).map_err(|error| GroupsError::Json(error.to_string()))?;
        Self::new(groups)
    }

    /// The group names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().map(|(name, _)| name.as_str())
    }

    /// The group `scenario` belongs to.
    pub fn group_of(&self, scenario: &str) -> Option<&str> {
        self.group_of.get(scenario).map(|&position| self.groups[position].0.as_str())
    }
}

/// A JSON object read in document order (serde_json's own map would sort the keys).
struct OrderedGroups(Vec<(String, Vec<String>)>);

impl<'de> Deserialize<'de> for OrderedGroups {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = OrderedGroups;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object mapping each group name to an array of scenario names")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedGroups, A::Error> {
                let mut groups = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    groups.push(entry);
                }
                Ok(OrderedGroups(groups))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// The figures of one group (or of all rows).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupMetrics {
    /// Labelled rows scored.
    pub rows: usize,
    /// Percent of rows whose verdict matches the label (in both orders, for swapped rows).
    pub agreement: f64,
    /// Percent of swapped rows whose two verdicts agree; `None` when no row was swapped.
    pub consistency: Option<f64>,
    /// Rows with an unparsed verdict (in either order).
    pub unparsed: usize,
    /// Rows judged in both orders.
    pub swapped: usize,
}

/// Agreement and consistency over a batch, overall and per scenario group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metrics {
    /// Labelled rows scored (the overall figures' denominator); agreement is NaN when 0.
    pub rows: usize,
    pub agreement: f64,
    pub consistency: Option<f64>,
    pub unparsed: usize,
    pub swapped: usize,
    /// Rows without a label, left out of every figure.
    pub unlabelled: usize,
    /// Scored rows whose scenario is in no group (counted in the overall figures only).
    pub ungrouped: usize,
    /// Groups that have rows.
    pub per_group: BTreeMap<String, GroupMetrics>,
    /// The names in `per_group`, in the groups' own order (the order tables print).
    pub group_order: Vec<String>,
}

/// Running counts, as the original's `scenario_wise_results`.
#[derive(Clone, Copy, Default)]
struct Tally {
    rows: usize,
    correct: usize,
    swapped: usize,
    disagree: usize,
    unparsed: usize,
}

impl Tally {
    fn add(&mut self, label: Winner, row: &Judged) {
        self.rows += 1;
        let verdict = row.verdict;
        let right = |verdict: Option<Winner>| verdict == Some(label);
        match row.swapped_verdict {
            None => {
                self.correct += usize::from(right(verdict));
                self.unparsed += usize::from(verdict.is_none());
            }
            Some(swapped) => {
                self.swapped += 1;
                self.correct += usize::from(right(verdict) && right(swapped));
                self.disagree += usize::from(verdict.is_none() || swapped != verdict);
                self.unparsed += usize::from(verdict.is_none() || swapped.is_none());
            }
        }
    }

    fn metrics(&self) -> GroupMetrics {
        // The original's `100 * count / float(total)` and `100 * (1 - count / float(total))`,
        // in the same operation order so the values match it to the last bit.
        let agreement = (100 * self.correct) as f64 / self.rows as f64;
        let consistency = (self.swapped > 0).then(|| 100.0 * (1.0 - self.disagree as f64 / self.swapped as f64));
        GroupMetrics { rows: self.rows, agreement, consistency, unparsed: self.unparsed, swapped: self.swapped }
    }
}

/// Auto-J's pairwise evaluation of `rows` (see the module documentation).
pub fn pairwise_metrics(rows: &[Judged], groups: &ScenarioGroups) -> Metrics {
    let mut overall = Tally::default();
    let mut per_group = vec![Tally::default(); groups.groups.len()];
    let (mut unlabelled, mut ungrouped) = (0, 0);
    for row in rows {
        let Some(label) = row.label else {
            unlabelled += 1;
            continue;
        };
        overall.add(label, row);
        match row.scenario.as_deref().and_then(|scenario| groups.group_of.get(scenario)) {
            Some(&position) => per_group[position].add(label, row),
            None => ungrouped += 1,
        }
    }
    let scored: Vec<(&str, GroupMetrics)> = groups
        .names()
        .zip(&per_group)
        .filter(|(_, tally)| tally.rows > 0)
        .map(|(name, tally)| (name, tally.metrics()))
        .collect();
    let GroupMetrics { rows, agreement, consistency, unparsed, swapped } = overall.metrics();
    Metrics {
        rows,
        agreement,
        consistency,
        unparsed,
        swapped,
        unlabelled,
        ungrouped,
        group_order: scored.iter().map(|(name, _)| name.to_string()).collect(),
        per_group: scored.into_iter().map(|(name, metrics)| (name.to_string(), metrics)).collect(),
    }
}

/// A percentage as `pairwise_eval.py` prints it: Python's `str(round(x, 2))` (correctly
/// rounded, ties to even; shortest digits; `100.0`, not `100`).
pub fn python_round2(x: f64) -> String {
    // `{:.2}` rounds the exact binary value to nearest, ties to even, as Python's `round` does.
    let rounded: f64 = format!("{x:.2}").parse().unwrap_or(x);
    let text = rounded.to_string();
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        format!("{text}.0")
    } else {
        text
    }
}

impl Metrics {
    fn overall(&self) -> GroupMetrics {
        GroupMetrics {
            rows: self.rows,
            agreement: self.agreement,
            consistency: self.consistency,
            unparsed: self.unparsed,
            swapped: self.swapped,
        }
    }

    /// The groups in order, then the overall row (named [`OVERALL`]).
    pub fn table_rows(&self) -> impl Iterator<Item = (&str, GroupMetrics)> {
        let groups = self.group_order.iter().map(|name| (name.as_str(), self.per_group[name].clone()));
        groups.chain(std::iter::once((OVERALL, self.overall())))
    }

    /// Exactly what `pairwise_eval.py` prints for these figures: a tab-separated header, a rule,
    /// one line per group, a rule and `Overall`; consistency `-` without swapped rows.
    pub fn original_table(&self) -> String {
        const RULE: &str = "----------------------------\n";
        let mut out = String::from("Group Name\tAgreement\tConsistency\n");
        out.push_str(RULE);
        for (name, metrics) in self.table_rows() {
            if name == OVERALL {
                out.push_str(RULE);
            }
            let consistency = metrics.consistency.map_or_else(|| "-".to_string(), python_round2);
            out.push_str(&format!("{name}\t{}\t{consistency}\n", python_round2(metrics.agreement)));
        }
        out
    }
}

/// An aligned table: rows, agreement, consistency and unparsed per group and overall, then
/// notes on rows left out.
impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rows == 0 {
            return writeln!(f, "no labelled rows to score ({} without a label)", self.unlabelled);
        }
        let width = self.group_order.iter().map(String::len).max().unwrap_or(0).max(OVERALL.len());
        let line = |f: &mut fmt::Formatter<'_>, cells: [&str; 5]| {
            let [name, rows, agreement, consistency, unparsed] = cells;
            writeln!(f, "{name:<width$}  {rows:>6}  {agreement:>9}  {consistency:>11}  {unparsed:>8}")
        };
        line(f, ["group", "rows", "agreement", "consistency", "unparsed"])?;
        for (name, metrics) in self.table_rows() {
            if name == OVERALL {
                writeln!(f, "{}", "-".repeat(width + 42))?;
            }
            let agreement = format!("{:.2}", metrics.agreement);
            let consistency = metrics.consistency.map_or_else(|| "-".to_string(), |c| format!("{c:.2}"));
            line(f, [name, &metrics.rows.to_string(), &agreement, &consistency, &metrics.unparsed.to_string()])?;
        }
        if self.unlabelled > 0 {
            writeln!(f, "{} rows without a label were not scored", self.unlabelled)?;
        }
        if self.ungrouped > 0 {
            writeln!(f, "{} rows have a scenario outside the groups (counted in Overall only)", self.ungrouped)?;
        }
        Ok(())
    }
}
