"""The protocols and parsers without a model: the package renders and parses as the CLI does,
on the goldens the CLI is tested against (made by each judge's own code, tools/reference/), and
the prometheus-eval adapter builds prometheus-eval's prompts."""

import json

import pytest

import webjudge
from webjudge import prometheus
from conftest import REPO, golden, json_lines, run_cli

EXCERPT = [json.loads(line) for line in (REPO / "tests/fixtures/autoj/rows.jsonl").read_text().splitlines()]


def autoj_row(case):
    """A golden case's row: a test-set row from the excerpt, or an adversarial item in Auto-J's
    field names."""
    if "item" in case:
        item = case["item"]
        if "response" in item:
            return {"prompt": item["query"], "response": item["response"]}
        return {"prompt": item["query"], "response 1": item["response1"], "response 2": item["response2"]}
    return next(kept["row"] for kept in EXCERPT if kept["set"] == case["set"] and kept["line"] == case["line"])


def test_render_is_auto_js_own_on_its_golden():
    cases = golden("autoj_rendered.json")["cases"]
    for case in cases:
        assert webjudge.render(case["protocol"], autoj_row(case)) == case["input"], case.get("item", case.get("line"))


def test_render_is_prometheus_evals_and_parse_the_clis():
    data = golden("prometheus.json")
    for case in data["cases"]:
        assert webjudge.render(case["protocol"], case["row"]) == case["input"], case["row"]
    # The CLI's verdicts agree with parse_output's (tests/prometheus_text.rs, webjudge's
    # documented extensions aside): the package's are the CLI's.
    for mode in ("absolute", "relative"):
        assert_parses_as_the_cli(f"prometheus_{mode}", [c["output"] for c in data["parses"] if c["mode"] == mode])


def assert_parses_as_the_cli(protocol, outputs):
    """The package's verdicts for `outputs` are `webjudge parse --protocol PROTOCOL`'s, which
    the Rust tests hold to the golden's reference verdicts."""
    assert outputs, protocol
    cli = json_lines(run_cli("parse", "--protocol", protocol, stdin="".join(json.dumps({"output": o}) + "\n" for o in outputs)))
    assert [webjudge.parse(protocol, output) for output in outputs] == cli, protocol


def test_render_and_parse_are_the_clis_for_the_other_judges():
    data = golden("judges.json")
    by_protocol = {}
    for case in data["cases"]:
        by_protocol.setdefault(case["protocol"], []).append(case["row"])
    for protocol, rows in by_protocol.items():
        cli = json_lines(run_cli("prompt", "--protocol", protocol, stdin="".join(json.dumps(r) + "\n" for r in rows)))
        assert [webjudge.render(protocol, row) for row in rows] == [line["input"] for line in cli], protocol
    parsers = {"skywork": "skywork", "compassjudger": "compassjudger", "compassjudger_arena": "compassjudger_arena",
               "selene_preference": "selene_pairwise", "selene_score": "selene_absolute",
               "selene_answer": "selene_classification", "flowjudge": "flowjudge"}  # fmt: skip
    for parser, protocol in parsers.items():
        assert_parses_as_the_cli(protocol, [case["output"] for case in data["parses"] if case["parser"] == parser])


def test_errors_carry_the_clis_messages():
    with pytest.raises(webjudge.WebjudgeError, match='unknown protocol "nope"'):
        webjudge.render("nope", {})
    with pytest.raises(webjudge.WebjudgeError, match="needs a rubric|rubric"):
        webjudge.render("prometheus_absolute", {"instruction": "q", "response": "a"})


def prometheus_eval_rubric(rubric, mode, data):
    """The rubric text a prometheus-eval user hands `absolute_grade`/`relative_grade` for a
    golden row's rubric, as tools/reference/prometheus_reference.py made it with prometheus-eval:
    `load_rubric(name, mode)`, `SCORE_RUBRIC_TEMPLATE.format(**fields)` (its first line for
    relative grading), or the text."""
    if isinstance(rubric, dict):
        text = data["score_rubric_template"].format(**rubric)
        return text.split("\n")[0] if mode == "relative" else text
    return data["rubrics"][rubric][mode] if rubric in data["rubrics"] else rubric


def test_prometheus_adapter_builds_prometheus_evals_prompts():
    data = golden("prometheus.json")
    for name, template in data["templates"].items():
        assert getattr(prometheus, {"prometheus_absolute": "ABSOLUTE_PROMPT_WO_REF",
                                    "prometheus_absolute_ref": "ABSOLUTE_PROMPT",
                                    "prometheus_relative": "RELATIVE_PROMPT_WO_REF",
                                    "prometheus_relative_ref": "RELATIVE_PROMPT"}[name]) == template  # fmt: skip
    assert prometheus.SCORE_RUBRIC_TEMPLATE == data["score_rubric_template"]
    for name, modes in data["rubrics"].items():
        assert {mode: prometheus.load_rubric(name, mode) for mode in modes} == modes
    for case in data["cases"]:
        row, protocol = case["row"], case["protocol"]
        relative = protocol.startswith("prometheus_relative")
        mode = "relative" if relative else "absolute"
        templates = {True: prometheus.ABSOLUTE_PROMPT, False: prometheus.ABSOLUTE_PROMPT_WO_REF}
        if relative:
            templates = {True: prometheus.RELATIVE_PROMPT, False: prometheus.RELATIVE_PROMPT_WO_REF}
        # The model is checked only when grading; the prompts are built before.
        judge = prometheus.PrometheusEval.__new__(prometheus.PrometheusEval)
        judge.absolute_grade_template = judge.relative_grade_template = templates[protocol.endswith("_ref")]
        rubric = prometheus_eval_rubric(row["rubric"], mode, data)
        with pytest.warns(UserWarning) if "reference_answer" not in row else _no_warning():
            references = [row["reference_answer"]] if "reference_answer" in row else None
            if relative:
                chosen, rows = judge._relative_requests([row["instruction"]], [row["response_A"]],
                                                        [row["response_B"]], rubric, references)  # fmt: skip
            else:
                chosen, rows = judge._absolute_requests([row["instruction"]], [row["response"]], rubric, references)
        assert chosen == protocol
        assert webjudge.render(chosen, rows[0]) == case["input"], row


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
