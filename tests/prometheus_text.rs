//! Prometheus 2's protocols without a GPU: every rendering and verdict against what
//! prometheus-eval 0.1.20 and fschat 0.2.36 themselves produce (tests/golden/prometheus.json,
//! made by tools/reference/prometheus_reference.py), the metrics against scipy, and the rows,
//! errors and CLI commands around them.

mod test_model;

use serde_json::{json, Value};
use webjudge::format::ChatTemplate;
use webjudge::judge::dataset::{parse_row, parse_row_as, Problem};
use webjudge::judge::prometheus_metrics::{preference_metrics, score_metrics, Preference};
use webjudge::judge::session::Verdict;
use webjudge::judge::{
    model_input, parse_preference, parse_score, Item, JudgeFamily, Protocol, ProtocolError, Rubric, Winner,
};

fn golden() -> Value {
    test_model::golden("prometheus.json")
}

fn protocol(name: &str) -> Protocol {
    name.parse().expect("a protocol name")
}

/// Runs `webjudge ARGS` with `stdin`, returning stdout; fails the test on a non-zero exit.
fn webjudge(args: &[&str], stdin: &str) -> String {
    let output = test_model::webjudge(args, stdin);
    assert!(output.status.success(), "webjudge {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

#[test]
fn every_rendering_is_prometheus_evals_byte_for_byte() {
    let golden = golden();
    let cases = golden["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 28, "7 items in 4 protocols");
    for (index, case) in cases.iter().enumerate() {
        let protocol = protocol(case["protocol"].as_str().unwrap());
        let item = Item::from_row(&case["row"], protocol).unwrap();
        let input = model_input(protocol, &item, Some(&ChatTemplate::llama2())).unwrap();
        assert!(input == case["input"].as_str().unwrap(), "case {index} ({protocol}) differs:\n{input}");
    }
}

#[test]
fn cli_prompt_renders_every_protocol_as_prometheus_eval() {
    let golden = golden();
    for protocol in JudgeFamily::Prometheus.protocols() {
        let cases: Vec<&Value> =
            golden["cases"].as_array().unwrap().iter().filter(|c| c["protocol"] == protocol.name()).collect();
        let rows: String = cases.iter().map(|case| format!("{}\n", case["row"])).collect();
        let out = webjudge(&["prompt", "--protocol", protocol.name()], &rows);
        let inputs: Vec<Value> = out.lines().map(|line| serde_json::from_str::<Value>(line).unwrap()).collect();
        assert_eq!(inputs.len(), cases.len(), "{protocol}");
        for (got, case) in inputs.iter().zip(&cases) {
            assert_eq!(got["input"], case["input"], "{protocol}");
        }
    }
}

#[test]
fn built_in_rubrics_are_load_rubrics() {
    let golden = golden();
    let rubrics = golden["rubrics"].as_object().unwrap();
    assert_eq!(rubrics.len(), Rubric::BUILT_IN.len());
    for (name, text) in Rubric::BUILT_IN {
        assert_eq!(text, rubrics[name]["absolute"], "{name}");
        let rubric = Rubric::Text(name.into());
        assert_eq!(rubric.text(false).unwrap(), rubrics[name]["absolute"], "{name}");
        assert_eq!(rubric.text(true).unwrap(), rubrics[name]["relative"], "{name}");
    }
}

/// Where prometheus-eval finds no verdict, webjudge's extensions may: only for outputs with
/// emphasis marks or a final period (see [`extensions_read_emphasis_and_a_final_period`]).
fn agrees(got: &Value, reference: &Value, output: &str) -> bool {
    got == reference || (reference.is_null() && (output.contains(['*', '_', '`']) || output.trim_end().ends_with('.')))
}

#[test]
fn verdicts_agree_with_parse_output_on_every_reference_output() {
    let golden = golden();
    let parses = golden["parses"].as_array().unwrap();
    assert!(parses.len() >= 60, "at least 30 outputs per mode");
    for case in parses {
        let output = case["output"].as_str().unwrap();
        let got = match case["mode"].as_str().unwrap() {
            "absolute" => json!(parse_score(output)),
            _ => json!(parse_preference(output).map(|w| if w == Winner::Response1 { "A" } else { "B" })),
        };
        assert!(agrees(&got, &case["result"], output), "{} {output:?}: {got} vs {}", case["mode"], case["result"]);
    }
}

#[test]
fn cli_parse_writes_scores_and_letters() {
    let golden = golden();
    for (mode, protocol) in [("absolute", "prometheus_absolute"), ("relative", "prometheus_relative_ref")] {
        let cases: Vec<&Value> = golden["parses"].as_array().unwrap().iter().filter(|c| c["mode"] == mode).collect();
        let rows: String = cases.iter().map(|case| format!("{}\n", json!({"output": case["output"]}))).collect();
        let out = webjudge(&["parse", "--protocol", protocol], &rows);
        let key = if mode == "absolute" { "score" } else { "winner" };
        let got: Vec<Value> = out.lines().map(|line| serde_json::from_str::<Value>(line).unwrap()).collect();
        assert_eq!(got.len(), cases.len(), "{mode}");
        for (got, case) in got.iter().zip(&cases) {
            let output = case["output"].as_str().unwrap();
            assert!(agrees(&got[key], &case["result"], output), "{mode} {output:?}: {got}");
        }
    }
}

/// webjudge's documented extensions (docs/prometheus.md): where prometheus-eval finds no
/// verdict, emphasis marks and a final period are ignored.
#[test]
fn extensions_read_emphasis_and_a_final_period() {
    assert_eq!(parse_score("Good. [RESULT] **4**"), Some(4));
    assert_eq!(parse_score("Good. [RESULT] 4."), Some(4));
    assert_eq!(parse_score("Good. **[RESULT] 6**"), None);
    assert_eq!(parse_preference("[RESULT] **B**"), Some(Winner::Response2));
    assert_eq!(parse_preference("[RESULT] A."), Some(Winner::Response1));
    assert_eq!(parse_preference("`[RESULT] A`"), Some(Winner::Response1));
    // Not digits it reads: prometheus-eval's int() would.
    assert_eq!(parse_score("[RESULT] \u{0664}"), None);
}

#[test]
fn correlations_are_scipys() {
    let golden = golden();
    for case in golden["correlations"].as_array().unwrap() {
        let values =
            |key: &str| -> Vec<f64> { case[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect() };
        let rows: Vec<(Option<f64>, Option<f64>)> =
            values("gold").into_iter().zip(values("predicted")).map(|(g, p)| (Some(g), Some(p))).collect();
        let metrics = score_metrics(&rows);
        for (name, got) in
            [("pearson", metrics.pearson), ("spearman", metrics.spearman), ("kendall_tau_b", metrics.kendall_tau_b)]
        {
            let want = case[name].as_f64().unwrap();
            assert!((got.unwrap() - want).abs() < 1e-12, "{name}: {got:?} vs scipy {want}");
        }
    }
}

#[test]
fn accuracy_counts_unparsed_as_wrong_and_leaves_out_unlabelled() {
    let row = |label, verdict, consistent| Preference { label, verdict, consistent };
    let (a, b) = (Some(Winner::Response1), Some(Winner::Response2));
    let metrics = preference_metrics(&[
        row(a, a, Some(true)),
        row(b, a, Some(true)),
        row(b, None, Some(false)),
        row(a, Some(Winner::Tie), Some(false)),
        row(None, a, Some(true)),
    ]);
    assert_eq!((metrics.rows, metrics.unparsed, metrics.unlabelled), (4, 1, 1));
    assert_eq!(metrics.accuracy, 25.0);
    assert_eq!(metrics.consistency, Some(50.0));
}

#[test]
fn missing_rubric_reference_or_family_is_named() {
    let item = Item::single("q", "r");
    let error = model_input(Protocol::PrometheusAbsolute, &item, Some(&ChatTemplate::llama2())).unwrap_err();
    assert_eq!(error, ProtocolError::NoRubric { protocol: "prometheus_absolute" });
    assert!(error.to_string().contains("helpfulness"), "{error}");
    let item = item.with_rubric(Rubric::Text("honesty".into()));
    let error = model_input(Protocol::PrometheusAbsoluteRef, &item, Some(&ChatTemplate::llama2())).unwrap_err();
    assert!(
        error.to_string().contains("reference_answer") && error.to_string().contains("prometheus_absolute)"),
        "{error}"
    );
    assert!(model_input(Protocol::PrometheusAbsolute, &item, Some(&ChatTemplate::llama2())).is_ok());

    let error = Protocol::PairwiseTie.check_served_by(Some(JudgeFamily::Prometheus)).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("pairwise_tie") && message.contains("prometheus_relative_ref"), "{message}");
    assert!(Protocol::PrometheusRelative.check_served_by(Some(JudgeFamily::Prometheus)).is_ok());
    assert!(Protocol::PrometheusRelative.check_served_by(None).is_ok(), "a model that is no judge runs any");
    assert!(Protocol::PrometheusRelative.check_served_by(Some(JudgeFamily::AutoJ)).is_err());
}

#[test]
fn rows_carry_gold_labels_in_prometheus_encoding() {
    let relative = r#"{"instruction": "q", "response_A": "a", "response_B": "b", "rubric": "honesty", "label": "B"}"#;
    let row = parse_row_as(relative, 0, Some(Protocol::PrometheusRelative)).unwrap();
    assert_eq!(row.label, Some(Verdict::Preference(Some(Winner::Response2))));
    assert_eq!(row.item.rubric(), Some(&Rubric::Text("honesty".into())));
    assert_eq!(serde_json::to_value(&row).unwrap()["label"], "B");
    let absolute = r#"{"instruction": "q", "response": "a", "reference_answer": "r", "label": 4}"#;
    let row = parse_row_as(absolute, 1, Some(Protocol::PrometheusAbsoluteRef)).unwrap();
    assert_eq!(row.label, Some(Verdict::Score(Some(4))));
    assert_eq!(row.item.reference_answer(), Some("r"));
    // Detected from the field names without a protocol.
    assert_eq!(parse_row(relative, 0).unwrap().protocol, Protocol::PrometheusRelative);
    assert_eq!(parse_row(absolute, 0).unwrap().protocol, Protocol::PrometheusAbsolute);

    for (line, protocol) in [
        (r#"{"instruction": "q", "response": "a", "label": 6}"#, Protocol::PrometheusAbsolute),
        (r#"{"instruction": "q", "response_A": "a", "response_B": "b", "label": 0}"#, Protocol::PrometheusRelative),
    ] {
        let error = parse_row_as(line, 0, Some(protocol)).unwrap_err();
        assert!(matches!(error.problem, Problem::Label { .. }), "{error}");
    }
    let custom = json!({"instruction": "q", "response": "a", "rubric": {"criteria": "c"}});
    let error = parse_row_as(&custom.to_string(), 0, Some(Protocol::PrometheusAbsolute)).unwrap_err();
    assert_eq!(error.problem, Problem::Item(ProtocolError::BadRubric));
}

#[test]
fn verdicts_serialize_as_prometheus_eval_names_them() {
    assert_eq!(serde_json::to_value(Verdict::Preference(Some(Winner::Response1))).unwrap(), json!({"winner": "A"}));
    assert_eq!(serde_json::to_value(Verdict::Preference(None)).unwrap(), json!({"winner": null}));
    assert_eq!(serde_json::to_value(Verdict::Score(Some(3))).unwrap(), json!({"score": 3}));
    assert_eq!(
        serde_json::to_value(Verdict::parse(Protocol::PrometheusRelativeRef, "[RESULT] B")).unwrap(),
        json!({"winner": "B"})
    );
}
