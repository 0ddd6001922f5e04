"""The package with the test model: it loads as the CLI loads, judges a pair with the CLI's
tokens, a batch into the CLI's records, and stops on Ctrl-C between tokens."""

import json
import signal

import pytest

import webjudge
from conftest import MAX_NEW_TOKENS, ROWS, json_lines, run_cli, untimed

QUERY, RESPONSE1, RESPONSE2 = "What is 2 + 2?", "4", "5"


@pytest.fixture(scope="module")
def judge(model_dir):
    return webjudge.Judge.load(model_dir)


def test_a_pair_is_judged_with_the_clis_tokens(judge, model_dir):
    # The critique streams to standard output, then the judgement's JSON line.
    cli = json.loads(run_cli("judge", "--model", model_dir, "--query", QUERY, "--response1", RESPONSE1,
                             "--response2", RESPONSE2, "--max-new-tokens", MAX_NEW_TOKENS).splitlines()[-1])  # fmt: skip
    pieces = []
    judged = judge.pairwise(QUERY, RESPONSE1, RESPONSE2, max_new_tokens=MAX_NEW_TOKENS, on_text=pieces.append)
    assert untimed(judged) == untimed(cli)
    assert "".join(pieces) == judged["critique"]
    row = {"prompt": QUERY, "response 1": RESPONSE1, "response 2": RESPONSE2}
    ids = json_lines(run_cli("prompt", "--protocol", "pairwise_tie", "--model", model_dir, "--ids",
                             stdin=json.dumps(row) + "\n"))[0]  # fmt: skip
    assert judge.prompt(row, protocol="pairwise_tie") == (ids["input"], ids["ids"])
    assert judged["prompt_tokens"] == len(ids["ids"])


def test_the_int8_matvec_judges_as_the_clis(model_dir):
    with pytest.raises(webjudge.WebjudgeError, match="no matvec path"):
        webjudge.Judge.load(model_dir, matvec="int4")
    judge = webjudge.Judge.load(model_dir, matvec="int8")
    assert judge.matvec == "int8"
    cli = json.loads(run_cli("judge", "--model", model_dir, "--matvec", "int8", "--query", QUERY,
                             "--response", RESPONSE1, "--max-new-tokens", MAX_NEW_TOKENS).splitlines()[-1])  # fmt: skip
    assert untimed(judge.single(QUERY, RESPONSE1, max_new_tokens=MAX_NEW_TOKENS)) == untimed(cli)


def test_a_batch_gives_the_clis_records(model_dir, cli_records):
    judge = webjudge.Judge.load(model_dir, sequences=2)
    streamed = []
    records = judge.judge_batch(ROWS, max_new_tokens=MAX_NEW_TOKENS, on_record=streamed.append)
    # The CLI's records name its input file; these rows came from no file.
    without_run = lambda record: {key: value for key, value in untimed(record).items() if key != "run"}  # noqa: E731
    assert [without_run(record) for record in records] == [without_run(record) for record in cli_records]
    assert sorted(record["index"] for record in streamed) == list(range(len(ROWS)))
    assert {**records[0]["run"], "input": None} == {**cli_records[0]["run"], "input": None}
    assert "agreement" in webjudge.report("pairwise_tie", records)


def test_ctrl_c_stops_generation_between_tokens(judge):
    pieces = []

    def interrupt(piece):
        pieces.append(piece)
        signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        judge.single(QUERY, RESPONSE1, max_new_tokens=64, on_text=interrupt)
    assert len(pieces) == 1
