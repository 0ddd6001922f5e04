//! `webjudge convert` of a GGUF file: the file's plan ([`crate::import::gguf`], which says
//! what becomes what, losslessly) written as a model directory, each tensor part read from
//! the file and repacked as it is written.

use std::fs;
use std::path::Path;

use super::import::OutputDir;
use super::io_error_at;
use super::writer::ModelWriter;
use crate::format::checked_file;
use crate::format::gguf::{GgufError, GgufFile};
use crate::format::manifest::{DEFAULT_SHARD_BYTES, TOKENIZER_FILE};
use crate::format::Manifest;
use crate::import::gguf::{GgufPlan, ImportOptions};
use crate::import::{ConvertError, JudgeChoice, LongRopeCap, TemplateText, MIN_SHARD_BYTES};

#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// The largest shard to write (a tensor row larger than this still gets a shard).
    pub max_shard_bytes: u64,
    /// Replace an existing output directory instead of refusing.
    pub overwrite: bool,
    /// The context to record instead of `llama.context_length` (smaller; see
    /// [`crate::import::recorded_context`]).
    pub context: Option<usize>,
    /// The judge family the manifest names.
    pub judge: JudgeChoice,
    /// A chat template to record instead of the file's (`--chat-template FILE`).
    pub chat_template: Option<TemplateText>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            max_shard_bytes: DEFAULT_SHARD_BYTES,
            overwrite: false,
            context: None,
            judge: JudgeChoice::Infer,
            chat_template: None,
        }
    }
}

/// What a GGUF conversion wrote.
#[derive(Debug)]
pub struct GgufConversion {
    pub manifest: Manifest,
    /// Why the manifest names the judge family it does (or none).
    pub judge_reason: String,
    /// A LongRoPE model's context, capped at its original one.
    pub longrope: Option<LongRopeCap>,
}

/// Converts `gguf_path` into a model directory at `out_dir`. `progress` is called with
/// tensor bytes converted so far and in total.
pub fn convert_gguf(
    gguf_path: &Path,
    out_dir: &Path,
    options: &ConvertOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<GgufConversion, ConvertError> {
    if options.max_shard_bytes < MIN_SHARD_BYTES {
        return Err(ConvertError::ShardSize(options.max_shard_bytes));
    }
    let output = OutputDir::prepare(out_dir, gguf_path, options.overwrite)?;

    // One open file for the header and the tensors: nothing can replace it in between.
    let mut source = checked_file::open(gguf_path).map_err(GgufError::from)?;
    let gguf = GgufFile::read(&source.file)?;
    let import =
        ImportOptions { context: options.context, judge: options.judge, chat_template: options.chat_template.as_ref() };
    let file_name = gguf_path.file_name().and_then(|n| n.to_str());
    let apart = GgufPlan::read_apart(&gguf, |range| source.read_range(range).map_err(GgufError::from))?;
    let plan = GgufPlan::new(&gguf, file_name, &import, &apart)?;

    let mut writer = ModelWriter::create(output.path(), options.max_shard_bytes)?;
    let total = plan.source_bytes();
    let mut done = 0;
    progress(done, total);
    for tensor in &plan.tensors {
        writer.write_tensor(&tensor.name, tensor.dtype, &tensor.shape, tensor.group_size(), |rows| {
            let bytes = source.read_range(tensor.source_range(rows.clone())).map_err(GgufError::from)?;
            done += tensor.source_bytes(&rows);
            let words = tensor.repack(rows, &bytes)?;
            progress(done, total);
            Ok::<_, ConvertError>(words)
        })?;
    }
    let manifest = writer.finish(plan.architecture, plan.chat_template, plan.judge.family)?;
    let tokenizer_path = output.path().join(TOKENIZER_FILE);
    fs::write(&tokenizer_path, plan.tokenizer_json).map_err(|e| io_error_at(&tokenizer_path, e))?;

    output.commit()?;
    Ok(GgufConversion { manifest, judge_reason: plan.judge.reason, longrope: plan.longrope })
}
