//! `FileRun`: a test-data file judged into an output file whose rows are judged elsewhere (Ray
//! actors, each with its own `NativeJudge`), held by the process that writes the file. Opening
//! does what `webjudge judge --input … --output …` does before it loads the model: the
//! protocol from the first row, every row read and checked, the run's options, the output
//! opened (locked, resumed: rows already judged are not handed out again) and the KV positions
//! a slot needs; records are appended as workers hand them back, and finishing puts them in
//! input order and returns the CLI's report.

use std::path::PathBuf;

use pyo3::prelude::*;

use super::{error, protocol, rubric};
use crate::engine::native::{read_manifest, read_tokenizer};
use crate::format::checked_file;
use crate::judge::dataset::{parse_rows, row_lines};
use crate::judge::output::file::OutputFile;
use crate::judge::output::{InputIdentity, RunOptions};
use crate::judge::policy::{slot_context, ProtocolRequest};
use crate::judge::report::report;
use crate::judge::run::read_rows;
use crate::kernels::MatvecPath;
use crate::model::check_context;

#[pyclass(module = "webjudge._native")]
pub struct FileRun {
    /// `None` once finished.
    file: Option<OutputFile>,
    run: RunOptions,
    /// The rows still to judge: each one's index and its line of the input.
    todo: Vec<(usize, String)>,
    /// Rows an earlier run already judged.
    done: usize,
    /// KV cache positions a slot needs for the rows to judge (`policy::slot_context`).
    slot_context: usize,
    /// What resuming did, as the CLI says it on standard error.
    notes: Vec<String>,
}

#[pymethods]
impl FileRun {
    /// Opens a run of `model` over `input` into `output`, as `webjudge judge --model MODEL
    /// --input INPUT --output OUTPUT` with the same options would.
    #[staticmethod]
    #[pyo3(signature = (
        input, output, model, protocol_name=None, rubric_text=None, swap=false,
        max_new_tokens=crate::judge::policy::DEFAULTS.max_new_tokens, truncate=false, context=None, limit=None,
        matvec="exact"
    ))]
    #[allow(clippy::too_many_arguments)]
    fn open(
        input: PathBuf,
        output: PathBuf,
        model: PathBuf,
        protocol_name: Option<&str>,
        rubric_text: Option<&str>,
        swap: bool,
        max_new_tokens: usize,
        truncate: bool,
        context: Option<usize>,
        limit: Option<usize>,
        matvec: &str,
    ) -> PyResult<Self> {
        let matvec: MatvecPath = matvec.parse().map_err(error)?;
        let (manifest, manifest_bytes) = read_manifest(&model).map_err(error)?;
        let rubric = rubric(rubric_text)?;
        let bytes = checked_file::read(&input, checked_file::TEXT_INPUT).map_err(error)?;
        let text =
            std::str::from_utf8(&bytes).map_err(|e| error(format!("{}: not UTF-8 text: {e}", input.display())))?;
        let first = parse_rows(text.lines(), None).next().and_then(Result::ok);
        let request = ProtocolRequest::for_batch(manifest.judge, first.as_ref(), rubric.as_ref());
        let named = protocol_name.map(protocol).transpose()?;
        let protocol = ProtocolRequest { named, ..request }.choose_served(swap).map_err(error)?;
        let rows = read_rows(text, protocol, rubric.as_ref(), limit)
            .map_err(|e| error(format!("{}: {e}", input.display())))?;
        let architecture = &manifest.architecture;
        let context = context.unwrap_or(architecture.context_length);
        check_context(architecture, context).map_err(error)?;
        let run = RunOptions {
            protocol,
            rubric,
            swap,
            model: RunOptions::model_id(&manifest_bytes),
            max_new_tokens,
            context,
            truncate,
            matvec,
            input: Some(InputIdentity::of(&input.display().to_string(), &bytes)),
        };
        let (file, resume) = OutputFile::open(&output, &run, Some(&input)).map_err(error)?;
        let mut notes = Vec::new();
        if let Some(line) = resume.torn_line {
            notes.push(format!("{}: dropping the incomplete record on line {line}", output.display()));
        }
        if !resume.retried.is_empty() {
            let count = resume.retried.len();
            notes.push(format!("{}: judging again {count} rows that failed under other options", output.display()));
        }
        let todo_rows: Vec<_> = rows.iter().filter(|row| !resume.done.contains(&row.index)).collect();
        let mut slot = context;
        if !todo_rows.is_empty() {
            let tokenizer = read_tokenizer(&model).map_err(error)?;
            let items = todo_rows.iter().map(|row| &row.item);
            let template = manifest.chat_template.as_ref();
            slot = slot_context(&tokenizer, template, protocol, items, swap, max_new_tokens, run.context)
                .map_err(error)?;
        }
        let lines: Vec<&str> = row_lines(text.lines()).map(|(_, _, line)| line).collect();
        let todo = todo_rows.iter().map(|row| (row.index, lines[row.index].to_owned())).collect();
        let done = resume.done.len();
        Ok(FileRun { file: Some(file), run, todo, done, slot_context: slot, notes })
    }

    /// The rows to judge: each one's index and its line of the input.
    #[getter]
    fn todo(&self) -> Vec<(usize, String)> {
        self.todo.clone()
    }

    #[getter]
    fn done(&self) -> usize {
        self.done
    }

    /// The run's options as a record carries them (JSON): what workers judge with.
    #[getter]
    fn run(&self) -> PyResult<String> {
        serde_json::to_string(&self.run).map_err(error)
    }

    #[getter]
    fn protocol(&self) -> &'static str {
        self.run.protocol.name()
    }

    #[getter]
    fn slot_context(&self) -> usize {
        self.slot_context
    }

    #[getter]
    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    /// Appends a record (JSON, as a worker's `judge_rows` returned it) to the output.
    fn append(&mut self, record: &str) -> PyResult<()> {
        self.file.as_mut().ok_or_else(|| error("the run is finished"))?.append_json(record).map_err(error)
    }

    /// Ends the run: the output put in input order, its lock released; returns the report
    /// `webjudge judge` prints.
    fn finish(&mut self) -> PyResult<String> {
        let file = self.file.take().ok_or_else(|| error("the run is finished"))?;
        let bytes = file.finish().map_err(error)?;
        let mut text = Vec::new();
        report(self.run.protocol, &bytes, &mut text).map_err(error)?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    /// Releases the output's lock without reordering it (an interrupted run: resuming reorders).
    fn close(&mut self) {
        self.file = None;
    }
}
