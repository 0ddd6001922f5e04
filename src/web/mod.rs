//! The browser build's JavaScript API (wasm-bindgen): [`Judge`] loads a model directory
//! over HTTP — verified, cached, resumable ([`loader`]), refused up front when it cannot
//! fit the adapter ([`fit`]) — and judges with the same engine as the CLI.
//! docs/web-api.md is the reference for JavaScript callers.

mod api;
mod error;
pub mod fit;
pub mod loader;
mod options;
mod types;

pub use api::{pairwise_metrics, preference_metrics, score_metrics, Judge};
pub use error::WebError;
