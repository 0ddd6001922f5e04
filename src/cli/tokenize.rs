//! `webjudge tokenize`: the ids of a text, as one JSON array on stdout, for comparing
//! against other tokenizers from scripts.

use std::path::PathBuf;

use webjudge::engine::native::read_tokenizer;

use super::{outln, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// Model directory (its tokenizer.json is read), or a GGUF file (its metadata's).
    #[arg(long)]
    pub model: PathBuf,
    /// The text, encoded as a prompt is: special tokens in it are recognised, and BOS is
    /// added if the model adds one.
    #[arg(long)]
    pub text: String,
}

pub fn run(args: Args) -> CliResult {
    let tokenizer = read_tokenizer(&args.model)?;
    let ids = tokenizer.encode(&args.text)?;
    outln!("{}", serde_json::to_string(&ids)?)?;
    Ok(())
}
