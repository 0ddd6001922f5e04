//! The Python package's native module, `webjudge._native` (feature `python`, built by maturin
//! from pyproject.toml): the judge layer's functions and types as Python calls them. The
//! package's Python half (`python/webjudge/`) turns dicts into the JSON these take and
//! records back into dicts; nothing here judges, renders or parses by itself.
//!
//! - this file: the model-free functions (`render`, `parse`, `report`, `protocols`), errors;
//! - `judge.rs`: `NativeJudge`, a loaded model (`engine::native::load_path`, as the CLI loads);
//! - `file_run.rs`: `FileRun`, a test-data file judged into an output file by workers
//!   elsewhere (Ray actors), resumed and ordered as `webjudge judge --output` does;
//! - `calls.rs`: Python callbacks and Ctrl-C during generation, which runs without the GIL.

mod calls;
mod file_run;
mod judge;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use crate::format::ChatTemplate;
use crate::judge::report::report as judge_report;
use crate::judge::session::Verdict;
use crate::judge::{model_input, Item, Protocol, Rubric};

create_exception!(webjudge, WebjudgeError, PyException, "An error of webjudge's engine or judges, with its message.");

/// Any of the engine's errors as a `WebjudgeError` with the same message the CLI prints.
fn error(error: impl std::fmt::Display) -> PyErr {
    WebjudgeError::new_err(error.to_string())
}

fn protocol(name: &str) -> PyResult<Protocol> {
    name.parse().map_err(error)
}

fn rubric(text: Option<&str>) -> PyResult<Option<Rubric>> {
    text.map(Rubric::from_argument).transpose().map_err(error)
}

fn json(text: &str) -> PyResult<serde_json::Value> {
    serde_json::from_str(text).map_err(error)
}

/// The item of a test-data row (JSON) for `protocol`, given `rubric` where it has none.
fn row_item(protocol: Protocol, row: &str, rubric_text: Option<&str>) -> PyResult<Item> {
    let item = Item::from_row(&json(row)?, protocol).map_err(error)?;
    Ok(match (item.rubric(), rubric(rubric_text)?) {
        (None, Some(rubric)) => item.with_rubric(rubric),
        _ => item,
    })
}

/// `webjudge prompt --protocol P [--rubric R]` for one row: the model input in LLaMA-2's
/// `[INST] … [/INST]` wrapper (Auto-J's and Prometheus 2's).
#[pyfunction]
#[pyo3(signature = (protocol_name, row, rubric_text=None))]
fn render(protocol_name: &str, row: &str, rubric_text: Option<&str>) -> PyResult<String> {
    let protocol = protocol(protocol_name)?;
    let item = row_item(protocol, row, rubric_text)?;
    model_input(protocol, &item, Some(&ChatTemplate::llama2())).map_err(error)
}

/// `webjudge parse --protocol P` for one critique: the verdict as JSON.
#[pyfunction]
fn parse(protocol_name: &str, critique: &str) -> PyResult<String> {
    serde_json::to_string(&Verdict::parse(protocol(protocol_name)?, critique)).map_err(error)
}

/// The report `webjudge judge --input` prints at the end, over an output's records.
#[pyfunction]
fn report(protocol_name: &str, output: &[u8]) -> PyResult<String> {
    let mut text = Vec::new();
    judge_report(protocol(protocol_name)?, output, &mut text).map_err(error)?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// `protocol`'s template, as its judge's own code spells it (prometheus-eval's
/// `ABSOLUTE_PROMPT`, …).
#[pyfunction]
fn template(protocol_name: &str) -> PyResult<&'static str> {
    Ok(protocol(protocol_name)?.template())
}

/// A rubric's text in a Prometheus prompt (`relative`: its first line, as prometheus-eval's
/// `load_rubric(name, "relative")` cuts a built-in one).
#[pyfunction]
fn rubric_text(rubric_text: &str, relative: bool) -> PyResult<String> {
    Rubric::from_argument(rubric_text).and_then(|rubric| rubric.text(relative)).map_err(error)
}

/// Every protocol's name.
#[pyfunction]
fn protocols() -> Vec<&'static str> {
    Protocol::ALL.iter().map(Protocol::name).collect()
}

/// Every part's file name of the llama.cpp split model `file_name` is a part of
/// (`NAME-00002-of-00003.gguf`: its three parts', in order), as the native loader finds them;
/// `None` for a file name of no split model.
#[pyfunction]
fn split_part_names(file_name: &str) -> Option<Vec<String>> {
    let (_, count, part_name) = crate::format::gguf::split_name(file_name)?;
    Some((1..=count).map(part_name).collect())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("WebjudgeError", m.py().get_type::<WebjudgeError>())?;
    m.add_function(wrap_pyfunction!(render, m)?)?;
    m.add_function(wrap_pyfunction!(parse, m)?)?;
    m.add_function(wrap_pyfunction!(report, m)?)?;
    m.add_function(wrap_pyfunction!(protocols, m)?)?;
    m.add_function(wrap_pyfunction!(template, m)?)?;
    m.add_function(wrap_pyfunction!(rubric_text, m)?)?;
    m.add_function(wrap_pyfunction!(split_part_names, m)?)?;
    m.add("SCORE_RUBRIC_TEMPLATE", Rubric::SCORE_RUBRIC_TEMPLATE)?;
    m.add("MAX_SEQUENCES", crate::model::MAX_SEQUENCES)?;
    m.add_class::<calls::Cancel>()?;
    m.add_class::<judge::NativeJudge>()?;
    m.add_class::<file_run::FileRun>()?;
    Ok(())
}
