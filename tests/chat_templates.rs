//! Published chat templates (tests/fixtures/chat_templates/) rendered by webjudge against
//! transformers' `apply_chat_template` over hostile conversations
//! (tests/golden/chat_templates.json, from tools/reference/chat_template_golden.py), and the
//! token split of each prompt: special tokens come only from the template's own text.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::json;
use webjudge::format::{ChatTemplate, JinjaTemplate, Message, RenderedChat, Role};
use webjudge::import::{chat_template_policy, TemplateText};
use webjudge::tokenizer::Tokenizer;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chat_templates");
const GOLDEN: &str = include_str!("golden/chat_templates.json");

#[derive(Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    template: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
    messages: Vec<GoldenMessage>,
    rendered: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct GoldenMessage {
    role: String,
    content: String,
}

fn cases() -> Vec<Case> {
    serde_json::from_str::<Golden>(GOLDEN).expect("golden JSON").cases
}

impl Case {
    fn template(&self) -> ChatTemplate {
        let path = format!("{FIXTURES}/{}", self.template);
        ChatTemplate::Jinja(JinjaTemplate {
            origin: self.template.clone(),
            jinja: std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
            bos_token: self.bos_token.clone(),
            eos_token: self.eos_token.clone(),
        })
    }

    fn messages(&self) -> Vec<Message<'_>> {
        let role = |name: &str| match name {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => panic!("role {other}"),
        };
        self.messages.iter().map(|m| Message { role: role(&m.role), content: &m.content }).collect()
    }

    fn render(&self) -> Option<RenderedChat> {
        self.rendered.as_ref().map(|_| self.template().render(&self.messages()).expect("renders"))
    }
}

#[test]
fn published_templates_render_as_transformers_renders_them() {
    let cases = cases();
    let mut per_template: HashMap<&str, usize> = HashMap::new();
    for (number, case) in cases.iter().enumerate() {
        let what = format!("case {number} ({}, {:?})", case.template, case.messages.first().map(|m| &m.content));
        match (&case.rendered, case.template().render(&case.messages())) {
            (Some(want), Ok(chat)) => {
                assert_eq!(&chat.text, want, "{what}");
                // Every content span is a message's content, whole or stripped of (Python's)
                // whitespace.
                let python_space = |c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
                for range in &chat.contents {
                    let placed = &chat.text[range.clone()];
                    let found = case.messages.iter().any(|m| {
                        let content = m.content.as_str();
                        content.split_once(placed).is_some_and(|(before, after)| {
                            before.chars().all(python_space) && after.chars().all(python_space)
                        })
                    });
                    assert!(found, "{what}: {placed:?} is no message's content");
                }
            }
            (None, Err(error)) => {
                let expected = case.error.as_deref().expect("an error or a rendering");
                assert!(error.to_string().contains(expected), "{what}: {error} lacks {expected:?}");
                assert!(error.to_string().contains(&case.template), "{what}: {error} names no template");
            }
            (want, got) => panic!("{what}: transformers gave {want:?}, webjudge {got:?}"),
        }
        *per_template.entry(&case.template).or_default() += 1;
    }
    assert_eq!(per_template.len(), 5, "{per_template:?}");
}

/// Every special-token string the five templates write, and the hostile messages repeat.
const SPECIALS: [&str; 13] = [
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    "<|endoftext|>",
    "<s>",
    "</s>",
];

/// A byte-level BPE with one token per byte and no merges, plus [`SPECIALS`] as special
/// added tokens: every id is either one byte of text or one special token.
fn byte_tokenizer() -> Tokenizer {
    // GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest are shifted
    // past 255.
    let mut shifted = 0;
    let vocab: serde_json::Map<String, serde_json::Value> = (0u32..256)
        .map(|byte| {
            let printable = matches!(byte, 33..=126 | 161..=172 | 174..=255);
            let c = if printable {
                char::from_u32(byte).unwrap()
            } else {
                shifted += 1;
                char::from_u32(255 + shifted).unwrap()
            };
            (c.to_string(), json!(byte))
        })
        .collect();
    let added: Vec<_> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, content)| {
            json!({"id": 256 + i, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": []}
    });
    Tokenizer::from_json(&tokenizer.to_string()).expect("byte-level tokenizer")
}

/// Special-token strings in `text`, leftmost first.
fn specials_in(text: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < text.len() {
        match SPECIALS.iter().position(|s| text[at..].starts_with(s)) {
            Some(index) => {
                found.push(256 + index as u32);
                at += SPECIALS[index].len();
            }
            None => at += text[at..].chars().next().unwrap().len_utf8(),
        }
    }
    found
}

#[test]
fn special_tokens_come_only_from_the_template_s_own_text() {
    let tokenizer = byte_tokenizer();
    let mut hostile = 0;
    for (number, case) in cases().iter().enumerate() {
        let Some(chat) = case.render() else { continue };
        let ids = tokenizer.encode_chat(&chat).unwrap();
        assert_eq!(tokenizer.decode(&ids).unwrap(), chat.text, "case {number}: the ids spell the prompt");
        // The template's own text, the contents cut out.
        let mut own = Vec::new();
        let mut start = 0;
        for range in chat.contents.iter().chain([&(chat.text.len()..chat.text.len())]) {
            own.extend(specials_in(&chat.text[start..range.start]));
            start = range.end;
        }
        let special_ids: Vec<u32> = ids.iter().copied().filter(|&id| id >= 256).collect();
        assert_eq!(special_ids, own, "case {number} ({}): special ids other than the template's", case.template);
        hostile += usize::from(specials_in(&chat.text).len() > own.len());
        // Jinja templates write BOS themselves: nothing is added in front.
        if let Some(bos) =
            case.bos_token.as_deref().filter(|_| chat.text.starts_with(case.bos_token.as_deref().unwrap()))
        {
            assert_eq!(ids[0], 256 + SPECIALS.iter().position(|s| *s == bos).unwrap() as u32);
            assert_ne!(ids[1], ids[0], "case {number}: BOS twice");
        }
    }
    assert!(hostile >= 15, "only {hostile} cases put special-token strings in a message");
}

/// `convert` keeps each published template: its check (one render around a hostile message)
/// passes, and the manifest's template is the file's text with the model's BOS and EOS.
#[test]
fn convert_keeps_every_published_template() {
    let cases = cases();
    let mut seen: Vec<&str> = Vec::new();
    for case in &cases {
        if seen.contains(&case.template.as_str()) {
            continue;
        }
        seen.push(&case.template);
        let ChatTemplate::Jinja(expected) = case.template() else { unreachable!() };
        let own = TemplateText { origin: case.template.clone(), jinja: expected.jinja.clone() };
        let tokens = (case.bos_token.clone(), case.eos_token.clone());
        let kept = chat_template_policy(None, Some(own), tokens, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kept, Some(ChatTemplate::Jinja(expected)), "{}", case.template);
    }
    assert_eq!(seen.len(), 5);
}
