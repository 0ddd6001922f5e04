"""Ray Data: examples/ray_judge.py over a local cluster of two CPUs, two actors on lavapipe,
judges a small file to the CLI's records, and a run killed midway resumes without judging a
row again or losing one."""

import json
import os
import signal
import subprocess
import sys
import time

from conftest import MAX_NEW_TOKENS, REPO, ROWS, as_judged, json_lines


def example(model_dir, rows_file, output):
    """examples/ray_judge.py's command for the rows: a row per batch, so batches come back one
    by one; the process leads its own session, so it can be killed with every Ray process it
    started."""
    command = [sys.executable, str(REPO / "examples/ray_judge.py"), "--model", str(model_dir), "--input",
               str(rows_file), "--output", str(output), "--actors", "2", "--batch-size", "1", "--cluster-cpus", "2",
               "--num-cpus", "0.5", "--max-new-tokens", str(MAX_NEW_TOKENS)]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def complete_records(path):
    if not path.exists():
        return []
    text = path.read_text()
    return json_lines(text[: text.rfind("\n") + 1])


def test_two_actors_judge_a_file_as_the_cli_and_resume_after_a_kill(model_dir, rows_file, cli_records, tmp_path):
    output = tmp_path / "ray.jsonl"
    killed = example(model_dir, rows_file, output)
    deadline = time.monotonic() + 1200
    while not complete_records(output):
        assert killed.poll() is None, killed.communicate()[1]
        assert time.monotonic() < deadline, "no record came back"
        time.sleep(0.5)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    before = {record["index"]: record for record in complete_records(output)}
    assert 0 < len(before) < len(ROWS), "the kill came after every row was judged"

    resumed = example(model_dir, rows_file, output)
    report, errors = resumed.communicate(timeout=1200)
    assert resumed.returncode == 0, errors
    assert f"{len(before)} rows already judged, {len(ROWS) - len(before)} to go" in errors
    assert f"{len(ROWS)} rows judged" in report

    records = json_lines(output.read_text())
    # Every row once, in input order, as the CLI judged it (its "run" names the same input).
    assert [as_judged(record) for record in records] == [as_judged(record) for record in cli_records]
    # The rows judged before the kill were kept, timings and all, not judged again.
    assert all(records[index] == record for index, record in before.items())
