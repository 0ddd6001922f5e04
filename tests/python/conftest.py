"""What the Python package's tests share: the repository, the CLI they compare with, the test
model, and the goldens (tools/test_python.sh sets the environment; see docs/testing.md)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"


def golden(name):
    return json.loads((GOLDEN / name).read_text())


def cli():
    """The webjudge CLI of the same build profile as the wheel (WEBJUDGE_CLI)."""
    return os.environ["WEBJUDGE_CLI"]


def run_cli(*args, stdin=""):
    """`webjudge ARGS` with `stdin`: its standard output; fails the test on a non-zero exit."""
    done = subprocess.run([cli(), *map(str, args)], input=stdin, capture_output=True, text=True)
    assert done.returncode == 0, f"webjudge {args}: {done.stderr}"
    return done.stdout


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def model_dir():
    """The test model converted by `webjudge convert` (WEBJUDGE_TEST_MODEL)."""
    return Path(os.environ["WEBJUDGE_TEST_MODEL"])


# Short Auto-J rows (each about 12 s of prefill on lavapipe: the template is most of it): gold labels and scenarios, so the
# records carry both.
ROWS = [
    {"scenario": "chitchat", "label": 0, "prompt": "Say hi.", "response 1": "Hi!", "response 2": "No."},
    {"scenario": "math", "label": 1, "prompt": "What is 2 + 2?", "response 1": "5", "response 2": "4"},
    {"scenario": "chitchat", "label": 2, "prompt": "Name a color.", "response 1": "Red.", "response 2": "Blue."},
]
# Critique tokens per row: enough to show the same text, few enough to stay cheap.
MAX_NEW_TOKENS = 8

# Record fields that measure time, which no two runs share.
TIMINGS = {"time_to_first_token_s", "prefill_tok_s", "decode_tok_s", "prefill_saved_s"}


def untimed(record, drop=TIMINGS):
    """A record without its timings (a swapped judgement's too)."""
    kept = {key: value for key, value in record.items() if key not in drop}
    if isinstance(kept.get("swapped"), dict):
        kept["swapped"] = untimed(kept["swapped"], drop)
    return kept


def as_judged(record):
    """A record without what depends on where and after what its row was judged: timings, and
    the prompt tokens found in the KV cache (a Ray actor has judged other rows before it than
    the CLI's one engine had)."""
    return untimed(record, TIMINGS | {"reused_tokens"})


@pytest.fixture(scope="session")
def rows_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rows") / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return path


@pytest.fixture(scope="session")
def cli_records(model_dir, rows_file, tmp_path_factory):
    """`webjudge judge --input ROWS --output … --batch 2` over ROWS: the records every
    front end must reproduce."""
    output = tmp_path_factory.mktemp("cli") / "out.jsonl"
    run_cli("judge", "--model", model_dir, "--input", rows_file, "--output", output, "--batch", 2,
            "--max-new-tokens", MAX_NEW_TOKENS)  # fmt: skip
    return json_lines(output.read_text())
