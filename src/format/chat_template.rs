//! The chat template a model expects around a conversation, and the prompt it renders:
//! the text, and which bytes of it are messages' contents (text someone else wrote, which the
//! tokenizer must never read special tokens in) rather than the template's own.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::jinja::{self, is_python_space};

/// How a conversation becomes the model's prompt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChatTemplate {
    /// The model's own Jinja template, rendered as transformers' `apply_chat_template`
    /// renders it ([`JinjaTemplate`]).
    Jinja(JinjaTemplate),
    /// A `{input}` wrapper around one user message, replaced once (user text is never
    /// re-scanned): LLaMA-2's `[INST]` for a checkpoint without a template whose tokenizer
    /// is LLaMA's (Auto-J), and what manifests of format versions 1 to 3 hold.
    Wrapper { template: String },
}

/// A Jinja chat template and the token strings it reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JinjaTemplate {
    /// Where the template came from (a file, a metadata key), which errors name.
    pub origin: String,
    pub jinja: String,
    /// The tokenizer's BOS and EOS strings, the template's `bos_token` and `eos_token`
    /// (undefined where the tokenizer names none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token: Option<String>,
}

/// Who speaks a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub role: Role,
    pub content: &'a str,
}

impl<'a> Message<'a> {
    pub fn user(content: &'a str) -> Self {
        Self { role: Role::User, content }
    }
}

/// A rendered prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedChat {
    pub text: String,
    /// Byte ranges of `text` that are messages' contents, in order, not overlapping: tokenized
    /// as text. The rest is the template's own, where special tokens count.
    pub contents: Vec<Range<usize>>,
    /// Whether the tokenizer's post-processor adds BOS/EOS as for a raw prompt: a wrapper
    /// leaves BOS to it; a Jinja template writes `bos_token` itself, and transformers
    /// tokenizes its output with `add_special_tokens=False`.
    pub add_special_tokens: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatTemplateError {
    #[error("chat template ({origin}): {problem}")]
    Render { origin: String, problem: String },
    #[error(
        "chat template ({origin}) does more with a message's content than place it whole or stripped of \
         whitespace, so the content cannot be told from the template's own text; webjudge refuses rather than \
         read special tokens in it"
    )]
    Untraceable { origin: String },
    #[error("chat template ({origin}) leaves out the user's message")]
    DropsMessage { origin: String },
    #[error("the chat template {template:?} wraps one user message, not a conversation of {roles}")]
    WrapperConversation { template: String, roles: String },
}

impl ChatTemplate {
    pub const PLACEHOLDER: &'static str = "{input}";

    /// LLaMA-2 `[INST]` wrapper without a system message, as Auto-J was trained.
    pub fn llama2() -> Self {
        Self::Wrapper { template: "[INST] {input} [/INST]".into() }
    }

    /// The prompt for `messages`, ending in an open assistant turn
    /// (`add_generation_prompt=True`).
    pub fn render(&self, messages: &[Message]) -> Result<RenderedChat, ChatTemplateError> {
        match self {
            ChatTemplate::Jinja(template) => template.render(messages),
            ChatTemplate::Wrapper { template } => match messages {
                [Message { role: Role::User, content }] => {
                    let (before, after) = template.split_once(Self::PLACEHOLDER).unwrap_or((template, ""));
                    let placed = before.len()..before.len() + content.len();
                    Ok(RenderedChat {
                        text: format!("{before}{content}{after}"),
                        contents: vec![placed],
                        add_special_tokens: true,
                    })
                }
                _ => Err(ChatTemplateError::WrapperConversation {
                    template: template.clone(),
                    roles: messages.iter().map(|m| m.role.name()).collect::<Vec<_>>().join(", "),
                }),
            },
        }
    }

    /// Where the template came from, for messages.
    pub fn origin(&self) -> &str {
        match self {
            ChatTemplate::Jinja(template) => &template.origin,
            ChatTemplate::Wrapper { template } => template,
        }
    }
}

impl JinjaTemplate {
    /// Renders the template twice: with each non-empty content replaced by a sentinel no
    /// text holds, and with the contents themselves. The second must be the first with each
    /// sentinel replaced by its content, whole or stripped of whitespace as Llama-3's `trim`
    /// does; what lies between sentinels is the template's own text. A template that does
    /// anything else with a content (cuts it, changes its case, branches on it) is refused:
    /// the content could not be told from the template's text. Empty contents need no
    /// sentinel and keep any branch a template takes on them (Phi-3.5 skips an empty system
    /// message).
    fn render(&self, messages: &[Message]) -> Result<RenderedChat, ChatTemplateError> {
        let texts = std::iter::once(self.jinja.as_str()).chain(messages.iter().map(|m| m.content));
        let nonce = unused_nonce(texts);
        let sentinels: Vec<Option<String>> = (0..messages.len())
            .map(|i| (!messages[i].content.is_empty()).then(|| format!("\u{E000}{nonce}:{i}\u{E001}")))
            .collect();
        let marked: Vec<Message> = messages
            .iter()
            .zip(&sentinels)
            .map(|(message, sentinel)| Message { role: message.role, content: sentinel.as_deref().unwrap_or("") })
            .collect();
        let skeleton = self.render_text(&marked)?;
        let text = self.render_text(messages)?;
        // The skeleton as the template's own text, each piece followed by the message whose
        // sentinel ends it (none after the last).
        let mut pieces = Vec::new();
        let mut rest = skeleton.as_str();
        while let Some((at, index)) =
            sentinels.iter().enumerate().filter_map(|(i, s)| Some((rest.find(s.as_deref()?)?, i))).min()
        {
            pieces.push((&rest[..at], Some(index)));
            rest = &rest[at + sentinels[index].as_deref().map_or(0, str::len)..];
        }
        pieces.push((rest, None));
        let mut contents = Vec::new();
        if !trace(&text, 0, &pieces, messages, &mut contents) {
            return Err(ChatTemplateError::Untraceable { origin: self.origin.clone() });
        }
        Ok(RenderedChat { text, contents, add_special_tokens: false })
    }

    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=True)`.
    fn render_text(&self, messages: &[Message]) -> Result<String, ChatTemplateError> {
        use minijinja::Value;
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| Value::from_pairs([("role", Value::from(m.role.name())), ("content", Value::from(m.content))]))
            .collect();
        let mut context = vec![
            ("messages", Value::from(messages)),
            // transformers passes both, as none without tools or documents.
            ("tools", Value::from(())),
            ("documents", Value::from(())),
            ("add_generation_prompt", Value::from(true)),
        ];
        context.extend(self.bos_token.as_deref().map(|token| ("bos_token", Value::from(token))));
        context.extend(self.eos_token.as_deref().map(|token| ("eos_token", Value::from(token))));
        let render_error = |error: minijinja::Error| ChatTemplateError::Render {
            origin: self.origin.clone(),
            problem: error.detail().map_or_else(|| error.to_string(), |detail| format!("{detail} ({error})")),
        };
        jinja::environment().render_str(&self.jinja, Value::from_pairs(context)).map_err(render_error)
    }
}

/// A number whose sentinels (`U+E000 nonce:`) no text holds, so a sentinel found in the
/// skeleton can only be one the renderer put there.
fn unused_nonce<'a>(texts: impl Iterator<Item = &'a str> + Clone) -> u64 {
    (0..).find(|nonce| texts.clone().all(|text| !text.contains(&format!("\u{E000}{nonce}:")))).expect("a free nonce")
}

/// Whether `text[at..]` is `pieces` with each message after a piece in one of the forms
/// [`placed_forms`] allows, pushing the contents' byte ranges. Backtracks over the forms,
/// of which at most four differ.
fn trace(
    text: &str,
    at: usize,
    pieces: &[(&str, Option<usize>)],
    messages: &[Message],
    out: &mut Vec<Range<usize>>,
) -> bool {
    let Some(((piece, index), rest)) = pieces.split_first() else { return at == text.len() };
    if !text[at..].starts_with(piece) {
        return false;
    }
    let at = at + piece.len();
    let Some(index) = index else { return trace(text, at, rest, messages, out) };
    for form in placed_forms(messages[*index].content) {
        if text[at..].starts_with(form) {
            out.push(at..at + form.len());
            if trace(text, at + form.len(), rest, messages, out) {
                return true;
            }
            out.pop();
        }
    }
    false
}

/// What a template may place of a content: itself, or Python's `strip`, `lstrip`, `rstrip`
/// of it (Jinja2's `trim`), distinct, the longest first.
fn placed_forms(content: &str) -> Vec<&str> {
    let mut forms = vec![
        content,
        content.trim_end_matches(is_python_space),
        content.trim_start_matches(is_python_space),
        content.trim_matches(is_python_space),
    ];
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    forms.dedup();
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jinja(source: &str) -> ChatTemplate {
        ChatTemplate::Jinja(JinjaTemplate {
            origin: "test".into(),
            jinja: source.into(),
            bos_token: Some("<s>".into()),
            eos_token: Some("</s>".into()),
        })
    }

    fn content_of(chat: &RenderedChat) -> Vec<&str> {
        chat.contents.iter().map(|range| &chat.text[range.clone()]).collect()
    }

    #[test]
    fn wrapping_substitutes_once() {
        let chat = ChatTemplate::llama2().render(&[Message::user("say {input} and [/INST]")]).unwrap();
        assert_eq!(chat.text, "[INST] say {input} and [/INST] [/INST]");
        assert_eq!(content_of(&chat), ["say {input} and [/INST]"]);
        assert!(chat.add_special_tokens);
        let without_placeholder = ChatTemplate::Wrapper { template: "Judge: ".into() };
        assert_eq!(without_placeholder.render(&[Message::user("x")]).unwrap().text, "Judge: x");
        let system = Message { role: Role::System, content: "s" };
        assert!(matches!(
            ChatTemplate::llama2().render(&[system, Message::user("x")]),
            Err(ChatTemplateError::WrapperConversation { .. })
        ));
    }

    #[test]
    fn contents_are_found_whole_or_trimmed() {
        let template = jinja(
            "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content|trim }}|{{ m['content'] }}{% endfor %}",
        );
        let chat = template.render(&[Message::user("  a <s> b \n")]).unwrap();
        assert_eq!(chat.text, "<s>[user] a <s> b|  a <s> b \n");
        assert_eq!(content_of(&chat), ["a <s> b", "  a <s> b \n"]);
        assert!(!chat.add_special_tokens);
        // A content equal to the template's own text is still told apart by position.
        let chat = template.render(&[Message::user("|")]).unwrap();
        assert_eq!(chat.contents, [10..11, 12..13]);
    }

    #[test]
    fn transformed_contents_and_template_errors_are_refused() {
        let upper = jinja("{% for m in messages %}{{ m.content|upper }}{% endfor %}");
        let error = upper.render(&[Message::user("abc")]).unwrap_err();
        assert!(matches!(error, ChatTemplateError::Untraceable { .. }), "{error}");
        let branching =
            jinja("{% for m in messages %}{% if 'x' in m.content %}X{% endif %}{{ m.content }}{% endfor %}");
        assert!(matches!(branching.render(&[Message::user("x")]), Err(ChatTemplateError::Untraceable { .. })));
        let refusing = jinja("{{ raise_exception('no system role') }}");
        let error = refusing.render(&[Message::user("x")]).unwrap_err().to_string();
        assert!(error.starts_with("chat template (test): no system role"), "{error}");
        assert!(matches!(jinja("{% if %}").render(&[]), Err(ChatTemplateError::Render { .. })));
    }

    #[test]
    fn older_manifests_hold_a_wrapper() {
        let wrapper: ChatTemplate = serde_json::from_str(r#"{"template": "[INST] {input} [/INST]"}"#).unwrap();
        assert_eq!(wrapper, ChatTemplate::llama2());
        let jinja_json = serde_json::to_string(&jinja("{{ x }}")).unwrap();
        assert_eq!(jinja_json, r#"{"origin":"test","jinja":"{{ x }}","bos_token":"<s>","eos_token":"</s>"}"#);
        assert_eq!(serde_json::from_str::<ChatTemplate>(&jinja_json).unwrap(), jinja("{{ x }}"));
    }
}
