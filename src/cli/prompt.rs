//! `webjudge prompt`: the exact model input for test-data rows. Reads JSONL rows (Auto-J's
//! `prompt`, `response 1`, `response 2` or `response`; prometheus-eval's `instruction`,
//! `response_A`, `response_B` or `response`; the newer judges' references' names (see
//! docs/judges.md); `rubric`, `reference_answer`; other fields ignored) on stdin and
//! writes `{"input": <text>}` per line, with `--ids` `{"input": <text>, "ids": [...]}`.
//! Scripts depend on this format.

use std::path::PathBuf;

use serde_json::json;
use webjudge::engine::native::{read_manifest, read_tokenizer};
use webjudge::format::ChatTemplate;
use webjudge::judge::session::tokenized_input;
use webjudge::judge::{model_input, Item, Protocol, Rubric};

use super::parse::map_jsonl;
use super::CliResult;

#[derive(clap::Args)]
pub struct Args {
    /// pairwise_tie, single, zh_pairwise_tie, zh_single, prometheus_absolute,
    /// prometheus_absolute_ref, prometheus_relative or prometheus_relative_ref.
    #[arg(long)]
    pub protocol: Protocol,
    /// The rubric for rows without their own, as `judge --rubric` takes it.
    #[arg(long)]
    pub rubric: Option<String>,
    /// Wrap in this model directory's chat template (its manifest.json) instead of the
    /// `[INST] … [/INST]` of Auto-J and Prometheus 2 (LLaMA-2's and Mistral's).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Also print the token ids the judge feeds for the input (the model directory's
    /// tokenizer.json; user text tokenized as text, special tokens only from the template).
    #[arg(long, requires = "model")]
    pub ids: bool,
}

pub fn run(args: Args) -> CliResult {
    let template = match &args.model {
        Some(dir) => read_manifest(dir)?.0.chat_template,
        None => Some(ChatTemplate::llama2()),
    };
    let tokenizer = match (&args.model, args.ids) {
        (Some(dir), true) => Some(read_tokenizer(dir)?),
        _ => None,
    };
    map_jsonl(|row| {
        let mut item = Item::from_row(row, args.protocol)?;
        if let (None, Some(rubric)) = (item.rubric(), &args.rubric) {
            item = item.with_rubric(Rubric::from_argument(rubric)?);
        }
        Ok(match &tokenizer {
            Some(tokenizer) => {
                let (input, ids) = tokenized_input(tokenizer, template.as_ref(), args.protocol, &item)?;
                json!({ "input": input, "ids": ids })
            }
            None => json!({ "input": model_input(args.protocol, &item, template.as_ref())? }),
        })
    })
}
