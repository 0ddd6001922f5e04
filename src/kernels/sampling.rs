//! Choosing the next token on the GPU (shaders/sampling.wgsl).

use super::uniform::uniform_struct;
use super::{Dispatch, Gpu, PipelineKey, Shader, StepBuffers, Workgroups};

uniform_struct! {
    pub(super) struct Params {
        vocab: u32,
        last_token_only: u32,
        _pad: [u32; 2],
    }
}

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    Greedy,
    /// Temperature and nucleus sampling, made by [`Sampling::new`].
    TopP(TopP),
}

/// Checked numbers of temperature and nucleus sampling; the seed makes runs repeatable.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TopP {
    pub(crate) temperature: f32,
    pub(crate) top_p: f32,
    pub(crate) seed: u32,
}

/// The lowest temperature sampled at, well above f32's subnormals: the sampler divides
/// logits by it, and a GPU may flush a subnormal divisor to zero.
pub const MIN_TEMPERATURE: f32 = 1e-6;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SamplingError {
    #[error("temperature must be 0 (greedy decoding) or from {MIN_TEMPERATURE} up, and finite")]
    Temperature(f32),
    #[error("top_p must be above 0 and at most 1")]
    TopP(f32),
}

impl Sampling {
    /// Sampling at `temperature` from the fewest most probable tokens whose mass reaches
    /// `top_p`; temperature 0, its limit, is greedy decoding.
    pub fn new(temperature: f32, top_p: f32, seed: u32) -> Result<Self, SamplingError> {
        let (temperature, top_p) = (Self::check_temperature(temperature)?, Self::check_top_p(top_p)?);
        Ok(match temperature == 0.0 {
            true => Sampling::Greedy,
            false => Sampling::TopP(TopP { temperature, top_p, seed }),
        })
    }

    /// `temperature` if [`Sampling::new`] takes it: 0, or finite from [`MIN_TEMPERATURE`] up.
    pub fn check_temperature(temperature: f32) -> Result<f32, SamplingError> {
        match temperature == 0.0 || (MIN_TEMPERATURE..=f32::MAX).contains(&temperature) {
            true => Ok(temperature),
            false => Err(SamplingError::Temperature(temperature)),
        }
    }

    /// `top_p` if [`Sampling::new`] takes it: above 0, at most 1.
    pub fn check_top_p(top_p: f32) -> Result<f32, SamplingError> {
        match top_p > 0.0 && top_p <= 1.0 {
            true => Ok(top_p),
            false => Err(SamplingError::TopP(top_p)),
        }
    }
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
    let pipeline = gpu.pipeline(PipelineKey::new(Shader::Sampling, entry));
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
