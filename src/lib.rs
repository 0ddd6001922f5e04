//! webjudge: the Auto-J generative judge on WebGPU, in the browser and natively.
//!
//! - [`weights`]: the model directory format and checkpoint importers;
//! - [`kernels`]: WGSL compute kernels and the GPU context they run on;
//! - [`model`]: architecture, the GPU forward pass and its CPU reference;
//! - [`tokenizer`]: text to ids and back, streaming;
//! - [`engine`]: a loaded model and the generation loop;
//! - [`judge`]: Auto-J protocols, verdicts, judging and evaluation metrics;
//! - `web` (wasm32 only): the JavaScript API and the model loader of the browser build.

pub mod engine;
pub mod judge;
pub mod kernels;
pub mod model;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod web;
pub mod weights;
