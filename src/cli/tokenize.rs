//! `webjudge tokenize`: the ids of a text, as one JSON array on stdout, for comparing
//! against other tokenizers from scripts.

use std::path::PathBuf;

use webjudge::format::manifest::TOKENIZER_FILE;
use webjudge::tokenizer::Tokenizer;

use super::{outln, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// Model directory (its tokenizer.json is read).
    #[arg(long)]
    pub model: PathBuf,
    /// The text, encoded as a prompt is: special tokens in it are recognised, and BOS is
    /// added if the model adds one.
    #[arg(long)]
    pub text: String,
}

pub fn run(args: Args) -> CliResult {
    let tokenizer = Tokenizer::from_file(args.model.join(TOKENIZER_FILE))?;
    let ids = tokenizer.encode(&args.text)?;
    outln!("{}", serde_json::to_string(&ids)?)?;
    Ok(())
}
