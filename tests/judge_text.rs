//! Auto-J's text protocol: the model inputs, byte for byte, and the verdicts of critiques.
//!
//! - Rendering against Auto-J's code's own rendering of its example, against
//!   `tests/golden/autoj_rendered.json` (Python `str.format` exactly as Auto-J's code calls it,
//!   on real test-set rows and adversarial texts: `tools/reference/render_prompts.py`), and
//!   structurally on every row of the three test sets.
//! - Verdict tables with critiques in both languages, each row marked by how Auto-J's own
//!   extractors (ported below) fare on it: the same verdict, a silent failure we tolerate, or a
//!   verdict we deliberately refuse.
//! - The `prompt` and `parse` subcommands end to end.
//!
//! The rows and examples come from the excerpt in `tests/fixtures/autoj/`; the checks over
//! Auto-J's original files (templates, whole test sets, the excerpt itself) are skipped, saying
//! so, where those are absent (`tests/autoj`).

mod autoj;
mod test_model;

use std::io::Write;
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::{json, Value};
use webjudge::format::manifest::MANIFEST_FILE;
use webjudge::format::ChatTemplate;
use webjudge::judge::{
    model_input, parse_pairwise, parse_rating, render, Item, JudgeFamily, Protocol, ProtocolError, Winner,
};

use autoj::{excerpt_row, excerpt_rows, excerpt_set, Originals, RENDERED_EXAMPLES};
use test_model::{manifest_only_model, scratch, smollm2_template, webjudge};

fn llama2() -> ChatTemplate {
    ChatTemplate::llama2()
}

/// Where two renderings first differ, with some context, for failure messages.
fn first_difference(got: &str, want: &str) -> String {
    let at = got.bytes().zip(want.bytes()).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    let context = |s: &str| {
        let mut start = at.saturating_sub(40).min(s.len());
        while !s.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (at + 40).min(s.len());
        while !s.is_char_boundary(end) {
            end += 1;
        }
        format!("{:?}", &s[start..end])
    };
    format!(
        "first difference at byte {at} (lengths {} and {}):\n  got  {}\n  want {}",
        got.len(),
        want.len(),
        context(got),
        context(want)
    )
}

fn assert_same_text(got: &str, want: &str, what: &str) {
    assert!(got == want, "{what}: {}", first_difference(got, want));
}

// ---------------------------------------------------------------------------------------------
// Rendering

#[test]
fn embedded_templates_are_auto_js_byte_for_byte() {
    // Without the originals the goldens still pin every template byte: Python rendered them.
    let Some(originals) = Originals::find() else { return };
    for protocol in JudgeFamily::AutoJ.protocols() {
        let original = originals.text(&format!("templates/{}.txt", protocol.name()));
        assert_same_text(protocol.template(), &original, protocol.name());
    }
    assert_eq!(llama2(), ChatTemplate::Wrapper { template: originals.text("templates/llama2_wrapper.txt") });
    // `single` keeps its line of two spaces.
    assert!(Protocol::Single.template().contains("grade the response:\n  \n[BEGIN DATA]"));
}

#[test]
fn renders_the_original_example_byte_for_byte() {
    let examples: std::collections::BTreeMap<String, String> =
        serde_json::from_str(RENDERED_EXAMPLES).expect("rendered_examples.json");
    let names: Vec<&str> = examples.keys().map(String::as_str).collect();
    let mut all: Vec<&str> = JudgeFamily::AutoJ.protocols().map(|protocol| protocol.name()).collect();
    all.sort_unstable();
    assert_eq!(names, all, "rendered_examples.json covers every Auto-J protocol");
    for (name, want) in &examples {
        let protocol: Protocol = name.parse().unwrap();
        let item = if protocol.is_pairwise() {
            Item::pair("instruction", "resp1", "resp2")
        } else {
            Item::single("instruction", "resp1")
        };
        assert_same_text(&model_input(protocol, &item, Some(&llama2())).unwrap(), want, name);
    }
}

#[test]
fn the_excerpt_is_auto_js_verbatim() {
    let Some(originals) = Originals::find() else { return };
    let copy = "tests/fixtures/autoj/rendered_examples.json";
    assert_same_text(RENDERED_EXAMPLES, &originals.text("templates/rendered_examples.json"), copy);
    let mut sets = std::collections::HashMap::new();
    for kept in excerpt_rows() {
        let rows = sets.entry(kept.set.clone()).or_insert_with(|| originals.test_set(&kept.set));
        let (set, line) = (&kept.set, kept.line);
        assert_eq!(kept.row, rows[line - 1], "{set} line {line} differs: rerun tools/reference/autoj_excerpt.py");
    }
}

#[derive(Deserialize)]
struct Golden {
    cases: Vec<GoldenCase>,
}

#[derive(Deserialize)]
struct GoldenCase {
    protocol: String,
    input: String,
    /// A real row: its test set and 1-based line.
    set: Option<String>,
    line: Option<usize>,
    /// An adversarial item, in `Item`'s own serialization.
    item: Option<Item>,
}

#[test]
fn renders_like_python_str_format_on_test_rows_and_adversarial_text() {
    let golden: Golden =
        serde_json::from_str(include_str!("golden/autoj_rendered.json")).expect("tests/golden/autoj_rendered.json");
    let (mut rows, mut adversarial) = (0, 0);
    for case in &golden.cases {
        let protocol: Protocol = case.protocol.parse().unwrap();
        let (item, label) = match (&case.item, &case.set, case.line) {
            (Some(item), _, _) => {
                adversarial += 1;
                (item.clone(), format!("{protocol} adversarial {item:?}"))
            }
            (None, Some(set), Some(line)) => {
                rows += 1;
                let item = Item::from_row(&excerpt_row(set, line), protocol).unwrap();
                (item, format!("{protocol} {set} line {line}"))
            }
            _ => panic!("golden case without an item or a row"),
        };
        assert_same_text(&model_input(protocol, &item, Some(&llama2())).unwrap(), &case.input, &label);
    }
    assert!(rows >= 15 && adversarial >= 12, "golden has {rows} rows and {adversarial} adversarial cases");
}

/// The template split at its placeholders, in order: `[before, between…, after]`.
fn template_pieces(protocol: Protocol) -> Vec<&'static str> {
    let mut pieces = Vec::new();
    let mut rest = protocol.template();
    let names: &[&str] = if protocol.is_pairwise() {
        &["{prompt}", "{response}", "{response_another}"]
    } else {
        &["{prompt}", "{response}"]
    };
    for name in names {
        let (before, after) = rest.split_once(name).unwrap_or_else(|| panic!("{protocol} lacks {name}"));
        pieces.push(before);
        rest = after;
    }
    pieces.push(rest);
    pieces
}

/// The expected input built by concatenation alone (nothing in it can interpret braces).
fn concatenated(protocol: Protocol, values: &[&str]) -> String {
    let pieces = template_pieces(protocol);
    let mut text = String::from("[INST] ");
    for (piece, value) in pieces.iter().zip(values) {
        text.push_str(piece);
        text.push_str(value);
    }
    text.push_str(pieces.last().unwrap());
    text + " [/INST]"
}

#[test]
fn every_test_set_row_renders_as_plain_concatenation() {
    let Some(originals) = Originals::find() else { return };
    let sets: [(&str, &[Protocol]); 3] = [
        ("testdata_pairwise", &[Protocol::PairwiseTie, Protocol::ZhPairwiseTie]),
        ("testdata_critique", &[Protocol::Single]),
        ("zh_testdata_critique", &[Protocol::ZhSingle]),
    ];
    for (name, protocols) in sets {
        let rows = originals.test_set(name);
        assert!(rows.len() >= 232, "{name}: {} rows", rows.len());
        let braced = rows.iter().filter(|row| row.to_string().contains('{')).count();
        assert!(braced > 0, "{name}: some rows carry braces, the case that matters");
        for (index, row) in rows.iter().enumerate() {
            for &protocol in protocols {
                let item = Item::from_row(row, protocol).unwrap();
                let got = model_input(protocol, &item, Some(&llama2())).unwrap();
                let want = match &item {
                    Item::Pair { query, response1, response2, .. } => {
                        concatenated(protocol, &[query, response1, response2])
                    }
                    Item::Single { query, response, .. } => concatenated(protocol, &[query, response]),
                };
                assert_same_text(&got, &want, &format!("{name} line {} ({protocol})", index + 1));
                if let Some(swapped) = item.swapped() {
                    let Item::Pair { query, response1, response2, .. } = &item else { unreachable!() };
                    let got = model_input(protocol, &swapped, Some(&llama2())).unwrap();
                    let want = concatenated(protocol, &[query, response2, response1]);
                    assert_same_text(&got, &want, &format!("{name} line {} swapped ({protocol})", index + 1));
                }
            }
        }
    }
}

#[test]
fn user_text_is_substituted_once_and_never_rescanned() {
    let nasty = [
        "{prompt}",
        "{response}",
        "{response_another}",
        "{input}",
        "{{response}}",
        "{{",
        "}}",
        "{",
        "}",
        "{0}",
        "[/INST]",
        "[INST] <<SYS>>\nx\n<</SYS>>",
        "</s>",
        "",
    ];
    // Prometheus' protocols: tests/prometheus_text.rs, against prometheus-eval's own output.
    for protocol in JudgeFamily::AutoJ.protocols() {
        for (i, a) in nasty.iter().enumerate() {
            let b = nasty[(i + 3) % nasty.len()];
            let c = nasty[(i + 7) % nasty.len()];
            let (item, values) = if protocol.is_pairwise() {
                (Item::pair(a.to_string(), b, c), vec![*a, b, c])
            } else {
                (Item::single(a.to_string(), b), vec![*a, b])
            };
            let got = model_input(protocol, &item, Some(&llama2())).unwrap();
            assert_same_text(&got, &concatenated(protocol, &values), &format!("{protocol} with {values:?}"));
            assert_eq!(render(protocol, &item).unwrap(), got["[INST] ".len()..got.len() - " [/INST]".len()]);
        }
    }
}

#[test]
fn other_chat_templates_wrap_the_same_user_message() {
    let item = Item::single("q {input}", "r");
    let message = render(Protocol::Single, &item).unwrap();
    assert_eq!(
        model_input(Protocol::Single, &item, Some(&smollm2_template())).unwrap(),
        format!(
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n"
        )
    );
}

#[test]
fn a_model_without_a_chat_template_names_the_one_its_protocol_needs() {
    for (protocol, needed) in [
        (Protocol::PairwiseTie, "LLaMA-2's \"[INST] {input} [/INST]\""),
        (Protocol::PrometheusAbsolute, "Mistral-7B-Instruct-v0.2's"),
    ] {
        let item = Item::single("q", "r").with_rubric(webjudge::judge::Rubric::Text("Is it right?".into()));
        let item = if protocol.is_pairwise() { Item::pair("q", "a", "b") } else { item };
        let error = model_input(protocol, &item, None).unwrap_err();
        assert!(matches!(error, ProtocolError::NoChatTemplate { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(needed) && message.contains("--chat-template FILE"), "{message}");
    }
}

#[test]
fn an_item_of_the_wrong_kind_is_an_error_naming_both() {
    let pair = Item::pair("q", "a", "b");
    let single = Item::single("q", "a");
    for protocol in Protocol::ALL {
        let wrong = if protocol.is_pairwise() { &single } else { &pair };
        let error = render(protocol, wrong).unwrap_err();
        assert!(matches!(error, ProtocolError::Mismatch { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(protocol.name()), "{message}");
        let found = if protocol.is_pairwise() { "single response" } else { "pair of responses" };
        assert!(message.contains(found), "{message}");
        assert_eq!(model_input(protocol, wrong, Some(&llama2())).unwrap_err(), error);
    }
}

#[test]
fn protocol_names_round_trip() {
    let names = [
        "pairwise_tie",
        "single",
        "zh_pairwise_tie",
        "zh_single",
        "prometheus_absolute",
        "prometheus_absolute_ref",
        "prometheus_relative",
        "prometheus_relative_ref",
        "skywork",
        "selene_absolute",
        "selene_absolute_ref",
        "selene_pairwise",
        "selene_classification",
        "selene_classification_ref",
        "compassjudger",
        "compassjudger_arena",
        "flowjudge",
        "flowjudge_ref",
    ];
    assert_eq!(Protocol::ALL.len(), names.len());
    for (protocol, name) in Protocol::ALL.into_iter().zip(names) {
        assert_eq!(protocol.name(), name);
        assert_eq!(protocol.to_string(), name);
        assert_eq!(name.parse::<Protocol>().unwrap(), protocol);
        assert_eq!(serde_json::to_value(protocol).unwrap(), json!(name));
        assert_eq!(serde_json::from_value::<Protocol>(json!(name)).unwrap(), protocol);
        let pairwise = ["pairwise", "relative", "skywork", "compassjudger"].iter().any(|kind| name.contains(kind));
        assert_eq!(protocol.is_pairwise(), pairwise);
        assert_eq!(protocol.is_chinese(), name.starts_with("zh_"));
    }
    assert_eq!("pairwise".parse::<Protocol>().unwrap(), Protocol::PairwiseTie);
    assert_eq!("zh_pairwise".parse::<Protocol>().unwrap(), Protocol::ZhPairwiseTie);
    let error = "pairwise_tie ".parse::<Protocol>().unwrap_err();
    assert_eq!(error, ProtocolError::UnknownProtocol("pairwise_tie ".into()));
    assert!(error.to_string().contains("zh_single"), "{error}");
}

#[test]
fn items_read_auto_j_rows_and_serialize_plainly() {
    let row = json!({"scenario": "x", "label": 1, "prompt": "q", "response 1": "a", "response 2": "b"});
    let pair = Item::pair("q", "a", "b");
    assert_eq!(serde_json::from_value::<Item>(row.clone()).unwrap(), pair);
    assert_eq!(Item::from_row(&row, Protocol::PairwiseTie).unwrap(), pair);
    assert_eq!(serde_json::to_value(&pair).unwrap(), json!({"query": "q", "response1": "a", "response2": "b"}));
    let single = Item::single("q", "a");
    assert_eq!(serde_json::from_value::<Item>(json!({"prompt": "q", "response": "a"})).unwrap(), single);
    assert_eq!(serde_json::to_value(&single).unwrap(), json!({"query": "q", "response": "a"}));
    for item in [&pair, &single] {
        assert_eq!(&serde_json::from_value::<Item>(serde_json::to_value(item).unwrap()).unwrap(), item);
    }

    assert_eq!(
        Item::from_row(&json!({"prompt": "q", "response 1": "a"}), Protocol::ZhPairwiseTie).unwrap_err(),
        ProtocolError::MissingField { field: "response 2", protocol: "zh_pairwise_tie" }
    );
    assert_eq!(
        Item::from_row(&json!({"prompt": 3, "response": "a"}), Protocol::Single).unwrap_err(),
        ProtocolError::NotText { field: "prompt" }
    );
    assert_eq!(Item::from_row(&json!(["q"]), Protocol::Single).unwrap_err(), ProtocolError::NotAnObject);
}

#[test]
fn swapping() {
    let pair = Item::pair("q", "a", "b");
    let swapped = pair.swapped().unwrap();
    assert_eq!(swapped, Item::pair("q", "b", "a"));
    assert_eq!(swapped.swapped().unwrap(), pair);
    assert_eq!(Item::single("q", "a").swapped(), None);

    let table =
        [(Winner::Response1, Winner::Response2), (Winner::Response2, Winner::Response1), (Winner::Tie, Winner::Tie)];
    for (verdict, mapped) in table {
        assert_eq!(verdict.swapped(), mapped);
        assert_eq!(verdict.swapped().swapped(), verdict);
    }
    // A judge that prefers the same response in both orders is consistent: "Response 2" on the
    // swapped order is "Response 1" on the original one.
    let on_swapped = parse_pairwise("So, the final decision is Response 2.").unwrap();
    assert_eq!(on_swapped.swapped(), Winner::Response1);
}

#[test]
fn winner_names_and_auto_j_labels() {
    for (winner, name, label) in
        [(Winner::Response1, "response1", 0), (Winner::Response2, "response2", 1), (Winner::Tie, "tie", 2)]
    {
        assert_eq!(serde_json::to_value(winner).unwrap(), json!(name));
        assert_eq!(serde_json::from_value::<Winner>(json!(name)).unwrap(), winner);
        assert_eq!(winner.name(), name);
        assert_eq!(winner.to_string(), name);
        assert_eq!(winner.autoj_label(), label);
        assert_eq!(Winner::from_autoj_label(label), Some(winner));
    }
    assert_eq!(Winner::from_autoj_label(-1), None);
    assert_eq!(Winner::from_autoj_label(3), None);
}

// ---------------------------------------------------------------------------------------------
// Verdicts

/// Auto-J's `extract_pariwise_result` and `zh_extract_pariwise_result`, ported; the Chinese one
/// is tried where the English one finds nothing.
fn original_pairwise(critique: &str) -> Option<Winner> {
    let text = critique.trim();
    let english = text.rfind("final decision is ").and_then(|pos| {
        let rest = text[pos + "final decision is ".len()..].trim().to_lowercase();
        [("response 1", Winner::Response1), ("response 2", Winner::Response2), ("tie", Winner::Tie)]
            .into_iter()
            .find_map(|(prefix, winner)| rest.starts_with(prefix).then_some(winner))
    });
    english.or_else(|| {
        let pos = text.rfind("最终决定是")?;
        let rest = text[pos + "最终决定是".len()..].trim();
        [("回应1", Winner::Response1), ("回应2", Winner::Response2), ("平局", Winner::Tie)]
            .into_iter()
            .find_map(|(prefix, winner)| rest.starts_with(prefix).then_some(winner))
    })
}

/// Auto-J's `extract_single_rating` and `zh_extract_single_rating` (`评分:[[`, `打分:[[`),
/// ported; their 0.0 for "nothing found" and their crashes (no `]]`, no number) are `None`.
fn original_rating(critique: &str) -> Option<f32> {
    ["Rating: [[", "评分:[[", "打分:[["].into_iter().find_map(|marker| {
        let pos = critique.rfind(marker)?;
        let start = pos + marker.len();
        let end = start + critique[start..].find("]]")?;
        critique[start..end].trim().parse().ok()
    })
}

/// How Auto-J's own extractor fares on a table row.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Original {
    /// It gives the same answer (a verdict, or nothing).
    Same,
    /// It finds nothing (or crashes) where the critique does state a verdict.
    Fails,
    /// It returns a verdict we refuse on purpose (an echo of the instructions, a bad rating).
    Refused,
}

fn check_against_original<T: PartialEq + std::fmt::Debug + Copy>(
    table: &[(&str, Option<T>, Original)],
    ours: impl Fn(&str) -> Option<T>,
    original: impl Fn(&str) -> Option<T>,
) {
    for &(critique, want, how) in table {
        let got = ours(critique);
        assert_eq!(got, want, "critique {critique:?}");
        let theirs = original(critique);
        match how {
            Original::Same => assert_eq!(theirs, want, "original on {critique:?}"),
            Original::Fails => assert!(theirs.is_none() && want.is_some(), "original gives {theirs:?} on {critique:?}"),
            Original::Refused => {
                assert!(theirs.is_some() && theirs != want, "original gives {theirs:?} on {critique:?}")
            }
        }
    }
}

const AUTO_J_PAIRWISE: &str = "1. The key factors to distinguish these two responses:

- Accuracy: Response 2 correctly states that 1+0 equals 1, while Response 1 claims it is 11, which is wrong.
- Clarity: both responses are short, but Response 1's answer would mislead the user.

2. The final decision:

Response 1 fails the most basic requirement of the query, being correct. So, the final decision is Response 2. \
Though both responses are concise, Response 2 is accurate and therefore better serves the user.";

const AUTO_J_ZH_PAIRWISE: &str = "1. 区分两个回应的关键因素：

- 准确性：回应1正确地指出中国的首都是北京，而回应2声称是上海，这是错误的。
- 清晰度：两个回应都简洁明了。

2. 最终决定：

回应2的事实错误是致命的。所以，最终决定是回应1。回应1准确地回答了用户的问题。";

#[test]
fn pairwise_verdicts() {
    use Original::*;
    use Winner::*;
    let last_wins = "At first glance one could argue the final decision is Response 1, because it is longer. \
                     However, length is not quality. So, the final decision is Response 2.";
    let table: &[(&str, Option<Winner>, Original)] = &[
        // Well-formed, as Auto-J writes them.
        (AUTO_J_PAIRWISE, Some(Response2), Same),
        ("So, the final decision is Response 1. Response 1 is more detailed.", Some(Response1), Same),
        ("So, the final decision is Tie. Both responses are equally helpful.", Some(Tie), Same),
        ("so, the final decision is response 2", Some(Response2), Same),
        ("SO, THE FINAL DECISION IS RESPONSE 1.", Some(Response1), Fails),
        ("So, the final decision is tied: both are fine.", Some(Tie), Same),
        (last_wins, Some(Response2), Same),
        // Whitespace.
        ("So, the final decision is   Response 1", Some(Response1), Same),
        ("So, the final  decision is Response 2", Some(Response2), Fails),
        ("So, the final decision is\n\nResponse 2.", Some(Response2), Fails),
        ("So, the final decision\nis Tie.", Some(Tie), Fails),
        ("So, the final decision is  Response  1.", Some(Response1), Fails),
        ("So, the final decision is Response\u{a0}2.", Some(Response2), Fails),
        ("  So, the final decision is Response 1.\n\n", Some(Response1), Same),
        // Markdown emphasis and quotes.
        ("So, the final decision is **Response 1**.", Some(Response1), Fails),
        ("**So, the final decision is Response 2.**", Some(Response2), Same),
        ("So, the final decision is *Tie*.", Some(Tie), Fails),
        ("So, the final decision is `Response 2`.", Some(Response2), Fails),
        ("So, the final decision is __Response 1__", Some(Response1), Fails),
        ("So, the **final decision** is Response 2.", Some(Response2), Fails),
        ("So, the final decision is \"Response 1\".", Some(Response1), Fails),
        ("So, the final decision is “Response 2”.", Some(Response2), Fails),
        ("So, the final decision is Response **2**.", Some(Response2), Fails),
        // Spelling and punctuation.
        ("So, the final decision is Response1.", Some(Response1), Fails),
        ("So, the final decision is response2!", Some(Response2), Fails),
        ("So, the final decision is Tie!", Some(Tie), Same),
        ("So, the final decision is Response 1, as it answers the question.", Some(Response1), Same),
        ("So, the final decision is: Response 2.", Some(Response2), Fails),
        ("**Final decision is:** Response 1", Some(Response1), Fails),
        ("Final Decision Is **Tie**", Some(Tie), Fails),
        ("So, the final decision is a tie.", Some(Tie), Fails),
        // Last statement that names a verdict wins.
        ("So, the final decision is Response 1. This final decision is based on accuracy.", Some(Response1), Fails),
        (
            "So, the final decision is Response 2.\n(The final decision is Response 1 / Response 2 / Tie.)",
            Some(Response2),
            Refused,
        ),
        // No decision.
        ("", None, Same),
        ("Both responses have merits, and it is hard to choose between them.", None, Same),
        ("Response 1 is better than Response 2.", None, Same),
        ("So, the final decision is", None, Same),
        ("So, the final decision is that both responses fall short.", None, Same),
        ("So, the final decision is Response 3.", None, Same),
        ("The final decision is hard to make.", None, Same),
        (
            "Begin your final decision statement with \"So, the final decision is Response 1 / Response 2 / Tie\".",
            None,
            Refused,
        ),
        ("So, the final decision is Response 12.", None, Refused),
        ("So, the final decision is tiebreaker-worthy.", None, Refused),
        ("The final decisions are Response 1 and Response 2.", None, Same),
        // "The final decision:" heads Auto-J's last section; it is not the decision.
        ("2. The final decision:\n\nResponse 1 fails the basic requirement", None, Same),
        ("**Final decision:** Response 1", None, Same),
    ];
    check_against_original(table, parse_pairwise, original_pairwise);
}

#[test]
fn chinese_pairwise_verdicts() {
    use Original::*;
    use Winner::*;
    let table: &[(&str, Option<Winner>, Original)] = &[
        (AUTO_J_ZH_PAIRWISE, Some(Response1), Same),
        ("所以，最终决定是回应2。", Some(Response2), Same),
        ("所以，最终决定是平局。两个回应同样有帮助。", Some(Tie), Same),
        ("所以，最终决定是 回应1", Some(Response1), Same),
        ("所以，最终决定是回应 2。", Some(Response2), Fails),
        ("所以，最终决定是：回应2。", Some(Response2), Fails),
        ("所以，最终决定是:回应1", Some(Response1), Fails),
        ("最终决定是：平局", Some(Tie), Fails),
        ("所以，最终决定是**回应2**。", Some(Response2), Fails),
        ("所以，**最终决定是回应1**。", Some(Response1), Same),
        ("所以，最终决定是「回应2」。", Some(Response2), Fails),
        ("所以，最终决定是“回应1”。", Some(Response1), Fails),
        ("所以，最终决定是回应２。", Some(Response2), Fails),
        ("所以，最终决定为回应1。", Some(Response1), Fails),
        ("所以，最终决定是两者持平。", Some(Tie), Fails),
        ("所以，最终决定是回复2。", Some(Response2), Fails),
        ("所以，最终决定是 Response 1。", Some(Response1), Fails),
        (
            "一开始可能认为最终决定是回应1，因为它更长。但是长度不等于质量。所以，最终决定是回应2。",
            Some(Response2),
            Same,
        ),
        // A Chinese critique that ends in English.
        ("回应2更准确。So, the final decision is Response 2.", Some(Response2), Same),
        // No decision.
        ("两个回应都有可取之处，很难抉择。", None, Same),
        ("最终决定语句应以\"所以，最终决定是回应1/回应2/平局\"开头。", None, Refused),
        ("所以，最终决定是", None, Same),
        ("所以，最终决定是：两个回应都不够好。", None, Same),
        ("2. 最终决定：\n\n回应1没有回答问题", None, Same),
    ];
    check_against_original(table, parse_pairwise, original_pairwise);
}

const AUTO_J_SINGLE: &str = "The response correctly answers the query: 1+0 is 1. It is concise and accurate.

However, it offers no explanation, which a user learning arithmetic might need.

Rating: [[6]]";

#[test]
fn ratings() {
    use Original::*;
    let table: &[(&str, Option<f32>, Original)] = &[
        (AUTO_J_SINGLE, Some(6.0), Same),
        ("Good but brief.\n\nRating: [[7.5]]", Some(7.5), Same),
        ("Rating: [[10]]", Some(10.0), Same),
        ("Rating: [[1]]", Some(1.0), Same),
        ("Rating: [[ 8 ]]", Some(8.0), Same),
        ("Rating: [[8.0]]", Some(8.0), Same),
        // Last one wins.
        ("A Rating: [[3]] would be too harsh here. Rating: [[6]]", Some(6.0), Same),
        ("Rating: [[6]]\n\n(Format: \"[[rating]]\".)", Some(6.0), Same),
        // Case, whitespace, emphasis.
        ("rating: [[5]]", Some(5.0), Fails),
        ("RATING: [[5]]", Some(5.0), Fails),
        ("Rating:[[4]]", Some(4.0), Fails),
        ("Rating : [[4]]", Some(4.0), Fails),
        ("Rating:\n[[4]]", Some(4.0), Fails),
        ("**Rating: [[9]]**", Some(9.0), Same),
        ("**Rating:** [[9]]", Some(9.0), Fails),
        ("Rating: **[[9]]**", Some(9.0), Fails),
        ("Rating: [[**9**]]", Some(9.0), Fails),
        ("Rating：［［８］］", Some(8.0), Fails),
        ("Rating: [[8/10]]", Some(8.0), Fails),
        ("Rating: [[7]", Some(7.0), Fails),
        // Other labels, or none.
        ("Final score: [[7]]", Some(7.0), Fails),
        ("Overall I would give it [[4]].", Some(4.0), Fails),
        ("Rating: [[7]]. Compare the [[2]] cited above.", Some(7.0), Same),
        // Outside 1-10: no rating (the last one counts, even when it is the bad one).
        ("Rating: [[0]]", None, Refused),
        ("Rating: [[11]]", None, Refused),
        ("Rating: [[10.5]]", None, Refused),
        ("Rating: [[0.5]]", None, Refused),
        ("Rating: [[-2]]", None, Refused),
        ("Rating: [[6]] at first, but after the error above, Rating: [[12]]", None, Refused),
        // No rating.
        ("", None, Same),
        ("The response is helpful and accurate.", None, Same),
        ("Rating: 8/10", None, Same),
        ("Rating: [[rating]]", None, Same),
        ("Rating: [[]]", None, Same),
        ("Rating: [[N/A]]", None, Same),
        ("Rating: [[seven]]", None, Same),
        ("Rating: [[", None, Same),
        ("Rating: [[7", None, Same),
    ];
    check_against_original(table, parse_rating, original_rating);
}

const AUTO_J_ZH_SINGLE: &str = "该回应准确地回答了问题：中国的首都是北京。回答简洁明了。

不过，回应没有提供任何背景信息，例如北京作为首都的历史，这会让回答更加充实。

评分: [[6]]";

#[test]
fn chinese_ratings() {
    use Original::*;
    let table: &[(&str, Option<f32>, Original)] = &[
        (AUTO_J_ZH_SINGLE, Some(6.0), Fails),
        ("评分:[[5]]", Some(5.0), Same),
        ("评分: [[5]]", Some(5.0), Fails),
        ("评分：[[5]]", Some(5.0), Fails),
        ("评分： [[ 5 ]]", Some(5.0), Fails),
        ("评分:[[7.5]]", Some(7.5), Same),
        ("打分:[[3]]", Some(3.0), Same),
        ("**评分：** [[7]]", Some(7.0), Fails),
        ("评分: **[[7]]**", Some(7.0), Fails),
        ("评分：[[8分]]", Some(8.0), Fails),
        ("评分：［［９］］", Some(9.0), Fails),
        ("得分：[[4]]", Some(4.0), Fails),
        ("一开始我会给评分:[[4]]，但考虑到准确性，最终评分:[[6]]", Some(6.0), Same),
        ("回应很好。Rating: [[8]]", Some(8.0), Same),
        ("评分:[[0]]", None, Refused),
        ("评分：[[11]]", None, Same),
        ("请按照如下格式评分: \"[[评分]]\"", None, Same),
        ("该回应没有给出评分。", None, Same),
    ];
    check_against_original(table, parse_rating, original_rating);
}

// ---------------------------------------------------------------------------------------------
// The CLI

/// The stdout lines of a successful run, as JSON.
fn json_lines(args: &[&str], stdin: &str) -> Vec<Value> {
    let output = webjudge(args, stdin);
    assert!(output.status.success(), "webjudge {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect()
}

/// The stderr of a run that must fail.
fn failure(args: &[&str], stdin: &str) -> String {
    let output = webjudge(args, stdin);
    assert!(!output.status.success(), "webjudge {args:?} should fail");
    String::from_utf8(output.stderr).unwrap()
}

fn jsonl(rows: &[Value]) -> String {
    rows.iter().map(|row| format!("{row}\n")).collect()
}

#[test]
fn cli_prompt_writes_the_exact_inputs() {
    for (set, protocol) in [
        ("testdata_pairwise", "pairwise_tie"),
        ("testdata_pairwise", "zh_pairwise_tie"),
        ("testdata_critique", "single"),
        ("zh_testdata_critique", "zh_single"),
    ] {
        let rows: Vec<Value> = excerpt_set(set).into_iter().take(4).collect();
        let protocol: Protocol = protocol.parse().unwrap();
        // A blank line (as at the end of many files) is skipped.
        let out = json_lines(&["prompt", "--protocol", protocol.name()], &(jsonl(&rows) + "\n"));
        assert_eq!(out.len(), rows.len(), "{set}");
        for (row, line) in rows.iter().zip(&out) {
            let want = model_input(protocol, &Item::from_row(row, protocol).unwrap(), Some(&llama2())).unwrap();
            assert_eq!(line, &json!({ "input": want }), "{set} {protocol}");
        }
    }
    // The golden's first case through the CLI: byte-exact against Python.
    let golden: Golden = serde_json::from_str(include_str!("golden/autoj_rendered.json")).unwrap();
    let first = &golden.cases[0];
    let row = &excerpt_row(first.set.as_deref().unwrap(), first.line.unwrap());
    let out = json_lines(&["prompt", "--protocol", &first.protocol], &jsonl(std::slice::from_ref(row)));
    assert_eq!(out, vec![json!({ "input": first.input })]);
    // "pairwise" names pairwise_tie.
    assert_eq!(json_lines(&["prompt", "--protocol", "pairwise"], &jsonl(std::slice::from_ref(row))), out);
}

#[test]
fn cli_prompt_uses_the_models_chat_template() {
    let dir = scratch("judge_text", "chatml");
    let manifest = manifest_only_model(&dir);
    let row = json!({"prompt": "q [/INST]", "response": "r {response}"});
    let out = json_lines(
        &["prompt", "--protocol", "single", "--model", dir.to_str().unwrap()],
        &jsonl(std::slice::from_ref(&row)),
    );
    let item = Item::from_row(&row, Protocol::Single).unwrap();
    let want = model_input(Protocol::Single, &item, manifest.chat_template.as_ref()).unwrap();
    assert!(want.starts_with("<|im_start|>system\nYou are a judge.<|im_end|>\n<|im_start|>user\nWrite critiques"));
    assert_eq!(out, vec![json!({ "input": want })]);

    let missing = failure(&["prompt", "--protocol", "single", "--model", dir.join("nope").to_str().unwrap()], "");
    assert!(missing.contains(MANIFEST_FILE), "{missing}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A model that is a Prometheus judge (its manifest says so) runs its own protocols: another
/// family's, or a rubric grading without a rubric, is refused before the model loads.
#[test]
fn cli_judge_refuses_another_familys_protocol_before_loading() {
    let dir = scratch("judge_text", "prometheus-model");
    let mut manifest = manifest_only_model(&dir);
    manifest.judge = Some(JudgeFamily::Prometheus);
    std::fs::write(dir.join(MANIFEST_FILE), manifest.to_json()).unwrap();
    let model = dir.to_str().unwrap();
    let pair = ["--query", "q", "--response1", "a", "--response2", "b"];
    let judge = |extra: &[&str]| failure(&[&["judge", "--model", model][..], &pair, extra].concat(), "");
    let error = judge(&["--protocol", "pairwise_tie"]);
    assert!(error.contains("pairwise_tie is Auto-J's, but the model is a Prometheus 2 judge"), "{error}");
    // Without --protocol the family's own pairwise one, which needs a rubric.
    let error = judge(&[]);
    assert!(error.contains("prometheus_relative grades against a rubric"), "{error}");
    for error in [&judge(&["--protocol", "pairwise_tie"]), &judge(&[])] {
        assert!(!error.contains("adapter") && !error.contains("tokenizer.json"), "refused before loading: {error}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_prompt_names_the_bad_line() {
    let good = json!({"prompt": "q", "response 1": "a", "response 2": "b"});
    let short = json!({"prompt": "q", "response 1": "a"});
    let error = failure(&["prompt", "--protocol", "pairwise_tie"], &jsonl(&[good.clone(), short]));
    assert!(error.contains("line 2") && error.contains("response 2"), "{error}");
    let error = failure(&["prompt", "--protocol", "pairwise_tie"], &format!("{good}\n\n{{not json\n"));
    assert!(error.contains("line 3") && error.contains("not JSON"), "{error}");
    let error = failure(&["prompt", "--protocol", "single"], &jsonl(&[good]));
    assert!(error.contains("line 1") && error.contains("\"response\""), "{error}");
    let error = failure(&["prompt", "--protocol", "triple"], "");
    assert!(error.contains("triple") && error.contains("pairwise_tie"), "{error}");
}

#[test]
fn cli_parse_writes_the_verdicts() {
    let critiques = [
        (AUTO_J_PAIRWISE, json!("response2")),
        (AUTO_J_ZH_PAIRWISE, json!("response1")),
        ("So, the final decision is **Tie**.", json!("tie")),
        ("No decision here.", Value::Null),
    ];
    let rows: Vec<Value> =
        critiques.iter().enumerate().map(|(i, (output, _))| json!({"id": i, "label": 0, "output": output})).collect();
    let out = json_lines(&["parse", "--protocol", "pairwise"], &jsonl(&rows));
    let want: Vec<Value> = critiques.iter().map(|(_, winner)| json!({ "winner": winner })).collect();
    assert_eq!(out, want);
    assert_eq!(json_lines(&["parse", "--protocol", "zh_pairwise_tie"], &jsonl(&rows)), want);

    let critiques = [
        (AUTO_J_SINGLE, json!(6.0)),
        (AUTO_J_ZH_SINGLE, json!(6.0)),
        ("Rating: [[7.5]]", json!(7.5)),
        ("Rating: [[0]]", Value::Null),
        ("nothing", Value::Null),
    ];
    let rows: Vec<Value> = critiques.iter().map(|(output, _)| json!({ "output": output })).collect();
    let out = json_lines(&["parse", "--protocol", "single"], &jsonl(&rows));
    let want: Vec<Value> = critiques.iter().map(|(_, rating)| json!({ "rating": rating })).collect();
    assert_eq!(out, want);

    let error = failure(&["parse", "--protocol", "single"], &jsonl(&[json!({"output": "x"}), json!({"text": "x"})]));
    assert!(error.contains("line 2") && error.contains("output"), "{error}");
    let error = failure(&["parse", "--protocol", "pairwise"], &jsonl(&[json!({"output": 3})]));
    assert!(error.contains("line 1") && error.contains("not a string"), "{error}");
}

#[test]
fn cli_prompt_then_parse_round_trip() {
    // prompt's output, with a critique attached, is parse's input: scripts chain the two.
    let rows: Vec<Value> = excerpt_set("testdata_pairwise").into_iter().take(3).collect();
    let prompts = json_lines(&["prompt", "--protocol", "pairwise_tie"], &jsonl(&rows));
    let critiques = ["So, the final decision is Response 1.", "So, the final decision is Response 2.", "tie?"];
    let with_output: Vec<Value> = prompts
        .into_iter()
        .zip(critiques)
        .map(|(mut line, critique)| {
            line["output"] = json!(critique);
            line
        })
        .collect();
    let verdicts = json_lines(&["parse", "--protocol", "pairwise"], &jsonl(&with_output));
    assert_eq!(verdicts, vec![json!({"winner": "response1"}), json!({"winner": "response2"}), json!({"winner": null})]);
}

/// The parsers read model output, which can be anything: linear time on the worst inputs
/// (640k characters of `[[` once took 38 s). The bound is far above the linear time and far
/// below the quadratic one, so a loaded machine does not make it flaky.
#[test]
fn parsers_are_linear_on_hostile_critiques() {
    let started = std::time::Instant::now();
    let brackets = "[[".repeat(320_000);
    assert_eq!(parse_rating(&brackets), None);
    assert_eq!(parse_rating(&format!("Rating: {brackets}8]]")), Some(8.0));
    assert_eq!(parse_rating(&format!("{brackets}{}", "]".repeat(320_000))), None);
    let padded = format!("Rating:{}[[7]]", " ".repeat(640_000));
    assert_eq!(parse_rating(&padded.repeat(2)), Some(7.0));
    assert_eq!(parse_pairwise(&"final decision is ".repeat(100_000)), None);
    let elapsed = started.elapsed();
    assert!(elapsed.as_secs_f64() < 5.0, "took {elapsed:?}");
}

/// A reader that goes away (`webjudge … | true`) ends the command quietly with the status a
/// shell gives a writer killed by SIGPIPE: no panic, no backtrace.
#[test]
fn cli_ends_quietly_when_stdout_is_closed() {
    let dir = scratch("judge_text", "closed-stdout");
    let vocab: serde_json::Map<String, Value> =
        ["<unk>", "hi", "there"].iter().enumerate().map(|(i, w)| (w.to_string(), json!(i))).collect();
    let tokenizer = json!({"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}});
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    let row = json!({"prompt": "q", "response": "r", "output": "Rating: [[5]]"}).to_string();
    for (args, stdin) in [
        (vec!["tokenize", "--model", dir.to_str().unwrap(), "--text", "hi there"], ""),
        (vec!["parse", "--protocol", "single"], row.as_str()),
        (vec!["prompt", "--protocol", "single"], row.as_str()),
    ] {
        // The read end is dropped at once (`_` binds nothing): the reader has gone away.
        let (_, writer) = std::io::pipe().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_webjudge"))
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
