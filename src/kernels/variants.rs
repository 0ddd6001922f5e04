//! The kernel registry: every shader file, how it is compiled and the uniform it reads, in
//! one table (`registry!` below), plus the flags and constants shaders are compiled with. Shared
//! with build.rs, which validates every variant and uniform listed here.

/// How a shader file is compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Only ever `#include`d by other shaders.
    Include,
    /// Reads no weights: compiled once (per subgroup setting).
    Plain,
    /// Reads quantized weights: compiled once per weight dtype ([`WEIGHT_FLAGS`]).
    Weights,
}

/// The uniform struct a shader declares and the Rust struct written into it (a path from
/// src/kernels/, made by `uniform_struct!`): build.rs writes naga's layout of the one into
/// a compile-time check of the other's (src/kernels/uniform.rs).
#[derive(Clone, Copy, Debug)]
pub struct ShaderUniform {
    pub wgsl_struct: &'static str,
    pub rust_type: &'static str,
}

/// Builds [`Shader`] from the table below: one line per file in shaders/, so a shader's
/// name, source (`include_str!`, checked at compile time), role, own flags and uniform
/// cannot disagree, and a shader missing from the table cannot be named.
macro_rules! registry {
    (@uniform) => { None };
    (@uniform $wgsl:ident = $rust:ident $(:: $path:ident)*) => {
        Some(ShaderUniform { wgsl_struct: stringify!($wgsl), rust_type: concat!(stringify!($rust) $(, "::", stringify!($path))*) })
    };
    ($(
        $(#[doc = $doc:literal])*
        $name:ident => $file:literal, $role:ident, flags [$($flag:expr),*]
        $(, uniform $wgsl:ident = $rust:ident $(:: $path:ident)*)?;
    )*) => {
        /// A shader file in shaders/, as a [`PipelineKey`](super::PipelineKey) names it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Shader {
            $($(#[doc = $doc])* $name,)*
        }

        impl Shader {
            pub const ALL: &[Shader] = &[$(Shader::$name),*];

            pub fn file(self) -> &'static str {
                match self { $(Shader::$name => $file,)* }
            }

            pub fn source(self) -> &'static str {
                match self { $(Shader::$name => include_str!(concat!("../../shaders/", $file)),)* }
            }

            pub fn role(self) -> Role {
                match self { $(Shader::$name => Role::$role,)* }
            }

            /// The shader's own flags (beyond the dtype and subgroup ones), compiled in every
            /// combination.
            pub fn own_flags(self) -> &'static [&'static str] {
                match self { $(Shader::$name => &[$($flag),*],)* }
            }

            pub fn uniform(self) -> Option<ShaderUniform> {
                match self { $(Shader::$name => registry!(@uniform $($wgsl = $rust $(:: $path)*)?),)* }
            }
        }
    };
}

#[rustfmt::skip]
registry! {
    /// `Step`, token places and reductions; its `Step` uniform serves every shader.
    Common => "common.wgsl", Include, flags [], uniform Step = dispatch::Step;
    /// The weight decoders, one per [`WEIGHT_FLAGS`] flag.
    Quant => "quant.wgsl", Include, flags [];
    Embedding => "embedding.wgsl", Weights, flags [], uniform Params = embedding::Params;
    Matvec => "matvec.wgsl", Weights, flags [MATVEC_ONE_TOKEN, MATVEC_NORMED_INPUT, MATVEC_X8], uniform Params = linear::MatvecParams;
    Matmul => "matmul.wgsl", Weights, flags [MATMUL_WIDE], uniform Params = linear::MatmulParams;
    Rmsnorm => "rmsnorm.wgsl", Plain, flags [], uniform Params = rmsnorm::Params;
    Rope => "rope.wgsl", Plain, flags [QKV_BIAS], uniform Params = rope::Params;
    Attention => "attention.wgsl", Plain, flags [], uniform Params = attention::Params;
    Sampling => "sampling.wgsl", Plain, flags [], uniform Params = sampling::Params;
    /// A plain copy, the memory-bandwidth yardstick of `bench`.
    Copy => "copy.wgsl", Plain, flags [];
    Gather => "gather.wgsl", Plain, flags [], uniform Params = gather::Params;
}

impl Shader {
    /// The shader whose file is `file` (the name `#include` uses).
    pub fn from_file(file: &str) -> Option<Shader> {
        Shader::ALL.iter().copied().find(|shader| shader.file() == file)
    }
}

/// The flag naming each weight dtype's decoder in quant.wgsl.
pub const WEIGHT_FLAGS: &[&str] = &[
    "WEIGHTS_Q4",
    "WEIGHTS_Q8",
    "WEIGHTS_F16",
    "WEIGHTS_F32",
    "WEIGHTS_Q5",
    "WEIGHTS_Q4_K",
    "WEIGHTS_Q5_K",
    "WEIGHTS_Q6_K",
    "WEIGHTS_BF16",
];

/// Flag enabling subgroup reductions (with a workgroup-memory fallback without it).
pub const SUBGROUPS: &str = "SUBGROUPS";

/// matvec.wgsl's variant for a step of one token (`LinearKernel::MatvecOneToken`): room
/// for one token's sums, not a batch's (software adapters pay for the larger arrays), each
/// output summed in the same order as the batched variant.
pub const MATVEC_ONE_TOKEN: &str = "MATVEC_ONE_TOKEN";

/// matvec.wgsl's variant that applies RMSNorm to its input as it reads it
/// (`normed_linear`): a decode layer needs no separate norm dispatch.
pub const MATVEC_NORMED_INPUT: &str = "MATVEC_NORMED_INPUT";

/// matvec.wgsl's variant that quantizes x to 8 bits per block and multiplies by WGSL's packed
/// integer dot product (`MatvecPath::Int8`), for the dtypes of [`MATVEC_X8_WEIGHTS`].
pub const MATVEC_X8: &str = "MATVEC_X8";

/// The weight dtypes quant.wgsl has an 8-bit-x dot product for (`dot_block_x8`).
pub const MATVEC_X8_WEIGHTS: &[&str] = &["WEIGHTS_Q4", "WEIGHTS_Q8"];

/// Whether a variant with `flags` exists: [`MATVEC_X8`] only with a dtype of
/// [`MATVEC_X8_WEIGHTS`].
pub fn flags_compatible(flags: &[&str]) -> bool {
    !flags.contains(&MATVEC_X8) || flags.iter().any(|flag| MATVEC_X8_WEIGHTS.contains(flag))
}

/// rope.wgsl's variant that adds the q/k/v biases to the projections' sums (Qwen2).
pub const QKV_BIAS: &str = "QKV_BIAS";

/// The format's weight block and the K-quants' layouts (src/format/block.rs).
pub use crate::format::{BLOCK_VALUES, K_SUB_BLOCKS, Q4_K_PARAM_WORDS, Q5_K_PARAM_WORDS, Q6_K_PARAM_WORDS};

/// Invocations of a workgroup of every kernel without a size of its own (copy, gather,
/// matmul, rmsnorm, rope, sampling).
pub const DEFAULT_WORKGROUP: u32 = 256;
/// Invocations of an embedding workgroup (shaders/embedding.wgsl), one block each.
pub const EMBEDDING_WORKGROUP: u32 = 64;

/// Rows one decode matvec workgroup computes (shaders/matvec.wgsl) in a step of one token:
/// four per invocation.
pub const MATVEC_ROWS: u32 = 16;
/// The same for a batched step, sixteen per invocation: each x value an invocation loads
/// serves four times the rows (a software adapter spends most of a batched step loading x).
/// The invocations along a row stay as many, so each output is summed in the same order.
pub const MATVEC_BATCH_ROWS: u32 = 4 * MATVEC_ROWS;
/// Invocations of a decode matvec workgroup; MATVEC_ROWS divides it.
pub const MATVEC_WORKGROUP: u32 = 64;
/// Tokens (one per sequence) a decode matvec multiplies with each weight read: the largest
/// decode batch.
pub const MATVEC_MAX_TOKENS: u32 = 8;
/// Tokens of a batched matvec whose lanes' parts meet in workgroup memory at once: the
/// parts of its 16 rows per invocation for 4 tokens fill WebGPU's default 16 KiB.
pub const MATVEC_PASS_TOKENS: u32 = 4;

/// Tokens and rows of one prefill matmul tile (shaders/matmul.wgsl) on a CPU adapter: 256
/// invocations of 4 x 4 outputs each, and two 32-column tiles of 8 KiB.
pub const MATMUL_TILE_TOKENS: u32 = 64;
pub const MATMUL_TILE_ROWS: u32 = 64;
/// Rows of the GPUs' matmul tile (`MATMUL_WIDE`): 4 tokens x 8 rows per invocation, 16
/// columns staged at a time in 12.2 KiB.
pub const MATMUL_WIDE_TILE_ROWS: u32 = 128;

/// matmul.wgsl's variant with the GPUs' tile, [`MATMUL_WIDE_TILE_ROWS`] rows
/// (`MatmulTile::Wide` in src/kernels/linear.rs).
pub const MATMUL_WIDE: &str = "MATMUL_WIDE";

/// Keys one attention workgroup scores at a time, one per invocation (shaders/attention.wgsl),
/// and the positions of one tile of the key cache (`key_quad` in common.wgsl).
pub const ATTENTION_KEYS: u32 = 64;

/// Attention (shaders/attention.wgsl): query rows one workgroup holds, value pairs of them
/// staged in workgroup memory (8 KiB), and value accumulators per invocation (the staged
/// pairs over the ATTENTION_KEYS invocations).
pub const ATTENTION_MAX_ROWS: u32 = 16;
pub const ATTENTION_Q_PAIRS: u32 = 1024;
pub const ATTENTION_MAX_ACC: u32 = ATTENTION_Q_PAIRS / ATTENTION_KEYS;

/// Decode attention (`attend_decode`): query rows one workgroup holds, at most (its per-row
/// arrays are sized for this many), and the fewest keys a decode row's key range is given
/// (four tiles: a shorter context is not spread over ranges whose merge would cost more than
/// they save).
pub const ATTENTION_DECODE_ROWS: u32 = 8;
pub const ATTENTION_SPLIT_KEYS: u32 = 4 * ATTENTION_KEYS;

/// Which of the step's tokens a decode matvec multiplies (`LinearTokens` in src/kernels/linear.rs).
pub const MATVEC_TOKENS_EACH: u32 = 0;
pub const MATVEC_TOKENS_LAST: u32 = 1;
pub const MATVEC_TOKENS_CHOOSING: u32 = 2;

/// What a linear kernel does with its product (`Epilogue` in src/kernels/linear.rs).
pub const EPILOGUE_STORE: u32 = 0;
pub const EPILOGUE_ACCUMULATE: u32 = 1;
pub const EPILOGUE_SWIGLU: u32 = 2;
pub const EPILOGUE_GATE_UP: u32 = 3;

/// Numeric constants every shader is compiled with (as `const NAME: u32 = VALUE;`), so the
/// Rust that sizes a grid and the WGSL that fills it read one definition.
pub const SHADER_CONSTANTS: &[(&str, u32)] = &[
    ("BLOCK_VALUES", BLOCK_VALUES),
    ("K_SUB_BLOCKS", K_SUB_BLOCKS),
    ("Q4_K_PARAM_WORDS", Q4_K_PARAM_WORDS),
    ("Q5_K_PARAM_WORDS", Q5_K_PARAM_WORDS),
    ("Q6_K_PARAM_WORDS", Q6_K_PARAM_WORDS),
    ("DEFAULT_WORKGROUP", DEFAULT_WORKGROUP),
    ("EMBEDDING_WORKGROUP", EMBEDDING_WORKGROUP),
    ("MATVEC_ROWS", MATVEC_ROWS),
    ("MATVEC_BATCH_ROWS", MATVEC_BATCH_ROWS),
    ("MATVEC_PASS_TOKENS", MATVEC_PASS_TOKENS),
    ("MATVEC_WORKGROUP", MATVEC_WORKGROUP),
    ("MATVEC_MAX_TOKENS", MATVEC_MAX_TOKENS),
    ("MATMUL_TILE_TOKENS", MATMUL_TILE_TOKENS),
    ("MATMUL_TILE_ROWS", MATMUL_TILE_ROWS),
    ("MATMUL_WIDE_TILE_ROWS", MATMUL_WIDE_TILE_ROWS),
    ("ATTENTION_KEYS", ATTENTION_KEYS),
    ("ATTENTION_MAX_ROWS", ATTENTION_MAX_ROWS),
    ("ATTENTION_Q_PAIRS", ATTENTION_Q_PAIRS),
    ("ATTENTION_MAX_ACC", ATTENTION_MAX_ACC),
    ("ATTENTION_DECODE_ROWS", ATTENTION_DECODE_ROWS),
    ("ATTENTION_SPLIT_KEYS", ATTENTION_SPLIT_KEYS),
    ("MATVEC_TOKENS_EACH", MATVEC_TOKENS_EACH),
    ("MATVEC_TOKENS_LAST", MATVEC_TOKENS_LAST),
    ("MATVEC_TOKENS_CHOOSING", MATVEC_TOKENS_CHOOSING),
    ("EPILOGUE_STORE", EPILOGUE_STORE),
    ("EPILOGUE_ACCUMULATE", EPILOGUE_ACCUMULATE),
    ("EPILOGUE_SWIGLU", EPILOGUE_SWIGLU),
    ("EPILOGUE_GATE_UP", EPILOGUE_GATE_UP),
];

/// Every (shader, flags) combination the engine can ask for.
#[allow(dead_code)] // used by build.rs only
pub fn all_variants() -> Vec<(Shader, Vec<&'static str>)> {
    let mut variants = Vec::new();
    for subgroups in [false, true] {
        let base: Vec<&str> = if subgroups { vec![SUBGROUPS] } else { vec![] };
        for &shader in Shader::ALL {
            let per_dtype: Vec<Vec<&str>> = match shader.role() {
                Role::Include => continue,
                Role::Plain => vec![base.clone()],
                Role::Weights => WEIGHT_FLAGS.iter().map(|dtype| [&base[..], &[*dtype]].concat()).collect(),
            };
            let own = shader.own_flags();
            for flags in per_dtype {
                for subset in 0..1usize << own.len() {
                    let chosen = own.iter().enumerate().filter(|(i, _)| subset >> i & 1 == 1).map(|(_, flag)| *flag);
                    let flags: Vec<&str> = flags.iter().copied().chain(chosen).collect();
                    if flags_compatible(&flags) {
                        variants.push((shader, flags));
                    }
                }
            }
        }
    }
    variants
}
