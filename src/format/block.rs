//! The weight block. build.rs includes this file too (as `crate::format`, the path
//! `kernels/variants.rs` names it by), so the shaders' `BLOCK_VALUES` is this constant.

/// Values in one weight block: the unit every weight decoder reads (shaders/quant.wgsl) and
/// every weight row's length divides; a q4 or q8 group holds whole blocks.
pub const BLOCK_VALUES: u32 = 32;
