//! `webjudge convert`: a GGUF file into a model directory.

use std::collections::BTreeMap;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

use webjudge::weights::convert::{convert_gguf, ConvertError, ConvertOptions};

use super::CliResult;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF file (llama architecture; F32, F16, Q8_0, Q4_0 or Q4_1 tensors).
    pub gguf: PathBuf,
    /// The model directory to create.
    #[arg(long)]
    pub out: PathBuf,
    /// Largest shard to write, in MiB.
    #[arg(long, default_value_t = 64)]
    pub shard_mb: u64,
    /// Replace the output directory if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args) -> CliResult {
    let options = ConvertOptions { max_shard_bytes: args.shard_mb.saturating_mul(1 << 20), overwrite: args.force };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("converting {bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("valid template"),
    );
    let result = convert_gguf(&args.gguf, &args.out, &options, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let manifest = result.map_err(|error| -> Box<dyn std::error::Error> {
        match error {
            ConvertError::Output { .. } if args.out.is_dir() && !args.force => {
                format!("{error}; --force replaces it").into()
            }
            error => error.into(),
        }
    })?;

    let mut dtypes = BTreeMap::new();
    for tensor in &manifest.tensors {
        *dtypes.entry(format!("{:?}", tensor.dtype).to_lowercase()).or_insert(0) += 1;
    }
    let dtypes: Vec<String> = dtypes.iter().map(|(dtype, count)| format!("{count} {dtype}")).collect();
    println!(
        "wrote {}: {} tensors ({}) in {} shards, {:.1} MiB",
        args.out.display(),
        manifest.tensors.len(),
        dtypes.join(", "),
        manifest.shards.len(),
        manifest.total_bytes() as f64 / (1 << 20) as f64,
    );
    Ok(())
}
