//! `webjudge bench`: prefill/decode tokens per second and kernel bandwidth.

use std::path::{Path, PathBuf};

use webjudge::engine::bench::{self, BenchConfig, BenchReport};
use webjudge::format::checked_file;

use super::flags::{whole, MAX_COUNT};
use super::load::ModelArgs;
use super::{outln, CliResult};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt tokens to prefill.
    #[arg(long, default_value_t = 256, allow_negative_numbers = true, value_parser = whole::<usize>(1..=MAX_COUNT))]
    prompt_tokens: usize,
    /// Tokens to decode after the prompt.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true, value_parser = whole::<usize>(1..=MAX_COUNT))]
    decode_tokens: usize,
    /// Kernel launches per bandwidth measurement.
    #[arg(long, default_value_t = 50, allow_negative_numbers = true, value_parser = whole::<usize>(1..=MAX_COUNT))]
    repeats: usize,
    /// Take the prompt text from this file (default: bench::PROMPT_TEXT).
    #[arg(long)]
    text_file: Option<PathBuf>,
    /// Append the result as a table row to this markdown file (e.g. BENCH.md).
    #[arg(long)]
    record: Option<PathBuf>,
    /// A note for the recorded row (build, flags).
    #[arg(long, default_value = "")]
    note: String,
    /// Also time every dispatch of a decode step and a prefill chunk (after the prompt) and
    /// print where the time goes, kernel by kernel; with --record the tables are appended too.
    #[arg(long)]
    profile: bool,
    /// Profile the decode step with this many sequences decoded together (one token each).
    #[arg(
        long,
        default_value_t = 1,
        requires = "profile",
        allow_negative_numbers = true,
        value_parser = whole::<u16>(1..=webjudge::model::MAX_SEQUENCES as u64)
    )]
    batch: u16,
    /// Timed runs of each profiled step (averaged, after one warm-up).
    #[arg(
        long,
        default_value_t = bench::PROFILE_RUNS,
        allow_negative_numbers = true,
        value_parser = whole::<usize>(1..=MAX_COUNT)
    )]
    profile_runs: usize,
}

pub fn run(args: Args) -> CliResult {
    let text = match &args.text_file {
        Some(path) => checked_file::read_to_string(path, checked_file::TEXT_INPUT)?,
        None => bench::PROMPT_TEXT.to_string(),
    };
    let mut engine = args.model.load_batch(args.batch.into(), None)?;
    let prompt_ids = engine.tokenizer.encode(&text)?;
    if prompt_ids.is_empty() {
        return Err("the prompt text has no tokens".into());
    }
    let config = BenchConfig {
        prompt_tokens: args.prompt_tokens,
        decode_tokens: args.decode_tokens,
        kernel_repeats: args.repeats,
    };
    let report = pollster::block_on(bench::run(&mut engine, &prompt_ids, &config))?;
    let model = args.model.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let row = table_row(&report, &model, &args.note);
    outln!("{}", serde_json::to_string(&report)?)?;
    outln!("{row}")?;
    let profile = match args.profile {
        true => {
            let profile = bench::profile(&mut engine, &prompt_ids, args.prompt_tokens, args.profile_runs, true);
            let profile = pollster::block_on(profile)?.markdown();
            outln!("\n{profile}")?;
            Some(format!("\nProfile, {} ({model}; {}):\n\n{profile}", today(), args.note))
        }
        false => None,
    };
    if let Some(path) = &args.record {
        record(path, &row, profile.as_deref())?;
        eprintln!("recorded in {}", path.display());
    }
    Ok(())
}

/// The header of BENCH.md's results table, whose rows `--record` adds.
const RESULTS_HEADER: &str = "| date | adapter | model |";

/// Adds `row` after the last row of the results table (at the end when the file has none)
/// and `profile` at the end of the file, where the profiles are kept.
fn record(path: &Path, row: &str, profile: Option<&str>) -> CliResult {
    let text = checked_file::read_to_string_if_present(path, checked_file::TEXT_INPUT)?.unwrap_or_default();
    let mut lines: Vec<&str> = text.lines().collect();
    let table_end = lines
        .iter()
        .position(|l| l.starts_with(RESULTS_HEADER))
        .map(|header| header + lines[header..].iter().take_while(|l| l.starts_with('|')).count());
    lines.insert(table_end.unwrap_or(lines.len()), row);
    let mut updated = lines.join("\n") + "\n";
    updated += profile.unwrap_or_default();
    std::fs::write(path, updated).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

/// One row of BENCH.md's results table (columns documented there).
fn table_row(r: &BenchReport, model: &str, note: &str) -> String {
    format!(
        "| {} | {} | {model} | {} | {:.1} | {} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {note} |",
        today(),
        r.adapter,
        r.prompt_tokens,
        r.prefill_tok_s,
        r.decode_tokens,
        r.decode_tok_s,
        r.matvec_tensor,
        r.matvec_gb_s,
        r.copy_gb_s,
        r.matvec_to_copy(),
    )
}

/// Today's UTC date as YYYY-MM-DD (days-to-civil conversion, proleptic Gregorian).
fn today() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
