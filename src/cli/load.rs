//! Options shared by the commands that run a model, and loading with a progress bar.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

use webjudge::engine::native::load_path;
use webjudge::engine::Engine;
use webjudge::kernels::{GpuOptions, MatvecPath};
use webjudge::model::{LoadOptions, MAX_STEP_TOKENS};

use super::flags::{matvec_path, whole, MAX_COUNT};

#[derive(clap::Args)]
pub struct ModelArgs {
    /// Model directory (manifest.json, tokenizer.json, weight shards), or a GGUF file, loaded
    /// as `webjudge convert` would convert it.
    #[arg(long)]
    pub model: PathBuf,
    /// KV cache positions to allocate, at most the model's context length (the default).
    #[arg(long, allow_negative_numbers = true, value_parser = whole::<usize>(1..=MAX_COUNT))]
    pub context: Option<usize>,
    /// Prompt tokens per prefill submission: at most 65535, and as many as the adapter's
    /// buffers hold for the model (the error says how many). Default: 512 on a GPU, 128 on
    /// a CPU adapter such as lavapipe, fewer where the adapter's buffers hold fewer.
    #[arg(long, allow_negative_numbers = true, value_parser = whole::<usize>(1..=MAX_STEP_TOKENS as u64))]
    pub prefill_chunk: Option<usize>,
    /// Use the workgroup-reduction kernels even where the adapter has subgroups.
    #[arg(long)]
    pub no_subgroups: bool,
    /// How decode matvecs multiply x: `exact` (f32), or `int8` (q4 and q8 weights times x
    /// quantized to 8 bits per block by WGSL's packed integer dot product; adds error,
    /// measured in docs/quantization.md).
    #[arg(long, default_value = "exact", value_parser = matvec_path())]
    pub matvec: MatvecPath,
}

impl ModelArgs {
    /// Loads the model for one sequence at a time, drawing upload progress on stderr.
    pub fn load(&self) -> Result<Engine, webjudge::engine::EngineError> {
        self.load_batch(1, None)
    }

    /// Loads the model with KV cache slots for up to `sequences` decoded together (fewer
    /// where the adapter's buffers cannot hold them) and, unless `--context` says
    /// otherwise, `context` positions each (default: the model's).
    pub fn load_batch(
        &self,
        sequences: usize,
        context: Option<usize>,
    ) -> Result<Engine, webjudge::engine::EngineError> {
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("loading {bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
                .expect("valid template"),
        );
        let engine = load_path(
            &self.model,
            GpuOptions { allow_subgroups: !self.no_subgroups, matvec: self.matvec, ..Default::default() },
            |defaults| {
                let prefill_chunk = self.prefill_chunk.unwrap_or(defaults.prefill_chunk);
                LoadOptions { prefill_chunk, ..defaults }.for_batch(sequences, self.context, context)
            },
            &mut |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            },
        );
        bar.finish_and_clear();
        let engine = engine?;
        let gpu = engine.model().gpu();
        let chunk = engine.model().prefill_chunk();
        eprintln!("adapter: {}; matvec: {}; prefill chunk: {chunk}", gpu.describe(), gpu.matvec.name());
        Ok(engine)
    }
}
