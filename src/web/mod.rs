//! The browser build's JavaScript API (wasm-bindgen): [`JsJudge`] (`Judge` in JavaScript)
//! loads a model directory over HTTP — verified, cached, resumable ([`loader`]), refused up
//! front when it cannot fit the adapter ([`fit`]) — and judges with the same engine and the
//! same choices ([`crate::judge::policy`]) as the CLI. docs/web-api.md is the reference for
//! JavaScript callers.

mod arguments;
mod callbacks;
mod class;
mod error;
mod exports;
pub mod fit;
mod gguf;
mod load;
pub mod loader;
mod opfs;
mod options;
mod types;

pub use class::JsJudge;
pub use error::WebError;
pub use exports::{built_in_rubrics, defaults, pairwise_metrics, preference_metrics, protocols, score_metrics};
