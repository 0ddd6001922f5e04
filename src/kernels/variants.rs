//! Which shader files exist and the flag sets each is compiled with. Shared with
//! build.rs, which validates every combination listed here.

/// Files only ever included by other shaders.
pub const INCLUDES: &[&str] = &["common.wgsl", "quant.wgsl"];

/// Shaders that read quantized weights, compiled once per weight dtype.
pub const WEIGHT_SHADERS: &[&str] = &["embedding.wgsl", "matvec.wgsl", "matmul.wgsl"];

/// Shaders that read no weights.
pub const PLAIN_SHADERS: &[&str] =
    &["rmsnorm.wgsl", "rope.wgsl", "attention.wgsl", "sampling.wgsl", "copy.wgsl", "gather.wgsl"];

/// The flag naming each weight dtype's decoder in quant.wgsl.
pub const WEIGHT_FLAGS: &[&str] = &["WEIGHTS_Q4", "WEIGHTS_Q8", "WEIGHTS_F16", "WEIGHTS_F32"];

/// Flag enabling subgroup reductions (with a workgroup-memory fallback without it).
pub const SUBGROUPS: &str = "SUBGROUPS";

/// matvec.wgsl's variant for a step of one token (`LinearMode::Single`, `LastToken`): room
/// for one token's sums, not a batch's (software adapters pay for the larger arrays), each
/// output summed in the same order as the batched variant.
pub const MATVEC_ONE_TOKEN: &str = "MATVEC_ONE_TOKEN";

/// A shader's own flags (beyond the dtype and subgroup ones), each compiled with and
/// without: (shader, flag).
pub const SHADER_FLAGS: &[(&str, &str)] = &[("matvec.wgsl", MATVEC_ONE_TOKEN)];

/// Rows one decode matvec workgroup computes (shaders/matvec.wgsl).
pub const MATVEC_ROWS: u32 = 16;
/// Invocations of a decode matvec workgroup; MATVEC_ROWS divides it.
pub const MATVEC_WORKGROUP: u32 = 64;
/// Tokens (one per sequence) a decode matvec multiplies with each weight read: the largest
/// decode batch.
pub const MATVEC_MAX_TOKENS: u32 = 8;

/// Tokens and rows of one prefill matmul tile (shaders/matmul.wgsl): 256 invocations of
/// 4 x 4 outputs each, and two 32-column tiles of 8 KiB.
pub const MATMUL_TILE_TOKENS: u32 = 64;
pub const MATMUL_TILE_ROWS: u32 = 64;

/// Keys one attention workgroup scores at a time, one per invocation (shaders/attention.wgsl),
/// and the positions of one tile of the key cache (`key_word` in common.wgsl).
pub const ATTENTION_KEYS: u32 = 64;

/// Attention (shaders/attention.wgsl): query rows one workgroup holds, value pairs of them
/// staged in workgroup memory (8 KiB), and value accumulators per invocation (the staged
/// pairs over the 64 invocations).
pub const ATTENTION_MAX_ROWS: u32 = 16;
pub const ATTENTION_Q_PAIRS: u32 = 1024;
pub const ATTENTION_MAX_ACC: u32 = ATTENTION_Q_PAIRS / 64;

/// Which of the step's tokens a decode matvec multiplies (`LinearMode` in src/kernels/linear.rs).
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
    ("MATVEC_ROWS", MATVEC_ROWS),
    ("MATVEC_WORKGROUP", MATVEC_WORKGROUP),
    ("MATVEC_MAX_TOKENS", MATVEC_MAX_TOKENS),
    ("MATMUL_TILE_TOKENS", MATMUL_TILE_TOKENS),
    ("MATMUL_TILE_ROWS", MATMUL_TILE_ROWS),
    ("ATTENTION_KEYS", ATTENTION_KEYS),
    ("ATTENTION_MAX_ROWS", ATTENTION_MAX_ROWS),
    ("ATTENTION_Q_PAIRS", ATTENTION_Q_PAIRS),
    ("ATTENTION_MAX_ACC", ATTENTION_MAX_ACC),
    ("MATVEC_TOKENS_EACH", MATVEC_TOKENS_EACH),
    ("MATVEC_TOKENS_LAST", MATVEC_TOKENS_LAST),
    ("MATVEC_TOKENS_CHOOSING", MATVEC_TOKENS_CHOOSING),
    ("EPILOGUE_STORE", EPILOGUE_STORE),
    ("EPILOGUE_ACCUMULATE", EPILOGUE_ACCUMULATE),
    ("EPILOGUE_SWIGLU", EPILOGUE_SWIGLU),
    ("EPILOGUE_GATE_UP", EPILOGUE_GATE_UP),
];

/// Each uniform struct a shader declares and the `#[repr(C)]` Rust struct written into it:
/// (shader, WGSL struct, Rust file, Rust struct). build.rs checks that every uniform is
/// listed and that both sides agree field by field (names, offsets, sizes, scalar kinds).
/// `Step` lives in common.wgsl and serves every shader.
pub const UNIFORM_STRUCTS: &[(&str, &str, &str, &str)] = &[
    ("common.wgsl", "Step", "src/kernels/dispatch.rs", "Step"),
    ("attention.wgsl", "Params", "src/kernels/attention.rs", "Params"),
    ("embedding.wgsl", "Params", "src/kernels/embedding.rs", "Params"),
    ("gather.wgsl", "Params", "src/kernels/gather.rs", "Params"),
    ("matvec.wgsl", "Params", "src/kernels/linear.rs", "MatvecParams"),
    ("matmul.wgsl", "Params", "src/kernels/linear.rs", "MatmulParams"),
    ("rmsnorm.wgsl", "Params", "src/kernels/rmsnorm.rs", "Params"),
    ("rope.wgsl", "Params", "src/kernels/rope.rs", "Params"),
    ("sampling.wgsl", "Params", "src/kernels/sampling.rs", "Params"),
];

pub fn is_known_shader(name: &str) -> bool {
    INCLUDES.iter().chain(WEIGHT_SHADERS).chain(PLAIN_SHADERS).any(|s| *s == name)
}

/// Every (shader, flags) combination the engine can ask for.
#[allow(dead_code)] // used by build.rs only
pub fn all_variants() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut variants = Vec::new();
    for subgroups in [false, true] {
        let base: Vec<&str> = if subgroups { vec![SUBGROUPS] } else { vec![] };
        for shader in PLAIN_SHADERS {
            variants.push((*shader, base.clone()));
        }
        for shader in WEIGHT_SHADERS {
            for flag in WEIGHT_FLAGS {
                let mut flags = base.clone();
                flags.push(flag);
                for (_, flag) in SHADER_FLAGS.iter().filter(|(own, _)| own == shader) {
                    variants.push((*shader, [&flags[..], &[*flag]].concat()));
                }
                variants.push((*shader, flags));
            }
        }
    }
    variants
}
