//! Judging a test-data file's rows into records, as every front end that judges a file does it:
//! the rows read for the run's protocol with the run's rubric ([`read_rows`]), and the loop
//! that judges them together and hands each finished row's record to a writer
//! ([`judge_rows`]), which may stop the run. The CLI's `judge --input` and the Python package
//! (its `judge_batch` and its Ray actors) share both; the protocol comes from
//! [`super::policy::ProtocolRequest::for_batch`], the file's life from [`super::output`].

use super::dataset::{parse_row_as, parse_rows, DatasetError, Record, Row};
use super::output::RunOptions;
use super::protocol::{render, Item, Protocol, ProtocolError, Rubric};
use super::session::{Judge, JudgeError, JudgeEvent, JudgeOptions, Order};

/// A row that cannot be judged with the run's protocol.
#[derive(Debug, thiserror::Error)]
pub enum RowsError {
    #[error(transparent)]
    Row(#[from] DatasetError),
    #[error("row {index}: {source}")]
    Render { index: usize, source: ProtocolError },
}

/// The first `limit` rows of a test-data file's text (all with `None`) read for `protocol`,
/// those without a rubric given `rubric`, each checked to render (a missing rubric or
/// reference answer is refused before any model loads).
pub fn read_rows(
    text: &str,
    protocol: Protocol,
    rubric: Option<&Rubric>,
    limit: Option<usize>,
) -> Result<Vec<Row>, RowsError> {
    // Every row is read (a bad one is reported wherever it is), the first `limit` judged.
    let rows: Vec<Row> = parse_rows(text.lines(), Some(protocol)).collect::<Result<_, _>>()?;
    rows.into_iter().take(limit.unwrap_or(usize::MAX)).map(|row| ready(row, rubric)).collect()
}

/// One row (a test-data file's line) with its `index` in the file, read as [`read_rows`]
/// reads each: what a worker judging part of a file (a Ray actor) is handed.
pub fn read_row(line: &str, index: usize, protocol: Protocol, rubric: Option<&Rubric>) -> Result<Row, RowsError> {
    ready(parse_row_as(line, index, Some(protocol))?, rubric)
}

/// `row` with the run's rubric where it has none, checked to render.
fn ready(mut row: Row, rubric: Option<&Rubric>) -> Result<Row, RowsError> {
    if let (None, Some(rubric)) = (row.item.rubric(), rubric) {
        row.item = row.item.clone().with_rubric(rubric.clone());
    }
    render(row.protocol, &row.item).map_err(|source| RowsError::Render { index: row.index, source })?;
    Ok(row)
}

/// What [`judge_rows`] reports.
pub enum RunEvent<'a> {
    /// Newly completed critique text of the row at `rows[position]`, in one of its orders.
    Text { position: usize, order: Order, text: &'a str },
    /// A row is judged, or could not be (too long for the context): its record (boxed: a
    /// record is large beside a piece of text).
    Judged(Box<Record<'a>>),
}

/// Why [`judge_rows`] ended early.
#[derive(Debug, thiserror::Error)]
pub enum RunStopped<E> {
    /// The engine failed (a GPU error): rows finished before it were reported.
    #[error(transparent)]
    Judge(#[from] JudgeError),
    /// `on_event` returned this error.
    #[error(transparent)]
    Caller(E),
}

/// Judges `rows` with `protocol`, up to the engine's sequence slots at a time (each pair in
/// both orders with `swap`), and reports critique text as it comes and each row's record
/// (carrying `run`) as soon as the row is done, in the order rows finish. The first error
/// `on_event` returns (a record that cannot be written, an interrupt) cancels the engine at
/// once, since judging on would only discard the results, and is returned; so does a cancel
/// through `options.cancel`. Records of rows cut short by either are not reported, so a
/// resumed run judges them again.
pub async fn judge_rows<'a, E>(
    judge: &mut Judge,
    protocol: Protocol,
    rows: &[&'a Row],
    swap: bool,
    run: Option<&'a RunOptions>,
    options: &JudgeOptions,
    on_event: &mut dyn FnMut(RunEvent<'_>) -> Result<(), E>,
) -> Result<(), RunStopped<E>> {
    let stop = options.cancel.clone().unwrap_or_default();
    let options = JudgeOptions { cancel: Some(stop.clone()), ..options.clone() };
    let items: Vec<Item> = rows.iter().map(|row| row.item.clone()).collect();
    let mut failed = None;
    let mut report = |position: usize, event: JudgeEvent| {
        if stop.is_cancelled() {
            return;
        }
        let event = match event {
            JudgeEvent::Text(order, text) => RunEvent::Text { position, order, text },
            JudgeEvent::Judged(outcome) => RunEvent::Judged(Box::new(Record::new(rows[position], outcome, run))),
        };
        if let Err(error) = on_event(event) {
            failed = Some(error);
            stop.cancel();
        }
    };
    let judged = judge.judge_batch(protocol, &items, swap, &options, &mut report).await;
    match failed {
        Some(error) => Err(RunStopped::Caller(error)),
        None => Ok(judged?),
    }
}
