//! `webjudge generate`: stream a completion to stdout.

use std::io::Write;

use webjudge::engine::GenerateOptions;
use webjudge::kernels::Sampling;

use super::load::ModelArgs;
use super::CliResult;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt, tokenized exactly as given unless --chat is set.
    #[arg(long)]
    prompt: String,
    /// Wrap the prompt as a user message in the model's chat template (from its manifest);
    /// the message is tokenized as text, special tokens only where the template puts them.
    #[arg(long)]
    chat: bool,
    /// Most tokens to generate, EOS included.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Sample with this temperature instead of greedy decoding.
    #[arg(long)]
    temperature: Option<f32>,
    /// Nucleus mass when sampling.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u32,
    /// After the text, print one JSON line: ids, text, prompt_tokens, prefill_tok_s, decode_tok_s, finish.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> CliResult {
    let mut engine = args.model.load()?;
    let sampling = match args.temperature {
        Some(temperature) => Sampling::TopP { temperature, top_p: args.top_p, seed: args.seed },
        None => Sampling::Greedy,
    };
    let options = GenerateOptions { max_tokens: args.max_tokens, sampling, cancel: None };
    let prompt_ids = if args.chat {
        engine.tokenizer.encode_chat(&engine.manifest.chat_template, &args.prompt)?
    } else {
        engine.tokenizer.encode(&args.prompt)?
    };
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
