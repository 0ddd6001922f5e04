//! `webjudge convert`: a GGUF file or a Hugging Face checkpoint directory into a model
//! directory.

use std::collections::BTreeMap;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

use webjudge::convert::gguf_import::{convert_gguf, ConvertOptions, GgufConversion};
use webjudge::convert::hf_import::{convert_hf, HfConversion, HfError, HfOptions};
use webjudge::convert::import::tidy_leftovers;
use webjudge::convert::quant::Quant;
use webjudge::format::checked_file;
use webjudge::import::{ConvertError, JudgeChoice, OutputProblem, TemplateText};
use webjudge::judge::JudgeFamily;

use super::{outln, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// A GGUF file (llama, qwen2 or phi3 architecture; F32, F16, BF16, Q8_0, Q4_0, Q4_1,
    /// Q5_0, Q5_1, Q4_K, Q5_K or Q6_K tensors, copied losslessly) or a Hugging Face model
    /// directory (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Phi3ForCausalLM;
    /// config.json, tokenizer.json, safetensors weights in F32, F16 or BF16, or else PyTorch
    /// `.bin` weights, whose pickle is read without executing it; AutoGPTQ 4-bit checkpoints too).
    pub input: PathBuf,
    /// The model directory to create.
    #[arg(long)]
    pub out: PathBuf,
    /// Largest shard to write, in MiB.
    #[arg(
        long,
        default_value_t = 64,
        allow_negative_numbers = true,
        value_parser = super::flags::whole::<u64>(1..=MAX_SHARD_MB)
    )]
    pub shard_mb: u64,
    /// Replace the output directory if it is a model directory holding only what a
    /// conversion wrote (its manifest.json, tokenizer.json and the shards the manifest
    /// lists); a directory holding the input or anything else is never replaced.
    #[arg(long)]
    pub force: bool,
    /// Hugging Face input only: how 2-D weights are stored (default q4): f32, f16, q8, q4
    /// (4-bit, each group's scale and offset searched), q4minmax (q4 by each group's min and
    /// max), q4sym (like GGUF Q4_0), q4_k, q5_k, q6_k (every weight one K-quant), q4_k_m,
    /// q5_k_m (llama.cpp's mixes). docs/quantization.md measures each.
    #[arg(long)]
    pub quant: Option<Quant>,
    /// Hugging Face input only, with q4, q4minmax, q4sym or q8: values per quantization
    /// group (32, 64 or 128; default 32). GPTQ layers kept as q4 keep their own group size.
    #[arg(long, value_parser = parse_group)]
    pub group: Option<usize>,
    /// Hugging Face input only: a calibration text (UTF-8; e.g. the prompts the judge will
    /// see) to collect an importance matrix from, as llama.cpp's llama-imatrix does (chunks
    /// of up to 512 tokens, a CPU forward pass over the checkpoint's own weights), which then
    /// weighs the quantizers' error as llama.cpp's do. With q4 and the K-quant choices.
    #[arg(long)]
    pub imatrix_text: Option<PathBuf>,
    /// The context to record, in positions, when smaller than the model's own (the engine
    /// never attends further); needed for a sliding-window model, whose window must cover it.
    #[arg(
        long,
        allow_negative_numbers = true,
        value_parser = super::flags::whole::<usize>(1..=super::flags::MAX_COUNT)
    )]
    pub context: Option<usize>,
    /// The judge family to record in the manifest: autoj, prometheus, skywork, selene,
    /// compassjudger, flowjudge or none. Default:
    /// inferred from the checkpoint's names (directory name or _name_or_path, GGUF
    /// general.name or file name).
    #[arg(long, value_parser = parse_judge)]
    pub judge: Option<JudgeChoice>,
    /// A Jinja chat template (a `chat_template.jinja` as transformers writes one) to record
    /// instead of the checkpoint's own, or for a checkpoint without one. Rendered at prompt
    /// time as transformers' apply_chat_template renders it.
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<PathBuf>,
}

/// The largest `--shard-mb`: a shard is held whole in memory as it loads, in the browser
/// in wasm's 32-bit memory beside the shards loading with it.
const MAX_SHARD_MB: u64 = 2048;

pub fn run(args: Args) -> CliResult {
    let max_shard_bytes = args.shard_mb.saturating_mul(1 << 20);
    let hf = args.input.is_dir();
    if !hf && (args.quant.is_some() || args.group.is_some() || args.imatrix_text.is_some()) {
        return Err("--quant, --group and --imatrix-text apply to Hugging Face checkpoint directories; a GGUF file is converted without requantizing".into());
    }
    let quant = args.quant.unwrap_or(HfOptions::default().quant);
    if args.group.is_some() && !quant.takes_group() {
        let grouped: Vec<&str> = Quant::ALL.iter().filter(|(q, _)| q.takes_group()).map(|(_, name)| *name).collect();
        return Err(
            format!("--group applies to {}; {} has its own block sizes", grouped.join(", "), quant.name()).into()
        );
    }
    if args.imatrix_text.is_some() && !quant.weighs_importance() {
        let weighing: Vec<&str> =
            Quant::ALL.iter().filter(|(q, _)| q.weighs_importance()).map(|(_, name)| *name).collect();
        return Err(format!(
            "--imatrix-text applies to {}; {} does not weigh its rounding by importance",
            weighing.join(", "),
            quant.name()
        )
        .into());
    }
    let imatrix_text = match &args.imatrix_text {
        Some(path) => Some(checked_file::read_to_string(path, checked_file::TEXT_INPUT)?),
        None => None,
    };
    let chat_template = match &args.chat_template {
        Some(path) => Some(TemplateText {
            origin: path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned()),
            jinja: checked_file::read_to_string(path, checked_file::CHAT_TEMPLATE)?,
        }),
        None => None,
    };
    // Said on stderr even if the conversion then fails: a model may have been put back.
    for tidied in tidy_leftovers(&args.out) {
        eprintln!("{tidied}");
    }
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("converting {bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("valid template"),
    );
    let judge = args.judge.unwrap_or_default();
    let mut progress = |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let result: Result<HfConversion, Box<dyn std::error::Error>> = if hf {
        let options = HfOptions {
            quant,
            group: args.group.unwrap_or(32),
            max_shard_bytes,
            overwrite: args.force,
            context: args.context,
            judge,
            imatrix_text,
            chat_template,
        };
        convert_hf(&args.input, &args.out, &options, &mut progress).map_err(|error| match error {
            HfError::Convert(error) => output_hint(error),
            error => error.into(),
        })
    } else {
        let options =
            ConvertOptions { max_shard_bytes, overwrite: args.force, context: args.context, judge, chat_template };
        convert_gguf(&args.input, &args.out, &options, &mut progress)
            .map(|GgufConversion { manifest, judge_reason, longrope }| HfConversion {
                manifest,
                gptq_kept: 0,
                gptq_reordered: 0,
                gptq_requantized: Vec::new(),
                judge_reason,
                importance: None,
                longrope,
            })
            .map_err(output_hint)
    };
    bar.finish_and_clear();
    let HfConversion { manifest, gptq_kept, gptq_reordered, gptq_requantized, judge_reason, importance, longrope } =
        result?;
    if let Some(cap) = longrope {
        outln!("{cap}")?;
    }
    if let Some(importance) = importance {
        outln!("importance matrix: {} weights, from {} calibration tokens", importance.len(), importance.tokens)?;
    }
    let quant = match quant.takes_group() {
        true => format!("{} with groups of {}", quant.name(), args.group.unwrap_or(32)),
        false => quant.name().to_string(),
    };
    print_gptq(gptq_kept, gptq_reordered, &gptq_requantized, &quant)?;

    let mut dtypes = BTreeMap::new();
    for tensor in &manifest.tensors {
        *dtypes.entry(tensor.dtype.name()).or_insert(0) += 1;
    }
    let dtypes: Vec<String> = dtypes.iter().map(|(dtype, count)| format!("{count} {dtype}")).collect();
    let judge = manifest.judge.map_or("none", |family| family.name());
    let hint = if args.judge.is_none() { "; --judge overrides it" } else { "" };
    outln!("judge family: {judge} ({judge_reason}{hint})")?;
    match &manifest.chat_template {
        Some(template) => outln!("chat template: {}", template.origin())?,
        None => {
            outln!("chat template: none (generation from plain text works; judging needs one: --chat-template FILE)")?
        }
    }
    outln!(
        "wrote {}: {} tensors ({}) in {} shards, {:.1} MiB",
        args.out.display(),
        manifest.tensors.len(),
        dtypes.join(", "),
        manifest.shards.len(),
        manifest.total_bytes() as f64 / (1 << 20) as f64,
    )?;
    Ok(())
}

/// Says what became of a GPTQ checkpoint's linear layers (`quant` names what the
/// requantized ones became).
fn print_gptq(kept: usize, reordered: usize, requantized: &[(String, String)], quant: &str) -> std::io::Result<()> {
    if kept > 0 {
        outln!("GPTQ: {kept} linear weights kept as q4 (codes and scales as stored, GPTQ's group size)")?;
    }
    if reordered > 0 {
        outln!("GPTQ: {reordered} of them act-order: columns sorted by group, inputs gathered into that order")?;
    }
    if let Some((first, why)) = requantized.first() {
        outln!("GPTQ: {} linear weights dequantized and requantized to {quant} ({first}: {why})", requantized.len())?;
    }
    Ok(())
}

/// Suggests --force when the output is a model directory it may replace.
fn output_hint(error: ConvertError) -> Box<dyn std::error::Error> {
    match error {
        ConvertError::Output { problem: OutputProblem::NotEmpty, .. } => format!("{error}; --force replaces it").into(),
        error => error.into(),
    }
}

fn parse_judge(text: &str) -> Result<JudgeChoice, String> {
    match text {
        "none" => Ok(JudgeChoice::Given(None)),
        family => family
            .parse::<JudgeFamily>()
            .map(|family| JudgeChoice::Given(Some(family)))
            .map_err(|error| format!("{error}, or none")),
    }
}

fn parse_group(text: &str) -> Result<usize, String> {
    match text.parse() {
        Ok(group @ (32 | 64 | 128)) => Ok(group),
        _ => Err(format!("{text:?} is not one of 32, 64 or 128")),
    }
}
