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
    pub wo: GpuTensor,
    pub feed_forward_norm: GpuTensor,
    pub gate_up: Projections<2>,
    pub down: GpuTensor,
}

/// Stacks the projections of layer `layer` that read one input into one tensor read by
/// one dispatch ([`StackedWeight`]); called a layer at a time, so the copies never hold
/// more than one layer's weights twice. Those that cannot stack ([`GpuTensor::stack`])
/// stay apart; q, k and v then write their rows of the stack's output
/// ([`GpuTensor::into_rows_of`]), so what follows reads the same buffer either way.
pub(super) fn stack_projections(gpu: &Gpu, layer: usize, weights: LayerWeights<GpuTensor>) -> StackedLayer {
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
    StackedLayer { attention_norm, qkv, wo, feed_forward_norm, gate_up, down }
}
