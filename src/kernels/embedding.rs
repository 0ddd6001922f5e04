//! Token embedding lookup (shaders/embedding.wgsl).

use super::uniform::uniform_struct;
use super::variants::{BLOCK_VALUES, EMBEDDING_WORKGROUP};
use super::{Dispatch, Gpu, GpuTensor, PipelineKey, Shader, StepBuffers, Workgroups};

uniform_struct! {
    pub(super) struct Params {
        row_start: u32,
        rows: u32,
        cols: u32,
        group: u32,
        params_offset: u32,
        _pad: [u32; 3],
    }
}

/// `x[t] = table[tokens[t]]` for the step's tokens: one dispatch per tensor part.
pub fn embedding(
    gpu: &Gpu,
    step: &StepBuffers,
    table: &GpuTensor,
    tokens: &wgpu::Buffer,
    x: &wgpu::Buffer,
) -> Vec<Dispatch> {
    let pipeline = gpu.pipeline(PipelineKey::new(Shader::Embedding, "main").weights(table.dtype));
    table
        .parts
        .iter()
        .map(|part| {
            let params = gpu.uniform(
                "embedding params",
                &Params {
                    row_start: part.row_start as u32,
                    rows: part.rows as u32,
                    cols: table.cols as u32,
                    group: table.group as u32,
                    params_offset: table.params_offset(part),
                    _pad: [0; 3],
                },
            );
            Dispatch {
                label: format!("embedding {}", table.dtype.name()),
                // One row per token.
                weight_bytes: part.buffer.size() / part.rows as u64,
                bind_group: gpu
                    .bind(&pipeline, &[(0, &step.uniform), (1, &params), (2, &part.buffer), (3, tokens), (4, x)]),
                pipeline: pipeline.clone(),
                workgroups: Workgroups::Flat {
                    items_per_token: table.cols as u32 / BLOCK_VALUES,
                    workgroup: EMBEDDING_WORKGROUP,
                },
            }
        })
        .collect()
}
