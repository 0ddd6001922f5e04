//! The LLaMA-family model: its configuration, weight loading, the GPU forward pass and
//! the plain CPU reference the kernels are tested against.

mod llama;
mod load;
mod options;
mod plan;
pub mod reference;
mod stack;

pub use llama::{DecodeRow, LlamaModel, ProfiledStep, StepError, StepProfile};
pub use load::{allocate_tensors, verify_shard, LoadError, ShardUploader};
pub use options::{check_context, LoadOptions, MAX_SEQUENCES};
pub use plan::{BufferPlan, CPU_PREFILL_CHUNK, GPU_PREFILL_CHUNK, MAX_STEP_TOKENS};
