//! Stacking the projections that read one input into one weight at load.

use crate::format::schema::{LayerWeights, StackedWeight};
use crate::kernels::{Gpu, GpuTensor};

/// The `N` projections of a layer that read one input (a [`StackedWeight`]'s parts, in
/// its row order).
pub(super) enum Projections<const N: usize> {
    /// One tensor, read by one dispatch.
    Stacked(GpuTensor),
    /// Each read by its own dispatch.
    Apart([GpuTensor; N]),
}

/// A layer's weights as the forward pass reads them: its [`LayerWeights`] with q/k/v and
/// gate/up stacked where they can be.
pub(super) struct StackedLayer {
    pub attention_norm: GpuTensor,
    pub qkv: Projections<3>,
    /// The q, k and v biases side by side, as a token's sums of `qkv` lie (Qwen2).
    pub qkv_bias: Option<wgpu::Buffer>,
    pub wo: GpuTensor,
    pub feed_forward_norm: GpuTensor,
    pub gate_up: Projections<2>,
    pub down: GpuTensor,
}

/// Stacks the projections of layer `layer` that read one input into one tensor read by
/// one dispatch ([`StackedWeight`]); called a layer at a time, so the copies never hold
/// more than one layer's weights twice. Those that cannot stack ([`GpuTensor::stack`])
/// stay apart; q, k and v then write their rows of the stack's output
/// ([`GpuTensor::into_rows_of`]), so what follows reads the same buffer either way. The
/// q/k/v `biases`, where the architecture has them, are concatenated likewise.
pub(super) fn stack_projections(
    gpu: &Gpu,
    layer: usize,
    weights: LayerWeights<GpuTensor>,
    biases: Option<[GpuTensor; 3]>,
) -> StackedLayer {
    let LayerWeights { attention_norm, wq, wk, wv, wo, feed_forward_norm, gate, up, down } = weights;
    let qkv = match GpuTensor::stack(gpu, &StackedWeight::Qkv.name(layer), &[&wq, &wk, &wv]) {
        Some(stacked) => {
            drop([wq, wk, wv]);
            Projections::Stacked(stacked)
        }
        None => {
            let rows = wq.rows + wk.rows + wv.rows;
            let mut first_row = 0;
            Projections::Apart([wq, wk, wv].map(|part| {
                let own_rows = part.rows;
                let part = part.into_rows_of(first_row, rows);
                first_row += own_rows;
                part
            }))
        }
    };
    // `Epilogue::GateUp` pairs the gate's rows with the up's: an even count.
    let pairs_whole = gate.rows.is_multiple_of(2);
    let gate_up = match pairs_whole.then(|| GpuTensor::stack(gpu, &StackedWeight::GateUp.name(layer), &[&gate, &up])) {
        Some(Some(stacked)) => Projections::Stacked(stacked),
        _ => Projections::Apart([gate, up]),
    };
    let qkv_bias = biases.map(|biases| concatenate(gpu, &format!("blk.{layer}.attn_qkv.bias"), &biases));
    StackedLayer { attention_norm, qkv, qkv_bias, wo, feed_forward_norm, gate_up, down }
}

/// The f32 vectors `vectors` one after another in one buffer, copied on the GPU.
fn concatenate(gpu: &Gpu, name: &str, vectors: &[GpuTensor]) -> wgpu::Buffer {
    let bytes = |v: &GpuTensor| v.parts[0].buffer.size();
    let buffer = gpu.storage(name, vectors.iter().map(bytes).sum());
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    let mut offset = 0;
    for vector in vectors {
        encoder.copy_buffer_to_buffer(&vector.parts[0].buffer, 0, &buffer, offset, bytes(vector));
        offset += bytes(vector);
    }
    gpu.queue.submit([encoder.finish()]);
    buffer
}
