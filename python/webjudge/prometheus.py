"""prometheus-eval's ``PrometheusEval`` on webjudge's engine: a script that grades with
prometheus-eval switches by changing its imports::

    # from prometheus_eval import PrometheusEval
    # from prometheus_eval.vllm import VLLM
    # from prometheus_eval.prompts import ABSOLUTE_PROMPT, SCORE_RUBRIC_TEMPLATE
    # model = VLLM(model="prometheus-eval/prometheus-7b-v2.0")
    from webjudge import Judge
    from webjudge.prometheus import PrometheusEval, ABSOLUTE_PROMPT, SCORE_RUBRIC_TEMPLATE
    model = Judge.load("prometheus-7b-v2.0", sequences=8, context=4096)

    judge = PrometheusEval(model=model, absolute_grade_template=ABSOLUTE_PROMPT)
    feedbacks, scores = judge.absolute_grade(
        instructions=..., responses=..., rubric=rubric, reference_answers=...
    )

The methods take prometheus-eval 0.1.20's arguments in its order, check them as it does, and
return what it returns: ``(feedbacks, scores)`` (scores 1 to 5) and ``(feedbacks, winners)``
(``"A"``/``"B"``), ``"Failed to generate feedback"`` and ``None`` where no verdict parses. The
prompts are prometheus-eval's byte for byte (its templates, system prompts and, with a
Prometheus 2 model, Mistral's chat template), rendered by the engine's own protocols. Decoding
is greedy: of ``params`` only ``max_tokens`` applies (the others sample, which this engine does
not), and an unparsed verdict is not retried (greedy decoding would repeat it).
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional, Tuple, Union

from . import Judge, _native

__all__ = [
    "PrometheusEval",
    "ABSOLUTE_PROMPT",
    "ABSOLUTE_PROMPT_WO_REF",
    "RELATIVE_PROMPT",
    "RELATIVE_PROMPT_WO_REF",
    "SCORE_RUBRIC_TEMPLATE",
    "load_rubric",
]

ABSOLUTE_PROMPT: str = _native.template("prometheus_absolute_ref")
ABSOLUTE_PROMPT_WO_REF: str = _native.template("prometheus_absolute")
RELATIVE_PROMPT: str = _native.template("prometheus_relative_ref")
RELATIVE_PROMPT_WO_REF: str = _native.template("prometheus_relative")
SCORE_RUBRIC_TEMPLATE: str = _native.SCORE_RUBRIC_TEMPLATE

_PROTOCOLS = {
    ABSOLUTE_PROMPT: "prometheus_absolute_ref",
    ABSOLUTE_PROMPT_WO_REF: "prometheus_absolute",
    RELATIVE_PROMPT: "prometheus_relative_ref",
    RELATIVE_PROMPT_WO_REF: "prometheus_relative",
}
_FAILED = "Failed to generate feedback"


def load_rubric(criteria: str, grading_format: str) -> str:
    """prometheus-eval's built-in rubric ``criteria`` (``helpfulness``, ``harmlessness``,
    ``honesty``, ``factual_validity``, ``reasoning``) for ``"absolute"`` or ``"relative"``
    grading."""
    if criteria not in ("helpfulness", "harmlessness", "honesty", "factual_validity", "reasoning"):
        raise ValueError("Invalid criteria for score rubric.")
    if grading_format not in ("absolute", "relative"):
        raise ValueError("Invalid grading format. Supported formats are: 'absolute', 'relative'")
    return _native.rubric_text(criteria, grading_format == "relative")


def _protocol(template: str, mode: str) -> str:
    protocol = _PROTOCOLS.get(template)
    if protocol is None or (mode == "absolute") != protocol.startswith("prometheus_absolute"):
        raise ValueError(
            f"webjudge renders prometheus-eval's own {mode} grading templates only "
            f"(webjudge.prometheus.{mode.upper()}_PROMPT or {mode.upper()}_PROMPT_WO_REF)"
        )
    return protocol


class PrometheusEval:
    """prometheus-eval's ``PrometheusEval`` with a :class:`webjudge.Judge` as its model."""

    def __init__(
        self,
        model: Judge,
        absolute_grade_template: str = ABSOLUTE_PROMPT_WO_REF,
        relative_grade_template: str = RELATIVE_PROMPT_WO_REF,
    ) -> None:
        if not isinstance(model, Judge):
            raise ValueError("Model does not have a valid LLM interface: give a webjudge.Judge (Judge.load(path))")
        self.model = model
        self.absolute_grade_template = absolute_grade_template
        self.relative_grade_template = relative_grade_template

    @staticmethod
    def _check_inputs(
        instructions: List[str], responses: list, rubric: Union[List[str], str], reference_answers: Optional[list]
    ) -> Tuple[List[str], list, List[str], list]:
        """prometheus-eval's checks and defaults, with its messages."""
        if len(instructions) != len(responses):
            raise ValueError("Length of instructions must match the length of responses")
        if isinstance(rubric, list) and len(rubric) != len(instructions):
            raise ValueError("Length of rubric must match the length of instructions")
        elif isinstance(rubric, str):
            rubric = [rubric] * len(instructions)
        elif not isinstance(rubric, list):
            raise ValueError("Rubric must be a string or a list of strings")
        if isinstance(reference_answers, list) and len(reference_answers) != len(instructions):
            raise ValueError("Length of reference answers must match the length of instructions")
        elif not isinstance(reference_answers, list):
            warnings.warn(
                "Reference answer was not provided. This may result in suboptimal grading performance. Consider "
                "providing a reference answer for best results."
            )
            reference_answers = [None] * len(instructions)
        return instructions, responses, rubric, reference_answers

    def _absolute_requests(
        self, instructions: List[str], responses: List[str], rubric: Union[List[str], str], reference_answers: Optional[list]
    ) -> Tuple[str, List[Dict[str, Any]]]:
        """The protocol and the test-data rows (prometheus-eval's field names) to judge."""
        protocol = _protocol(self.absolute_grade_template, "absolute")
        instructions, responses, rubric, reference_answers = self._check_inputs(
            instructions, responses, rubric, reference_answers
        )
        rows = [
            _row(protocol, {"instruction": instruction, "response": response}, rubric_, reference)
            for instruction, response, rubric_, reference in zip(instructions, responses, rubric, reference_answers)
        ]
        return protocol, rows

    def _relative_requests(
        self,
        instructions: List[str],
        responses_A: List[str],
        responses_B: List[str],
        rubric: Union[List[str], str],
        reference_answers: Optional[list],
    ) -> Tuple[str, List[Dict[str, Any]]]:
        protocol = _protocol(self.relative_grade_template, "relative")
        instructions, _, rubric, reference_answers = self._check_inputs(
            instructions, list(zip(responses_A, responses_B)), rubric, reference_answers
        )
        rows = [
            _row(protocol, {"instruction": instruction, "response_A": a, "response_B": b}, rubric_, reference)
            for instruction, a, b, rubric_, reference in zip(
                instructions, responses_A, responses_B, rubric, reference_answers
            )
        ]
        return protocol, rows

    def _grade(self, protocol: str, rows: List[Dict[str, Any]], verdict: str, params: Dict[str, Any]) -> tuple:
        max_tokens = (params or {}).get("max_tokens", 1024)
        records = self.model.judge_batch(rows, protocol=protocol, max_new_tokens=max_tokens)
        feedbacks, verdicts = [], []
        for record in records:
            value = record.get(verdict)
            feedbacks.append(_FAILED if value is None else record["critique"])
            verdicts.append(value)
        return feedbacks, verdicts

    def absolute_grade(
        self,
        *,
        instructions: List[str],
        responses: List[str],
        rubric: Union[List[str], str],
        reference_answers: Optional[List[str]] = None,
        params: Dict[str, Any] = {},
    ) -> Tuple[List[str], List[Optional[int]]]:
        """Scores each response 1 to 5 against its rubric: ``(feedbacks, scores)``."""
        protocol, rows = self._absolute_requests(instructions, responses, rubric, reference_answers)
        return self._grade(protocol, rows, "score", params)

    def relative_grade(
        self,
        *,
        instructions: List[str],
        responses_A: List[str],
        responses_B: List[str],
        rubric: Union[List[str], str],
        reference_answers: Optional[List[str]] = None,
        params: Dict[str, Any] = {},
    ) -> Tuple[List[str], List[Optional[str]]]:
        """Prefers response A or B of each pair under its rubric: ``(feedbacks, winners)``."""
        protocol, rows = self._relative_requests(instructions, responses_A, responses_B, rubric, reference_answers)
        return self._grade(protocol, rows, "winner", params)

    def single_absolute_grade(
        self,
        instruction: str,
        response: str,
        rubric: str,
        reference_answer: Optional[str] = None,
        params: Dict[str, Any] = {},
    ) -> Tuple[str, Optional[int]]:
        feedbacks, scores = self.absolute_grade(
            instructions=[instruction],
            responses=[response],
            rubric=[rubric],
            reference_answers=[reference_answer] if reference_answer else [None],
            params=params,
        )
        return feedbacks[0], scores[0]

    def single_relative_grade(
        self,
        instruction: str,
        response_A: str,
        response_B: str,
        rubric: str,
        reference_answer: Optional[str] = None,
        params: Dict[str, Any] = {},
    ) -> Tuple[str, Optional[str]]:
        feedbacks, scores = self.relative_grade(
            instructions=[instruction],
            responses_A=[response_A],
            responses_B=[response_B],
            rubric=[rubric],
            reference_answers=[reference_answer] if reference_answer else [None],
            params=params,
        )
        return feedbacks[0], scores[0]


def _row(protocol: str, fields: Dict[str, Any], rubric: str, reference: Optional[str]) -> Dict[str, Any]:
    """A row as prometheus-eval formats its template: the rubric's text as given, the reference
    answer only where the template has a place for it (prometheus-eval drops it elsewhere)."""
    row = dict(fields, rubric=rubric)
    if protocol.endswith("_ref"):
        row["reference_answer"] = reference
    return row
