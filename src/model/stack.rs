//! Stacking the projections that read one input into one weight at load.

use std::collections::HashMap;

use crate::format::schema::StackedWeight;
use crate::kernels::{Gpu, GpuTensor};

/// Stacks the projections of each layer that read one input into one tensor read by one
/// dispatch ([`StackedWeight`]), one layer at a time, so the copies never hold more
/// than one layer's weights twice. Those that cannot stack ([`GpuTensor::stack`]) stay
/// apart; q, k and v then write their rows of the stack's output
/// ([`GpuTensor::into_rows_of`]), so what follows reads the same buffer either way.
pub(super) fn stack_projections(
    gpu: &Gpu,
    n_layers: usize,
    mut weights: HashMap<String, GpuTensor>,
) -> HashMap<String, GpuTensor> {
    for layer in 0..n_layers {
        for stack in StackedWeight::ALL {
            let parts: Vec<String> = stack.parts().iter().map(|part| part.name(layer)).collect();
            let tensors: Vec<&GpuTensor> = parts.iter().map(|part| &weights[part]).collect();
            // `Epilogue::GateUp` pairs the gate's rows with the up's: an even count.
            let pairs_whole = stack != StackedWeight::GateUp || tensors[0].rows.is_multiple_of(2);
            if let Some(stacked) = pairs_whole.then(|| GpuTensor::stack(gpu, &stack.name(layer), &tensors)).flatten() {
                for part in &parts {
                    weights.remove(part);
                }
                weights.insert(stacked.name.clone(), stacked);
            } else if stack == StackedWeight::Qkv {
                let rows = tensors.iter().map(|t| t.rows).sum();
                let mut first_row = 0;
                for part in &parts {
                    let tensor = weights.remove(part).expect("present");
                    let own_rows = tensor.rows;
                    weights.insert(part.clone(), tensor.into_rows_of(first_row, rows));
                    first_row += own_rows;
                }
            }
        }
    }
    weights
}
