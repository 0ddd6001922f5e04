//! Rotary position embedding with the KV cache store (shaders/rope.wgsl), and its cos/sin
//! table.

use super::uniform::uniform_struct;
use super::variants::{DEFAULT_WORKGROUP, QKV_BIAS};
use super::{Dispatch, Gpu, Heads, KvCache, PipelineKey, Shader, StepBuffers, Workgroups};

uniform_struct! {
    pub(super) struct Params {
        n_heads: u32,
        n_kv_heads: u32,
        head_dim: u32,
        slot_positions: u32,
    }
}

/// `(cos, sin)` for every position and pair of the pairs' `inverse_frequencies`
/// ([`crate::format::Architecture::rope_inverse_frequencies`]), computed as Hugging Face
/// does (f32 inverse frequencies, f32 angle), so positions far into the context stay exact;
/// both multiplied by `attention_factor` (LongRoPE's,
/// [`crate::format::Architecture::rope_attention_factor`]; 1 otherwise).
pub fn rope_table(context: usize, inverse_frequencies: &[f32], attention_factor: f32) -> Vec<f32> {
    let mut table = Vec::with_capacity(context * inverse_frequencies.len() * 2);
    for position in 0..context {
        for &f in inverse_frequencies {
            let angle = position as f32 * f;
            table.push(angle.cos() * attention_factor);
            table.push(angle.sin() * attention_factor);
        }
    }
    table
}

/// Rotates the step's queries from `qkv` (per token: queries, keys, values) into `q`, and
/// stores its rotated keys and its values in `cache` at each token's slot and position;
/// `bias` (the q, k and v biases side by side) is added to `qkv` first.
#[allow(clippy::too_many_arguments)]
pub fn rope_and_store(
    gpu: &Gpu,
    step: &StepBuffers,
    table: &wgpu::Buffer,
    heads: Heads,
    qkv: &wgpu::Buffer,
    bias: Option<&wgpu::Buffer>,
    q: &wgpu::Buffer,
    cache: &KvCache,
) -> Dispatch {
    let key = PipelineKey::new(Shader::Rope, "main");
    let pipeline = gpu.pipeline(if bias.is_some() { key.define(QKV_BIAS) } else { key });
    let params = Params {
        n_heads: heads.n_heads as u32,
        n_kv_heads: heads.n_kv_heads as u32,
        head_dim: heads.head_dim as u32,
        slot_positions: cache.context as u32,
    };
    let params = gpu.uniform("rope params", &params);
    let mut bindings = vec![
        (0, &step.uniform),
        (1, &params),
        (2, table),
        (3, qkv),
        (4, q),
        (5, &cache.k),
        (6, &cache.v),
        (7, &step.places),
    ];
    bindings.extend(bias.map(|bias| (8, bias)));
    Dispatch {
        label: "rope and kv store".into(),
        weight_bytes: 0,
        bind_group: gpu.bind(&pipeline, &bindings),
        pipeline,
        workgroups: Workgroups::Flat {
            items_per_token: ((heads.n_heads + heads.n_kv_heads) * heads.head_dim / 2) as u32,
            workgroup: DEFAULT_WORKGROUP,
        },
    }
}
