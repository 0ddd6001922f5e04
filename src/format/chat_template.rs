//! The chat wrapper a model expects around a user message.

use serde::{Deserialize, Serialize};

/// How a user message is wrapped into the model's prompt: the template holds one
/// `{input}` placeholder, replaced once (user text is never re-scanned).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatTemplate {
    pub template: String,
}

impl ChatTemplate {
    pub const PLACEHOLDER: &'static str = "{input}";

    /// LLaMA-2 `[INST]` wrapper without a system message, as Auto-J was trained.
    pub fn llama2() -> Self {
        Self { template: "[INST] {input} [/INST]".into() }
    }

    /// ChatML with a user turn and an open assistant turn.
    pub fn chatml(system: Option<&str>) -> Self {
        let system = system.map(|s| format!("<|im_start|>system\n{s}<|im_end|>\n")).unwrap_or_default();
        Self { template: format!("{system}<|im_start|>user\n{{input}}<|im_end|>\n<|im_start|>assistant\n") }
    }

    pub fn wrap(&self, input: &str) -> String {
        let (before, after) = self.parts();
        format!("{before}{input}{after}")
    }

    /// The template's own text before and after the user message (a template without the
    /// placeholder takes the message at its end).
    pub fn parts(&self) -> (&str, &str) {
        self.template.split_once(Self::PLACEHOLDER).unwrap_or((&self.template, ""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_substitutes_once() {
        let wrapped = ChatTemplate::llama2().wrap("say {input} and [/INST]");
        assert_eq!(wrapped, "[INST] say {input} and [/INST] [/INST]");
        assert_eq!(ChatTemplate::chatml(None).wrap("hi"), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
        let without_placeholder = ChatTemplate { template: "Judge: ".into() };
        assert_eq!(without_placeholder.parts(), ("Judge: ", ""));
        assert_eq!(without_placeholder.wrap("x"), "Judge: x");
    }
}
