//! Auto-J's own data for the tests: the excerpt kept in the repository (`tests/fixtures/autoj/`,
//! always there) and Auto-J's original files (whole test sets, templates, scenario groups)
//! where they are present.
//!
//! The originals are looked for in the directory `WEBJUDGE_AUTOJ_DIR` names, else in
//! `../shared/autoj` beside the checkout (CI's layout). Without them a test that needs them
//! prints one line saying it was skipped and why, and passes; a `WEBJUDGE_AUTOJ_DIR` naming a
//! directory that does not exist fails it instead, since the originals were asked for.

#![allow(dead_code)] // each test binary uses part of this module

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// Names the directory holding Auto-J's `data/`, `templates/` and `scenario_groups.json`.
pub const DIR_VARIABLE: &str = "WEBJUDGE_AUTOJ_DIR";

/// Auto-J's code's own rendering of its example input for each protocol (a verbatim copy).
pub const RENDERED_EXAMPLES: &str = include_str!("../fixtures/autoj/rendered_examples.json");

const EXCERPT_ROWS: &str = include_str!("../fixtures/autoj/rows.jsonl");

/// One test-set row kept in the excerpt: the set, the row's 1-based line in the set's file, the row.
#[derive(Deserialize)]
pub struct ExcerptRow {
    pub set: String,
    pub line: usize,
    pub row: Value,
}

/// Every row of the excerpt.
pub fn excerpt_rows() -> Vec<ExcerptRow> {
    EXCERPT_ROWS.lines().map(|line| serde_json::from_str(line).expect("tests/fixtures/autoj/rows.jsonl")).collect()
}

/// The excerpt's rows of one test set (`testdata_pairwise`, `testdata_critique`,
/// `zh_testdata_critique`), in file order.
pub fn excerpt_set(set: &str) -> Vec<Value> {
    let rows: Vec<Value> = excerpt_rows().into_iter().filter(|kept| kept.set == set).map(|kept| kept.row).collect();
    assert!(!rows.is_empty(), "tests/fixtures/autoj/rows.jsonl has no row of {set}");
    rows
}

/// The row at `line` (1-based) of a test set, from the excerpt.
pub fn excerpt_row(set: &str, line: usize) -> Value {
    let kept = excerpt_rows().into_iter().find(|kept| kept.set == set && kept.line == line);
    kept.unwrap_or_else(|| panic!("{set} line {line} is not in the excerpt: rerun tools/reference/autoj_excerpt.py"))
        .row
}

/// The directory of Auto-J's original files.
pub struct Originals {
    dir: PathBuf,
}

impl Originals {
    /// The originals, or `None` after printing the line that says the calling test was skipped.
    pub fn find() -> Option<Self> {
        if let Some(dir) = std::env::var_os(DIR_VARIABLE).filter(|dir| !dir.is_empty()) {
            let dir = PathBuf::from(dir);
            assert!(dir.is_dir(), "{DIR_VARIABLE}={}: no such directory", dir.display());
            return Some(Originals { dir });
        }
        let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/autoj");
        if beside.is_dir() {
            return Some(Originals { dir: beside });
        }
        // libtest names each test's thread after the test.
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("a test");
        // Straight to stderr: libtest captures what `eprintln!` prints in a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "skipped {test}: it needs Auto-J's original files, not found in {} (set {DIR_VARIABLE} to their directory)",
            beside.display()
        );
        None
    }

    /// An original file's text; `relative` to the directory, e.g. `data/testdata_pairwise.jsonl`.
    pub fn text(&self, relative: &str) -> String {
        let path = self.dir.join(relative);
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    /// Every row of one of Auto-J's test sets, in file order.
    pub fn test_set(&self, set: &str) -> Vec<Value> {
        let text = self.text(&format!("data/{set}.jsonl"));
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{set}: {error}")))
            .collect()
    }
}
