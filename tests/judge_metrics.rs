//! Auto-J's pairwise evaluation against the independent reference
//! (`tools/reference/pairwise_eval.py` → `tests/golden/autoj_metrics.json`), test-data rows
//! from Auto-J's real test sets (skipped, saying so, where Auto-J's files are absent:
//! `tests/autoj`), and reading an interrupted run's output.

mod autoj;

use serde_json::Value;
use webjudge::judge::autoj_metrics::{pairwise_metrics, python_round2, GroupMetrics, Judged, ScenarioGroups};
use webjudge::judge::dataset::{parse_row, parse_row_as, parse_rows, Problem};
use webjudge::judge::output::{in_input_order, resume_output, InputIdentity, ResumeError, RunOptions};
use webjudge::judge::session::Verdict;
use webjudge::judge::{Item, Protocol, Winner};
use webjudge::kernels::MatvecPath;

use autoj::Originals;

const GOLDEN: &str = include_str!("golden/autoj_metrics.json");

fn golden() -> Value {
    serde_json::from_str(GOLDEN).expect("golden JSON")
}

/// Auto-J's encoding (0, 1, 2; -1 unparsed) as webjudge's verdict.
fn verdict(code: &Value) -> Option<Winner> {
    code.as_i64().and_then(Winner::from_autoj_label)
}

fn judged(row: &Value) -> Judged {
    Judged {
        scenario: row["scenario"].as_str().map(str::to_owned),
        label: verdict(&row["label"]),
        verdict: verdict(&row["output"]),
        // The reference stores what the judge said on the swapped order; map it back here.
        swapped_verdict: row.get("output_exchange").map(|raw| verdict(raw).map(Winner::swapped)),
    }
}

fn close(ours: f64, theirs: &Value, what: &str) {
    let theirs = theirs.as_f64().unwrap_or_else(|| panic!("{what}: golden has {theirs}"));
    assert!((ours - theirs).abs() <= 1e-9, "{what}: ours {ours}, reference {theirs}");
}

fn check_group(ours: &GroupMetrics, theirs: &Value, what: &str) {
    assert_eq!(ours.rows as u64, theirs["rows"].as_u64().unwrap(), "{what} rows");
    close(ours.agreement, &theirs["agreement"], &format!("{what} agreement"));
    match ours.consistency {
        Some(consistency) => close(consistency, &theirs["consistency"], &format!("{what} consistency")),
        None => assert!(theirs["consistency"].is_null(), "{what}: no consistency, reference {}", theirs["consistency"]),
    }
    assert_eq!(ours.unparsed as u64, theirs["unparsed"].as_u64().unwrap(), "{what} unparsed");
    assert_eq!(ours.swapped as u64, theirs["swapped"].as_u64().unwrap(), "{what} swapped");
}

#[test]
fn metrics_match_the_reference() {
    let golden = golden();
    let groups = ScenarioGroups::autoj();
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let expected = &case["expected"];
        let rows: Vec<Judged> = case["rows"].as_array().unwrap().iter().map(judged).collect();
        let metrics = pairwise_metrics(&rows, &groups);
        let overall = GroupMetrics {
            rows: metrics.rows,
            agreement: metrics.agreement,
            consistency: metrics.consistency,
            unparsed: metrics.unparsed,
            swapped: metrics.swapped,
        };
        check_group(&overall, expected, &format!("{name} overall"));
        assert_eq!(metrics.unlabelled as u64, expected["unlabelled"].as_u64().unwrap(), "{name} unlabelled");
        assert_eq!(metrics.ungrouped as u64, expected["ungrouped"].as_u64().unwrap(), "{name} ungrouped");
        let order: Vec<&str> =
            expected["group_order"].as_array().unwrap().iter().map(|g| g.as_str().unwrap()).collect();
        assert_eq!(metrics.group_order, order, "{name} group order");
        assert_eq!(metrics.per_group.len(), order.len(), "{name} groups");
        for group in order {
            check_group(&metrics.per_group[group], &expected["groups"][group], &format!("{name} {group}"));
        }
        // Byte for byte what pairwise_eval.py prints (the clean cases were checked against a
        // step-by-step transcription of the original by the reference script).
        assert_eq!(metrics.original_table(), expected["table"].as_str().unwrap(), "{name} printed table");
    }
}

#[test]
fn percentages_print_as_python_rounds_them() {
    let golden = golden();
    let cases = golden["round2"].as_array().unwrap();
    assert!(cases.len() > 100);
    for case in cases {
        let (count, total) = (case["count"].as_u64().unwrap(), case["total"].as_u64().unwrap());
        let value = (100 * count) as f64 / total as f64;
        assert_eq!(python_round2(value), case["text"].as_str().unwrap(), "{count}/{total}");
    }
}

/// The reference read Auto-J's `scenario_groups.json` and kept it in the golden.
#[test]
fn built_in_groups_are_the_ones_the_reference_scored_with() {
    let golden = golden();
    let reference = golden["groups"].as_object().expect("the golden's groups");
    let built_in = ScenarioGroups::autoj();
    // serde_json's map forgets the golden's group order; metrics_match_the_reference checks that
    // order (its clean case has every group), so here the groups are taken in the built-in order.
    let in_built_in_order = built_in
        .names()
        .map(|name| {
            let scenarios = reference.get(name).unwrap_or_else(|| panic!("the reference has no group {name}"));
            (name.to_owned(), serde_json::from_value(scenarios.clone()).expect("scenario names"))
        })
        .collect();
    assert_eq!(ScenarioGroups::new(in_built_in_order).unwrap(), built_in);
    assert_eq!(reference.len(), 8);
    let names: Vec<&str> = built_in.names().collect();
    assert_eq!((names[0], names[7]), ("Summarization", "NLP Tasks"));
    assert_eq!(built_in.group_of("counterfactual"), Some("Creative Writing"));
    assert_eq!(built_in.group_of("others"), Some("NLP Tasks"));
    assert_eq!(built_in.group_of("nonsense"), None);
}

#[test]
fn built_in_groups_are_auto_js_file() {
    let Some(originals) = Originals::find() else { return };
    let text = originals.text("scenario_groups.json");
    assert_eq!(ScenarioGroups::autoj(), ScenarioGroups::from_json(&text).expect("scenario_groups.json"));
    let file_value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(golden()["groups"], file_value, "the reference scored with other groups");
}

#[test]
fn scenario_groups_errors() {
    let twice = r#"{"A": ["x", "y"], "B": ["y"]}"#;
    let error = ScenarioGroups::from_json(twice).unwrap_err().to_string();
    assert!(error.contains("\"y\"") && error.contains("\"A\"") && error.contains("\"B\""), "{error}");
    assert!(ScenarioGroups::from_json(r#"{"Overall": ["x"]}"#).is_err());
    assert!(ScenarioGroups::from_json(r#"{"A": ["x"], "A": ["z"]}"#).is_err());
    assert!(ScenarioGroups::from_json(r#"["A"]"#).is_err());
    assert!(ScenarioGroups::from_json(r#"{"A": "x"}"#).is_err());
    // Document order is kept (serde_json's own map would sort it).
    let groups = ScenarioGroups::from_json(r#"{"Zeta": ["z"], "Alpha": ["a"]}"#).unwrap();
    assert_eq!(groups.names().collect::<Vec<_>>(), ["Zeta", "Alpha"]);
}

fn row(scenario: &str, label: Winner, verdict: Option<Winner>, swapped: Option<Option<Winner>>) -> Judged {
    Judged { scenario: Some(scenario.to_owned()), label: Some(label), verdict, swapped_verdict: swapped }
}

#[test]
fn swap_semantics_by_hand() {
    use Winner::{Response1 as R1, Response2 as R2, Tie};
    let groups = ScenarioGroups::autoj();
    let rows = [
        row("chitchat", Tie, Some(Tie), Some(Some(Tie))), // right in both orders, consistent
        row("chitchat", R1, Some(R1), Some(Some(R2))),    // right once: wrong, inconsistent
        row("chitchat", R1, Some(R2), Some(Some(R2))),    // consistent but wrong
        row("chitchat", R2, None, Some(None)),            // unparsed twice: wrong, inconsistent
        row("ranking", R2, Some(R2), Some(None)),         // unparsed once: wrong, inconsistent
        row("ranking", R1, Some(R1), None),               // one order only: right
    ];
    let metrics = pairwise_metrics(&rows, &groups);
    assert_eq!((metrics.rows, metrics.swapped, metrics.unparsed), (6, 5, 2));
    assert_eq!(metrics.agreement, 100.0 * 2.0 / 6.0);
    assert_eq!(metrics.consistency, Some(40.0));
    let chat = &metrics.per_group["General Communication"];
    assert_eq!((chat.rows, chat.agreement, chat.consistency), (4, 25.0, Some(50.0)));
    let nlp = &metrics.per_group["NLP Tasks"];
    assert_eq!((nlp.rows, nlp.agreement, nlp.consistency), (2, 50.0, Some(0.0)));
    assert_eq!(metrics.group_order, ["General Communication", "NLP Tasks"]);

    let table = metrics.to_string();
    assert!(table.lines().next().unwrap().starts_with("group"), "{table}");
    assert!(table.contains("General Communication"), "{table}");
    let overall = table.lines().find(|line| line.starts_with("Overall")).unwrap();
    assert_eq!(overall.split_whitespace().collect::<Vec<_>>(), ["Overall", "6", "33.33", "40.00", "2"]);

    let empty = pairwise_metrics(&[], &groups);
    assert_eq!((empty.rows, empty.consistency), (0, None));
    assert!(empty.agreement.is_nan());
    assert!(empty.to_string().contains("no labelled rows"));
}

#[test]
fn real_pairwise_test_set() {
    let Some(originals) = Originals::find() else { return };
    let text = originals.text("data/testdata_pairwise.jsonl");
    let rows: Vec<_> = parse_rows(text.lines(), None).collect::<Result<_, _>>().expect("every row parses");
    assert_eq!(rows.len(), 1392);
    let groups = ScenarioGroups::autoj();
    let mut per_label = [0; 3];
    for (position, row) in rows.iter().enumerate() {
        assert_eq!(row.index, position);
        assert!(row.item.is_pair());
        per_label[row.label.and_then(|label| label.winner()).expect("every pairwise row has a label").autoj_label()
            as usize] += 1;
        let scenario = row.scenario.as_deref().expect("every row has a scenario");
        assert!(groups.group_of(scenario).is_some(), "{scenario} is in no group");
    }
    assert_eq!(per_label, [520, 499, 373]);

    // The first row, checked field by field against the raw JSON.
    let first_line = text.lines().next().unwrap();
    let raw: Value = serde_json::from_str(first_line).unwrap();
    assert_eq!(raw["label"], 1);
    let first = parse_row(first_line, 0).unwrap();
    assert_eq!(first.label, Some(Verdict::Pairwise(Some(Winner::Response2))));
    assert_eq!(first.scenario.as_deref(), Some("post_summarization"));
    let Item::Pair { query, response1, response2, .. } = &first.item else { panic!("not a pair") };
    assert_eq!(query, raw["prompt"].as_str().unwrap());
    assert_eq!(response1, raw["response 1"].as_str().unwrap());
    assert_eq!(response2, raw["response 2"].as_str().unwrap());

    // Read for the single protocol, a pairwise row lacks `response`.
    let error = parse_row_as(first_line, 0, Some(Protocol::Single)).unwrap_err().to_string();
    assert!(error.starts_with("row 0:") && error.contains("\"response\""), "{error}");
}

#[test]
fn real_critique_test_sets() {
    let Some(originals) = Originals::find() else { return };
    for (file, protocol) in
        [("data/testdata_critique.jsonl", Protocol::Single), ("data/zh_testdata_critique.jsonl", Protocol::ZhSingle)]
    {
        let text = originals.text(file);
        for rows in [parse_rows(text.lines(), None), parse_rows(text.lines(), Some(protocol))] {
            let rows: Vec<_> = rows.collect::<Result<_, _>>().unwrap_or_else(|error| panic!("{file}: {error}"));
            assert_eq!(rows.len(), 232, "{file}");
            for row in &rows {
                assert!(!row.item.is_pair(), "{file} row {}", row.index);
                assert_eq!(row.label, None);
                assert!(row.scenario.is_some());
            }
            let Item::Single { query, response, .. } = &rows[231].item else { panic!("not single") };
            let raw: Value = serde_json::from_str(text.lines().nth(231).unwrap()).unwrap();
            assert_eq!(
                (query.as_str(), response.as_str()),
                (raw["prompt"].as_str().unwrap(), raw["response"].as_str().unwrap())
            );
        }
    }
}

#[test]
fn rows_count_non_empty_lines_and_errors_name_the_line() {
    let text = "\n{\"prompt\": \"q\", \"response\": \"a\"}\n   \n{\"prompt\": \"q\", \"response 1\": \"a\"}\n";
    let results: Vec<_> = parse_rows(text.lines(), None).collect();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].as_ref().unwrap().index, 0);
    let error = results[1].as_ref().unwrap_err();
    assert_eq!((error.place.line, error.place.row), (Some(4), Some(1)));
    let message = error.to_string();
    assert!(message.starts_with("line 4 (row 1):") && message.contains("\"response 2\""), "{message}");

    let cases = [
        ("{\"prompt\": \"q\", \"response\": ", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ("{\"prompt\": \"q\"}", "\"response 1\" and \"response 2\""),
        ("{\"response\": \"a\"}", "\"prompt\""),
        ("{\"prompt\": 3, \"response\": \"a\"}", "\"prompt\" is not a string"),
        ("{\"prompt\": \"q\", \"response\": \"a\", \"label\": 3}", "found 3"),
        ("{\"prompt\": \"q\", \"response\": \"a\", \"label\": \"1\"}", "found \"1\""),
        ("{\"prompt\": \"q\", \"response\": \"a\", \"label\": -1}", "found -1"),
        ("{\"prompt\": \"q\", \"response\": \"a\", \"scenario\": 5}", "\"scenario\""),
    ];
    for (line, needle) in cases {
        let message = parse_row(line, 7).unwrap_err().to_string();
        assert!(message.starts_with("row 7:") && message.contains(needle), "{line}: {message}");
    }
    assert!(matches!(parse_row("{}", 0).unwrap_err().problem, Problem::NoResponse));

    let labelled = parse_row(r#"{"prompt": "q", "response 1": "a", "response 2": "b", "label": 2}"#, 3).unwrap();
    assert_eq!(
        (labelled.index, labelled.label, labelled.scenario),
        (3, Some(Verdict::Pairwise(Some(Winner::Tie))), None)
    );
    let null_label = parse_row(r#"{"prompt": "q", "response": "a", "label": null, "scenario": null}"#, 0).unwrap();
    assert_eq!((null_label.label, null_label.scenario), (None, None));
}

fn run(protocol: Protocol) -> RunOptions {
    RunOptions {
        rubric: None,
        protocol,
        swap: false,
        model: "0123456789abcdef".into(),
        max_new_tokens: 12,
        context: 512,
        truncate: false,
        matvec: MatvecPath::Exact,
        input: Some(InputIdentity::of("rows.jsonl", b"rows")),
    }
}

/// One output record as `webjudge judge` writes it, with `critique` and `run`.
fn record(index: usize, critique: &str, run: &RunOptions) -> String {
    serde_json::json!({"index": index, "critique": critique, "winner": "tie", "run": run}).to_string() + "\n"
}

#[test]
fn resume_reads_finished_rows() {
    let now = run(Protocol::PairwiseTie);
    let complete = [record(0, "a", &now), "\n".into(), record(2, "b", &now), record(5, "c", &now)].concat();
    let resume = resume_output(complete.as_bytes(), &now).unwrap();
    assert_eq!(resume.done.iter().copied().collect::<Vec<_>>(), [0, 2, 5]);
    assert_eq!((resume.torn_line, resume.rewrite), (None, None));

    // Interrupted mid-write: the last record is cut off; the rest is kept byte for byte.
    for tail in
        ["{\"index\": 7, \"output\": \"The final decision is Resp", "{\"index\": 1", "{", "{\"critique\":\"\u{e5}"]
    {
        let text = format!("{complete}{tail}");
        let resume = resume_output(text.as_bytes(), &now).unwrap_or_else(|error| panic!("{tail:?}: {error}"));
        assert_eq!(resume.done.iter().copied().collect::<Vec<_>>(), [0, 2, 5], "{tail:?}");
        assert_eq!(resume.torn_line, Some(5), "{tail:?}");
        assert_eq!(resume.rewrite.as_deref(), Some(complete.as_bytes()), "{tail:?}");
    }
    // A complete last record without its newline gets one.
    let unterminated = resume_output(complete.trim_end().as_bytes(), &now).unwrap();
    assert_eq!(unterminated.rewrite.as_deref(), Some(complete.as_bytes()));

    // A broken record anywhere else, or a file that is not a judge output, is refused.
    let middle = format!("{}{{\"index\": 1, \"out\n{}", record(0, "a", &now), record(2, "b", &now));
    let error = resume_output(middle.as_bytes(), &now).unwrap_err();
    assert!(matches!(error, ResumeError::NotAnOutput { line: 2, .. }), "{error}");
    for bad in
        ["{\"winner\": \"tie\"}\n", "{\"index\": -1}\n", "[3]\n", "notes about my run", "{\"index\": 1}\n", "{\n"]
    {
        let error = resume_output(bad.as_bytes(), &now).unwrap_err();
        assert!(matches!(error, ResumeError::NotAnOutput { line: 1, .. }), "{bad:?}: {error}");
    }
    // A last line without a newline that is JSON is complete: no record cut off, but a file
    // of something else (a settings file, a dataset row), refused whole.
    for json in ["{\"theme\": \"dark\"}", "{\"prompt\": \"q\", \"response\": \"r\"}", "[]", "3"] {
        for text in [json.to_string(), format!("{complete}{json}")] {
            let error = resume_output(text.as_bytes(), &now).unwrap_err();
            assert!(matches!(error, ResumeError::NotAnOutput { .. }), "{text:?}: {error}");
        }
    }
    let invalid_utf8 = [record(0, "a", &now).as_bytes(), b"{\"critique\":\"\xe5\xa5\"}\n"].concat();
    assert!(matches!(resume_output(&invalid_utf8, &now), Err(ResumeError::NotAnOutput { line: 2, .. })));
    assert_eq!(resume_output(b"", &now).unwrap(), Default::default());
}

#[test]
fn resume_refuses_to_mix_options_and_retries_errors_made_under_others() {
    let now = run(Protocol::PairwiseTie);
    // The exact path is not written, as in records made before the int8 path: those resume.
    let json = serde_json::to_value(&now).unwrap();
    assert_eq!(json.get("matvec"), None);
    assert_eq!(serde_json::from_value::<RunOptions>(json).unwrap(), now);
    let int8 = serde_json::to_value(RunOptions { matvec: MatvecPath::Int8, ..now.clone() }).unwrap();
    assert_eq!(int8["matvec"], "int8");
    for (other, option) in [
        (RunOptions { swap: true, ..now.clone() }, "--swap was true, now false"),
        (run(Protocol::Single), "--protocol was single, now pairwise_tie"),
        (RunOptions { model: "fedcba9876543210".into(), ..now.clone() }, "was fedcba9876543210"),
        (RunOptions { max_new_tokens: 1024, ..now.clone() }, "--max-new-tokens was 1024, now 12"),
        (RunOptions { matvec: MatvecPath::Int8, ..now.clone() }, "--matvec was int8, now exact"),
        (
            RunOptions { input: Some(InputIdentity::of("other.jsonl", b"other rows")), ..now.clone() },
            "--input was other.jsonl (sha256 ",
        ),
    ] {
        let text = [record(0, "a", &now), record(1, "b", &other)].concat();
        let error = resume_output(text.as_bytes(), &now).unwrap_err();
        assert!(matches!(error, ResumeError::OptionsDiffer { line: 2, .. }), "{error}");
        assert!(error.to_string().contains(option) && error.to_string().contains("start over"), "{error}");
    }
    // The same rows under another name are the same input; records that name no input (made
    // before webjudge recorded it) resume with any.
    let renamed = RunOptions { input: Some(InputIdentity::of("copy.jsonl", b"rows")), ..now.clone() };
    let unnamed = RunOptions { input: None, ..now.clone() };
    let text = [record(0, "a", &renamed), record(1, "b", &unnamed)].concat();
    assert_eq!(resume_output(text.as_bytes(), &now).unwrap().done.len(), 2);
    // A finished row stays valid under another context or truncation setting.
    let wider = RunOptions { context: 4096, truncate: true, ..now.clone() };
    assert_eq!(resume_output(record(0, "a", &wider).as_bytes(), &now).unwrap().done.len(), 1);

    // Rows that failed are judged again when the options that failed them changed.
    let error = |index: usize, run: &RunOptions| {
        serde_json::json!({"index": index, "error": "too long", "run": run}).to_string() + "\n"
    };
    let small = RunOptions { context: 64, ..now.clone() };
    let text = [record(0, "a", &small), error(1, &small), error(2, &now)].concat();
    let resume = resume_output(text.as_bytes(), &now).unwrap();
    assert_eq!(resume.done.iter().copied().collect::<Vec<_>>(), [0, 2]);
    assert_eq!(resume.retried, [1]);
    assert_eq!(resume.rewrite.unwrap(), [record(0, "a", &small), error(2, &now)].concat().into_bytes());
    assert_eq!(resume_output(text.as_bytes(), &small).unwrap().retried, [2]);
    // Rows of another input are refused, errors too: their indices name other rows.
    let other = RunOptions { input: Some(InputIdentity::of("other.jsonl", b"other rows")), ..now.clone() };
    let error = resume_output(error(0, &other).as_bytes(), &now).unwrap_err();
    assert!(error.to_string().contains("--input was other.jsonl"), "{error}");
}

/// Every cut point of a file of multi-byte records (bytes, not characters), resumed and
/// completed as `webjudge judge` does: no finished row is lost and none is duplicated.
#[test]
fn resume_after_any_cut_loses_and_duplicates_nothing() {
    let now = run(Protocol::PairwiseTie);
    let critiques = ["评分: [[5]] 好", "naïve café ✓", "emoji 😀 at the end 😀"];
    let records: Vec<String> = critiques.iter().enumerate().map(|(i, c)| record(i, c, &now)).collect();
    let whole = records.concat();
    let ends: Vec<usize> = records
        .iter()
        .scan(0, |end, r| {
            *end += r.len();
            Some(*end)
        })
        .collect();
    for cut in 0..=whole.len() {
        let bytes = &whole.as_bytes()[..cut];
        let resume = resume_output(bytes, &now).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        // A record is finished once its JSON is complete, newline or not.
        let finished: Vec<usize> = (0..records.len()).filter(|&i| cut + 1 >= ends[i]).collect();
        assert_eq!(resume.done.iter().copied().collect::<Vec<_>>(), finished, "cut at {cut}");
        let mut file = resume.rewrite.unwrap_or_else(|| bytes.to_vec());
        for index in (0..records.len()).filter(|i| !resume.done.contains(i)) {
            file.extend_from_slice(records[index].as_bytes());
        }
        let text = String::from_utf8(file).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_by_key(|line| records.iter().position(|r| r.trim_end() == *line));
        assert_eq!(lines, records.iter().map(|r| r.trim_end()).collect::<Vec<_>>(), "cut at {cut}");
    }
}

/// A run's records end in input order, however the rows of its batches finished; a byte order
/// mark an editor put at the start stays, and an output already in order is left alone.
#[test]
fn outputs_are_put_in_input_order() {
    let now = run(Protocol::PairwiseTie);
    let sorted = [record(0, "a", &now), record(1, "b", &now), record(2, "c", &now)].concat();
    let shuffled = [record(2, "c", &now), "\n".into(), record(0, "a", &now), record(1, "b", &now)].concat();
    assert_eq!(in_input_order(shuffled.as_bytes()).unwrap(), Some(sorted.clone().into_bytes()));
    assert_eq!(in_input_order(sorted.as_bytes()).unwrap(), None);
    let bom = format!("\u{feff}{shuffled}");
    assert_eq!(in_input_order(bom.as_bytes()).unwrap(), Some(format!("\u{feff}{sorted}").into_bytes()));
    let resume = resume_output(bom.as_bytes(), &now).unwrap();
    assert_eq!((resume.done.len(), resume.rewrite), (3, None));
}
