//! The errors the JavaScript API rejects with: a JS `Error` whose `name` says what kind
//! of failure it is (scripts branch on it) and whose `message` is the Display below,
//! numbers included.

use crate::engine::EngineError;
use crate::judge::session::JudgeError;
use crate::judge::ProtocolError;
use crate::kernels::GpuError;
use crate::model::{LoadError, StepError};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("WebGPU is not available: {0}")]
    WebGpuUnavailable(String),
    #[error("{0}")]
    DoesNotFit(String),
    #[error("{0}")]
    Network(String),
    #[error("{0}")]
    CorruptShard(String),
    #[error("the GPU device was lost ({0}); load the model again")]
    DeviceLost(String),
    #[error("{0}")]
    InputTooLong(String),
    #[error("the model was unloaded; load it again with Judge.load")]
    Unloaded,
    #[error("{0}")]
    InvalidInput(String),
    /// A protocol of the other judge family than the model's (its manifest's `judge`).
    #[error("{0}")]
    WrongJudge(String),
    #[error("{0}")]
    Model(String),
    /// The caller's `AbortSignal` was aborted (a GGUF's load).
    #[error("{0}")]
    Aborted(String),
}

/// Tells users of browsers without WebGPU (or with it switched off) what to do, per browser
/// as shipped by late 2025. The one copy of this advice: the page shows the error's message
/// (www/messages.js adds no hint of its own for WebGPUUnavailable).
pub const WEBGPU_HINT: &str = "use Chrome or Edge 113+ (on Linux, if WebGPU is still off, enable \
    chrome://flags/#enable-unsafe-webgpu), Safari 26+, or Firefox 141+ on Windows or 145+ on a Mac with Apple \
    silicon (elsewhere Firefox needs dom.webgpu.enabled in about:config), with hardware acceleration on, \
    and open the page from https:// or localhost";

impl WebError {
    /// The JS error `name`: part of the API contract (docs/web-api.md).
    pub fn name(&self) -> &'static str {
        match self {
            WebError::WebGpuUnavailable(_) => "WebGPUUnavailable",
            WebError::DoesNotFit(_) => "DoesNotFit",
            WebError::Network(_) => "NetworkError",
            WebError::CorruptShard(_) => "CorruptShard",
            WebError::DeviceLost(_) => "DeviceLost",
            WebError::InputTooLong(_) => "InputTooLong",
            WebError::Unloaded => "Unloaded",
            WebError::InvalidInput(_) => "InvalidInput",
            WebError::WrongJudge(_) => "WrongJudge",
            WebError::Model(_) => "ModelError",
            WebError::Aborted(_) => "AbortError",
        }
    }

    pub fn to_js(&self) -> wasm_bindgen::JsValue {
        let error = js_sys::Error::new(&self.to_string());
        error.set_name(self.name());
        error.into()
    }
}

impl From<GpuError> for WebError {
    fn from(error: GpuError) -> Self {
        match error {
            GpuError::NoAdapter(_) | GpuError::Device(_) => {
                WebError::WebGpuUnavailable(format!("{error}; {WEBGPU_HINT}"))
            }
            GpuError::Lost(message) => WebError::DeviceLost(message),
            // Asked for by the load's options: the caller can load with the exact path.
            GpuError::NoPackedDot => WebError::InvalidInput(error.to_string()),
            other => WebError::Model(other.to_string()),
        }
    }
}

impl From<LoadError> for WebError {
    fn from(error: LoadError) -> Self {
        match error {
            LoadError::Gpu(gpu) => gpu.into(),
            LoadError::BindingTooLarge { .. } | LoadError::ContextTooLong { .. } => {
                WebError::DoesNotFit(error.to_string())
            }
            LoadError::ShardHash { .. } | LoadError::ShardSize { .. } => WebError::CorruptShard(error.to_string()),
            other => WebError::Model(other.to_string()),
        }
    }
}

impl From<EngineError> for WebError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Step(StepError::Gpu(gpu)) => gpu.into(),
            EngineError::Load(load) => load.into(),
            EngineError::PromptTooLong { .. } | EngineError::Step(StepError::ContextFull { .. }) => {
                WebError::InputTooLong(error.to_string())
            }
            other => WebError::Model(other.to_string()),
        }
    }
}

impl From<JudgeError> for WebError {
    fn from(error: JudgeError) -> Self {
        match error {
            JudgeError::Engine(engine) => engine.into(),
            JudgeError::Protocol(protocol) => protocol.into(),
            JudgeError::TooLong { .. } | JudgeError::QueryTooLong { .. } => WebError::InputTooLong(error.to_string()),
            other => WebError::InvalidInput(other.to_string()),
        }
    }
}

impl From<ProtocolError> for WebError {
    fn from(error: ProtocolError) -> Self {
        match error {
            ProtocolError::NotServed { .. } => WebError::WrongJudge(error.to_string()),
            // The model directory's chat template is missing or refuses the conversation.
            ProtocolError::NoChatTemplate { .. } | ProtocolError::ChatTemplate(_) => WebError::Model(error.to_string()),
            other => WebError::InvalidInput(other.to_string()),
        }
    }
}

impl From<WebError> for wasm_bindgen::JsValue {
    fn from(error: WebError) -> Self {
        error.to_js()
    }
}
