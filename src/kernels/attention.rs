//! Causal grouped-query attention over an f16 KV cache (shaders/attention.wgsl).

use super::{Dispatch, Gpu, Workgroups};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    scale: f32,
}

/// Attention shapes.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// One layer's KV cache: `context x n_kv_heads x head_dim` f16 values each.
pub struct KvCache {
    pub k: wgpu::Buffer,
    pub v: wgpu::Buffer,
}

impl KvCache {
    pub fn new(gpu: &Gpu, heads: Heads, context: usize) -> Self {
        let bytes = (context * heads.n_kv_heads * heads.head_dim * 2) as u64;
        Self { k: gpu.storage("k cache", bytes), v: gpu.storage("v cache", bytes) }
    }
}

/// Appends the step's keys and values to the cache, then attends: `out` gets one
/// `n_heads x head_dim` row per token.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    gpu: &Gpu,
    step: &wgpu::Buffer,
    heads: Heads,
    q: &wgpu::Buffer,
    k: &wgpu::Buffer,
    v: &wgpu::Buffer,
    cache: &KvCache,
    out: &wgpu::Buffer,
) -> [Dispatch; 2] {
    let params = gpu.uniform(
        "attention params",
        &Params {
            n_heads: heads.n_heads as u32,
            n_kv_heads: heads.n_kv_heads as u32,
            head_dim: heads.head_dim as u32,
            scale: 1.0 / (heads.head_dim as f32).sqrt(),
        },
    );
    let store = gpu.pipeline("attention.wgsl", "store_kv", None);
    let attend = gpu.pipeline("attention.wgsl", "attend", None);
    [
        Dispatch {
            label: "store_kv".into(),
            weight_bytes: 0,
            bind_group: gpu.bind(&store, &[(0, step), (1, &params), (3, k), (4, v), (5, &cache.k), (6, &cache.v)]),
            pipeline: store,
            workgroups: Workgroups::Flat {
                items_per_token: (heads.n_kv_heads * heads.head_dim / 2) as u32,
                workgroup: 64,
            },
        },
        Dispatch {
            label: "attention".into(),
            weight_bytes: 0,
            bind_group: gpu.bind(&attend, &[(0, step), (1, &params), (2, q), (5, &cache.k), (6, &cache.v), (7, out)]),
            pipeline: attend,
            workgroups: Workgroups::PerToken(heads.n_heads as u32),
        },
    ]
}
