//! Importing a checkpoint's description into the model format, on both targets: the choices
//! every importer makes alike ([`policy`]) and a GGUF file's plan ([`gguf`]: its
//! architecture, tokenizer, chat template and judge family from the metadata, which tensor
//! becomes which of the format's, and each tensor part repacked from the file's bytes), and
//! [`stream`]: a GGUF repacked as its bytes arrive in file order, the file's sha256 checked;
//! [`hub`]: where the Hugging Face Hub publishes a file's sha256.
//! Nothing here reads a file: `convert` (native) writes a model directory from the plan,
//! `engine::native` loads a GGUF file directly by it, and the browser streams a GGUF URL
//! through it. It sits above `format` and `tokenizer` (it builds `tokenizer.json`) and below
//! `engine`.

pub mod gguf;
pub mod hub;
pub mod policy;
pub mod stream;

pub use policy::{
    chat_template_policy, infer_judge, longrope_attention_factor, recorded_context, special_token_strings,
    ConvertError, JudgeChoice, JudgeDecision, LongRopeCap, OutputProblem, TemplateText, MIN_SHARD_BYTES,
};

/// The Hugging Face row (or bias value) that becomes row `j` of a Q or K projection whose
/// heads have dimension `head_dim`: the same head's row, by the permutation from Hugging
/// Face's RoPE pairs `(x[i], x[i + d/2])` to the engine's adjacent pairs `(x[2i], x[2i+1])`
/// (`convert::hf_import`'s module documentation). Both importers permute by it.
pub fn rope_source_row(j: usize, head_dim: usize) -> usize {
    let (head_start, i) = (j / head_dim * head_dim, j % head_dim);
    let half = head_dim / 2;
    head_start + if i.is_multiple_of(2) { i / 2 } else { i / 2 + half }
}
