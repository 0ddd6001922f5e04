//! Options shared by the commands that run a model, and loading with a progress bar.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use webjudge::engine::native::{is_gguf, load_path, read_metadata};
use webjudge::engine::Engine;
use webjudge::format::checked_file;
use webjudge::format::manifest::MANIFEST_FILE;
use webjudge::format::Manifest;
use webjudge::kernels::GpuOptions;
use webjudge::model::{LoadOptions, MAX_STEP_TOKENS};

use super::flags::{whole, MAX_COUNT};

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
    /// buffers hold for the model (the error says how many).
    #[arg(
        long,
        default_value_t = webjudge::model::DEFAULT_PREFILL_CHUNK,
        allow_negative_numbers = true,
        value_parser = whole::<usize>(1..=MAX_STEP_TOKENS as u64)
    )]
    pub prefill_chunk: usize,
    /// Use the workgroup-reduction kernels even where the adapter has subgroups.
    #[arg(long)]
    pub no_subgroups: bool,
}

impl ModelArgs {
    /// The model's default load options with this command's choices applied.
    pub fn load_options(&self, defaults: LoadOptions) -> LoadOptions {
        LoadOptions { context: self.context.unwrap_or(defaults.context), prefill_chunk: self.prefill_chunk, ..defaults }
    }

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
            GpuOptions { allow_subgroups: !self.no_subgroups },
            |defaults| {
                // A context sized for the prompts is at most the model's; --context is
                // taken as given, and refused when the model has less.
                let fitting = context.map(|context| context.min(defaults.context));
                let options = self.load_options(LoadOptions { sequences, ..defaults });
                LoadOptions { context: self.context.or(fitting).unwrap_or(options.context), ..options }
            },
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

/// A model directory's manifest, and its bytes (a batch output names the model by their hash);
/// for a GGUF file, those `convert` would write (a pass over the file).
pub fn read_manifest(dir: &Path) -> Result<(Manifest, Vec<u8>), String> {
    if is_gguf(dir) {
        // Errors reading the file name it already; those of its contents do not.
        let name = dir.display().to_string();
        let manifest = read_metadata(dir)
            .map_err(|e| match e.to_string() {
                message if message.starts_with(&name) => message,
                message => format!("{name}: {message}"),
            })?
            .0;
        let bytes = manifest.to_json().into_bytes();
        return Ok((manifest, bytes));
    }
    let path = dir.join(MANIFEST_FILE);
    let bytes = checked_file::read(&path, checked_file::MANIFEST).map_err(|e| e.to_string())?;
    let manifest =
        Manifest::from_json(&String::from_utf8_lossy(&bytes)).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((manifest, bytes))
}
