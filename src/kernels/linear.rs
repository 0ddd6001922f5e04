//! Linear layers: y = W x with quantized W. Decode uses the matrix-vector kernel
//! (shaders/matvec.wgsl), prefill the tiled matrix-matrix kernel (shaders/matmul.wgsl).

use super::gpu::weight_flag;
use super::uniform::uniform_struct;
use super::variants::{
    EPILOGUE_ACCUMULATE, EPILOGUE_GATE_UP, EPILOGUE_STORE, EPILOGUE_SWIGLU, MATMUL_TILE_ROWS, MATMUL_TILE_TOKENS,
    MATMUL_WIDE, MATMUL_WIDE_TILE_ROWS, MATVEC_BATCH_ROWS, MATVEC_NORMED_INPUT, MATVEC_ONE_TOKEN, MATVEC_ROWS,
    MATVEC_TOKENS_CHOOSING, MATVEC_TOKENS_EACH, MATVEC_TOKENS_LAST, MATVEC_X8, MATVEC_X8_WEIGHTS,
};
use super::{Dispatch, Gpu, GpuTensor, PipelineKey, Shader, StepBuffers, Workgroups};
use crate::format::{schema, DType};

/// How the decode matvecs multiply x (`GpuOptions::matvec`; prefill's matmul is always exact).
/// Serialized by [`MatvecPath::name`], as a judged file's run options record it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MatvecPath {
    /// x in f32 times the decoded weights: the path the goldens hold for, and the default on
    /// every adapter until a GPU measurement shows the other faster (docs/quantization.md).
    #[default]
    Exact,
    /// q4 and q8 weights times x quantized to signed 8 bits per 32-value block, by WGSL's
    /// packed integer dot product (`packed_4x8_integer_dot_product`), as llama.cpp's Vulkan
    /// mmvq path; other dtypes as `Exact`. It adds error (docs/quantization.md measures it).
    Int8,
}

impl MatvecPath {
    /// Each path's name, in the order of the variants.
    pub const NAMES: [&str; 2] = ["exact", "int8"];
    const ALL: [MatvecPath; 2] = [MatvecPath::Exact, MatvecPath::Int8];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn is_exact(&self) -> bool {
        *self == MatvecPath::Exact
    }

    /// Whether this path quantizes x for weights of `dtype`.
    pub fn quantizes_x(self, dtype: DType) -> bool {
        self == MatvecPath::Int8 && MATVEC_X8_WEIGHTS.contains(&weight_flag(dtype))
    }
}

impl std::str::FromStr for MatvecPath {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|path| path.name() == name)
            .ok_or_else(|| format!("no matvec path {name:?}: {}", Self::NAMES.join(" or ")))
    }
}

impl serde::Serialize for MatvecPath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for MatvecPath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Which kernel a linear layer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearKernel {
    /// Tiled matrix-matrix (shaders/matmul.wgsl): a prefill chunk's tokens, in tiles of
    /// [`MatmulTile::for_adapter`] (tests choose).
    Matmul(MatmulTile),
    /// Matrix-vector (shaders/matvec.wgsl) for up to
    /// [`MATVEC_MAX_TOKENS`](super::variants::MATVEC_MAX_TOKENS) tokens (one per decoding
    /// sequence, or a prompt's last tokens), one weight read for all of them.
    Matvec,
    /// [`LinearKernel::Matvec`] with accumulators and workgroup memory for one token, not a
    /// batch's (`MATVEC_ONE_TOKEN`), each output summed as in the batched kernel, bit for bit.
    MatvecOneToken,
}

/// The prefill matmul's tile (shaders/matmul.wgsl): both have
/// [`MATMUL_TILE_TOKENS`] tokens, and each output is summed in the same order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulTile {
    /// [`MATMUL_TILE_ROWS`] rows, 4 x 4 outputs per invocation, whole blocks staged.
    Narrow,
    /// [`MATMUL_WIDE_TILE_ROWS`] rows (`MATMUL_WIDE`), 4 x 8 outputs per invocation, half
    /// blocks staged in padded tiles: a quarter fewer floats read from workgroup memory per
    /// multiply-add, no bank conflicts storing the tiles (a third of the shared-memory
    /// cycles in all), half the workgroups (the expected effect on a GPU, about 1.3x, is
    /// worked out in shaders/matmul.wgsl).
    Wide,
}

impl MatmulTile {
    /// The wide tile for GPUs; the narrow one for CPU adapters (lavapipe, a browser's
    /// fallback adapter such as SwiftShader), where banks do not exist and the wide tile's
    /// 32 sums per invocation and twice the barriers cost more: on lavapipe SmolLM2-135M's
    /// prefill matmuls took 5-45% longer with it (alternating runs, load average 4-5).
    pub fn for_adapter(gpu: &Gpu) -> Self {
        if gpu.cpu_adapter {
            MatmulTile::Narrow
        } else {
            MatmulTile::Wide
        }
    }

    fn rows(self) -> u32 {
        match self {
            MatmulTile::Narrow => MATMUL_TILE_ROWS,
            MatmulTile::Wide => MATMUL_WIDE_TILE_ROWS,
        }
    }
}

/// Which of the step's tokens a linear layer multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearTokens {
    /// Every token, each output row in its token's place.
    Each,
    /// Only the last token (the lm_head after a prefill chunk or a single decode token),
    /// written to row 0: a matrix-vector kernel's.
    Last,
    /// The leading tokens that choose a next token (`Step::choosing`; the lm_head of a
    /// decode step, whose other tokens only extend a prompt): a matrix-vector kernel's.
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

uniform_struct! {
    pub(super) struct MatvecParams {
        rows: u32,
        cols: u32,
        group: u32,
        params_offset: u32,
        out_offset: u32,
        tokens: u32,
        epilogue: u32,
        out_stride: u32,
        norm_eps: f32,
        _pad: [u32; 3],
    }
}

/// RMSNorm applied by a matrix-vector kernel to its input as it reads it: `x` is the
/// residual stream, and each token's product is `W (x * weight) / rms(x)`.
#[derive(Clone, Copy, Debug)]
pub struct InputNorm<'a> {
    pub weight: &'a wgpu::Buffer,
    pub eps: f32,
}

uniform_struct! {
    pub(super) struct MatmulParams {
        rows: u32,
        cols: u32,
        group: u32,
        params_offset: u32,
        out_offset: u32,
        out_stride: u32,
        epilogue: u32,
        _pad: u32,
    }
}

/// `y = W x` by `kernel` for the step's `tokens`, combined with what `y` holds as `epilogue`
/// says. One dispatch per tensor part.
#[allow(clippy::too_many_arguments)]
pub fn linear(
    gpu: &Gpu,
    step: &StepBuffers,
    weight: &GpuTensor,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    kernel: LinearKernel,
    tokens: LinearTokens,
    epilogue: Epilogue,
) -> Vec<Dispatch> {
    linear_of(gpu, step, weight, x, None, y, kernel, tokens, epilogue)
}

/// [`linear`] of `rmsnorm(x)`, the norm applied where the kernel reads `x` (no norm
/// dispatch): a matrix-vector kernel's.
#[allow(clippy::too_many_arguments)]
pub fn normed_linear(
    gpu: &Gpu,
    step: &StepBuffers,
    weight: &GpuTensor,
    x: &wgpu::Buffer,
    norm: InputNorm,
    y: &wgpu::Buffer,
    kernel: LinearKernel,
    tokens: LinearTokens,
    epilogue: Epilogue,
) -> Vec<Dispatch> {
    assert!(!matches!(kernel, LinearKernel::Matmul(_)), "the matmul kernel reads its input normalized already");
    linear_of(gpu, step, weight, x, Some(norm), y, kernel, tokens, epilogue)
}

#[allow(clippy::too_many_arguments)]
fn linear_of(
    gpu: &Gpu,
    step: &StepBuffers,
    weight: &GpuTensor,
    x: &wgpu::Buffer,
    norm: Option<InputNorm>,
    y: &wgpu::Buffer,
    kernel: LinearKernel,
    tokens: LinearTokens,
    epilogue: Epilogue,
) -> Vec<Dispatch> {
    let tile = match kernel {
        LinearKernel::Matmul(tile) => Some(tile),
        LinearKernel::Matvec | LinearKernel::MatvecOneToken => None,
    };
    assert!(tile.is_none() || tokens == LinearTokens::Each, "the matmul kernel multiplies each token, not {tokens:?}");
    let shader = if tile.is_some() { Shader::Matmul } else { Shader::Matvec };
    let key = PipelineKey::new(shader, "main").weights(weight.dtype);
    let key = match kernel {
        LinearKernel::MatvecOneToken => key.define(MATVEC_ONE_TOKEN),
        LinearKernel::Matmul(MatmulTile::Wide) => key.define(MATMUL_WIDE),
        LinearKernel::Matvec | LinearKernel::Matmul(MatmulTile::Narrow) => key,
    };
    let x8 = tile.is_none() && gpu.matvec.quantizes_x(weight.dtype);
    let key = if x8 { key.define(MATVEC_X8) } else { key };
    let pipeline = gpu.pipeline(match norm {
        Some(_) => key.define(MATVEC_NORMED_INPUT),
        None => key,
    });
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
            let (params, workgroups) = if let Some(tile) = tile {
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
                let tiles = Workgroups::PerTokenTile { x: rows.div_ceil(tile.rows()), tile: MATMUL_TILE_TOKENS };
                (gpu.uniform("matmul params", &params), tiles)
            } else {
                let params = MatvecParams {
                    rows,
                    cols,
                    group,
                    params_offset,
                    out_offset,
                    tokens: match tokens {
                        LinearTokens::Each => MATVEC_TOKENS_EACH,
                        LinearTokens::Last => MATVEC_TOKENS_LAST,
                        LinearTokens::Choosing => MATVEC_TOKENS_CHOOSING,
                    },
                    epilogue: epilogue.code(),
                    out_stride,
                    norm_eps: norm.map_or(0.0, |norm| norm.eps),
                    _pad: [0; 3],
                };
                let rows_per_workgroup = match kernel {
                    LinearKernel::MatvecOneToken => MATVEC_ROWS,
                    _ => MATVEC_BATCH_ROWS,
                };
                (gpu.uniform("matvec params", &params), Workgroups::Groups(rows.div_ceil(rows_per_workgroup)))
            };
            Dispatch {
                label: format!(
                    "{}{} {} {}",
                    shader.file().trim_end_matches(".wgsl"),
                    if x8 { " int8-x" } else { "" },
                    weight.dtype.name(),
                    schema::role(&weight.name)
                ),
                weight_bytes: part.buffer.size(),
                bind_group: {
                    let mut buffers = vec![(0, &step.uniform), (1, &params), (2, &part.buffer), (3, x), (4, y)];
                    buffers.extend(norm.map(|norm| (5, norm.weight)));
                    gpu.bind(&pipeline, &buffers)
                },
                pipeline: pipeline.clone(),
                workgroups,
            }
        })
        .collect()
}
