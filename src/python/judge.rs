//! `NativeJudge`: a model loaded as the CLI loads it, judging one item (the page's `pairwise`,
//! `single`, `rubric`, `compare`) or rows into the CLI's records.

use std::path::PathBuf;

use pyo3::prelude::*;

use super::calls::{call_back, call_back_between_tokens, Cancel};
use super::{error, protocol, row_item, rubric};
use crate::engine;
use crate::engine::native::{load_path, read_manifest};
use crate::format::JudgeFamily;
use crate::judge::dataset::Row;
use crate::judge::output::RunOptions;
use crate::judge::policy::{rubric_family, ProtocolRequest};
use crate::judge::run::{judge_rows, read_row, RunEvent, RunStopped};
use crate::judge::session::{tokenized_input, Judge, JudgeOptions, Order};
use crate::judge::{render, Item};
use crate::kernels::{GpuOptions, MatvecPath};
use crate::model::LoadOptions;

#[pyclass(module = "webjudge._native")]
pub struct NativeJudge {
    judge: Judge,
    /// The model's identity in records ([`RunOptions::model_id`]).
    model_id: String,
    /// The context a record's run names: `context` as asked for, else the model's.
    run_context: usize,
}

/// What a one-item call asks for: the family of its method (`pairwise`/`single`: Auto-J's;
/// `rubric`/`compare`: as the page's methods choose, [`rubric_family`]).
fn method_family(method: &str, model: Option<JudgeFamily>) -> PyResult<JudgeFamily> {
    match method {
        "pairwise" | "single" => Ok(JudgeFamily::AutoJ),
        "rubric" | "compare" => rubric_family(None, model).map_err(error),
        other => Err(error(format!("no judging method {other:?}"))),
    }
}

impl NativeJudge {
    fn options(&self, max_new_tokens: usize, truncate: bool, cancel: &engine::Cancel) -> JudgeOptions {
        JudgeOptions { max_new_tokens, truncate, cancel: Some(cancel.clone()) }
    }

    fn family(&self) -> Option<JudgeFamily> {
        self.judge.engine().manifest.judge
    }

    fn matvec_path(&self) -> MatvecPath {
        self.judge.engine().model().gpu().matvec
    }
}

#[pymethods]
impl NativeJudge {
    /// Loads a model as `webjudge judge --model PATH` does (`engine::native::load_path`: a model directory or a GGUF file), with
    /// KV cache slots for `sequences` rows decoded together, of `context` positions each
    /// (default: `slot_context` when given, at most the model's, else the model's).
    #[staticmethod]
    #[pyo3(signature = (path, sequences=1, context=None, slot_context=None, prefill_chunk=None, subgroups=true, matvec="exact"))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments
    fn load(
        py: Python<'_>,
        path: PathBuf,
        sequences: usize,
        context: Option<usize>,
        slot_context: Option<usize>,
        prefill_chunk: Option<usize>,
        subgroups: bool,
        matvec: &str,
    ) -> PyResult<Self> {
        let matvec: MatvecPath = matvec.parse().map_err(error)?;
        let (manifest, bytes) = read_manifest(&path).map_err(error)?;
        let run_context = context.unwrap_or(manifest.architecture.context_length);
        let engine = py
            .allow_threads(|| {
                load_path(
                    &path,
                    GpuOptions { allow_subgroups: subgroups, matvec, ..Default::default() },
                    |defaults| {
                        let chunk = prefill_chunk.unwrap_or(defaults.prefill_chunk);
                        LoadOptions { prefill_chunk: chunk, ..defaults }.for_batch(sequences, context, slot_context)
                    },
                    &mut |_, _| {},
                )
            })
            .map_err(error)?;
        Ok(NativeJudge { judge: Judge::new(engine), model_id: RunOptions::model_id(&bytes), run_context })
    }

    /// The model's judge family (its manifest's), or `None`.
    #[getter(family)]
    fn family_name(&self) -> Option<&'static str> {
        self.family().map(|family| family.name())
    }

    /// The GPU adapter the model runs on.
    #[getter]
    fn adapter(&self) -> String {
        self.judge.engine().model().gpu().describe()
    }

    /// Sequence slots decoded together.
    #[getter]
    fn sequences(&self) -> usize {
        self.judge.engine().model().sequences()
    }

    /// How the decode matvecs multiply x: `exact` or `int8`.
    #[getter]
    fn matvec(&self) -> &'static str {
        self.matvec_path().name()
    }

    /// The exact model input for a row and the ids the judge feeds for it
    /// (`webjudge prompt --model DIR --ids`).
    #[pyo3(signature = (protocol_name, row, rubric_text=None))]
    fn prompt(&self, protocol_name: &str, row: &str, rubric_text: Option<&str>) -> PyResult<(String, Vec<u32>)> {
        let protocol = protocol(protocol_name)?;
        let item = row_item(protocol, row, rubric_text)?;
        let engine = self.judge.engine();
        tokenized_input(&engine.tokenizer, engine.manifest.chat_template.as_ref(), protocol, &item).map_err(error)
    }

    /// Judges one item as `webjudge judge --query …` does: `responses` is a pair or one
    /// response; `method` (`pairwise`, `single`, `rubric`, `compare`) picks the family when no
    /// protocol is named. Returns the judgement as JSON; `on_text(piece)`, or with `swap`
    /// `on_text(piece, order)` (`"forward"`, `"swapped"`), receives the critique as it comes.
    #[pyo3(signature = (
        method, query, responses, protocol_name=None, rubric_text=None, reference_answer=None,
        swap=false, max_new_tokens=crate::judge::policy::DEFAULTS.max_new_tokens, truncate=false,
        on_text=None, cancel=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn judge_item(
        &mut self,
        py: Python<'_>,
        method: &str,
        query: String,
        responses: Vec<String>,
        protocol_name: Option<&str>,
        rubric_text: Option<&str>,
        reference_answer: Option<String>,
        swap: bool,
        max_new_tokens: usize,
        truncate: bool,
        on_text: Option<PyObject>,
        cancel: Option<Cancel>,
    ) -> PyResult<String> {
        let item = match <[String; 2]>::try_from(responses) {
            Ok([response1, response2]) => Item::pair(query, response1, response2),
            Err(responses) => match <[String; 1]>::try_from(responses) {
                Ok([response]) => Item::single(query, response),
                Err(responses) => {
                    return Err(error(format!("give two responses or one, not {}", responses.len())));
                }
            },
        };
        let rubric = rubric(rubric_text)?;
        let request = ProtocolRequest {
            named: protocol_name.map(protocol).transpose()?,
            asked: Some(method_family(method, self.family())?),
            model: self.family(),
            pairwise: item.is_pair(),
            reference: reference_answer.is_some(),
            answer: matches!(rubric, Some(crate::judge::Rubric::Binary(_))),
            ..ProtocolRequest::default()
        };
        let protocol = request.choose_served(swap).map_err(error)?;
        let item = match rubric {
            Some(rubric) => item.with_rubric(rubric),
            None => item,
        };
        let item = match reference_answer {
            Some(answer) => item.with_reference_answer(answer),
            None => item,
        };
        render(protocol, &item).map_err(error)?;
        let cancel = cancel.map(|c| c.0).unwrap_or_default();
        let options = self.options(max_new_tokens, truncate, &cancel);
        let judge = &mut self.judge;
        let mut failed = None;
        let judged = py.allow_threads(|| {
            let on_text = on_text.as_ref();
            if swap {
                let mut on_piece = |order: Order, piece: &str| {
                    let order = if order == Order::Forward { "forward" } else { "swapped" };
                    call_back_between_tokens(on_text, (piece.to_owned(), order), &cancel, &mut failed);
                };
                pollster::block_on(judge.judge_swapped(protocol, &item, &options, &mut on_piece))
                    .map(|pair| serde_json::to_string(&pair))
            } else {
                let mut on_piece =
                    |piece: &str| call_back_between_tokens(on_text, (piece.to_owned(),), &cancel, &mut failed);
                pollster::block_on(judge.judge(protocol, &item, &options, &mut on_piece))
                    .map(|one| serde_json::to_string(&one))
            }
        });
        if let Some(failed) = failed {
            return Err(failed);
        }
        judged.map_err(error)?.map_err(error)
    }

    /// Judges rows (each its index and its test-data line as JSON) as `webjudge judge --input`
    /// does, and returns their records (JSON, in index order). The protocol is `protocol_name`,
    /// else chosen from the first row as the CLI chooses it; `run`, a record's run options as
    /// JSON, is given by a whole-file run (its protocol, rubric, swap and critique length are
    /// then the run's), else made for this model with no input file. `on_record(record)` gets
    /// each record as its row finishes; `on_text(position, order, piece)` the critiques.
    #[pyo3(signature = (
        rows, protocol_name=None, rubric_text=None, swap=false,
        max_new_tokens=crate::judge::policy::DEFAULTS.max_new_tokens, truncate=false, run=None,
        on_record=None, on_text=None, cancel=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn judge_rows(
        &mut self,
        py: Python<'_>,
        rows: Vec<(usize, String)>,
        protocol_name: Option<&str>,
        rubric_text: Option<&str>,
        swap: bool,
        max_new_tokens: usize,
        truncate: bool,
        run: Option<&str>,
        on_record: Option<PyObject>,
        on_text: Option<PyObject>,
        cancel: Option<Cancel>,
    ) -> PyResult<Vec<String>> {
        let run = match run {
            Some(run) => serde_json::from_str::<RunOptions>(run).map_err(error)?,
            None => {
                let rubric = rubric(rubric_text)?;
                let first = rows.first().and_then(|(index, line)| crate::judge::dataset::parse_row(line, *index).ok());
                let request = ProtocolRequest::for_batch(self.family(), first.as_ref(), rubric.as_ref());
                let named = protocol_name.map(protocol).transpose()?;
                RunOptions {
                    protocol: ProtocolRequest { named, ..request }.choose_served(swap).map_err(error)?,
                    rubric,
                    swap,
                    model: self.model_id.clone(),
                    max_new_tokens,
                    context: self.run_context,
                    truncate,
                    matvec: self.matvec_path(),
                    input: None,
                }
            }
        };
        if run.matvec != self.matvec_path() {
            let (run, loaded) = (run.matvec.name(), self.matvec_path().name());
            return Err(error(format!(
                "the run's records are made with matvec {run:?}, this judge was loaded with {loaded:?}"
            )));
        }
        let rows: Vec<Row> = rows
            .iter()
            .map(|(index, line)| read_row(line, *index, run.protocol, run.rubric.as_ref()))
            .collect::<Result<_, _>>()
            .map_err(error)?;
        let cancel = cancel.map(|c| c.0).unwrap_or_default();
        let options = self.options(run.max_new_tokens, run.truncate, &cancel);
        let judge = &mut self.judge;
        let run = &run;
        let mut records: Vec<(usize, String)> = Vec::with_capacity(rows.len());
        let row_refs: Vec<&Row> = rows.iter().collect();
        let judged = py.allow_threads(|| {
            let mut on_event = |event: RunEvent| -> PyResult<()> {
                match event {
                    RunEvent::Text { position, order, text } => {
                        let order = if order == Order::Forward { "forward" } else { "swapped" };
                        Python::with_gil(|py| call_back(py, on_text.as_ref(), (position, order, text.to_owned())))
                    }
                    RunEvent::Judged(record) => {
                        let line = serde_json::to_string(&record).map_err(error)?;
                        let index = record.index;
                        Python::with_gil(|py| call_back(py, on_record.as_ref(), (line.clone(),)))?;
                        records.push((index, line));
                        Ok(())
                    }
                }
            };
            pollster::block_on(judge_rows(judge, run.protocol, &row_refs, run.swap, Some(run), &options, &mut on_event))
        });
        match judged {
            Ok(()) => {}
            Err(RunStopped::Caller(failed)) => return Err(failed),
            Err(RunStopped::Judge(failed)) => return Err(error(failed)),
        }
        if cancel.is_cancelled() {
            return Err(error("cancelled"));
        }
        records.sort_by_key(|(index, _)| *index);
        Ok(records.into_iter().map(|(_, line)| line).collect())
    }
}
