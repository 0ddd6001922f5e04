//! Skywork-Critic's, Selene Mini's, CompassJudger-1's and Flow-Judge's protocols without a GPU:
//! every rendering and verdict against what their references produce (tests/golden/judges.json,
//! made by tools/reference/judges_reference.py), wrapped by their base models' chat templates as
//! transformers wraps them, and the CLI's `prompt` and `parse` over the same rows.

mod test_model;

use serde_json::{json, Value};
use webjudge::format::{ChatTemplate, JinjaTemplate, Message};
use webjudge::judge::dataset::{parse_row, parse_row_as};
use webjudge::judge::flow_metric::PRESETS;
use webjudge::judge::prometheus_metrics::{preference_metrics, Preference};
use webjudge::judge::session::Verdict;
use webjudge::judge::{model_input, render, Item, JudgeFamily, Protocol, ProtocolError, Rubric};

const CHAT_TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chat_templates");

fn golden() -> Value {
    test_model::golden("judges.json")
}

fn protocol(name: &str) -> Protocol {
    name.parse().expect("a protocol name")
}

/// The base model's chat template the golden wrapped `protocol`'s messages in, with its
/// tokenizer's BOS and EOS strings (as tools/reference/chat_template_golden.py has them).
fn chat_template(golden: &Value, protocol: Protocol) -> ChatTemplate {
    let file = golden["chat_templates"][protocol.family().name()].as_str().expect("a template file");
    let (bos, eos) = match file {
        "llama-3.1-8b-instruct.jinja" => (Some("<|begin_of_text|>"), "<|eot_id|>"),
        "qwen2.5-7b-instruct.jinja" => (None, "<|im_end|>"),
        _ => (Some("<s>"), "<|endoftext|>"),
    };
    let path = format!("{CHAT_TEMPLATES}/{file}");
    ChatTemplate::Jinja(JinjaTemplate {
        origin: file.to_owned(),
        jinja: std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
        bos_token: bos.map(str::to_owned),
        eos_token: Some(eos.to_owned()),
    })
}

/// The JSON lines `webjudge ARGS` writes for `stdin`; fails the test on a non-zero exit.
fn json_lines(args: &[&str], stdin: &str) -> Vec<Value> {
    let out = test_model::webjudge(args, stdin);
    assert!(out.status.success(), "webjudge {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[test]
fn every_rendering_is_its_references_byte_for_byte() {
    let golden = golden();
    let cases = golden["cases"].as_array().expect("cases");
    assert!(cases.len() >= 48, "six items in each family's protocols");
    for family in [JudgeFamily::Skywork, JudgeFamily::Selene, JudgeFamily::CompassJudger, JudgeFamily::FlowJudge] {
        for protocol in family.protocols() {
            assert!(cases.iter().any(|case| case["protocol"] == protocol.name()), "no golden for {protocol}");
        }
    }
    for (index, case) in cases.iter().enumerate() {
        let protocol = protocol(case["protocol"].as_str().unwrap());
        let item = Item::from_row(&case["row"], protocol).unwrap();
        let message = render(protocol, &item).unwrap();
        let input = model_input(protocol, &item, Some(&chat_template(&golden, protocol))).unwrap();
        assert!(input == case["input"].as_str().unwrap(), "case {index} ({protocol}) differs:\n{input}");
        // The golden keeps the reference's message only where the chat template changed it;
        // elsewhere the input holds it verbatim, and equal inputs make equal messages.
        match case["message"].as_str() {
            Some(reference) => assert!(message == reference, "case {index} ({protocol}) message differs:\n{message}"),
            None => assert!(input.contains(&message), "case {index} ({protocol})"),
        }
    }
}

#[test]
fn cli_prompt_renders_every_protocol_as_its_reference() {
    let golden = golden();
    let llama2 = ChatTemplate::llama2();
    for protocol in Protocol::ALL
        .into_iter()
        .filter(|p| golden["cases"].as_array().unwrap().iter().any(|c| c["protocol"] == p.name()))
    {
        let cases: Vec<&Value> =
            golden["cases"].as_array().unwrap().iter().filter(|c| c["protocol"] == protocol.name()).collect();
        let rows: String = cases.iter().map(|case| format!("{}\n", case["row"])).collect();
        let inputs = json_lines(&["prompt", "--protocol", protocol.name()], &rows);
        assert_eq!(inputs.len(), cases.len(), "{protocol}");
        for (got, case) in inputs.iter().zip(&cases) {
            // Without --model, `prompt` wraps in LLaMA-2's [INST] template.
            let item = Item::from_row(&case["row"], protocol).unwrap();
            let expected = llama2.render(&[Message::user(&render(protocol, &item).unwrap())]).unwrap().text;
            assert_eq!(got["input"], expected, "{protocol}");
        }
    }
}

#[test]
fn cli_prompt_takes_metrics_and_presets_for_rows_without_a_rubric() {
    let row = json!({"query": "q", "response": "a", "reference_answer": "r"}).to_string();
    let metric =
        r#"{"criteria": "Right?", "rubric": [{"score": 1, "description": "yes"}, {"score": 0, "description": "no"}]}"#;
    let input = &json_lines(&["prompt", "--protocol", "flowjudge_ref", "--rubric", metric], &row)[0]["input"];
    assert!(input
        .as_str()
        .unwrap()
        .contains("Right?\n</evaluation_criteria>\n\n<scoring_rubric>\n- Score 0: no\n- Score 1: yes\n"));
    let preset = "response_correctness_binary";
    let input = &json_lines(&["prompt", "--protocol", "flowjudge_ref", "--rubric", preset], &row)[0]["input"];
    assert!(input.as_str().unwrap().contains(&PRESETS[0].metric.criteria));
    assert_eq!(Rubric::Text(preset.into()).suggested_family(), JudgeFamily::FlowJudge);
}

#[test]
fn flowjudge_presets_are_flow_judges() {
    let golden = golden();
    let presets = golden["flowjudge_presets"].as_array().unwrap();
    assert_eq!(presets.len(), PRESETS.len());
    for (ours, theirs) in PRESETS.iter().zip(presets) {
        assert_eq!(ours.name, theirs["name"]);
        assert_eq!(ours.title, theirs["title"]);
        assert_eq!(ours.metric.criteria, theirs["criteria"]);
        assert_eq!(json!(ours.metric.rubric), theirs["rubric"]);
        assert_eq!(json!(ours.required_inputs), theirs["required_inputs"]);
    }
}

/// The verdict `parser` (the golden's name for it) reads, as the golden writes it.
fn parse(parser: &str, output: &str) -> Value {
    let letter = |verdict: Verdict| json!(verdict).get("winner").cloned().unwrap_or(Value::Null);
    match parser {
        "skywork" => letter(Verdict::parse(Protocol::Skywork, output)),
        "compassjudger" => letter(Verdict::parse(Protocol::CompassJudger, output)),
        "compassjudger_arena" => letter(Verdict::parse(Protocol::CompassJudgerArena, output)),
        "selene_preference" => letter(Verdict::parse(Protocol::SelenePairwise, output)),
        "selene_score" => json!(Verdict::parse(Protocol::SeleneAbsolute, output))["score"].clone(),
        "selene_answer" => json!(Verdict::parse(Protocol::SeleneClassification, output))["answer"].clone(),
        "flowjudge" => json!(Verdict::parse(Protocol::FlowJudge, output))["score"].clone(),
        other => panic!("parser {other}"),
    }
}

/// webjudge's listed differences (docs/judges.md): a score outside the scale webjudge keeps
/// (Selene's 1-5, Flow-Judge's 0-255) is no score, nor is one in non-ASCII digits; of
/// opencompass' Arena-Hard scores (2 to -2) webjudge keeps the direction.
fn agrees(parser: &str, got: &Value, reference: &Value, output: &str) -> bool {
    if parser == "compassjudger_arena" {
        let direction = reference.as_i64().map(|score| match score.signum() {
            1 => "A",
            0 => "tie",
            _ => "B",
        });
        return *got == json!(direction);
    }
    if got == reference {
        return true;
    }
    let outside = match (parser, reference.as_i64()) {
        ("selene_score", Some(score)) => !(1..=5).contains(&score),
        ("flowjudge", Some(score)) => !(0..=255).contains(&score),
        ("flowjudge", None) => reference.is_u64() || reference.is_f64(),
        _ => false,
    };
    got.is_null() && (outside || output.chars().any(|c| c.is_numeric() && !c.is_ascii_digit()))
}

#[test]
fn verdicts_agree_with_the_reference_parsers() {
    let golden = golden();
    let parses = golden["parses"].as_array().unwrap();
    for parser in [
        "skywork",
        "compassjudger",
        "compassjudger_arena",
        "selene_score",
        "selene_preference",
        "selene_answer",
        "flowjudge",
    ] {
        let cases: Vec<&Value> = parses.iter().filter(|case| case["parser"] == parser).collect();
        assert!(cases.len() >= 30, "{parser}: {} outputs", cases.len());
        for case in cases {
            let output = case["output"].as_str().unwrap();
            let got = parse(parser, output);
            assert!(agrees(parser, &got, &case["result"], output), "{parser} {output:?}: {got} vs {}", case["result"]);
        }
    }
}

#[test]
fn cli_parse_writes_letters_and_scores() {
    let golden = golden();
    for (parser, protocol, key) in [
        ("skywork", "skywork", "winner"),
        ("selene_score", "selene_absolute_ref", "score"),
        ("selene_answer", "selene_classification", "answer"),
        ("flowjudge", "flowjudge_ref", "score"),
    ] {
        let cases: Vec<&Value> =
            golden["parses"].as_array().unwrap().iter().filter(|case| case["parser"] == parser).collect();
        let rows: String = cases.iter().map(|case| format!("{}\n", json!({"output": case["output"]}))).collect();
        let got = json_lines(&["parse", "--protocol", protocol], &rows);
        assert_eq!(got.len(), cases.len(), "{protocol}");
        for (got, case) in got.iter().zip(&cases) {
            let output = case["output"].as_str().unwrap();
            assert!(agrees(parser, &got[key], &case["result"], output), "{protocol} {output:?}: {got}");
        }
    }
}

#[test]
fn missing_rubrics_metrics_and_inputs_are_refused_by_name() {
    let pair = Item::pair("q", "a", "b");
    let single = Item::single("q", "a");
    assert_eq!(render(Protocol::SelenePairwise, &pair), Err(ProtocolError::NoRubric { protocol: "selene_pairwise" }));
    let text = single.clone().with_rubric(Rubric::Text("Is it kind?".into()));
    assert_eq!(
        render(Protocol::SeleneAbsolute, &text),
        Err(ProtocolError::SeleneRubric { protocol: "selene_absolute" })
    );
    assert_eq!(render(Protocol::FlowJudge, &text), Err(ProtocolError::UnknownFlowMetric("Is it kind?".into())));
    let preset = single.clone().with_rubric(Rubric::Text("response_correctness_5point".into()));
    let error = render(Protocol::FlowJudge, &preset).unwrap_err();
    assert!(error.to_string().contains("\"reference_answer\""), "{error}");
    assert!(render(Protocol::FlowJudgeRef, &preset.with_reference_answer("4")).is_ok());
    assert_eq!(
        render(Protocol::SeleneAbsoluteRef, &single),
        Err(ProtocolError::NoReferenceAnswer { protocol: "selene_absolute_ref", without: "selene_absolute" })
    );
    // Skywork-Critic and CompassJudger-1 take no rubric: one given is not read.
    let with_rubric = pair.clone().with_rubric(Rubric::Text("ignored".into()));
    assert_eq!(render(Protocol::Skywork, &with_rubric), render(Protocol::Skywork, &pair));
    assert_eq!(
        render(Protocol::Skywork, &single),
        Err(ProtocolError::Mismatch {
            protocol: "skywork",
            expected: "a pair of responses",
            found: "a single response"
        })
    );
}

#[test]
fn rows_read_each_references_field_names_and_labels() {
    let row = r#"{"question": "q", "response_A": "a", "response_B": "b", "label": "B"}"#;
    let read = parse_row_as(row, 0, Some(Protocol::Skywork)).unwrap();
    assert_eq!(read.item, Item::pair("q", "a", "b"));
    assert_eq!(json!(read.label.map(|l| json!(l))), json!({"winner": "B"}));
    let row = r#"{"query": "q", "response": "a", "reference_answer": "r", "rubric": "response_correctness_binary", "label": 0}"#;
    let read = parse_row_as(row, 0, Some(Protocol::FlowJudgeRef)).unwrap();
    assert_eq!(read.label, Some(Verdict::Score(Some(0))));
    let row = r#"{"user_input": "q", "assistant_response": "a", "label": 0}"#;
    let error = parse_row_as(row, 0, Some(Protocol::SeleneAbsolute)).unwrap_err();
    assert!(error.to_string().contains("a score from 1 to 5"), "{error}");
    let row = r#"{"user_input": "q", "assistant_response": "a", "label": "No"}"#;
    let read = parse_row_as(row, 0, Some(Protocol::SeleneClassification)).unwrap();
    assert_eq!(read.label, Some(Verdict::Answer(Some(false))));
}

#[test]
fn rows_suggest_their_judge_by_field_names() {
    for (row, protocol) in [
        (r#"{"question": "q", "response_A": "a", "response_B": "b"}"#, Protocol::Skywork),
        (r#"{"user_input": "q", "assistant_response": "a"}"#, Protocol::SeleneAbsolute),
        (r#"{"user_input": "q", "assistant_response_a": "a", "assistant_response_b": "b"}"#, Protocol::SelenePairwise),
        (
            r#"{"user_input": "q", "assistant_response": "a", "rubric": {"criteria": "c", "yes_description": "y", "no_description": "n"}}"#,
            Protocol::SeleneClassification,
        ),
        (r#"{"query": "q", "response": "a", "reference_answer": "r"}"#, Protocol::FlowJudge),
        (r#"{"prompt": "q", "response": "a"}"#, Protocol::Single),
        (r#"{"instruction": "q", "response_A": "a", "response_B": "b"}"#, Protocol::PrometheusRelative),
    ] {
        assert_eq!(parse_row(row, 0).unwrap().protocol, protocol, "{row}");
    }
    let read = parse_row(r#"{"query": "q", "response": "a", "reference_answer": "r"}"#, 0).unwrap();
    assert_eq!(read.item.reference_answer(), Some("r"), "read for the batch's _ref choice");
}

#[test]
fn yes_no_answers_are_scored_by_accuracy() {
    let records = [
        json!({"answer": "Yes", "label": "Yes"}),
        json!({"answer": "No", "label": "Yes"}),
        json!({"answer": null, "label": "No"}),
        json!({"answer": "No"}),
    ];
    let rows: Vec<Preference> = records.iter().filter_map(Preference::from_record).collect();
    let metrics = preference_metrics(&rows);
    assert_eq!((metrics.rows, metrics.unparsed, metrics.unlabelled), (3, 1, 1));
    assert!((metrics.accuracy - 100.0 / 3.0).abs() < 1e-9);
}

#[test]
fn a_judge_refuses_the_other_families_protocols() {
    let error = Protocol::PrometheusAbsolute.check_served_by(Some(JudgeFamily::Selene)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "protocol prometheus_absolute is Prometheus 2's, but the model is a Selene Mini judge (its protocols: \
         selene_absolute, selene_absolute_ref, selene_pairwise, selene_classification, selene_classification_ref)"
    );
    assert!(Protocol::FlowJudge.check_served_by(Some(JudgeFamily::FlowJudge)).is_ok());
    assert!(Protocol::Skywork.check_served_by(None).is_ok());
}
