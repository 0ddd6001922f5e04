//! Subcommands, one module each. Errors print as one line and exit with status 1.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod convert;
mod generate;
mod judge;
mod load;
mod parse;
mod prompt;
mod serve;
mod tokenize;

pub type CliResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Parser)]
#[command(name = "webjudge", version, about = "Auto-J, the generative LLM judge, on WebGPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a checkpoint (GGUF or a Hugging Face directory) into a webjudge model directory.
    Convert(convert::Args),
    /// Print the token ids of a text as one JSON array.
    Tokenize(tokenize::Args),
    /// Generate a completion of a prompt, streaming it to stdout.
    Generate(generate::Args),
    /// Measure prefill and decode speed and kernel bandwidth.
    Bench(bench::Args),
    /// Judge one item (streaming the critique) or a test-data file (with resume and metrics).
    Judge(judge::Args),
    /// Print the exact model input for Auto-J test-data rows (JSONL on stdin).
    Prompt(prompt::Args),
    /// Print the verdicts of critiques (JSONL with an `output` field on stdin).
    Parse(parse::Args),
    /// Serve the web page (www/) and a model directory on 127.0.0.1.
    Serve(serve::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Convert(args) => convert::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Judge(args) => judge::run(args),
        Command::Prompt(args) => prompt::run(args),
        Command::Parse(args) => parse::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
