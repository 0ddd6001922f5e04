//! Which shader files exist and the flag sets each is compiled with. Shared with
//! build.rs, which validates every combination listed here.

/// Files only ever included by other shaders.
pub const INCLUDES: &[&str] = &["common.wgsl", "quant.wgsl"];

/// Shaders that read quantized weights, compiled once per weight dtype.
pub const WEIGHT_SHADERS: &[&str] = &["embedding.wgsl", "matvec.wgsl", "matmul.wgsl"];

/// Shaders that read no weights.
pub const PLAIN_SHADERS: &[&str] =
    &["rmsnorm.wgsl", "rope.wgsl", "attention.wgsl", "swiglu.wgsl", "sampling.wgsl", "copy.wgsl"];

/// The flag naming each weight dtype's decoder in quant.wgsl.
pub const WEIGHT_FLAGS: &[&str] = &["WEIGHTS_Q4", "WEIGHTS_Q8", "WEIGHTS_F16", "WEIGHTS_F32"];

/// Flag enabling subgroup reductions (with a workgroup-memory fallback without it).
pub const SUBGROUPS: &str = "SUBGROUPS";

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
                variants.push((*shader, flags));
            }
        }
    }
    variants
}
