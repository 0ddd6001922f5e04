//! RMSNorm (shaders/rmsnorm.wgsl).

use super::uniform::uniform_struct;
use super::{Dispatch, Gpu, PipelineKey, Shader, StepBuffers, Workgroups};

uniform_struct! {
    pub(super) struct Params {
        cols: u32,
        eps: f32,
        _pad: [u32; 2],
    }
}

/// Normalizes each of the step's rows of `x` (width `cols`) into `out`.
pub fn rmsnorm(
    gpu: &Gpu,
    step: &StepBuffers,
    x: &wgpu::Buffer,
    weight: &wgpu::Buffer,
    out: &wgpu::Buffer,
    cols: usize,
    eps: f32,
) -> Dispatch {
    let pipeline = gpu.pipeline(PipelineKey::new(Shader::Rmsnorm, "main"));
    let params = gpu.uniform("rmsnorm params", &Params { cols: cols as u32, eps, _pad: [0; 2] });
    Dispatch {
        label: "rmsnorm".into(),
        weight_bytes: 0,
        bind_group: gpu.bind(&pipeline, &[(0, &step.uniform), (1, &params), (2, x), (3, weight), (4, out)]),
        pipeline,
        workgroups: Workgroups::PerToken(1),
    }
}
