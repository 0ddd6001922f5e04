//! `webjudge judge`: one item with a streamed critique, or a whole Auto-J test-data file
//! with progress, resume and Auto-J's agreement/consistency metrics.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use webjudge::judge::dataset::{parse_rows, resume_output, Row, RunOptions};
use webjudge::judge::metrics::{pairwise_metrics, Judged, ScenarioGroups};
use webjudge::judge::session::{Judge, JudgeOptions, Judgement, Order, SwapJudgement, AUTOJ_MAX_NEW_TOKENS};
use webjudge::judge::{Item, Protocol};
use webjudge::model::LoadOptions;
use webjudge::weights::manifest::MANIFEST_FILE;
use webjudge::weights::writer::hex;
use webjudge::weights::Manifest;

use super::load::ModelArgs;
use super::{outln, CliResult};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// pairwise_tie (or pairwise), single, zh_pairwise_tie, zh_single.
    #[arg(long, default_value = "pairwise_tie")]
    protocol: Protocol,
    /// Judge every row of this Auto-J test-data JSONL file.
    #[arg(long, requires = "output", conflicts_with = "query")]
    input: Option<PathBuf>,
    /// Where batch results go, one JSON object per line; an existing file is resumed.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Judge only the first N rows of the input.
    #[arg(long)]
    limit: Option<usize>,
    /// Judge each pair in both orders and report whether the verdicts agree.
    #[arg(long)]
    swap: bool,
    /// Shorten responses from the middle when the input does not fit the context.
    #[arg(long)]
    truncate: bool,
    /// Critique tokens at most.
    #[arg(long, default_value_t = AUTOJ_MAX_NEW_TOKENS)]
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
    if args.swap && !args.protocol.is_pairwise() {
        return Err(format!("--swap needs a pairwise protocol, not {}", args.protocol.name()).into());
    }
    match (&args.input, &args.query) {
        (Some(input), _) => {
            let output = args.output.clone().expect("clap requires --output with --input");
            batch(&args, &options, input, &output)
        }
        (None, Some(query)) => single_item(&args, &options, query),
        (None, None) => {
            Err("give --input FILE --output FILE, or --query with --response1/--response2 or --response".into())
        }
    }
}

fn single_item(args: &Args, options: &JudgeOptions, query: &str) -> CliResult {
    let query = query.to_string();
    let item = match (&args.response1, &args.response2, &args.response) {
        (Some(response1), Some(response2), None) => {
            Item::Pair { query, response1: response1.clone(), response2: response2.clone() }
        }
        (None, None, Some(response)) => Item::Single { query, response: response.clone() },
        _ => return Err("give --response1 and --response2, or --response".into()),
    };
    let mut judge = Judge::new(args.model.load()?);
    let mut stdout = std::io::stdout().lock();
    let mut print = |piece: &str| {
        let _ = stdout.write_all(piece.as_bytes()).and_then(|()| stdout.flush());
    };
    let record = if args.swap {
        let mut order = None;
        let result = pollster::block_on(judge.judge_swapped(args.protocol, &item, options, &mut |o, piece| {
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
        swap_record(&result)
    } else {
        judgement_record(&pollster::block_on(judge.judge(args.protocol, &item, options, &mut print))?)
    };
    outln!("\n{record}")?;
    Ok(())
}

fn batch(args: &Args, options: &JudgeOptions, input: &Path, output: &Path) -> CliResult {
    let text = std::fs::read_to_string(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let mut rows: Vec<Row> = parse_rows(text.lines(), Some(args.protocol))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", input.display()))?;
    rows.truncate(args.limit.unwrap_or(usize::MAX));

    let run = run_options(args)?;
    let done = resume(output, &run)?;
    let todo: Vec<&Row> = rows.iter().filter(|row| !done.contains(&row.index)).collect();
    if !done.is_empty() {
        eprintln!("resuming {}: {} rows already judged, {} to go", output.display(), done.len(), todo.len());
    }
    let open = OpenOptions::new().create(true).append(true).open(output);
    let mut writer = BufWriter::new(open.map_err(|e| format!("{}: {e}", output.display()))?);
    let written = |e: std::io::Error| format!("{}: {e}", output.display());
    if !todo.is_empty() {
        let mut judge = Judge::new(args.model.load()?);
        let bar = ProgressBar::new(todo.len() as u64).with_style(
            ProgressStyle::with_template("judging {bar:40} {pos}/{len} rows, {elapsed} elapsed, ETA {eta} {msg}")
                .expect("valid template"),
        );
        for row in todo {
            let result = if args.swap {
                pollster::block_on(judge.judge_swapped(args.protocol, &row.item, options, &mut |_, _| {}))
                    .map(|r| swap_record(&r))
            } else {
                pollster::block_on(judge.judge(args.protocol, &row.item, options, &mut |_| {}))
                    .map(|j| judgement_record(&j))
            };
            // A row that cannot be judged (too long for the context) is recorded, not fatal.
            let mut record = result.unwrap_or_else(|error| json!({ "error": error.to_string() }));
            let fields = record.as_object_mut().expect("records are objects");
            fields.insert("index".into(), json!(row.index));
            fields.insert("scenario".into(), json!(row.scenario));
            fields.insert("label".into(), json!(row.label));
            fields.insert("run".into(), json!(run));
            writeln!(writer, "{record}").map_err(written)?;
            // Flushed row by row so an interrupted run resumes where it stopped.
            writer.flush().map_err(written)?;
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    drop(writer);
    report(args.protocol, output)
}

/// What this run's records are made with: the model is named by its manifest's hash.
fn run_options(args: &Args) -> Result<RunOptions, Box<dyn std::error::Error>> {
    let path = args.model.model.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let manifest =
        Manifest::from_json(&String::from_utf8_lossy(&bytes)).map_err(|e| format!("{}: {e}", path.display()))?;
    let a = &manifest.architecture;
    let context = args.model.load_options(LoadOptions::for_model(a)).fitted(a).context;
    Ok(RunOptions {
        protocol: args.protocol,
        swap: args.swap,
        model: hex(&Sha256::digest(&bytes))[..16].to_string(),
        max_new_tokens: args.max_new_tokens,
        context,
        truncate: args.truncate,
    })
}

/// The indices an existing output file holds, after dropping a record cut off by an
/// interruption and error records to retry. The file is never truncated in place: its new
/// content is written beside it and renamed over it, so a failure leaves it as it was.
fn resume(output: &Path, run: &RunOptions) -> Result<BTreeSet<usize>, Box<dyn std::error::Error>> {
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", output.display());
    let bytes = match std::fs::read(output) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(at(&e).into()),
    };
    let resume = resume_output(&bytes, run).map_err(|e| at(&e))?;
    if let Some(line) = resume.torn_line {
        eprintln!("{}: dropping the incomplete record on line {line}", output.display());
    }
    if !resume.retried.is_empty() {
        eprintln!("{}: judging again {} rows that failed under other options", output.display(), resume.retried.len());
    }
    if let Some(content) = resume.rewrite {
        let name = output.file_name().ok_or_else(|| at(&"not a file name"))?;
        let temp = output.with_file_name(format!(".{}.resuming", name.to_string_lossy()));
        let replaced = File::create(&temp)
            .and_then(|mut file| file.write_all(&content).and_then(|()| file.sync_all()))
            .and_then(|()| std::fs::rename(&temp, output));
        if let Err(error) = replaced {
            let _ = std::fs::remove_file(&temp);
            let (output, temp) = (output.display(), temp.display());
            return Err(format!(
                "{output}: writing its repaired copy {temp} failed: {error}; {output} was left as it was"
            )
            .into());
        }
    }
    Ok(resume.done)
}

/// Prints Auto-J's metrics over every labelled record of the output file.
fn report(protocol: Protocol, output: &Path) -> CliResult {
    let text = std::fs::read_to_string(output).map_err(|e| format!("{}: {e}", output.display()))?;
    let records: Vec<Value> =
        text.lines().filter(|l| !l.trim().is_empty()).map(serde_json::from_str).collect::<Result<_, _>>()?;
    let errors = records.iter().filter(|r| r.get("error").is_some()).count();
    outln!("{} rows judged ({} could not be judged)", records.len(), errors)?;
    if !protocol.is_pairwise() {
        let ratings: Vec<f64> = records.iter().filter_map(|r| r["rating"].as_f64()).collect();
        outln!("{} ratings parsed, {} unparsed", ratings.len(), records.len() - errors - ratings.len())?;
        return Ok(());
    }
    let judged: Vec<Judged> = records.iter().filter_map(Judged::from_record).collect();
    let metrics = pairwise_metrics(&judged, &ScenarioGroups::autoj());
    if metrics.rows > 0 {
        std::io::stdout().write_all(metrics.original_table().as_bytes())?;
    }
    outln!("{}", serde_json::to_string(&metrics)?)?;
    Ok(())
}

fn judgement_record(j: &Judgement) -> Value {
    let mut record = json!({
        "protocol": j.protocol,
        "critique": j.critique,
        "prompt_tokens": j.prompt_tokens,
        "reused_tokens": j.reused_tokens,
        "generated_tokens": j.generated_tokens,
        "truncated": j.truncated,
        "finish": j.finish,
        "time_to_first_token_s": j.time_to_first_token_s,
        "prefill_tok_s": j.prefill_tok_s,
        "decode_tok_s": j.decode_tok_s,
    });
    let fields = record.as_object_mut().expect("an object");
    match j.verdict {
        webjudge::judge::session::Verdict::Pairwise(winner) => fields.insert("winner".into(), json!(winner)),
        webjudge::judge::session::Verdict::Rating(rating) => fields.insert("rating".into(), json!(rating)),
    };
    record
}

fn swap_record(s: &SwapJudgement) -> Value {
    let mut record = judgement_record(&s.forward);
    let fields = record.as_object_mut().expect("an object");
    fields.insert("swapped".into(), judgement_record(&s.swapped));
    fields.insert("swapped_winner_mapped".into(), json!(s.swapped_mapped));
    fields.insert("consistent".into(), json!(s.consistent));
    fields.insert("combined".into(), json!(s.combined));
    fields.insert("shared_prefix_tokens".into(), json!(s.shared_prefix_tokens));
    fields.insert("prefill_saved_s".into(), json!(s.prefill_saved_s));
    record
}
