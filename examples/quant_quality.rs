//! Quantizer quality: converts one Hugging Face checkpoint at f32 and at each
//! `--quant`/`--group` choice, runs the same texts through each (teacher-forced, one token
//! per step), and compares every next-token distribution with the f32 model's: top-1
//! agreement and KL(f32 ‖ quantized). Prints a markdown table (docs/quantization.md).
//!
//! ```sh
//! cargo run --release --example quant_quality -- HF_DIR WORK_DIR [TEXTS_JSONL] [TOKENS_PER_TEXT] [TEXTS]
//! ```
//! TEXTS_JSONL defaults to Auto-J's pairwise test set (its `prompt` field); the first rows
//! with at least TOKENS_PER_TEXT tokens are used.

use std::path::{Path, PathBuf};

use webjudge::convert::hf_import::{convert_hf, HfOptions};
use webjudge::engine::native::load_dir;
use webjudge::format::Quant;
use webjudge::kernels::{GpuOptions, Sampling};
use webjudge::tokenizer::Tokenizer;

type Error = Box<dyn std::error::Error>;

const CHOICES: &[(Quant, usize)] = &[
    (Quant::F16, 0),
    (Quant::Q8, 32),
    (Quant::Q4, 32),
    (Quant::Q4, 64),
    (Quant::Q4, 128),
    (Quant::Q4Sym, 32),
    (Quant::Q4Sym, 64),
];

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [hf_dir, work, ..] = args.as_slice() else {
        return Err("usage: quant_quality HF_DIR WORK_DIR [TEXTS_JSONL] [TOKENS_PER_TEXT] [TEXTS]".into());
    };
    let texts_path = args.get(2).cloned().unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/autoj/data/testdata_pairwise.jsonl").to_string()
    });
    let tokens: usize = args.get(3).map_or(Ok(48), |n| n.parse())?;
    let count: usize = args.get(4).map_or(Ok(3), |n| n.parse())?;
    let (hf_dir, work) = (PathBuf::from(hf_dir), PathBuf::from(work));

    let tokenizer = Tokenizer::from_file(hf_dir.join("tokenizer.json"))?;
    let texts = std::fs::read_to_string(&texts_path).map_err(|e| format!("{texts_path}: {e}"))?;
    let sequences: Vec<Vec<u32>> = texts
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|row| row["prompt"].as_str().map(str::to_string))
        .filter_map(|text| tokenizer.encode(&text).ok())
        .filter(|ids| ids.len() >= tokens)
        .take(count)
        .map(|ids| ids[..tokens].to_vec())
        .collect();
    eprintln!("{} texts x {tokens} tokens from {texts_path}", sequences.len());

    let reference = log_softmaxes(&convert(&hf_dir, &work, Quant::F32, 0)?, &sequences, tokens)?;
    println!("| weights | group | model MiB | top-1 agreement | mean KL | max KL |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for &(quant, group) in CHOICES {
        let dir = match convert(&hf_dir, &work, quant, group) {
            Ok(dir) => dir,
            // Groups must divide every matrix's columns (576 does not divide by 128).
            Err(error) => {
                println!("| {quant:?} | {group} | - | not applicable: {error} | - | - |");
                continue;
            }
        };
        let mib = std::fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".bin"))
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .sum::<u64>() as f64
            / (1 << 20) as f64;
        let quantized = log_softmaxes(&dir, &sequences, tokens)?;
        let (mut agree, mut kl_sum, mut kl_max) = (0usize, 0.0f64, 0.0f64);
        for (p, q) in reference.iter().zip(&quantized) {
            agree += usize::from(argmax(p) == argmax(q));
            let kl: f64 = p.iter().zip(q).map(|(&lp, &lq)| lp.exp() * (lp - lq)).sum();
            kl_sum += kl;
            kl_max = kl_max.max(kl);
        }
        let n = reference.len() as f64;
        let group = if quant.dtype().is_quantized() { group.to_string() } else { "-".into() };
        println!(
            "| {quant:?} | {group} | {mib:.1} | {:.1}% | {:.5} | {kl_max:.4} |",
            100.0 * agree as f64 / n,
            kl_sum / n
        );
    }
    Ok(())
}

fn convert(hf_dir: &Path, work: &Path, quant: Quant, group: usize) -> Result<PathBuf, Error> {
    let dir = work.join(format!("{quant:?}-{group}").to_lowercase());
    let options = HfOptions { quant, group: group.max(32), overwrite: true, ..HfOptions::default() };
    convert_hf(hf_dir, &dir, &options, &mut |_, _| {})?;
    Ok(dir)
}

/// Log-probabilities (f64) of the next token after every prefix of every sequence but the full one.
fn log_softmaxes(dir: &Path, sequences: &[Vec<u32>], tokens: usize) -> Result<Vec<Vec<f64>>, Error> {
    let mut engine = load_dir(
        dir,
        GpuOptions::default(),
        |mut o| {
            o.context = tokens;
            o
        },
        &mut |_, _| {},
    )?;
    let model = engine.model_mut();
    let mut out = Vec::new();
    for ids in sequences {
        model.reset();
        for &id in &ids[..ids.len() - 1] {
            pollster::block_on(model.prefill(&[id], Sampling::Greedy))?;
            let logits = pollster::block_on(model.logits(1))?;
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let log_sum = logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln() + max;
            out.push(logits.iter().map(|&l| l as f64 - log_sum).collect());
        }
    }
    Ok(out)
}

fn argmax(values: &[f64]) -> usize {
    values.iter().enumerate().fold(0, |best, (i, &v)| if v > values[best] { i } else { best })
}
