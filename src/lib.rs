//! webjudge: the Auto-J generative judge on WebGPU, in the browser and natively.
//!
//! - [`format`](mod@format): the model directory format both engines read;
//! - [`kernels`]: WGSL compute kernels and the GPU context they run on;
//! - [`model`]: weight upload, the GPU forward pass and its CPU reference;
//! - [`tokenizer`]: text to ids and back, streaming;
//! - [`import`]: a checkpoint's description into that format, a GGUF file's plan among it
//!   (both targets: `convert` writes it, the engine loads a GGUF by it);
//! - [`engine`]: a loaded model and the generation loop;
//! - [`judge`]: Auto-J protocols, verdicts, judging and evaluation metrics;
//! - `convert` (native only): GGUF and Hugging Face checkpoints into that format;
//! - `web` (wasm32 only): the JavaScript API and the model loader of the browser build;
//! - `python` (native, feature `python`): the Python package's native module.

#[cfg(not(target_arch = "wasm32"))]
pub mod convert;
pub mod engine;
pub mod format;
pub mod import;
pub mod judge;
pub mod kernels;
pub mod model;
#[cfg(all(feature = "python", not(target_arch = "wasm32")))]
mod python;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod web;
