//! Choosing the next token on the GPU (shaders/sampling.wgsl).

use super::{Dispatch, Gpu, StepBuffers, Workgroups};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    vocab: u32,
    last_token_only: u32,
    _pad: [u32; 2],
}

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    Greedy,
    /// Temperature and nucleus sampling; the seed makes runs repeatable.
    TopP {
        temperature: f32,
        top_p: f32,
        seed: u32,
    },
}

/// Writes the chosen token id of each logits row to `tokens[row]`: one row for the step's
/// last token (`last_token_only`, after a prefill chunk), else one per token of the step
/// (a batched decode step).
#[allow(clippy::too_many_arguments)]
pub fn choose_token(
    gpu: &Gpu,
    step: &StepBuffers,
    logits: &wgpu::Buffer,
    tokens: &wgpu::Buffer,
    vocab: usize,
    greedy: bool,
    last_token_only: bool,
) -> Dispatch {
    let entry = if greedy { "argmax" } else { "sample" };
    let pipeline = gpu.pipeline("sampling.wgsl", entry, None);
    let params = gpu.uniform(
        "sampling params",
        &Params { vocab: vocab as u32, last_token_only: last_token_only.into(), _pad: [0; 2] },
    );
    // `argmax` does not read the places: its derived layout has no such binding.
    let bindings: &[(u32, &wgpu::Buffer)] =
        &[(0, &step.uniform), (1, &params), (2, logits), (3, tokens), (4, &step.places)];
    Dispatch {
        label: entry.into(),
        weight_bytes: 0,
        bind_group: gpu.bind(&pipeline, if greedy { &bindings[..4] } else { bindings }),
        pipeline,
        workgroups: if last_token_only { Workgroups::Fixed(1, 1) } else { Workgroups::PerToken(1) },
    }
}
