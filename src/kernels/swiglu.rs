//! SwiGLU activation (shaders/swiglu.wgsl).

use super::{Dispatch, Gpu, Workgroups};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    ffn: u32,
    _pad: [u32; 3],
}

/// `gate = silu(gate) * up` for the step's tokens, in place.
pub fn swiglu(gpu: &Gpu, step: &wgpu::Buffer, gate: &wgpu::Buffer, up: &wgpu::Buffer, ffn: usize) -> Dispatch {
    let pipeline = gpu.pipeline("swiglu.wgsl", "main", None);
    let params = gpu.uniform("swiglu params", &Params { ffn: ffn as u32, _pad: [0; 3] });
    Dispatch {
        label: "swiglu".into(),
        weight_bytes: 0,
        bind_group: gpu.bind(&pipeline, &[(0, step), (1, &params), (2, gate), (3, up)]),
        pipeline,
        workgroups: Workgroups::Flat { items_per_token: (ffn / 4) as u32, workgroup: 256 },
    }
}
