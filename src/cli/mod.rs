//! Subcommands, one module each. Errors print as one line and exit with status 1.

use std::io::ErrorKind;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod convert;
mod flags;
mod generate;
mod judge;
mod load;
mod parse;
mod perplexity;
mod prompt;
mod serve;
mod tokenize;

pub type CliResult = Result<(), Box<dyn std::error::Error>>;

/// `println!` that returns the error instead of panicking, so a reader that went away
/// (`| head`, `| true`) ends the command quietly (see [`main`]).
macro_rules! outln {
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(&mut std::io::stdout(), format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// The exit status of a command whose standard output was closed under it: what a shell
/// reports for a process ended by SIGPIPE, the Unix convention for this case.
const CLOSED_STDOUT_STATUS: u8 = 128 + 13;

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
    /// A text's perplexity as llama.cpp's llama-perplexity scores it; with --reference, the
    /// KL divergence from the same checkpoint at higher precision.
    Perplexity(perplexity::Args),
    /// Print the exact model input for Auto-J test-data rows (JSONL on stdin).
    Prompt(prompt::Args),
    /// Print the verdicts of critiques (JSONL with an `output` field on stdin).
    Parse(parse::Args),
    /// Serve the web page (www/) and a model directory on 127.0.0.1.
    Serve(serve::Args),
}

pub fn main() -> ExitCode {
    ignore_file_size_signal();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Convert(args) => convert::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Judge(args) => judge::run(args),
        Command::Perplexity(args) => perplexity::run(args),
        Command::Prompt(args) => prompt::run(args),
        Command::Parse(args) => parse::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == ErrorKind::BrokenPipe) => {
            ExitCode::from(CLOSED_STDOUT_STATUS)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// With its default action, hitting the file size limit (`ulimit -f`) kills the process in
/// the middle of a write and leaves temporary files behind; ignored, the write fails with
/// "File too large", which is reported like any other error and cleaned up after.
fn ignore_file_size_signal() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any other thread exists; SIG_IGN needs
    // no handler.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}
