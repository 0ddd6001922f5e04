//! WGSL compute kernels (one op family per file in shaders/) and the GPU context.
//!
//! Each op module builds [`Dispatch`]es: pipeline, bind group and grid, made once and
//! replayed every step.

mod attention;
mod dispatch;
mod embedding;
mod gpu;
mod linear;
pub mod preprocess;
mod profile;
mod rmsnorm;
mod rope;
mod sampling;
mod swiglu;
mod tensor;
pub mod variants;

pub use attention::{attention, AttentionMode, Heads, KvCache, SplitScratch};
pub use dispatch::{record_all, Dispatch, Step, Workgroups};
pub use embedding::embedding;
pub use gpu::{Gpu, GpuError, GpuOptions};
pub use linear::{linear, LinearMode};
pub use profile::{time_dispatches, Clock};
pub use rmsnorm::rmsnorm;
pub use rope::{rope, rope_table};
pub use sampling::{choose_token, Sampling};
pub use swiglu::swiglu;
pub use tensor::{GpuPart, GpuTensor};
