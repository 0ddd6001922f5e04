//! `webjudge judge`: one item with a streamed critique, or a whole test-data file with
//! progress, resume and the judge's metrics (Auto-J's agreement/consistency; Prometheus 2's
//! accuracy or score correlations).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use webjudge::engine::native::{read_manifest, read_tokenizer};
use webjudge::format::Manifest;
use webjudge::judge::dataset::{parse_rows, Record, Row};
use webjudge::judge::output::file::OutputFile;
use webjudge::judge::output::{InputIdentity, RunOptions};
use webjudge::judge::policy::{slot_context, ProtocolRequest, DEFAULTS};
use webjudge::judge::report::report;
use webjudge::judge::run::{judge_rows, read_rows, RunEvent, RunStopped};
use webjudge::judge::session::{Judge, JudgeOptions, Order};
use webjudge::judge::{render, Item, JudgeFamily, Protocol, ProtocolError, Rubric};
use webjudge::model::{check_context, LoadError, MAX_SEQUENCES};

use super::load::ModelArgs;
use super::{outln, CliResult};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// pairwise_tie (or pairwise), single, zh_pairwise_tie, zh_single, prometheus_absolute,
    /// prometheus_absolute_ref, prometheus_relative, prometheus_relative_ref, skywork,
    /// selene_absolute, selene_absolute_ref, selene_pairwise, compassjudger, flowjudge,
    /// flowjudge_ref. Default: the model's judge family's (from its manifest; Auto-J's for
    /// other models), pairwise or not as the item or the first row is.
    #[arg(long)]
    protocol: Option<Protocol>,
    /// The rubric for the item, and for rows without their own: a built-in name (Prometheus:
    /// helpfulness, harmlessness, honesty, factual_validity, reasoning; Flow-Judge: its preset
    /// metrics), a rubric's text, a JSON object with criteria and score1_description to
    /// score5_description (Prometheus, Selene, Flow-Judge), a Flow-Judge metric as JSON
    /// (criteria and rubric: [{score, description}]), or a Yes/No rubric as JSON (criteria,
    /// yes_description, no_description: Selene's classification).
    #[arg(long)]
    rubric: Option<String>,
    /// The item's reference answer (for the *_ref protocols).
    #[arg(long, conflicts_with = "input")]
    reference_answer: Option<String>,
    /// Judge every row of this test-data JSONL file (Auto-J's rows, or each judge's
    /// reference's field names: docs/judges.md).
    #[arg(long, requires = "output", conflicts_with = "query")]
    input: Option<PathBuf>,
    /// Where batch results go, one JSON object per line: a file (an existing one is resumed,
    /// held by one run at a time and left in input order), or `-` for standard output (as
    /// rows finish, no resume; the report goes to standard error).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Judge only the first N rows of the input (0: none; resume, reorder and report only).
    #[arg(
        long,
        allow_negative_numbers = true,
        value_parser = super::flags::whole::<usize>(0..=super::flags::MAX_COUNT)
    )]
    limit: Option<usize>,
    /// Judge each pair in both orders and report whether the verdicts agree.
    #[arg(long)]
    swap: bool,
    /// With --input: rows judged together, at most (with --swap each row is two sequences);
    /// default: as many as the engine decodes together (8) or the adapter's buffers hold.
    #[arg(
        long,
        requires = "input",
        allow_negative_numbers = true,
        value_parser = super::flags::whole::<u16>(1..=MAX_SEQUENCES as u64)
    )]
    batch: Option<u16>,
    /// Shorten responses from the middle when the input does not fit the context.
    #[arg(long)]
    truncate: bool,
    /// Critique tokens at most.
    #[arg(
        long,
        default_value_t = DEFAULTS.max_new_tokens,
        allow_negative_numbers = true,
        value_parser = super::flags::whole::<usize>(1..=super::flags::MAX_COUNT)
    )]
    max_new_tokens: usize,
    /// One item: the user's query.
    #[arg(long)]
    query: Option<String>,
    /// One item: the first response of a pair.
    #[arg(long, requires = "response2")]
    response1: Option<String>,
    /// One item: the second response of a pair.
    #[arg(long, requires = "response1")]
    response2: Option<String>,
    /// One item: the single response to rate.
    #[arg(long, conflicts_with = "response1")]
    response: Option<String>,
}

pub fn run(args: Args) -> CliResult {
    let options =
        JudgeOptions { max_new_tokens: args.max_new_tokens, truncate: args.truncate, ..JudgeOptions::default() };
    let (manifest, manifest_bytes) = read_manifest(&args.model.model)?;
    let rubric = args.rubric.as_deref().map(Rubric::from_argument).transpose()?;
    match (&args.input, &args.query) {
        (Some(input), _) => {
            let output = args.output.clone().expect("clap requires --output with --input");
            let model = ModelFiles { manifest: &manifest, bytes: &manifest_bytes };
            batch(&args, model, rubric, &options, input, &output)
        }
        (None, Some(query)) => single_item(&args, manifest.judge, rubric, &options, query),
        (None, None) => {
            Err("give --input FILE --output FILE, or --query with --response1/--response2 or --response".into())
        }
    }
}

/// The protocol to judge with ([`ProtocolRequest::choose`], the page's rule): `--protocol`,
/// else the model's family's (or the family the data suggests, for a model that is no known
/// judge), `_ref` when there is a reference answer; checked against the model's family and
/// `--swap`.
fn chosen_protocol(args: &Args, request: ProtocolRequest) -> Result<Protocol, ProtocolError> {
    ProtocolRequest { named: args.protocol, ..request }.choose_served(args.swap)
}

fn single_item(
    args: &Args,
    model: Option<JudgeFamily>,
    rubric: Option<Rubric>,
    options: &JudgeOptions,
    query: &str,
) -> CliResult {
    let item = match (&args.response1, &args.response2, &args.response) {
        (Some(response1), Some(response2), None) => Item::pair(query, response1, response2),
        (None, None, Some(response)) => Item::single(query, response),
        _ => return Err("give --response1 and --response2, or --response".into()),
    };
    let protocol = chosen_protocol(
        args,
        ProtocolRequest {
            model,
            suggested: rubric.as_ref().map(Rubric::suggested_family),
            pairwise: item.is_pair(),
            answer: matches!(rubric, Some(Rubric::Binary(_))),
            reference: args.reference_answer.is_some(),
            ..ProtocolRequest::default()
        },
    )?;
    let item = match rubric {
        Some(rubric) => item.with_rubric(rubric),
        None => item,
    };
    let item = match &args.reference_answer {
        Some(answer) => item.with_reference_answer(answer),
        None => item,
    };
    // Refused before the model loads: a missing rubric or reference answer, a wrong kind.
    render(protocol, &item)?;
    let mut judge = Judge::new(args.model.load()?);
    let mut stdout = std::io::stdout().lock();
    let mut print = |piece: &str| {
        let _ = stdout.write_all(piece.as_bytes()).and_then(|()| stdout.flush());
    };
    let record = if args.swap {
        let mut order = None;
        let result = pollster::block_on(judge.judge_swapped(protocol, &item, options, &mut |o, piece| {
            if order != Some(o) {
                order = Some(o);
                print(if o == Order::Forward {
                    "── as given ──\n"
                } else {
                    "\n── responses swapped ──\n"
                });
            }
            print(piece);
        }))?;
        serde_json::to_string(&result)?
    } else {
        serde_json::to_string(&pollster::block_on(judge.judge(protocol, &item, options, &mut print))?)?
    };
    outln!("\n{record}")?;
    Ok(())
}

/// The model directory's manifest as `run` read it once, and its bytes (which name the model
/// in a batch output's records).
#[derive(Clone, Copy)]
struct ModelFiles<'a> {
    manifest: &'a Manifest,
    bytes: &'a [u8],
}

fn batch(
    args: &Args,
    files: ModelFiles,
    rubric: Option<Rubric>,
    options: &JudgeOptions,
    input: &Path,
    output: &Path,
) -> CliResult {
    let bytes = webjudge::format::checked_file::read(input, webjudge::format::checked_file::TEXT_INPUT)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| format!("{}: not UTF-8 text: {e}", input.display()))?;
    let model = files.manifest.judge;
    // The first row's fields suggest a protocol (a bad row is reported when read for it).
    let first = parse_rows(text.lines(), None).next().and_then(Result::ok);
    let protocol = chosen_protocol(args, ProtocolRequest::for_batch(model, first.as_ref(), rubric.as_ref()))?;
    let rows =
        read_rows(text, protocol, rubric.as_ref(), args.limit).map_err(|e| format!("{}: {e}", input.display()))?;

    let run = run_options(args, files, protocol, rubric, InputIdentity::of(&input.display().to_string(), &bytes))?;
    let (mut sink, done) = Sink::open(output, &run, input)?;
    let todo: Vec<&Row> = rows.iter().filter(|row| !done.contains(&row.index)).collect();
    if !done.is_empty() {
        eprintln!("resuming {}: {} rows already judged, {} to go", output.display(), done.len(), todo.len());
    }
    if !todo.is_empty() {
        let orders = if args.swap { 2 } else { 1 };
        let sequences = args.batch.map_or(MAX_SEQUENCES, |rows| usize::from(rows) * orders).min(todo.len() * orders);
        let tokenizer = read_tokenizer(&args.model.model)?;
        let template = files.manifest.chat_template.as_ref();
        let items = todo.iter().map(|row| &row.item);
        let context = slot_context(&tokenizer, template, protocol, items, args.swap, args.max_new_tokens, run.context)?;
        let mut judge = Judge::new(args.model.load_batch(sequences, Some(context))?);
        let bar = ProgressBar::new(todo.len() as u64).with_style(
            ProgressStyle::with_template("judging {bar:40} {pos}/{len} rows, {elapsed} elapsed, ETA {eta} {msg}")
                .expect("valid template"),
        );
        // A row that cannot be judged (too long for the context) is recorded, not fatal.
        // Written as each row finishes (rows finish out of order), so an interrupted run
        // loses nothing finished and resumes where it stopped; a record that cannot be
        // written stops the run.
        let mut on_event = |event: RunEvent| {
            let RunEvent::Judged(record) = event else { return Ok(()) };
            sink.append(&record).map(|()| bar.inc(1))
        };
        let judged =
            pollster::block_on(judge_rows(&mut judge, protocol, &todo, args.swap, Some(&run), options, &mut on_event));
        bar.finish_and_clear();
        judged.map_err(|stopped| match stopped {
            RunStopped::Judge(error) => error.into(),
            RunStopped::Caller(error) => error,
        })?;
    }
    sink.finish(protocol)
}

/// Where `--output` sends the records: a file this run holds (resumed, then put in input
/// order), or standard output (`-`), where they stream as rows finish and the report goes
/// to standard error.
enum Sink {
    File(OutputFile),
    Stdout(Vec<u8>),
}

impl Sink {
    /// The sink and the rows an earlier run already judged into it.
    fn open(
        output: &Path,
        run: &RunOptions,
        input: &Path,
    ) -> Result<(Sink, BTreeSet<usize>), Box<dyn std::error::Error>> {
        if output == Path::new("-") {
            return Ok((Sink::Stdout(Vec::new()), BTreeSet::new()));
        }
        let (file, resume) = OutputFile::open(output, run, Some(input))?;
        if let Some(line) = resume.torn_line {
            eprintln!("{}: dropping the incomplete record on line {line}", output.display());
        }
        if !resume.retried.is_empty() {
            eprintln!(
                "{}: judging again {} rows that failed under other options",
                output.display(),
                resume.retried.len()
            );
        }
        Ok((Sink::File(file), resume.done))
    }

    fn append(&mut self, record: &Record) -> Result<(), Box<dyn std::error::Error>> {
        match self {
            Sink::File(file) => Ok(file.append(record)?),
            Sink::Stdout(records) => {
                let start = records.len();
                serde_json::to_writer(&mut *records, record)?;
                records.push(b'\n');
                let mut stdout = std::io::stdout().lock();
                // The io::Error itself, so a closed pipe ends the command quietly.
                Ok(stdout.write_all(&records[start..]).and_then(|()| stdout.flush())?)
            }
        }
    }

    /// Ends the run and prints the judge's metrics over every record of the output.
    fn finish(self, protocol: Protocol) -> CliResult {
        match self {
            Sink::File(file) => Ok(report(protocol, &file.finish()?, &mut std::io::stdout())?),
            Sink::Stdout(records) => Ok(report(protocol, &records, &mut std::io::stderr())?),
        }
    }
}

/// What this run's records are made with: the model is named by its manifest's hash.
fn run_options(
    args: &Args,
    files: ModelFiles,
    protocol: Protocol,
    rubric: Option<Rubric>,
    input: InputIdentity,
) -> Result<RunOptions, LoadError> {
    let a = &files.manifest.architecture;
    // Refused before the output is opened, let alone the model loaded.
    let context = args.model.context.unwrap_or(a.context_length);
    check_context(a, context)?;
    Ok(RunOptions {
        protocol,
        rubric,
        swap: args.swap,
        model: RunOptions::model_id(files.bytes),
        max_new_tokens: args.max_new_tokens,
        context,
        truncate: args.truncate,
        matvec: args.model.matvec,
        input: Some(input),
    })
}
