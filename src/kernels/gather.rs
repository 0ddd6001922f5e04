//! The input gather of act-order weights (shaders/gather.wgsl).
//!
//! An act-order GPTQ layer groups its input columns in an order of its own. The converter
//! stores its columns sorted by group, so every group is a contiguous run the q4 kernels
//! read like any other, and records the order (see
//! [`crate::format::manifest::TensorEntry::input_order`]); at run time the input is
//! gathered into that order once per distinct input and order, not once per weight, and
//! the matrix kernels stay unchanged.

use super::uniform::uniform_struct;
use super::variants::DEFAULT_WORKGROUP;
use super::{Dispatch, Gpu, GpuTensor, PipelineKey, Shader, StepBuffers, Workgroups};

uniform_struct! {
    pub(super) struct Params {
        inputs: u32,
        _pad: [u32; 3],
    }
}

/// `gathered[t, i] = x[t, order[i]]` for the step's tokens; `order` is a u32 tensor of
/// one index per input (a permutation, checked when it was loaded).
pub fn gather(gpu: &Gpu, step: &StepBuffers, order: &GpuTensor, x: &wgpu::Buffer, gathered: &wgpu::Buffer) -> Dispatch {
    let inputs = order.cols as u32;
    let pipeline = gpu.pipeline(PipelineKey::new(Shader::Gather, "main"));
    let params = gpu.uniform("gather params", &Params { inputs, _pad: [0; 3] });
    Dispatch {
        label: "gather".into(),
        weight_bytes: 0,
        bind_group: gpu
            .bind(&pipeline, &[(0, &step.uniform), (1, &params), (2, &order.parts[0].buffer), (3, x), (4, gathered)]),
        pipeline,
        workgroups: Workgroups::Flat { items_per_token: inputs, workgroup: DEFAULT_WORKGROUP },
    }
}
