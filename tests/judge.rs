//! The judge end to end on the test model: batch runs over real Auto-J test rows with
//! resume and metrics, judging in both orders, and inputs too long for the context.
//! SmolLM2 is no Auto-J, so its verdicts are mostly unparsed: the plumbing is under test.
//! Minutes of generation on lavapipe: the full tier only (`make test`). The rows are the
//! shortest in the excerpt of Auto-J's test set (`tests/autoj`), so no copy of Auto-J is needed.

mod autoj;
mod test_model;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use webjudge::engine::native::load_dir;
use webjudge::engine::{Cancel, Finish};
use webjudge::judge::dataset::parse_rows;
use webjudge::judge::session::{Judge, JudgeError, JudgeOptions, Order, TRUNCATION_MARKER};
use webjudge::judge::{Item, Protocol};
use webjudge::kernels::GpuOptions;

use autoj::excerpt_set;
use test_model::converted_dir;

/// The `n` shortest pairwise rows of the excerpt of Auto-J's test set (which keeps the set's
/// three shortest: fast on a software GPU), in file order, as JSON lines.
fn shortest_rows(n: usize) -> Vec<String> {
    let mut rows = excerpt_set("testdata_pairwise");
    let length = |row: &Value| {
        ["prompt", "response 1", "response 2"].iter().map(|k| row[k].as_str().unwrap().len()).sum::<usize>()
    };
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| (length(&rows[i]), i));
    order.truncate(n);
    order.sort();
    order.into_iter().map(|i| std::mem::take(&mut rows[i]).to_string()).collect()
}

fn scratch(name: &str) -> PathBuf {
    test_model::scratch("judge-tests", name)
}

fn webjudge(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_webjudge")).args(args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert!(out.status.success(), "webjudge {args:?} failed:\n{stderr}");
    (stdout, stderr)
}

/// `webjudge judge` on the test model over a file, with 12-token critiques.
fn judge_file(input: &Path, output: &Path, extra: &[&str]) -> (String, String) {
    let model = converted_dir();
    let mut args = vec!["judge", "--model", model.to_str().unwrap(), "--max-new-tokens", "12"];
    args.extend(["--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()]);
    args.extend(extra);
    webjudge(&args)
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
#[ignore = "full tier: make test"]
fn batch_run_resumes_and_reports_metrics() {
    let dir = scratch("batch");
    let input = dir.join("rows.jsonl");
    std::fs::write(&input, shortest_rows(3).join("\n") + "\n").unwrap();
    let output = dir.join("out.jsonl");
    let judge = |limit: &str| judge_file(&input, &output, &["--limit", limit]);

    let (stdout, _) = judge("2");
    let first = records(&output);
    assert_eq!(first.iter().map(|r| r["index"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1]);
    for record in &first {
        assert!(record["label"].is_string() && record["scenario"].is_string(), "{record}");
        assert!(record.get("winner").is_some() && record["critique"].is_string(), "{record}");
        assert!(record["generated_tokens"].as_u64().unwrap() <= 12);
    }
    assert!(stdout.contains("Group Name\tAgreement\tConsistency"), "metrics table:\n{stdout}");
    let metrics: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(metrics["rows"], 2);

    // An interrupted write leaves half a record: it is dropped and only missing rows run.
    let text = std::fs::read_to_string(&output).unwrap();
    let cut = text.trim_end().rfind('\n').unwrap() + 1 + 40;
    std::fs::write(&output, &text[..cut]).unwrap();
    let (stdout, stderr) = judge("3");
    assert!(stderr.contains("incomplete record"), "{stderr}");
    assert!(stderr.contains("1 rows already judged, 2 to go"), "{stderr}");
    let resumed = records(&output);
    let mut indices: Vec<u64> = resumed.iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(resumed[0], first[0], "the finished row is kept as it was");
    indices.sort();
    assert_eq!(indices, [0, 1, 2]);
    let metrics: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(metrics["rows"], 3);

    // Nothing left to do: no model load, same file, same metrics.
    let (again, stderr) = judge("3");
    assert!(stderr.contains("3 rows already judged, 0 to go"), "{stderr}");
    assert_eq!(records(&output), resumed);
    assert_eq!(again.lines().last(), stdout.lines().last());

    // Other options are not mixed in: refused before the model loads, the file untouched.
    let model = converted_dir();
    let swapped = Command::new(env!("CARGO_BIN_EXE_webjudge"))
        .args(["judge", "--model", model.to_str().unwrap(), "--max-new-tokens", "12", "--swap"])
        .args(["--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&swapped.stderr);
    assert_eq!(swapped.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--swap was false, now true") && !stderr.contains("adapter"), "{stderr}");
    assert_eq!(records(&output), resumed);

    // `--output -`: the records on stdout as rows finish, the report on stderr.
    let model = converted_dir();
    let streamed = Command::new(env!("CARGO_BIN_EXE_webjudge"))
        .args(["judge", "--model", model.to_str().unwrap(), "--max-new-tokens", "12"])
        .args(["--input", input.to_str().unwrap(), "--output", "-", "--limit", "1"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&streamed.stdout), String::from_utf8_lossy(&streamed.stderr));
    assert!(streamed.status.success(), "{stderr}");
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!((&lines[0]["critique"], &lines[0]["index"]), (&first[0]["critique"], &first[0]["index"]));
    assert!(stderr.contains("1 rows judged"), "{stderr}");

    // A record that cannot be written (the file size limit) stops the run: an error naming
    // the file, nothing but whole records in it, and a rerun resumes.
    let limited = dir.join("limited.jsonl");
    let script = format!(
        "ulimit -f 0; exec {} judge --model {} --max-new-tokens 12 --input {} --output {} --limit 2 --batch 1",
        env!("CARGO_BIN_EXE_webjudge"),
        model.display(),
        input.display(),
        limited.display()
    );
    let failed = Command::new("bash").args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("limited.jsonl: writing a record failed: File too large"), "{stderr}");
    assert_eq!(std::fs::read(&limited).unwrap(), b"");
    let (_, stderr) = judge_file(&input, &limited, &["--limit", "1"]);
    assert!(!stderr.contains("already judged"), "{stderr}");
    assert_eq!(records(&limited)[0]["critique"], first[0]["critique"]);

    // Rows that failed are judged again once the options that failed them change.
    let small = dir.join("small.jsonl");
    judge_file(&input, &small, &["--limit", "1", "--context", "64"]);
    assert!(records(&small)[0]["error"].is_string());
    let (_, stderr) = judge_file(&input, &small, &["--limit", "1", "--context", "64", "--truncate"]);
    assert!(stderr.contains("judging again 1 rows that failed under other options"), "{stderr}");
    let retried = records(&small);
    assert_eq!((retried.len(), &retried[0]["run"]["truncate"]), (1, &Value::Bool(true)));
}

/// Three rows in both orders, two rows (four sequences) at a time, so the third is admitted
/// when a slot frees up, against the same rows judged one order at a time: the same
/// critiques and verdicts, records in input order, verdicts mapped back, the swapped
/// input's shared prefix reused. A run killed once a row is written resumes without losing
/// or redoing it.
#[test]
#[ignore = "full tier: make test"]
fn swapped_rows_in_batches_match_one_at_a_time_and_survive_a_kill() {
    let dir = scratch("swap");
    let input = dir.join("rows.jsonl");
    std::fs::write(&input, shortest_rows(3).join("\n")).unwrap();
    let one_at_a_time = dir.join("one.jsonl");
    judge_file(&input, &one_at_a_time, &["--swap", "--batch", "1"]);
    let reference = records(&one_at_a_time);

    // Killed once a row is written: rows of a batch finish together, so others are pending.
    let output = dir.join("batched.jsonl");
    let model = converted_dir();
    let mut run = Command::new(env!("CARGO_BIN_EXE_webjudge"))
        .args(["judge", "--model", model.to_str().unwrap(), "--max-new-tokens", "12", "--swap", "--batch", "2"])
        .args(["--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !std::fs::read_to_string(&output).unwrap_or_default().contains('\n') {
        assert!(run.try_wait().unwrap().is_none(), "the run ended before any row was written");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    run.kill().unwrap();
    run.wait().unwrap();
    // Complete records only: the kill may cut one short.
    let written = std::fs::read_to_string(&output).unwrap();
    let complete = &written[..=written.rfind('\n').unwrap()];
    let before: Vec<Value> = complete.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(before.len() < 3, "{} rows were written before the kill", before.len());
    let (stdout, stderr) = judge_file(&input, &output, &["--swap", "--batch", "2"]);
    assert!(stderr.contains(&format!("{} rows already judged, {} to go", before.len(), 3 - before.len())), "{stderr}");

    let batched = records(&output);
    let indices: Vec<u64> = batched.iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(indices, [0, 1, 2], "records in input order");
    for kept in &before {
        let index = kept["index"].as_u64().unwrap() as usize;
        assert_eq!(&batched[index], kept, "row {index}, finished before the kill, is kept as it was");
    }
    for (record, want) in batched.iter().zip(&reference) {
        let row = &record["index"];
        for field in ["critique", "winner", "generated_tokens", "prompt_tokens"] {
            assert_eq!(record[field], want[field], "row {row}: {field} as given");
            assert_eq!(record["swapped"][field], want["swapped"][field], "row {row}: {field} swapped");
        }
        let swapped = &record["swapped"];
        let mapped = match swapped["winner"].as_str() {
            Some("response1") => Value::from("response2"),
            Some("response2") => Value::from("response1"),
            other => other.map_or(Value::Null, Value::from),
        };
        assert_eq!(record["swapped_winner_mapped"], mapped);
        assert_eq!(record["consistent"], Value::from(record["winner"].is_string() && record["winner"] == mapped));
        // The swapped input repeats everything up to the first response.
        let shared = record["shared_prefix_tokens"].as_u64().unwrap();
        assert!(shared > 50 && shared < swapped["prompt_tokens"].as_u64().unwrap(), "{record}");
        assert_eq!(swapped["reused_tokens"].as_u64().unwrap(), shared);
    }
    let metrics: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(metrics["swapped"], 3);
}

#[test]
#[ignore = "full tier: make test"]
fn inputs_beyond_the_context_are_refused_or_truncated() {
    let engine = load_dir(
        &converted_dir(),
        GpuOptions::default(),
        |mut o| {
            o.context = 256;
            o
        },
        &mut |_, _| {},
    )
    .unwrap();
    let mut judge = Judge::new(engine);
    let text = shortest_rows(1).join("");
    let row = parse_rows([text.as_str()], Some(Protocol::PairwiseTie)).next().unwrap().unwrap();
    let long = "a long and winding response that goes on ".repeat(20);
    let Item::Pair { query, .. } = row.item else { panic!("a pair") };
    let item = Item::pair(query, long.clone(), format!("short {long}"));
    let options = JudgeOptions { max_new_tokens: 16, ..Default::default() };

    match judge.prepare(Protocol::PairwiseTie, &item, &options) {
        Err(JudgeError::TooLong { prompt_tokens, max_new_tokens: 16, context: 256, budget: 241 }) => {
            assert!(prompt_tokens > 241)
        }
        other => panic!("expected TooLong, got {other:?}"),
    }
    let truncating = JudgeOptions { truncate: true, ..options.clone() };
    let (input, ids, truncated) = judge.prepare(Protocol::PairwiseTie, &item, &truncating).unwrap();
    assert!(truncated && ids.len() <= 241, "{} tokens", ids.len());
    assert_eq!(input.matches(TRUNCATION_MARKER).count(), 2, "both responses cut in the middle:\n{input}");
    assert!(input.contains("a long and winding"), "the start of each response is kept");

    // A query alone too long for the context cannot be saved by truncation.
    let huge = Item::pair(long.repeat(3), "a", "b");
    assert!(matches!(judge.prepare(Protocol::PairwiseTie, &huge, &truncating), Err(JudgeError::QueryTooLong { .. })));

    // Cancelled before it starts: nothing is computed.
    let cancel = Cancel::default();
    cancel.cancel();
    let short = Item::single("Say hi.", "Hi!");
    let options = JudgeOptions { max_new_tokens: 16, cancel: Some(cancel), ..Default::default() };
    let judgement = pollster::block_on(judge.judge(Protocol::Single, &short, &options, &mut |_| {})).unwrap();
    assert_eq!((judgement.finish, judgement.generated_tokens), (Finish::Cancelled, 0));
    assert!(judgement.prompt_tokens > 0 && judgement.critique.is_empty());

    // Cancelled while the first order streams: the swapped order is not started.
    let cancel = Cancel::default();
    let pair = Item::pair("Say hi.", "Hi!", "Hello.");
    let options = JudgeOptions { max_new_tokens: 16, cancel: Some(cancel.clone()), ..Default::default() };
    let mut swapped_pieces = 0;
    let both =
        pollster::block_on(judge.judge_swapped(Protocol::PairwiseTie, &pair, &options, &mut |order, _| match order {
            Order::Forward => cancel.cancel(),
            Order::Swapped => swapped_pieces += 1,
        }))
        .unwrap();
    assert_eq!((both.forward.finish, both.forward.generated_tokens), (Finish::Cancelled, 1));
    assert_eq!((both.swapped.finish, both.swapped.generated_tokens, swapped_pieces), (Finish::Cancelled, 0, 0));
    assert!(!both.consistent);
}

/// Prometheus 2 on the test model: relative rows with gold letters, two rows in both orders
/// as one batch, then one absolute item streamed. The records carry prometheus-eval's
/// verdict names and the report its metrics; every input shares the protocol's long fixed
/// prefix, so the second row's orders reuse the first's.
#[test]
#[ignore = "full tier: make test"]
fn prometheus_rows_are_graded_with_a_rubric_and_scored() {
    let dir = scratch("prometheus");
    let input = dir.join("rows.jsonl");
    let rows = [
        r#"{"instruction": "What is 2 + 2?", "response_A": "4", "response_B": "5", "label": "A"}"#,
        r#"{"instruction": "Name a colour.", "response_A": "Table.", "response_B": "Blue.", "label": "B"}"#,
    ];
    std::fs::write(&input, rows.join("\n")).unwrap();
    let output = dir.join("out.jsonl");
    let (stdout, _) = judge_file(
        &input,
        &output,
        &["--protocol", "prometheus_relative", "--rubric", "helpfulness", "--swap", "--batch", "2"],
    );
    let records = records(&output);
    assert_eq!(records.len(), 2);
    for (record, label) in records.iter().zip(["A", "B"]) {
        assert_eq!((&record["protocol"], &record["label"]), (&Value::from("prometheus_relative"), &Value::from(label)));
        for verdict in [&record["winner"], &record["swapped"]["winner"], &record["combined"]] {
            assert!(verdict.is_null() || ["A", "B", "tie"].contains(&verdict.as_str().unwrap()), "{record}");
        }
        assert_eq!(record["run"]["rubric"], "helpfulness");
        assert!(record["shared_prefix_tokens"].as_u64().unwrap() > 150, "{record}");
    }
    let metrics: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!((&metrics["rows"], &metrics["unlabelled"]), (&Value::from(2), &Value::from(0)), "{stdout}");
    assert!(metrics["accuracy"].is_number() && metrics["consistency"].is_number(), "{stdout}");

    let model = converted_dir();
    let (stdout, _) = webjudge(&[
        "judge",
        "--model",
        model.to_str().unwrap(),
        "--max-new-tokens",
        "6",
        "--protocol",
        "prometheus_absolute_ref",
        "--rubric",
        r#"{"criteria": "Is it correct?", "score1_description": "No.", "score2_description": "Barely.",
            "score3_description": "Partly.", "score4_description": "Mostly.", "score5_description": "Yes."}"#,
        "--query",
        "What is 2 + 2?",
        "--response",
        "4",
        "--reference-answer",
        "4",
    ]);
    let record: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(record["protocol"], "prometheus_absolute_ref");
    assert!(record["score"].is_null() || (1..=5).contains(&record["score"].as_u64().unwrap()), "{record}");
    assert!(stdout.starts_with(record["critique"].as_str().unwrap()), "the critique streams first:\n{stdout}");
}
