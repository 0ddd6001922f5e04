//! WGSL compute kernels (one op family per file in shaders/) and the GPU context.
//!
//! Each op module builds [`Dispatch`]es: pipeline, bind group and grid, made once and
//! replayed every step.

mod attention;
mod dispatch;
mod embedding;
mod gather;
mod gpu;
mod linear;
pub mod preprocess;
mod profile;
mod rmsnorm;
mod rope;
mod sampling;
mod tensor;
mod uniform;
pub mod variants;

pub use attention::{attention, AttentionMode, Heads, KvCache, SplitScratch};
pub use dispatch::{record_all, Dispatch, Step, StepBuffers, TokenPlace, Workgroups, MAX_WORKGROUPS_PER_DIM};
pub use embedding::embedding;
pub use gather::gather;
pub use gpu::{storage_size, Gpu, GpuError, GpuOptions, PipelineKey};
pub use linear::{linear, normed_linear, Epilogue, InputNorm, LinearKernel, LinearTokens, MatmulTile, MatvecPath};
pub use profile::{time_dispatches, Clock};
pub use rmsnorm::rmsnorm;
pub use rope::{rope_and_store, rope_table};
pub use sampling::{choose_token, Sampling, SamplingError, TopP, MIN_TEMPERATURE};
pub use tensor::{GpuPart, GpuTensor};
pub use variants::Shader;
