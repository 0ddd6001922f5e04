//! `webjudge perplexity`: a text's perplexity as llama-perplexity scores it, and with
//! `--reference` the KL divergence from the same checkpoint at higher precision
//! (`webjudge::engine::perplexity` holds the scoring; docs/quantization.md says what it matches).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use web_time::Instant;

use webjudge::engine::native::read_metadata;
use webjudge::engine::perplexity::{
    added_bos, check_same_tokens, chunk_logits, chunks, log_probs, text_tokens, KlDivergence, Nll, DEFAULT_CONTEXT,
};
use webjudge::format::checked_file;
use webjudge::format::Manifest;
use webjudge::kernels::MatvecPath;
use webjudge::model::{check_context, MAX_SEQUENCES};

use super::flags::{matvec_path, whole, MAX_COUNT};
use super::load::ModelArgs;
use super::{outln, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// Model directory to score.
    #[arg(long)]
    model: PathBuf,
    /// The text to score (UTF-8), tokenized whole as text.
    #[arg(long)]
    text: PathBuf,
    /// The same checkpoint at higher precision (an f16 or f32 model directory with the same
    /// tokenizer): adds KL(reference ‖ model) per scored token and top-token agreement.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Tokens per chunk, each evaluated from an empty context with its second half scored
    /// (default 512, or the model's context if shorter).
    #[arg(long, allow_negative_numbers = true, value_parser = whole::<usize>(1..=MAX_COUNT))]
    context: Option<usize>,
    /// Score only the first N chunks (llama-perplexity's --chunks).
    #[arg(long, allow_negative_numbers = true, value_parser = whole::<usize>(1..=MAX_COUNT))]
    chunks: Option<usize>,
    /// How the model's decode matvecs multiply x (`exact` or `int8`, as for `bench`); the
    /// reference always runs exact, so `--reference` of the same directory with `int8`
    /// measures what the int8 path changes.
    #[arg(long, default_value = "exact", value_parser = matvec_path())]
    matvec: MatvecPath,
    /// Print one JSON line last: tokens, perplexity, chunks, context, seconds (both passes,
    /// loading included), and with --reference reference_perplexity, kl_mean, kl_p99, kl_max,
    /// same_top.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> CliResult {
    let text = checked_file::read_to_string(&args.text, checked_file::TEXT_INPUT)?;
    let (manifest, tokenizer) = read_metadata(&args.model)?;
    let tokens = text_tokens(&tokenizer, &manifest.architecture, &text)?;
    let reference = match &args.reference {
        Some(dir) => {
            let (reference, reference_tokenizer) = read_metadata(dir)?;
            let reference_tokens = text_tokens(&reference_tokenizer, &reference.architecture, &text)?;
            check_same_tokens(&tokens, manifest.architecture.vocab, &reference_tokens, reference.architecture.vocab)?;
            Some((dir.as_path(), reference))
        }
        None => None,
    };
    let context = chunk_context(args.context, [Some(&manifest), reference.as_ref().map(|(_, m)| m)])?;
    let mut chunks = chunks(&tokens, context, added_bos(&manifest.architecture))?;
    chunks.truncate(args.chunks.unwrap_or(usize::MAX));

    let passes = 1 + usize::from(reference.is_some());
    let progress = Progress::new((chunks.len() * passes) as u64, context - 1);
    let started = Instant::now();
    let (nll, compared) = match reference {
        Some((dir, _)) => {
            let mut spill = Spill::create()?;
            let reference_nll =
                score(dir, MatvecPath::Exact, context, &chunks, &progress, &mut |row| spill.write(row))?;
            let mut rows = spill.read()?;
            let mut kl = KlDivergence::default();
            let nll = score(&args.model, args.matvec, context, &chunks, &progress, &mut |row| {
                kl.add(&rows.next_row(row.len())?, row);
                Ok(())
            })?;
            (nll, kl.summary().map(|kl| (reference_nll, kl)))
        }
        None => (score(&args.model, args.matvec, context, &chunks, &progress, &mut |_| Ok(()))?, None),
    };
    progress.bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();

    let mut summary = serde_json::json!({
        "tokens": nll.tokens(),
        "perplexity": nll.perplexity(),
        "chunks": chunks.len(),
        "context": context,
        "seconds": seconds,
    });
    if let Some((reference, kl)) = compared {
        summary["reference_perplexity"] = reference.perplexity().into();
        summary["kl_mean"] = kl.mean.into();
        summary["kl_p99"] = kl.p99.into();
        summary["kl_max"] = kl.max.into();
        summary["same_top"] = kl.same_top.into();
    }
    if args.json {
        outln!("{summary}")?;
        return Ok(());
    }
    outln!(
        "perplexity {:.4} over {} scored tokens ({} chunks of {context}, {seconds:.1} s)",
        nll.perplexity(),
        nll.tokens(),
        chunks.len()
    )?;
    if let Some((reference, kl)) = compared {
        outln!("reference perplexity {:.4}", reference.perplexity())?;
        outln!("KL(reference ‖ model): mean {:.6}, p99 {:.6}, max {:.6}", kl.mean, kl.p99, kl.max)?;
        outln!("same top token: {:.3}%", 100.0 * kl.same_top)?;
    }
    Ok(())
}

/// `--context`, or llama-perplexity's 512 where every model holds it (else the shortest
/// model context); refused when a model holds fewer positions than asked.
fn chunk_context(asked: Option<usize>, manifests: [Option<&Manifest>; 2]) -> Result<usize, Box<dyn std::error::Error>> {
    let architectures = manifests.into_iter().flatten().map(|m| &m.architecture);
    let context =
        asked.unwrap_or_else(|| architectures.clone().map(|a| a.context_length).fold(DEFAULT_CONTEXT, usize::min));
    for architecture in architectures {
        check_context(architecture, context)?;
    }
    Ok(context)
}

/// Loads the model in `dir` with its decode matvecs on `matvec` and scores every chunk,
/// handing `each` the log-probabilities of every scored position in order; returns the
/// scored tokens' negative log-likelihood.
fn score(
    dir: &Path,
    matvec: MatvecPath,
    context: usize,
    chunks: &[Vec<u32>],
    progress: &Progress,
    each: &mut dyn FnMut(&[f64]) -> std::io::Result<()>,
) -> Result<Nll, Box<dyn std::error::Error>> {
    let model = ModelArgs {
        model: dir.to_path_buf(),
        context: Some(context),
        prefill_chunk: None,
        no_subgroups: false,
        matvec,
    };
    // Decode steps of up to MAX_SEQUENCES rows: each weight is read once per step.
    let mut engine = model.load_batch(MAX_SEQUENCES, None)?;
    let mut nll = Nll::default();
    let mut failed = None;
    for chunk in chunks {
        pollster::block_on(chunk_logits(engine.model_mut(), chunk, &mut |position, logits| {
            let log_probs = log_probs(logits);
            nll.add(&log_probs, chunk[position + 1]);
            if failed.is_none() {
                failed = each(&log_probs).err();
            }
        }))?;
        if let Some(error) = failed.take() {
            return Err(error.into());
        }
        progress.chunk_done();
    }
    Ok(nll)
}

/// Chunks done of all passes, and evaluated tokens per second, on stderr.
struct Progress {
    bar: ProgressBar,
    started: Instant,
    tokens_per_chunk: usize,
}

impl Progress {
    fn new(chunks: u64, tokens_per_chunk: usize) -> Self {
        let bar = ProgressBar::new(chunks).with_style(
            ProgressStyle::with_template("scoring {bar:40} {pos}/{len} chunks, {elapsed} elapsed, ETA {eta} {msg}")
                .expect("valid template"),
        );
        Self { bar, started: Instant::now(), tokens_per_chunk }
    }

    fn chunk_done(&self) {
        self.bar.inc(1);
        let tokens = self.bar.position() as usize * self.tokens_per_chunk;
        self.bar.set_message(format!("{:.1} tok/s", tokens as f64 / self.started.elapsed().as_secs_f64()));
    }
}

/// The reference's log-probabilities of every scored position, as f32, in a temporary file
/// the model's pass reads back in the same order: the two models are never loaded together,
/// and the rows (vocabulary × 4 bytes each) need not fit in memory.
struct Spill {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl Spill {
    fn create() -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!("webjudge-perplexity-{}.f32", std::process::id()));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Self { path, writer: BufWriter::new(file) })
    }

    fn write(&mut self, log_probs: &[f64]) -> std::io::Result<()> {
        log_probs.iter().try_for_each(|&p| self.writer.write_all(&(p as f32).to_le_bytes()))
    }

    /// The rows written, from the first.
    fn read(&mut self) -> std::io::Result<SpillReader> {
        self.writer.flush()?;
        let mut file = self.writer.get_ref().try_clone()?;
        file.rewind()?;
        Ok(SpillReader(BufReader::new(file)))
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

struct SpillReader(BufReader<File>);

impl SpillReader {
    fn next_row(&mut self, vocab: usize) -> std::io::Result<Vec<f64>> {
        let mut bytes = vec![0u8; vocab * 4];
        self.0.read_exact(&mut bytes)?;
        Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64).collect())
    }
}
