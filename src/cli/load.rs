//! Options shared by the commands that run a model, and loading with a progress bar.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

use webjudge::engine::native::load_dir;
use webjudge::engine::Engine;
use webjudge::kernels::GpuOptions;
use webjudge::model::LoadOptions;

#[derive(clap::Args)]
pub struct ModelArgs {
    /// Model directory (manifest.json, tokenizer.json, weight shards).
    #[arg(long)]
    pub model: PathBuf,
    /// KV cache positions to allocate (default: the model's context length).
    #[arg(long)]
    pub context: Option<usize>,
    /// Prompt tokens per prefill submission.
    #[arg(long, default_value_t = webjudge::model::DEFAULT_PREFILL_CHUNK)]
    pub prefill_chunk: usize,
    /// Use the workgroup-reduction kernels even where the adapter has subgroups.
    #[arg(long)]
    pub no_subgroups: bool,
}

impl ModelArgs {
    /// The model's default load options with this command's choices applied.
    pub fn load_options(&self, defaults: LoadOptions) -> LoadOptions {
        LoadOptions { context: self.context.unwrap_or(defaults.context), prefill_chunk: self.prefill_chunk }
    }

    /// Loads the model, drawing upload progress on stderr.
    pub fn load(&self) -> Result<Engine, webjudge::engine::EngineError> {
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("loading {bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
                .expect("valid template"),
        );
        let engine = load_dir(
            &self.model,
            GpuOptions { allow_subgroups: !self.no_subgroups },
            |options| self.load_options(options),
            &mut |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            },
        );
        bar.finish_and_clear();
        let engine = engine?;
        eprintln!("adapter: {}", engine.model().gpu().describe());
        Ok(engine)
    }
}
