//! The weight block and the K-quants' super-block. build.rs includes this file too (as `crate::format`, the path
//! `kernels/variants.rs` names it by), so the shaders' `BLOCK_VALUES` is this constant.

/// Values in one weight block: the unit every weight decoder reads (shaders/quant.wgsl) and
/// every weight row's length divides; a q4 or q8 group holds whole blocks.
pub const BLOCK_VALUES: u32 = 32;

/// Values in one K-quant super-block (llama.cpp's `QK_K`): the group of q4_k, q5_k and q6_k.
pub const SUPER_BLOCK_VALUES: u32 = 256;
/// Weight blocks in one super-block.
pub const K_SUB_BLOCKS: u32 = SUPER_BLOCK_VALUES / BLOCK_VALUES;
/// Parameter words per super-block of q4_k (one vec4 for the shaders), q5_k and q6_k (see
/// dtype.rs's layouts).
pub const Q4_K_PARAM_WORDS: u32 = 4;
pub const Q5_K_PARAM_WORDS: u32 = 12;
pub const Q6_K_PARAM_WORDS: u32 = 21;
