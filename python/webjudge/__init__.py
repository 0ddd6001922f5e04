"""webjudge: LLM judges (Auto-J, Prometheus 2, Skywork-Critic, Selene Mini, CompassJudger-1,
Flow-Judge) on any GPU wgpu drives (Vulkan, Metal, DX12), from Python.

The same engine as the ``webjudge`` CLI and the browser build, through its native module:

- :class:`Judge` loads a model as ``webjudge judge --model`` does (or a GGUF file by URL,
  downloaded into a cache by :mod:`webjudge.hub`) and judges one item
  (:meth:`Judge.pairwise`, :meth:`Judge.single`, :meth:`Judge.rubric`, :meth:`Judge.compare`)
  or many rows together (:meth:`Judge.judge_batch`, :meth:`Judge.iter_batch`) into the CLI's
  judgement records;
- :func:`render` and :func:`parse` are the judges' prompts and verdict parsers, without a model;
- :mod:`webjudge.prometheus` is prometheus-eval's ``PrometheusEval`` on this engine;
- :mod:`webjudge.ray` spreads a whole test set over Ray Data actors (``webjudge[ray]``).

Errors are :class:`WebjudgeError` with the CLI's messages (a download's: :class:`DownloadError`,
:class:`HashMismatch`).
"""

from __future__ import annotations

import json
import queue
import threading
from os import PathLike
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

from . import _native, hub
from ._native import Cancel, WebjudgeError
from .hub import DownloadError, HashMismatch

__all__ = [
    "Judge", "Cancel", "WebjudgeError", "DownloadError", "HashMismatch", "render", "parse", "report", "protocols",
    "MAX_SEQUENCES",
]  # fmt: skip

#: The most sequences the engine decodes together.
MAX_SEQUENCES: int = _native.MAX_SEQUENCES
#: Critique tokens at most, unless a call says otherwise (Auto-J's own limit).
MAX_NEW_TOKENS: int = 1024

Row = Mapping[str, Any]
Rubric = Union[str, Mapping[str, Any]]


def _rubric(rubric: Optional[Rubric]) -> Optional[str]:
    """A rubric as the engine takes it: a name or text as is, a rubric's fields as JSON."""
    if rubric is None or isinstance(rubric, str):
        return rubric
    return json.dumps(rubric)


def render(protocol: str, row: Row, *, rubric: Optional[Rubric] = None) -> str:
    """The model input for a test-data ``row`` (Auto-J's ``prompt``/``response 1``/``response
    2``, prometheus-eval's ``instruction``/``response_A``/``response_B``, … as the CLI reads
    them) under ``protocol``, in LLaMA-2's ``[INST] … [/INST]`` wrapper: what ``webjudge
    prompt --protocol PROTOCOL`` writes. ``rubric`` serves a row without its own."""
    return _native.render(protocol, json.dumps(row), _rubric(rubric))


def parse(protocol: str, critique: str) -> dict:
    """The verdict a critique states under ``protocol``, as ``webjudge parse`` writes it:
    ``{"winner": …}``, ``{"rating": …}``, ``{"score": …}`` or ``{"answer": …}``."""
    return json.loads(_native.parse(protocol, critique))


def report(protocol: str, records: Union[bytes, str, Iterable[Mapping[str, Any]]]) -> str:
    """The judge's metrics over records (an output file's bytes or text, or record dicts), as
    ``webjudge judge --input`` prints them at the end."""
    if isinstance(records, str):
        data = records.encode()
    elif isinstance(records, bytes):
        data = records
    else:
        data = "".join(json.dumps(record) + "\n" for record in records).encode()
    return _native.report(protocol, data)


def protocols() -> list:
    """Every protocol's name."""
    return list(_native.protocols())


class Judge:
    """A judge model on the GPU. Calls release the GIL while generating and stop between tokens
    on Ctrl-C (``KeyboardInterrupt``) or a :class:`Cancel`; one call at a time per judge."""

    def __init__(self, native: "_native.NativeJudge") -> None:
        self._native = native

    @classmethod
    def load(
        cls,
        path: Union[str, "PathLike[str]"],
        *,
        sha256: Optional[str] = None,
        on_progress: Optional[hub.Progress] = None,
        sequences: int = 1,
        context: Optional[int] = None,
        slot_context: Optional[int] = None,
        prefill_chunk: Optional[int] = None,
        subgroups: bool = True,
        matvec: str = "exact",
    ) -> "Judge":
        """Loads a model as ``webjudge judge --model PATH`` does: a model directory that
        ``webjudge convert`` wrote, or a GGUF file (a split model by any of its parts). A GGUF
        file's URL (a Hugging Face Hub ``…/resolve/REV/NAME.gguf`` link, or any server with byte
        ranges) is downloaded into the cache first and loaded from there (:mod:`webjudge.hub`:
        resumed when broken, checked against the host's sha256 or ``sha256``, downloaded again
        only when the host's file changes); ``on_progress(done_bytes, total_bytes)`` follows the
        download. ``sequences``: rows decoded together (KV cache slots, at most
        :data:`MAX_SEQUENCES`; fewer where the adapter's buffers cannot hold them); ``context``:
        KV positions per slot, as ``--context`` (default: ``slot_context``, at most the model's
        context, else the model's); ``prefill_chunk`` as ``--prefill-chunk`` (default: 512 on a
        GPU, 128 on a CPU adapter); ``subgroups=False`` as ``--no-subgroups``; ``matvec="int8"``
        as ``--matvec int8`` (x quantized to 8 bits in the decode matvecs: a small error,
        measured in docs/quantization.md)."""
        native = _native.NativeJudge.load(
            hub.local_path(path, sha256=sha256, on_progress=on_progress),
            sequences=sequences,
            context=context,
            slot_context=slot_context,
            prefill_chunk=prefill_chunk,
            subgroups=subgroups,
            matvec=matvec,
        )
        return cls(native)

    @property
    def family(self) -> Optional[str]:
        """The model's judge family (its manifest's): ``autoj``, ``prometheus``, … or ``None``."""
        return self._native.family

    @property
    def adapter(self) -> str:
        """The GPU adapter the model runs on."""
        return self._native.adapter

    @property
    def sequences(self) -> int:
        """Rows decoded together."""
        return self._native.sequences

    @property
    def matvec(self) -> str:
        """How the decode matvecs multiply x: ``exact`` or ``int8``."""
        return self._native.matvec

    def prompt(self, row: Row, *, protocol: str, rubric: Optional[Rubric] = None) -> tuple:
        """The exact model input for ``row`` in the model's chat template and the token ids the
        judge feeds for it (``webjudge prompt --model DIR --ids``)."""
        text, ids = self._native.prompt(protocol, json.dumps(row), _rubric(rubric))
        return text, list(ids)

    def _item(
        self,
        method: str,
        query: str,
        responses: Sequence[str],
        *,
        protocol: Optional[str],
        rubric: Optional[Rubric],
        reference_answer: Optional[str],
        swap: bool,
        max_new_tokens: int,
        truncate: bool,
        on_text: Optional[Callable[..., Any]],
        cancel: Optional[Cancel],
    ) -> dict:
        judged = self._native.judge_item(
            method,
            query,
            list(responses),
            protocol_name=protocol,
            rubric_text=_rubric(rubric),
            reference_answer=reference_answer,
            swap=swap,
            max_new_tokens=max_new_tokens,
            truncate=truncate,
            on_text=on_text,
            cancel=cancel,
        )
        return json.loads(judged)

    def pairwise(
        self,
        query: str,
        response1: str,
        response2: str,
        *,
        protocol: Optional[str] = None,
        swap: bool = False,
        max_new_tokens: int = MAX_NEW_TOKENS,
        truncate: bool = False,
        on_text: Optional[Callable[..., Any]] = None,
        cancel: Optional[Cancel] = None,
    ) -> dict:
        """Judges which response is better, as ``webjudge judge --query Q --response1 A
        --response2 B`` (Auto-J's ``pairwise_tie`` unless ``protocol`` names another). Returns
        the judgement (``winner``, ``critique``, token counts, speeds); with ``swap`` the pair
        is judged in both orders too. ``on_text(piece)`` (with ``swap``: ``on_text(piece,
        order)``) receives the critique as it is generated."""
        return self._item(
            "pairwise", query, [response1, response2], protocol=protocol, rubric=None, reference_answer=None,
            swap=swap, max_new_tokens=max_new_tokens, truncate=truncate, on_text=on_text, cancel=cancel,
        )  # fmt: skip

    def single(
        self,
        query: str,
        response: str,
        *,
        protocol: Optional[str] = None,
        max_new_tokens: int = MAX_NEW_TOKENS,
        truncate: bool = False,
        on_text: Optional[Callable[..., Any]] = None,
        cancel: Optional[Cancel] = None,
    ) -> dict:
        """Rates one response 1 to 10 (Auto-J's ``single``): the judgement with ``rating``."""
        return self._item(
            "single", query, [response], protocol=protocol, rubric=None, reference_answer=None,
            swap=False, max_new_tokens=max_new_tokens, truncate=truncate, on_text=on_text, cancel=cancel,
        )  # fmt: skip

    def rubric(
        self,
        query: str,
        response: str,
        *,
        rubric: Rubric,
        reference_answer: Optional[str] = None,
        protocol: Optional[str] = None,
        max_new_tokens: int = MAX_NEW_TOKENS,
        truncate: bool = False,
        on_text: Optional[Callable[..., Any]] = None,
        cancel: Optional[Cancel] = None,
    ) -> dict:
        """Scores one response against a rubric (Prometheus 2's absolute grading, or the model's
        own rubric protocol): the judgement with ``score``. ``rubric``: a built-in name
        (``helpfulness``, …), a rubric's text, or its fields as a dict (``criteria``,
        ``score1_description`` … ``score5_description``), as ``--rubric`` takes them."""
        return self._item(
            "rubric", query, [response], protocol=protocol, rubric=rubric, reference_answer=reference_answer,
            swap=False, max_new_tokens=max_new_tokens, truncate=truncate, on_text=on_text, cancel=cancel,
        )  # fmt: skip

    def compare(
        self,
        query: str,
        response1: str,
        response2: str,
        *,
        rubric: Optional[Rubric] = None,
        reference_answer: Optional[str] = None,
        protocol: Optional[str] = None,
        swap: bool = False,
        max_new_tokens: int = MAX_NEW_TOKENS,
        truncate: bool = False,
        on_text: Optional[Callable[..., Any]] = None,
        cancel: Optional[Cancel] = None,
    ) -> dict:
        """Prefers one of two responses under a rubric (Prometheus 2's relative grading, or the
        model's own pairwise protocol): the judgement with ``winner`` ``"A"`` or ``"B"``."""
        return self._item(
            "compare", query, [response1, response2], protocol=protocol, rubric=rubric,
            reference_answer=reference_answer, swap=swap, max_new_tokens=max_new_tokens, truncate=truncate,
            on_text=on_text, cancel=cancel,
        )  # fmt: skip

    def judge_batch(
        self,
        rows: Iterable[Row],
        *,
        batch_size: Optional[int] = None,
        protocol: Optional[str] = None,
        rubric: Optional[Rubric] = None,
        swap: bool = False,
        max_new_tokens: int = MAX_NEW_TOKENS,
        truncate: bool = False,
        on_record: Optional[Callable[[dict], Any]] = None,
        on_text: Optional[Callable[[int, str, str], Any]] = None,
        cancel: Optional[Cancel] = None,
    ) -> list:
        """Judges test-data rows (dicts, as ``webjudge judge --input`` reads a file's lines;
        row ``i`` is index ``i``) together, up to the judge's :attr:`sequences` at a time, and
        returns their records in row order: the CLI's output records (``index``, ``scenario``,
        ``label``, the judgement's fields or ``error``, ``run``) as dicts. The protocol is
        ``protocol``, else chosen from the first row and the model as the CLI chooses it.
        ``batch_size`` rows are handed to the engine at a time (default: all).
        ``on_record(record)`` gets each record as its row finishes, ``on_text(index, order,
        piece)`` the critiques as they are generated."""
        lines = [json.dumps(row) for row in rows]
        step = batch_size or max(len(lines), 1)
        records: list = []
        for start in range(0, len(lines), step):
            chunk = list(enumerate(lines[start : start + step], start))

            def text(position: int, order: str, piece: str, chunk: list = chunk) -> None:
                if on_text is not None:
                    on_text(chunk[position][0], order, piece)

            judged = self._native.judge_rows(
                chunk,
                protocol_name=protocol,
                rubric_text=_rubric(rubric),
                swap=swap,
                max_new_tokens=max_new_tokens,
                truncate=truncate,
                on_record=None if on_record is None else (lambda line: on_record(json.loads(line))),
                on_text=text if on_text is not None else None,
                cancel=cancel,
            )
            records.extend(json.loads(line) for line in judged)
        return records

    def iter_batch(self, rows: Iterable[Row], **options: Any) -> Iterator[dict]:
        """:meth:`judge_batch` as an iterator of records in the order rows finish. Judging runs
        in a thread; leaving the loop early (``break``, an exception, Ctrl-C) cancels it."""
        finished: "queue.Queue[Any]" = queue.Queue()
        cancel = Cancel()
        done = object()

        def work() -> None:
            try:
                self.judge_batch(rows, on_record=finished.put, cancel=cancel, **options)
            except BaseException as error:  # handed to the consumer, raised there
                finished.put(error)
            finished.put(done)

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        try:
            while True:
                # A timeout, so that Ctrl-C reaches this thread while it waits.
                try:
                    item = finished.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is done:
                    return
                if isinstance(item, BaseException):
                    if cancel.cancelled:
                        return
                    raise item
                yield item
        finally:
            cancel.cancel()
            worker.join()
