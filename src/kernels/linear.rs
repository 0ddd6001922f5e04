//! Linear layers: y = W x with quantized W. Decode uses the matrix-vector kernel
//! (shaders/matvec.wgsl), prefill the tiled matrix-matrix kernel (shaders/matmul.wgsl).

use super::variants::{
    EPILOGUE_ACCUMULATE, EPILOGUE_GATE_UP, EPILOGUE_STORE, EPILOGUE_SWIGLU, MATMUL_TILE_ROWS, MATMUL_TILE_TOKENS,
    MATVEC_ONE_TOKEN, MATVEC_ROWS, MATVEC_TOKENS_CHOOSING, MATVEC_TOKENS_EACH, MATVEC_TOKENS_LAST,
};
use super::{Dispatch, Gpu, GpuTensor, Shader, StepBuffers, Workgroups};
use crate::format::schema;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearMode {
    /// Single-token rows (one per decoding sequence, or a prompt's last tokens), up to
    /// [`MATVEC_MAX_TOKENS`](super::variants::MATVEC_MAX_TOKENS): matrix-vector, one weight
    /// read for all of them.
    Decode,
    /// A step's only token (a single sequence's decode step): matrix-vector with
    /// accumulators and workgroup memory for one token, not a batch's, each output summed
    /// as in [`LinearMode::Decode`], bit for bit.
    Single,
    /// All the step's tokens: tiled matrix-matrix.
    Prefill,
    /// Only the step's last token (the lm_head after a prefill chunk or a single decode
    /// token): matrix-vector, as [`LinearMode::Single`].
    LastToken,
    /// The step's leading tokens that choose a next token (`Step::choosing`; the lm_head of a
    /// decode step, whose other tokens only extend a prompt): matrix-vector.
    Choosing,
}

/// What a linear layer does with its product `W x` for each output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// `y = W x`.
    Store,
    /// `y += W x`: fuses the residual connection.
    Accumulate,
    /// `y = silu(y) * W x`: the up projection finishing SwiGLU over the gate projection
    /// already in `y`, so no separate activation pass or `up` buffer is needed.
    SwiGlu,
    /// `y = silu(W_gate x) * W_up x`: the weight is the gate projection's rows stacked over
    /// the up projection's ([`GpuTensor::stack`](super::GpuTensor::stack)), an even count
    /// in one part, and `y` has half as many outputs. SwiGLU in one dispatch.
    GateUp,
}

impl Epilogue {
    fn code(self) -> u32 {
        match self {
            Epilogue::Store => EPILOGUE_STORE,
            Epilogue::Accumulate => EPILOGUE_ACCUMULATE,
            Epilogue::SwiGlu => EPILOGUE_SWIGLU,
            Epilogue::GateUp => EPILOGUE_GATE_UP,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MatvecParams {
    rows: u32,
    cols: u32,
    group: u32,
    params_offset: u32,
    out_offset: u32,
    tokens: u32,
    epilogue: u32,
    out_stride: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MatmulParams {
    rows: u32,
    cols: u32,
    group: u32,
    params_offset: u32,
    out_offset: u32,
    out_stride: u32,
    epilogue: u32,
    _pad: u32,
}

/// `y = W x` for the step's tokens, combined with what `y` holds as `epilogue` says.
/// One dispatch per tensor part.
pub fn linear(
    gpu: &Gpu,
    step: &StepBuffers,
    weight: &GpuTensor,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    mode: LinearMode,
    epilogue: Epilogue,
) -> Vec<Dispatch> {
    let (shader, wide) = match mode {
        LinearMode::Prefill => (Shader::Matmul, true),
        LinearMode::Decode | LinearMode::Single | LinearMode::LastToken | LinearMode::Choosing => {
            (Shader::Matvec, false)
        }
    };
    let one_token = matches!(mode, LinearMode::Single | LinearMode::LastToken);
    let pipeline = gpu.pipeline_variant(shader, "main", Some(weight.dtype), one_token.then_some(MATVEC_ONE_TOKEN));
    let out_stride = match epilogue {
        Epilogue::GateUp => {
            assert!(weight.parts.len() == 1 && weight.rows.is_multiple_of(2), "{}: not a gate/up stack", weight.name);
            weight.rows as u32 / 2
        }
        _ => weight.rows as u32,
    };
    weight
        .parts
        .iter()
        .map(|part| {
            let (rows, cols, group) = (part.rows as u32, weight.cols as u32, weight.group as u32);
            let params_offset = weight.params_offset(part);
            let out_offset = part.row_start as u32;
            let (params, workgroups) = if wide {
                let params = MatmulParams {
                    rows,
                    cols,
                    group,
                    params_offset,
                    out_offset,
                    out_stride,
                    epilogue: epilogue.code(),
                    _pad: 0,
                };
                let tiles = Workgroups::PerTokenTile { x: rows.div_ceil(MATMUL_TILE_ROWS), tile: MATMUL_TILE_TOKENS };
                (gpu.uniform("matmul params", &params), tiles)
            } else {
                let params = MatvecParams {
                    rows,
                    cols,
                    group,
                    params_offset,
                    out_offset,
                    tokens: match mode {
                        LinearMode::LastToken => MATVEC_TOKENS_LAST,
                        LinearMode::Choosing => MATVEC_TOKENS_CHOOSING,
                        _ => MATVEC_TOKENS_EACH,
                    },
                    epilogue: epilogue.code(),
                    out_stride,
                };
                (gpu.uniform("matvec params", &params), Workgroups::Groups(rows.div_ceil(MATVEC_ROWS)))
            };
            Dispatch {
                label: format!(
                    "{} {} {}",
                    shader.file().trim_end_matches(".wgsl"),
                    weight.dtype.name(),
                    schema::role(&weight.name)
                ),
                weight_bytes: part.buffer.size(),
                bind_group: gpu.bind(&pipeline, &[(0, &step.uniform), (1, &params), (2, &part.buffer), (3, x), (4, y)]),
                pipeline: pipeline.clone(),
                workgroups,
            }
        })
        .collect()
}
