//! Throughput figures: prefill and decode tokens/s of the whole model, and the 4-bit
//! matrix-vector kernel's bandwidth next to a plain copy's on the same adapter.
//!
//! Decode is bound by reading every weight once per token, so `matvec GB/s / copy GB/s`
//! says how close the kernel gets to what the adapter can move at all.

use web_time::Instant;

use super::{Engine, EngineError};
use crate::kernels::variants::DEFAULT_WORKGROUP;
use crate::kernels::{
    linear, record_all, Clock, Dispatch, Epilogue, Gpu, GpuTensor, LinearKernel, LinearTokens, PipelineKey, Sampling,
    Shader, Step, StepBuffers, TokenPlace, Workgroups,
};
use crate::model::{LlamaModel, ProfiledStep, StepError};

/// The benchmark's and profile's prompt, cycled to the prompt length (the peer benchmarks'
/// copy is tools/peers/prompt.mjs).
pub const PROMPT_TEXT: &str = "Evaluate the two responses to the user's query. Compare their helpfulness, \
    accuracy, depth and clarity, point out the flaws of each, and then give a final decision.";

/// A profile's defaults: the KV cache position it times at (`judge.profile`'s; the CLI
/// profiles at its `--prompt-tokens`, also 256 by default) and timed runs of each step.
pub const PROFILE_CONTEXT_TOKENS: usize = 256;
pub const PROFILE_RUNS: usize = 3;

#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub prompt_tokens: usize,
    pub decode_tokens: usize,
    /// Kernel launches per bandwidth measurement (after one warm-up).
    pub kernel_repeats: usize,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    pub adapter: String,
    pub prompt_tokens: usize,
    pub prefill_tok_s: f64,
    pub decode_tokens: usize,
    pub decode_tok_s: f64,
    /// The tensor the matvec figure was measured on, with its shape (and ", x as int8" on
    /// the int8 matvec path).
    pub matvec_tensor: String,
    pub matvec_gb_s: f64,
    pub copy_gb_s: f64,
}

impl BenchReport {
    pub fn matvec_to_copy(&self) -> f64 {
        if self.copy_gb_s > 0.0 {
            self.matvec_gb_s / self.copy_gb_s
        } else {
            0.0
        }
    }
}

/// Runs the benchmark; `prompt_ids` is cycled to the configured prompt length.
pub async fn run(engine: &mut Engine, prompt_ids: &[u32], config: &BenchConfig) -> Result<BenchReport, EngineError> {
    let model = engine.model_mut();
    let ids: Vec<u32> = prompt_ids.iter().copied().cycle().take(config.prompt_tokens.max(1)).collect();
    // One untimed pass compiles and warms every pipeline.
    model.reset();
    model.prefill(&ids, Sampling::Greedy).await?;
    model.decode(Sampling::Greedy).await?;

    model.reset();
    let started = Instant::now();
    model.prefill(&ids, Sampling::Greedy).await?;
    let prefill_seconds = started.elapsed().as_secs_f64();
    // As generation runs: the next step is queued before each id is read.
    let started = Instant::now();
    if config.decode_tokens > 0 {
        model.submit_decode(Sampling::Greedy)?;
    }
    for index in 0..config.decode_tokens {
        if index + 1 < config.decode_tokens {
            model.submit_decode(Sampling::Greedy)?;
        }
        model.next_token().await?;
    }
    let decode_seconds = started.elapsed().as_secs_f64();

    // The largest 4-bit matrix of the first layer: the decode-dominant shape.
    let weight = model.down_projection(0);
    let gpu = model.gpu();
    // The path in the tensor's column, so that rows of either path tell themselves apart.
    let path = if gpu.matvec.quantizes_x(weight.dtype) { ", x as int8" } else { "" };
    let matvec_tensor = format!("{} {:?} {}x{}{path}", weight.name, weight.dtype, weight.rows, weight.cols);
    let matvec_gb_s = matvec_bandwidth(gpu, weight, config.kernel_repeats).await?;
    let copy_gb_s =
        copy_bandwidth(gpu, weight.parts.iter().map(|p| p.buffer.size()).sum(), config.kernel_repeats).await?;
    Ok(BenchReport {
        adapter: gpu.describe(),
        prompt_tokens: ids.len(),
        prefill_tok_s: ids.len() as f64 / prefill_seconds,
        decode_tokens: config.decode_tokens,
        decode_tok_s: config.decode_tokens as f64 / decode_seconds,
        matvec_tensor,
        matvec_gb_s,
        copy_gb_s,
    })
}

/// Weight bytes read per second by the decode matvec over `weight`.
async fn matvec_bandwidth(gpu: &Gpu, weight: &GpuTensor, repeats: usize) -> Result<f64, StepError> {
    let step = StepBuffers::new(gpu, 1);
    step.write(gpu, &Step { n_tokens: 1, choosing: 1, ..Default::default() }, &TokenPlace::run(0, 0, 1));
    let x = gpu.storage("bench x", (weight.cols * 4) as u64);
    let y = gpu.storage("bench y", (weight.rows * 4) as u64);
    let dispatches = linear(gpu, &step, weight, &x, &y, LinearKernel::Matvec, LinearTokens::Each, Epilogue::Store);
    let bytes: u64 = weight.parts.iter().map(|p| p.buffer.size()).sum();
    let seconds = time_repeated(gpu, &dispatches, repeats).await?;
    Ok((bytes * repeats as u64) as f64 / seconds / 1e9)
}

/// Bytes read plus bytes written per second by a plain copy of `bytes` bytes.
async fn copy_bandwidth(gpu: &Gpu, bytes: u64, repeats: usize) -> Result<f64, StepError> {
    let bytes = bytes.min(gpu.limits.max_storage_buffer_binding_size).next_multiple_of(16);
    let src = gpu.storage("bench copy source", bytes);
    let dst = gpu.storage("bench copy destination", bytes);
    let pipeline = gpu.pipeline(PipelineKey::new(Shader::Copy, "main"));
    let copy = Dispatch {
        label: "copy".into(),
        weight_bytes: 0,
        bind_group: gpu.bind(&pipeline, &[(0, &src), (1, &dst)]),
        pipeline,
        workgroups: Workgroups::Flat { items_per_token: (bytes / 16) as u32, workgroup: DEFAULT_WORKGROUP },
    };
    let seconds = time_repeated(gpu, std::slice::from_ref(&copy), repeats).await?;
    Ok((2 * bytes * repeats as u64) as f64 / seconds / 1e9)
}

/// Seconds for `repeats` back-to-back replays of `dispatches`, after one warm-up.
async fn time_repeated(gpu: &Gpu, dispatches: &[Dispatch], repeats: usize) -> Result<f64, StepError> {
    let submit = |times: usize| {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        record_all(&mut encoder, dispatches.iter().cycle().take(dispatches.len() * times), 1);
        gpu.queue.submit([encoder.finish()]);
    };
    submit(1);
    gpu.finish().await?;
    let started = Instant::now();
    submit(repeats.max(1));
    gpu.finish().await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Where a step's time goes, kernel by kernel (dispatches with the same label together),
/// most expensive first. Serialized as JavaScript's `judge.profile` returns it.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub adapter: String,
    pub clock: Clock,
    /// Positions in the KV cache when the steps were timed.
    pub context_tokens: usize,
    /// Sequences in the decode step (one token each): the model's sequence slots.
    pub sequences: usize,
    pub decode: Vec<KernelTime>,
    /// Dispatches of the decode step (attention's merge included).
    pub decode_dispatches: usize,
    /// Dispatches of a decode layer (the most any layer has).
    pub decode_layer_dispatches: usize,
    /// The prefill chunk's kernels, when asked for.
    pub prefill: Option<PrefillProfile>,
}

#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrefillProfile {
    /// Prompt tokens in the timed chunk.
    pub tokens: usize,
    pub kernels: Vec<KernelTime>,
}

#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelTime {
    pub kernel: String,
    pub calls_per_token: f64,
    pub ms_per_token: f64,
    /// Share of the step's time, 0 to 1.
    pub share: f64,
    /// Weight bytes read per second while the kernel ran (weight kernels only).
    #[serde(rename = "weightGbPerSecond")]
    pub gb_s: Option<f64>,
}

/// Prefills `context_tokens` of `prompt_ids` (cycled), then times every dispatch of a
/// decode step (and with `prefill`, of a prefill chunk) at that position, `repeats` times
/// each (averaged).
pub async fn profile(
    engine: &mut Engine,
    prompt_ids: &[u32],
    context_tokens: usize,
    repeats: usize,
    prefill: bool,
) -> Result<Profile, EngineError> {
    let model = engine.model_mut();
    let ids: Vec<u32> = prompt_ids.iter().copied().cycle().take(context_tokens.max(1)).collect();
    model.reset();
    model.prefill(&ids, Sampling::Greedy).await?;
    let sequences = model.sequences();
    let (decode, _, clock) = profile_step(model, ProfiledStep::Decode { sequences }, repeats).await?;
    let decode_dispatches =
        decode.iter().map(|kernel| (kernel.calls_per_token * sequences as f64).round() as usize).sum();
    let decode_layer_dispatches = model.decode_layer_dispatches().iter().copied().max().unwrap_or(0);
    let prefill = match prefill {
        true => {
            let (kernels, tokens, _) = profile_step(model, ProfiledStep::Prefill, repeats).await?;
            Some(PrefillProfile { tokens, kernels })
        }
        false => None,
    };
    Ok(Profile {
        adapter: model.gpu().describe(),
        clock,
        context_tokens: ids.len(),
        sequences,
        decode,
        decode_dispatches,
        decode_layer_dispatches,
        prefill,
    })
}

/// One step's kernels, each dispatch's time averaged over `repeats` runs after a warm-up
/// run; with the step's token count and the clock that timed it.
async fn profile_step(
    model: &LlamaModel,
    step: ProfiledStep,
    repeats: usize,
) -> Result<(Vec<KernelTime>, usize, Clock), StepError> {
    let repeats = repeats.max(1);
    let warm_up = model.profile_step(step, Sampling::Greedy).await?;
    // (label, weight bytes, mean seconds) per dispatch.
    let mut timed: Vec<(String, u64, f64)> =
        warm_up.dispatches.iter().map(|(d, _)| (d.label.clone(), d.weight_bytes, 0.0)).collect();
    for _ in 0..repeats {
        let timing = model.profile_step(step, Sampling::Greedy).await?;
        for (entry, (_, seconds)) in timed.iter_mut().zip(&timing.dispatches) {
            entry.2 += seconds / repeats as f64;
        }
    }
    Ok((kernel_times(&timed, warm_up.n_tokens), warm_up.n_tokens, warm_up.clock))
}

/// Groups timed dispatches `(label, weight bytes, seconds)` by label, per token of a step
/// of `n_tokens` tokens.
fn kernel_times(timed: &[(String, u64, f64)], n_tokens: usize) -> Vec<KernelTime> {
    let step_seconds: f64 = timed.iter().map(|(.., seconds)| seconds).sum();
    let mut kernels: Vec<(String, usize, u64, f64)> = Vec::new();
    for (label, weight_bytes, seconds) in timed {
        match kernels.iter_mut().find(|(kernel, ..)| kernel == label) {
            Some((_, calls, bytes, total)) => {
                *calls += 1;
                *bytes += weight_bytes;
                *total += seconds;
            }
            None => kernels.push((label.clone(), 1, *weight_bytes, *seconds)),
        }
    }
    let mut rows: Vec<KernelTime> = kernels
        .into_iter()
        .map(|(kernel, calls, bytes, seconds)| KernelTime {
            kernel,
            calls_per_token: calls as f64 / n_tokens as f64,
            ms_per_token: seconds * 1e3 / n_tokens as f64,
            share: if step_seconds > 0.0 { seconds / step_seconds } else { 0.0 },
            gb_s: (bytes > 0 && seconds > 0.0).then(|| bytes as f64 / seconds / 1e9),
        })
        .collect();
    rows.sort_by(|a, b| b.ms_per_token.total_cmp(&a.ms_per_token));
    rows
}

impl Profile {
    /// The steps as markdown tables, each after a line naming the adapter, clock and shapes.
    pub fn markdown(&self) -> String {
        let table = |title: String, rows: &[KernelTime]| {
            let mut text = format!("{title}\n\n| kernel | calls/token | ms/token | % of token | weight GB/s |\n| --- | --- | --- | --- | --- |\n");
            for row in rows {
                let gb_s = row.gb_s.map_or("".into(), |g| format!("{g:.2}"));
                text += &format!(
                    "| {} | {} | {:.3} | {:.1} | {gb_s} |\n",
                    row.kernel,
                    round_calls(row.calls_per_token),
                    row.ms_per_token,
                    100.0 * row.share
                );
            }
            text
        };
        let total = |rows: &[KernelTime]| rows.iter().map(|r| r.ms_per_token).sum::<f64>();
        let decode = table(
            format!(
                "Decode, {} at position {} ({:.1} ms/token; {} dispatches, {} per layer; {:?} clock, {}):",
                match self.sequences {
                    1 => "one token".to_string(),
                    n => format!("{n} sequences of one token each"),
                },
                self.context_tokens,
                total(&self.decode),
                self.decode_dispatches,
                self.decode_layer_dispatches,
                self.clock,
                self.adapter
            ),
            &self.decode,
        );
        match &self.prefill {
            Some(prefill) => {
                let title = format!(
                    "Prefill, a chunk of {} tokens after {} ({:.2} ms/token):",
                    prefill.tokens,
                    self.context_tokens,
                    total(&prefill.kernels)
                );
                format!("{decode}\n{}", table(title, &prefill.kernels))
            }
            None => decode,
        }
    }
}

/// `3` or `0.031`: calls per token are whole in decode and fractions in prefill.
fn round_calls(calls: f64) -> String {
    if calls.fract() == 0.0 {
        format!("{calls}")
    } else {
        format!("{calls:.3}")
    }
}
