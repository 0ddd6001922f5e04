//! Rotary position embedding (shaders/rope.wgsl) and its cos/sin table.

use super::{Dispatch, Gpu, StepBuffers, Workgroups};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    _pad: u32,
}

/// `(cos, sin)` for every position and pair, computed as Hugging Face does (f32
/// inverse frequencies, f32 angle), so positions far into the context stay exact.
pub fn rope_table(context: usize, head_dim: usize, theta: f32) -> Vec<f32> {
    let pairs = head_dim / 2;
    let inv_freq: Vec<f32> = (0..pairs).map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32)).collect();
    let mut table = Vec::with_capacity(context * pairs * 2);
    for position in 0..context {
        for &f in &inv_freq {
            let angle = position as f32 * f;
            table.push(angle.cos());
            table.push(angle.sin());
        }
    }
    table
}

/// Rotates the step's queries `q` and keys `k` in place.
#[allow(clippy::too_many_arguments)]
pub fn rope(
    gpu: &Gpu,
    step: &StepBuffers,
    table: &wgpu::Buffer,
    q: &wgpu::Buffer,
    k: &wgpu::Buffer,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
) -> Dispatch {
    let pipeline = gpu.pipeline("rope.wgsl", "main", None);
    let params = gpu.uniform(
        "rope params",
        &Params { n_heads: n_heads as u32, n_kv_heads: n_kv_heads as u32, head_dim: head_dim as u32, _pad: 0 },
    );
    Dispatch {
        label: "rope".into(),
        weight_bytes: 0,
        bind_group: gpu
            .bind(&pipeline, &[(0, &step.uniform), (1, &params), (2, table), (3, q), (4, k), (5, &step.places)]),
        pipeline,
        workgroups: Workgroups::Flat {
            items_per_token: ((n_heads + n_kv_heads) * head_dim / 2) as u32,
            workgroup: 256,
        },
    }
}
