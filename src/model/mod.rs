//! The LLaMA-family model: its configuration and forward pass.

mod config;

pub use config::{Architecture, ChatTemplate};
