//! `webjudge generate`: stream a completion to stdout, or complete a file of prompts in
//! batches.

use std::io::Write;
use std::path::{Path, PathBuf};

use webjudge::engine::native::read_metadata;
use webjudge::engine::{BatchEvent, GenerateOptions};
use webjudge::format::{checked_file, Manifest, Message};
use webjudge::kernels::Sampling;
use webjudge::model::MAX_SEQUENCES;
use webjudge::tokenizer::Tokenizer;

use super::flags::{number, whole, MAX_COUNT};
use super::load::ModelArgs;
use super::CliResult;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt, tokenized exactly as given unless --chat is set.
    #[arg(long, required_unless_present = "prompts", conflicts_with = "prompts")]
    prompt: Option<String>,
    /// A JSONL file of prompts, one `{"prompt": ...}` per line, generated together in
    /// batches; results are printed in input order.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// With --prompts: sequences decoded together, at most (default: what the adapter's
    /// buffers hold, up to 8).
    #[arg(
        long,
        requires = "prompts",
        allow_negative_numbers = true,
        value_parser = whole::<u16>(1..=MAX_SEQUENCES as u64)
    )]
    batch: Option<u16>,
    /// Wrap the prompt as a user message in the model's chat template (from its manifest);
    /// the message is tokenized as text, special tokens only where the template puts them.
    #[arg(long)]
    chat: bool,
    /// Most tokens to generate, EOS included.
    #[arg(long, default_value_t = 256, allow_negative_numbers = true, value_parser = whole::<usize>(1..=MAX_COUNT))]
    max_tokens: usize,
    /// Sample at this temperature (finite, from 0.000001 up) instead of decoding greedily;
    /// 0 decodes greedily, as leaving it out does.
    #[arg(long, allow_negative_numbers = true, value_parser = number(Sampling::check_temperature))]
    temperature: Option<f32>,
    /// Nucleus mass when sampling: above 0, at most 1.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = number(Sampling::check_top_p))]
    top_p: f32,
    /// Sampling seed.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = whole::<u32>(0..=u32::MAX.into()))]
    seed: u32,
    /// After the text, print one JSON line: ids, text, prompt_tokens, prefill_tok_s, decode_tok_s, finish.
    /// With --prompts: one line per prompt (index, ids, text, prompt_tokens, finish) in input
    /// order, then a summary line (sequences, batch, generated_tokens, seconds, tok_s).
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> CliResult {
    let sampling = match args.temperature {
        Some(temperature) => Sampling::new(temperature, args.top_p, args.seed)?,
        None => Sampling::Greedy,
    };
    let options = GenerateOptions { max_tokens: args.max_tokens, sampling, cancel: None };
    let prompt = match (&args.prompt, &args.prompts) {
        (Some(prompt), _) => prompt,
        (None, Some(path)) => return batch(&args, &options, &read_prompts(path)?),
        (None, None) => unreachable!("clap requires --prompt or --prompts"),
    };
    let mut engine = args.model.load()?;
    let prompt_ids = tokenize(&engine.tokenizer, &engine.manifest, prompt, args.chat)?;
    let mut stdout = std::io::stdout().lock();
    let generation = pollster::block_on(engine.generate_ids(&prompt_ids, &options, &mut |piece| {
        // A closed pipe must not abort generation mid-way; the summary reports the result.
        let _ = stdout.write_all(piece.as_bytes()).and_then(|()| stdout.flush());
    }))?;
    writeln!(stdout)?;
    let summary = serde_json::json!({
        "ids": generation.ids,
        "text": generation.text,
        "prompt_tokens": generation.prompt_tokens,
        "prefill_tok_s": generation.prefill_tokens_per_second(),
        "decode_tok_s": generation.decode_tokens_per_second(),
        "finish": generation.finish,
    });
    if args.json {
        writeln!(stdout, "{summary}")?;
    } else {
        eprintln!(
            "{} prompt tokens at {:.1} tok/s, {} generated at {:.1} tok/s ({:?})",
            generation.prompt_tokens,
            generation.prefill_tokens_per_second(),
            generation.ids.len(),
            generation.decode_tokens_per_second(),
            generation.finish
        );
    }
    Ok(())
}

/// The prompt's ids: as given, or with `chat` as the one user message of the model's chat
/// template, which a model converted without one lacks.
fn tokenize(
    tokenizer: &Tokenizer,
    manifest: &Manifest,
    prompt: &str,
    chat: bool,
) -> Result<Vec<u32>, Box<dyn std::error::Error>> {
    if !chat {
        return Ok(tokenizer.encode(prompt)?);
    }
    let template = manifest.chat_template.as_ref().ok_or(
        "--chat: the model directory has no chat template (convert the checkpoint again with --chat-template FILE, \
         or leave out --chat to generate from the prompt as given)",
    )?;
    Ok(tokenizer.encode_chat(&template.render(&[Message::user(prompt)])?)?)
}

/// The prompts of a JSONL file: one `{"prompt": "..."}` object per non-empty line.
fn read_prompts(path: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let text = checked_file::read_to_string(path, checked_file::TEXT_INPUT)?;
    let mut prompts = Vec::new();
    for (number, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let at = |problem: &dyn std::fmt::Display| format!("{} line {}: {problem}", path.display(), number + 1);
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| at(&e))?;
        let prompt = value.get("prompt").and_then(|p| p.as_str()).ok_or_else(|| at(&"no \"prompt\" string"))?;
        prompts.push(prompt.to_string());
    }
    if prompts.is_empty() {
        return Err(format!("{}: no prompts", path.display()).into());
    }
    Ok(prompts)
}

/// Completes every prompt, up to `--batch` at a time, and prints the results in input order.
fn batch(args: &Args, options: &GenerateOptions, prompts: &[String]) -> CliResult {
    let batch = args.batch.map_or(MAX_SEQUENCES, usize::from).min(prompts.len());
    // Each sequence slot holds the longest prompt and its continuation, not the model's
    // whole context: more sequences fit.
    let (manifest, tokenizer) = read_metadata(&args.model.model)?;
    let prompt_ids: Vec<Vec<u32>> =
        prompts.iter().map(|p| tokenize(&tokenizer, &manifest, p, args.chat)).collect::<Result<_, _>>()?;
    let longest = prompt_ids.iter().map(Vec::len).max().unwrap_or(0);
    let mut engine = args.model.load_batch(batch, Some(longest + options.max_tokens))?;
    let started = web_time::Instant::now();
    let mut results: Vec<_> = prompts.iter().map(|_| None).collect();
    pollster::block_on(engine.generate_batch(&prompt_ids, options, &mut |index, event| {
        if let BatchEvent::Finished(result) = event {
            results[index] = Some(result);
        }
    }))?;
    let seconds = started.elapsed().as_secs_f64();
    let mut stdout = std::io::stdout().lock();
    let mut generated = 0;
    for (index, result) in results.into_iter().enumerate() {
        let generation = result.expect("every prompt finishes").map_err(|e| format!("prompt {index}: {e}"))?;
        generated += generation.ids.len();
        if args.json {
            let line = serde_json::json!({
                "index": index,
                "ids": generation.ids,
                "text": generation.text,
                "prompt_tokens": generation.prompt_tokens,
                "finish": generation.finish,
            });
            writeln!(stdout, "{line}")?;
        } else {
            writeln!(stdout, "── prompt {index} ({:?}) ──\n{}", generation.finish, generation.text)?;
        }
    }
    let batch = engine.model().sequences();
    let tok_s = if seconds > 0.0 { generated as f64 / seconds } else { 0.0 };
    let summary = serde_json::json!({
        "summary": {"sequences": prompts.len(), "batch": batch, "generated_tokens": generated, "seconds": seconds, "tok_s": tok_s}
    });
    if args.json {
        writeln!(stdout, "{summary}")?;
    } else {
        eprintln!("{} sequences, batch {batch}: {generated} tokens in {seconds:.1} s, {tok_s:.2} tok/s", prompts.len());
    }
    Ok(())
}
