//! Architecture hyper-parameters and the chat wrapper a model expects.

use serde::{Deserialize, Serialize};

/// Everything the forward pass needs to know about a LLaMA-family model's shapes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    pub n_layers: usize,
    pub hidden: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub rope_theta: f32,
    pub norm_eps: f32,
    pub context_length: usize,
    /// The output projection reuses the token embedding matrix.
    pub tied_embeddings: bool,
    pub bos_id: Option<u32>,
    pub eos_ids: Vec<u32>,
    /// The tokenizer prepends BOS to every encoded prompt.
    pub add_bos: bool,
}

impl Architecture {
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Checks the invariants the kernels rely on.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("n_layers", self.n_layers),
            ("hidden", self.hidden),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
            ("ffn", self.ffn),
            ("vocab", self.vocab),
            ("context_length", self.context_length),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(format!("{} attention heads are not a multiple of {} KV heads", self.n_heads, self.n_kv_heads));
        }
        if !self.head_dim.is_multiple_of(2) || self.head_dim > 256 {
            return Err(format!("head dim {} must be even and at most 256", self.head_dim));
        }
        if !(self.rope_theta > 0.0 && self.norm_eps > 0.0) {
            return Err("rope theta and norm eps must be positive".into());
        }
        Ok(())
    }
}

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
