//! `webjudge judge`: one item with a streamed critique, or a whole Auto-J test-data file
//! with progress, resume and Auto-J's agreement/consistency metrics.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use webjudge::judge::dataset::{finished_indices, parse_rows, Row};
use webjudge::judge::metrics::{pairwise_metrics, Judged, ScenarioGroups};
use webjudge::judge::session::{Judge, JudgeOptions, Judgement, Order, SwapJudgement, AUTOJ_MAX_NEW_TOKENS};
use webjudge::judge::{Item, Protocol, Winner};

use super::load::ModelArgs;
use super::CliResult;

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
    println!("\n{record}");
    Ok(())
}

fn batch(args: &Args, options: &JudgeOptions, input: &PathBuf, output: &PathBuf) -> CliResult {
    let text = std::fs::read_to_string(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let mut rows: Vec<Row> = parse_rows(text.lines(), Some(args.protocol))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", input.display()))?;
    rows.truncate(args.limit.unwrap_or(usize::MAX));

    let done = resume(output)?;
    let todo: Vec<&Row> = rows.iter().filter(|row| !done.contains(&row.index)).collect();
    if !done.is_empty() {
        eprintln!("resuming {}: {} rows already judged, {} to go", output.display(), done.len(), todo.len());
    }
    let mut writer = BufWriter::new(OpenOptions::new().create(true).append(true).open(output)?);
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
            writeln!(writer, "{record}")?;
            // Flushed row by row so an interrupted run resumes where it stopped.
            writer.flush()?;
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    drop(writer);
    report(args.protocol, output)
}

/// The indices an existing output file holds; a record cut off by an interruption is
/// removed so appending continues on a clean line.
fn resume(output: &PathBuf) -> Result<std::collections::BTreeSet<usize>, Box<dyn std::error::Error>> {
    let Ok(existing) = std::fs::read_to_string(output) else { return Ok(Default::default()) };
    let finished = finished_indices(existing.lines()).map_err(|e| format!("{}: {e}", output.display()))?;
    if let Some(line) = finished.truncated_line {
        eprintln!("{}: dropping the incomplete record on line {line}", output.display());
        let kept: String = existing.lines().take(line - 1).map(|l| format!("{l}\n")).collect();
        let mut file = File::create(output)?;
        file.write_all(kept.as_bytes())?;
    } else if !existing.is_empty() && !existing.ends_with('\n') {
        OpenOptions::new().append(true).open(output)?.write_all(b"\n")?;
    }
    Ok(finished.indices)
}

/// Prints Auto-J's metrics over every labelled record of the output file.
fn report(protocol: Protocol, output: &PathBuf) -> CliResult {
    let text = std::fs::read_to_string(output)?;
    let records: Vec<Value> =
        text.lines().filter(|l| !l.trim().is_empty()).map(serde_json::from_str).collect::<Result<_, _>>()?;
    let errors = records.iter().filter(|r| r.get("error").is_some()).count();
    println!("{} rows judged ({} could not be judged)", records.len(), errors);
    if !protocol.is_pairwise() {
        let ratings: Vec<f64> = records.iter().filter_map(|r| r["rating"].as_f64()).collect();
        println!("{} ratings parsed, {} unparsed", ratings.len(), records.len() - errors - ratings.len());
        return Ok(());
    }
    let winner = |value: &Value| serde_json::from_value::<Option<Winner>>(value.clone()).ok().flatten();
    let judged: Vec<Judged> = records
        .iter()
        .filter(|r| r.get("error").is_none())
        .map(|r| Judged {
            scenario: r["scenario"].as_str().map(str::to_string),
            label: winner(&r["label"]),
            verdict: winner(&r["winner"]),
            swapped_verdict: r.get("swapped_winner_mapped").map(winner),
        })
        .collect();
    let metrics = pairwise_metrics(&judged, &ScenarioGroups::autoj());
    if metrics.rows > 0 {
        print!("{}", metrics.original_table());
    }
    println!("{}", serde_json::to_string(&metrics)?);
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
