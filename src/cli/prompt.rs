//! `webjudge prompt`: the exact model input for Auto-J test-data rows. Reads JSONL rows
//! (`prompt`, `response 1`, `response 2` or `response`; other fields ignored) on stdin and
//! writes `{"input": <text>}` per line, with `--ids` `{"input": <text>, "ids": [...]}`.
//! Scripts depend on this format.

use std::path::PathBuf;

use serde_json::json;
use webjudge::judge::session::tokenized_input;
use webjudge::judge::{model_input, Item, Protocol};
use webjudge::model::ChatTemplate;
use webjudge::tokenizer::Tokenizer;
use webjudge::weights::manifest::{MANIFEST_FILE, TOKENIZER_FILE};
use webjudge::weights::Manifest;

use super::parse::map_jsonl;
use super::CliResult;

#[derive(clap::Args)]
pub struct Args {
    /// pairwise_tie, single, zh_pairwise_tie or zh_single.
    #[arg(long)]
    pub protocol: Protocol,
    /// Wrap in this model directory's chat template (its manifest.json) instead of Auto-J's
    /// LLaMA-2 `[INST] … [/INST]`.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Also print the token ids the judge feeds for the input (the model directory's
    /// tokenizer.json; user text tokenized as text, special tokens only from the template).
    #[arg(long, requires = "model")]
    pub ids: bool,
}

pub fn run(args: Args) -> CliResult {
    let template = match &args.model {
        Some(dir) => {
            let path = dir.join(MANIFEST_FILE);
            let text = std::fs::read_to_string(&path).map_err(|error| format!("{}: {error}", path.display()))?;
            Manifest::from_json(&text).map_err(|error| format!("{}: {error}", path.display()))?.chat_template
        }
        None => ChatTemplate::llama2(),
    };
    let tokenizer = match (&args.model, args.ids) {
        (Some(dir), true) => Some(Tokenizer::from_file(dir.join(TOKENIZER_FILE))?),
        _ => None,
    };
    map_jsonl(|row| {
        let item = Item::from_autoj_row(row, args.protocol)?;
        Ok(match &tokenizer {
            Some(tokenizer) => {
                let (input, ids) = tokenized_input(tokenizer, &template, args.protocol, &item)?;
                json!({ "input": input, "ids": ids })
            }
            None => json!({ "input": model_input(args.protocol, &item, &template)? }),
        })
    })
}
