//! Choosing the next token on the GPU (shaders/sampling.wgsl).

use super::{Dispatch, Gpu, Workgroups};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    vocab: u32,
    _pad: [u32; 3],
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

/// Writes the chosen token id to `tokens[0]`.
pub fn choose_token(
    gpu: &Gpu,
    step: &wgpu::Buffer,
    logits: &wgpu::Buffer,
    tokens: &wgpu::Buffer,
    vocab: usize,
    greedy: bool,
) -> Dispatch {
    let entry = if greedy { "argmax" } else { "sample" };
    let pipeline = gpu.pipeline("sampling.wgsl", entry, None);
    let params = gpu.uniform("sampling params", &Params { vocab: vocab as u32, _pad: [0; 3] });
    // `argmax` never reads the step uniform, so its derived layout has no binding 0.
    let bindings: &[(u32, &wgpu::Buffer)] = &[(0, step), (1, &params), (2, logits), (3, tokens)];
    Dispatch {
        label: entry.into(),
        weight_bytes: 0,
        bind_group: gpu.bind(&pipeline, if greedy { &bindings[1..] } else { bindings }),
        pipeline,
        workgroups: Workgroups::Fixed(1, 1),
    }
}
