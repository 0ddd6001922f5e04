//! A batch output is the user's data (`webjudge judge --input … --output …`): resuming never
//! empties it, truncates it in place, mixes other options or another input into it or
//! duplicates its rows; two runs never write it at once; repairs keep its links, mode and
//! name; anything that is not a regular file of records is refused untouched. `--limit 0`
//! resumes and reorders without judging, on a model directory holding only a manifest, so
//! none of this needs a GPU (tests/judge.rs judges for real).

mod test_model;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};
use webjudge::format::hex;
use webjudge::format::manifest::MANIFEST_FILE;
use webjudge::judge::output::file::OutputFile;
use webjudge::judge::output::{InputIdentity, RunOptions};
use webjudge::judge::Protocol;
use webjudge::kernels::MatvecPath;

use test_model::{manifest_only_model, scratch};

/// A model directory (manifest only), an input of two Auto-J pairwise rows, and the `run`
/// options a `--limit 0` run over them records.
struct Setup {
    dir: PathBuf,
    input: PathBuf,
    run: RunOptions,
}

fn setup(name: &str) -> Setup {
    let dir = scratch("batch_output", name);
    manifest_only_model(&dir);
    let manifest = std::fs::read(dir.join(MANIFEST_FILE)).unwrap();
    let input = dir.join("rows.jsonl");
    let row = json!({"prompt": "q", "response 1": "a", "response 2": "b", "label": 0, "scenario": "default"});
    let rows = format!("{row}\n{row}\n");
    std::fs::write(&input, &rows).unwrap();
    let run = RunOptions {
        protocol: Protocol::PairwiseTie,
        rubric: None,
        swap: false,
        model: hex(&Sha256::digest(&manifest)[..8]),
        max_new_tokens: 1024,
        context: 64,
        truncate: false,
        matvec: MatvecPath::Exact,
        input: Some(InputIdentity::of(&input.display().to_string(), rows.as_bytes())),
    };
    Setup { dir, input, run }
}

impl Setup {
    /// `webjudge judge --limit 0` into `output` (after `shell`, e.g. a ulimit), given up on
    /// after a minute so that a run that blocks fails instead of hanging the suite.
    fn judge(&self, input: &Path, output: &Path, shell: &str) -> Output {
        self.judge_with(input, output, shell, "")
    }

    /// [`Self::judge`] with `flags` added.
    fn judge_with(&self, input: &Path, output: &Path, shell: &str, flags: &str) -> Output {
        let script = format!(
            "{shell} exec {} judge --model '{}' --input '{}' --output '{}' --limit 0 {flags}",
            env!("CARGO_BIN_EXE_webjudge"),
            self.dir.display(),
            input.display(),
            output.display()
        );
        let child = Command::new("bash")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        within(Duration::from_secs(60), child)
    }

    /// Finished records of rows `indices`, in that order, as this setup's run writes them.
    fn records(&self, indices: &[usize]) -> String {
        indices
            .iter()
            .map(|&index| {
                json!({"index": index, "scenario": "default", "label": "response1", "winner": "tie",
                       "critique": "c", "run": self.run})
                .to_string()
                    + "\n"
            })
            .collect()
    }
}

/// The child's output, or a failure naming the deadline it ran past (the child is killed).
fn within(deadline: Duration, mut child: std::process::Child) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > deadline {
            child.kill().unwrap();
            panic!("still running after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The run failed saying `says`.
fn refused(output: &Output, says: &str) {
    assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
    assert!(stderr(output).contains(says), "wanted {says:?} in: {}", stderr(output));
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// A one-line JSON file without a final newline is no record cut off by an interruption:
/// a settings file, a dataset row or the input itself given as the output stays as it was.
#[test]
fn a_file_that_is_not_an_output_or_is_the_input_is_refused_untouched() {
    let setup = setup("foreign");
    let output = setup.dir.join("cfg.json");
    let row = r#"{"prompt": "q", "response 1": "a", "response 2": "b", "label": 0}"#;
    for content in [r#"{"theme": "dark", "font": 12}"#, row, "[1, 2, 3]", r#""a string""#, "17"] {
        std::fs::write(&output, content).unwrap();
        refused(&setup.judge(&setup.input, &output, ""), "not a judge output");
        assert_eq!(std::fs::read_to_string(&output).unwrap(), content);
    }
    // The input itself, by its name or through a link to it.
    let link = setup.dir.join("link.jsonl");
    std::os::unix::fs::symlink(&setup.input, &link).unwrap();
    let rows = std::fs::read(&setup.input).unwrap();
    for output in [&setup.input, &link] {
        refused(&setup.judge(&setup.input, output, ""), "is the input file");
        assert_eq!(std::fs::read(&setup.input).unwrap(), rows);
    }
    let one_row = setup.dir.join("one.jsonl");
    std::fs::write(&one_row, row).unwrap();
    refused(&setup.judge(&one_row, &one_row, ""), "is the input file");
    assert_eq!(std::fs::read_to_string(&one_row).unwrap(), row);
}

/// One run at a time writes an output: a second one (by any path to the file) is refused,
/// told which process holds it, and changes nothing; the lock goes with the run.
#[test]
fn a_second_run_on_the_same_output_is_refused() {
    let setup = setup("locked");
    let output = setup.dir.join("out.jsonl");
    let records = setup.records(&[1, 0]);
    std::fs::write(&output, &records).unwrap();
    let link = setup.dir.join("same.jsonl");
    std::os::unix::fs::symlink(&output, &link).unwrap();
    let before = names_in(&setup.dir);
    let (held, resume) = OutputFile::open(&output, &setup.run, None).unwrap();
    assert_eq!(resume.done.len(), 2);
    let holder = format!("another webjudge run is writing it (pid {}", std::process::id());
    for path in [&output, &link] {
        refused(&setup.judge(&setup.input, path, ""), &holder);
        assert_eq!(std::fs::read_to_string(&output).unwrap(), records);
    }
    assert!(OutputFile::open(&output, &setup.run, None).is_err(), "a second holder in one process");
    drop(held);
    assert_eq!(names_in(&setup.dir), before, "the lock leaves nothing behind");
    let resumed = setup.judge(&setup.input, &link, "");
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains("2 rows already judged, 0 to go"), "{}", stderr(&resumed));
    assert_eq!(std::fs::read_to_string(&output).unwrap(), setup.records(&[0, 1]), "put in input order");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(names_in(&setup.dir), before);
}

/// Records name the input they judge: another file's rows are refused (their indices mean
/// other rows); the same rows elsewhere resume.
#[test]
fn an_output_of_another_input_is_refused() {
    let setup = setup("other-input");
    let output = setup.dir.join("out.jsonl");
    let records = setup.records(&[0, 1]);
    std::fs::write(&output, &records).unwrap();
    let other = setup.dir.join("other.jsonl");
    let row = json!({"prompt": "another", "response 1": "a", "response 2": "b", "label": 1});
    std::fs::write(&other, format!("{row}\n{row}\n{row}\n")).unwrap();
    let refusal = setup.judge(&other, &output, "");
    refused(&refusal, "--input was");
    assert!(stderr(&refusal).contains("start over"), "{}", stderr(&refusal));
    assert_eq!(std::fs::read_to_string(&output).unwrap(), records);

    let copy = setup.dir.join("copy.jsonl");
    std::fs::copy(&setup.input, &copy).unwrap();
    let resumed = setup.judge(&copy, &output, "");
    assert!(stderr(&resumed).contains("2 rows already judged, 0 to go"), "{}", stderr(&resumed));
}

/// Repairs (a record cut off) and reordering write the real file: a symlink keeps pointing
/// at it, hard links keep sharing it, its mode stays, a name of 250 bytes is no problem and
/// a byte order mark stays. Pipes and devices are refused at once, never read or waited on.
#[test]
fn repairs_keep_links_modes_and_names() {
    let setup = setup("links");
    let torn = |records: &str| format!("{records}{{\"index\": 2, \"critique\": \"cut");
    let repaired = setup.records(&[0, 1]);

    let data = setup.dir.join("data");
    std::fs::create_dir(&data).unwrap();
    let target = data.join("real.jsonl");
    std::fs::write(&target, torn(&setup.records(&[1, 0]))).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = setup.dir.join("link.jsonl");
    std::os::unix::fs::symlink("data/real.jsonl", &link).unwrap();
    let run = setup.judge(&setup.input, &link, "");
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(stderr(&run).contains("dropping the incomplete record on line 3"), "{}", stderr(&run));
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("data/real.jsonl"));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), repaired);
    assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777, 0o600);
    assert_eq!(names_in(&data), ["real.jsonl"]);

    let output = setup.dir.join("out.jsonl");
    let other_name = data.join("same-file.jsonl");
    std::fs::write(&output, torn(&setup.records(&[1, 0]))).unwrap();
    std::fs::set_permissions(&output, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::hard_link(&output, &other_name).unwrap();
    let run = setup.judge(&setup.input, &output, "");
    assert!(run.status.success(), "{}", stderr(&run));
    let (a, b) = (std::fs::metadata(&output).unwrap(), std::fs::metadata(&other_name).unwrap());
    assert_eq!((a.ino(), a.nlink(), a.mode() & 0o7777), (b.ino(), 2, 0o640), "one file, two names");
    assert_eq!(std::fs::read_to_string(&other_name).unwrap(), repaired);

    let long = setup.dir.join(format!("{}.jsonl", "r".repeat(244)));
    std::fs::write(&long, torn(&setup.records(&[0]))).unwrap();
    let run = setup.judge(&setup.input, &long, "");
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(std::fs::read_to_string(&long).unwrap(), setup.records(&[0]));

    let bom = setup.dir.join("bom.jsonl");
    std::fs::write(&bom, format!("\u{feff}{}", setup.records(&[1, 0]))).unwrap();
    let run = setup.judge(&setup.input, &bom, "");
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(std::fs::read_to_string(&bom).unwrap(), format!("\u{feff}{repaired}"));

    let fifo = setup.dir.join("fifo.jsonl");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    refused(&setup.judge(&setup.input, &fifo, ""), "is a FIFO, not a regular file");
    // Standard output is a pipe here; `--output -` is the way to write there.
    refused(&setup.judge(&setup.input, Path::new("/dev/stdout"), ""), "is a FIFO, not a regular file");
    refused(&setup.judge(&setup.input, Path::new("/dev/null"), ""), "is a character device, not a regular file");
    refused(&setup.judge(&setup.input, &data, ""), "is a directory, not a regular file");
    let dangling = setup.dir.join("dangling.jsonl");
    std::os::unix::fs::symlink("missing/out.jsonl", &dangling).unwrap();
    refused(&setup.judge(&setup.input, &dangling, ""), "a symlink to a missing file");
}

/// A context the model does not have is refused before the output is opened: nothing is
/// created or locked.
#[test]
fn a_context_beyond_the_models_is_refused_before_the_output_is_opened() {
    let setup = setup("context");
    let output = setup.dir.join("out.jsonl");
    let before = names_in(&setup.dir);
    let run = setup.judge_with(&setup.input, &output, "", "--context 65");
    refused(&run, "--context 65");
    assert_eq!(names_in(&setup.dir), before);
}

/// `--output -` writes the records to standard output as rows finish (nothing to resume or
/// lock), and the report to standard error.
#[test]
fn output_to_standard_output() {
    let setup = setup("stdout");
    let run = setup.judge(&setup.input, Path::new("-"), "");
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(run.stdout.is_empty(), "{}", String::from_utf8_lossy(&run.stdout));
    assert!(stderr(&run).contains("0 rows judged"), "{}", stderr(&run));
    assert!(!setup.dir.join("-").exists());
}

/// A batch output is the user's data: resuming never empties, truncates in place, mixes
/// options into or duplicates rows of it. `--limit 0` resumes without judging anything.
#[test]
fn cli_batch_output_is_never_emptied_or_mixed() {
    let dir = scratch("batch_output", "resume");
    let manifest_bytes = {
        manifest_only_model(&dir);
        std::fs::read(dir.join(MANIFEST_FILE)).unwrap()
    };
    let model_id = webjudge::format::hex(&<sha2::Sha256 as sha2::Digest>::digest(&manifest_bytes)[..8]);
    let input = dir.join("rows.jsonl");
    // From Auto-J's pairwise test data format; two short rows.
    let row = json!({"prompt": "q", "response 1": "a", "response 2": "b", "label": 0, "scenario": "default"});
    std::fs::write(&input, format!("\u{feff}{row}\n{row}\n")).unwrap();
    let output = dir.join("out.jsonl");
    let judge = |extra: &str| {
        let script = format!(
            "{extra} {} judge --model {} --input {} --output {} --limit 0",
            env!("CARGO_BIN_EXE_webjudge"),
            dir.display(),
            input.display(),
            output.display()
        );
        Command::new("bash").args(["-c", &script]).output().unwrap()
    };

    // A file that is not a judge output is refused, not emptied.
    std::fs::write(&output, "my notes, no newline").unwrap();
    let refused = judge("");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a judge output"), "{refused:?}");
    assert_eq!(std::fs::read(&output).unwrap(), b"my notes, no newline");

    // Two finished records and one torn inside a UTF-8 character.
    let run = json!({"protocol": "pairwise_tie", "swap": false, "model": model_id, "max_new_tokens": 1024,
                     "context": 64, "truncate": false});
    let finished: String = (0..2)
        .map(|index| {
            json!({"index": index, "critique": "评分", "winner": "response1", "label": "response1",
                            "scenario": "default", "run": run})
            .to_string()
                + "\n"
        })
        .collect();
    let torn = [finished.as_bytes(), b"{\"critique\":\"\xe5\xa5"].concat();
    std::fs::write(&output, &torn).unwrap();
    // The repair cannot be written (file size limit): the file stays as it was.
    let limited = judge("ulimit -f 0;");
    assert_eq!(limited.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&limited.stderr);
    assert!(stderr.contains("File too large") && stderr.contains("out.jsonl was left as it was"), "{stderr}");
    assert_eq!(std::fs::read(&output).unwrap(), torn);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3, "no temporary file is left");
    let resumed = judge("");
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(stderr.contains("dropping the incomplete record on line 3"), "{stderr}");
    assert!(stderr.contains("2 rows already judged, 0 to go"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&output).unwrap(), finished);
    assert!(String::from_utf8_lossy(&resumed.stdout).contains("2 rows judged"), "{resumed:?}");

    // Other options are refused, naming the option and how to start over.
    for (option, says) in
        [("--swap", "--swap was false, now true"), ("--max-new-tokens 12", "--max-new-tokens was 1024")]
    {
        let refused = Command::new(env!("CARGO_BIN_EXE_webjudge"))
            .args(["judge", "--model", dir.to_str().unwrap(), "--input", input.to_str().unwrap()])
            .args(["--output", output.to_str().unwrap(), "--limit", "0"])
            .args(option.split(' '))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(says) && stderr.contains("start over"), "{stderr}");
        assert_eq!(std::fs::read_to_string(&output).unwrap(), finished);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
