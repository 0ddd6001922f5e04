"""Whole test sets over many GPUs and machines with Ray Data (``pip install webjudge[ray]``).

:func:`judge_file` is ``webjudge judge --input INPUT --output OUTPUT`` spread over Ray actors:
the process that calls it reads the input, chooses the protocol and opens the output exactly
as the CLI does (locked, resumed: rows an earlier run judged are skipped), hands the rows still
to judge to ``ray.data`` ``map_batches`` over :class:`JudgePredictor` actors (each loads the
judge once and judges its batches with the batching engine, one actor per GPU with
``num_gpus=1``, or one per machine on CPU adapters), appends each record as its batch comes
back, and at the end puts the output in input order and returns the CLI's report. A run that
is killed loses only rows in flight; running it again judges the rest.
"""

from __future__ import annotations

import sys
from os import PathLike
from typing import Any, Dict, Optional, Union

import numpy as np
import ray

from . import MAX_SEQUENCES, Judge, _native, _rubric, hub

__all__ = ["JudgePredictor", "judge_file"]

Path = Union[str, "PathLike[str]"]


class JudgePredictor:
    """A callable class for ``Dataset.map_batches``: loads the judge once per actor and judges
    each batch of rows (columns ``index``: the row's index in the input, ``line``: its JSON
    line) with the run's options (``run``: a record's ``run``, as :attr:`FileRun.run` gives it),
    returning columns ``index`` and ``record`` (each record's JSON line, as the CLI writes it)."""

    def __init__(
        self,
        model: Path,
        run: str,
        *,
        sequences: int = MAX_SEQUENCES,
        slot_context: Optional[int] = None,
        context: Optional[int] = None,
        subgroups: bool = True,
        matvec: str = "exact",
    ) -> None:
        self.judge = Judge.load(
            model,
            sequences=sequences,
            slot_context=slot_context,
            context=context,
            subgroups=subgroups,
            matvec=matvec,
        )
        self.run = run

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        rows = [(int(index), str(line)) for index, line in zip(batch["index"], batch["line"])]
        records = self.judge._native.judge_rows(rows, run=self.run)
        indices = sorted(index for index, _ in rows)
        return {"index": np.array(indices, dtype=np.int64), "record": np.array(records, dtype=object)}


def judge_file(
    input: Path,
    output: Path,
    model: Path,
    *,
    sha256: Optional[str] = None,
    protocol: Optional[str] = None,
    rubric: Optional[Any] = None,
    swap: bool = False,
    max_new_tokens: int = 1024,
    truncate: bool = False,
    context: Optional[int] = None,
    limit: Optional[int] = None,
    batch_size: int = MAX_SEQUENCES,
    concurrency: int = 1,
    num_gpus: float = 0,
    num_cpus: float = 1,
    subgroups: bool = True,
    matvec: str = "exact",
    ray_remote_args: Optional[Dict[str, Any]] = None,
) -> str:
    """Judges every row of ``input`` (a test-data JSONL file) into ``output`` with ``model`` on
    ``concurrency`` Ray actors (``num_gpus``/``num_cpus`` each), ``batch_size`` rows per batch,
    and returns the report ``webjudge judge`` prints. The options are the CLI's flags of the
    same names. Connects to Ray as ``ray.data`` does (``ray.init()`` first to choose the
    cluster). The model path must be readable where the driver and every actor run. A GGUF
    file's URL (``sha256``: its expected hash, as :meth:`Judge.load` takes it) is downloaded once,
    by this process, into its cache (:mod:`webjudge.hub`), and the actors load that copy: on
    several machines, ``WEBJUDGE_CACHE`` must name a folder they share."""
    model = hub.local_path(model, sha256=sha256)
    run = _native.FileRun.open(
        str(input),
        str(output),
        model,
        protocol_name=protocol,
        rubric_text=_rubric(rubric),
        swap=swap,
        max_new_tokens=max_new_tokens,
        truncate=truncate,
        context=context,
        limit=limit,
        matvec=matvec,
    )
    for note in run.notes:
        print(note, file=sys.stderr)
    todo = run.todo
    if run.done:
        print(f"resuming {output}: {run.done} rows already judged, {len(todo)} to go", file=sys.stderr)
    try:
        if todo:
            orders = 2 if swap else 1
            sequences = min(batch_size * orders, MAX_SEQUENCES, len(todo) * orders)
            rows = ray.data.from_items([{"index": index, "line": line} for index, line in todo])
            judged = rows.map_batches(
                JudgePredictor,
                fn_constructor_kwargs={
                    "model": model,
                    "run": run.run,
                    "sequences": sequences,
                    "slot_context": run.slot_context,
                    "context": context,
                    "subgroups": subgroups,
                    "matvec": matvec,
                },
                batch_size=batch_size,
                concurrency=concurrency,
                num_gpus=num_gpus,
                num_cpus=num_cpus,
                batch_format="numpy",
                **(ray_remote_args or {}),
            )
            # Records are written as batches come back, so a killed run keeps them.
            for batch in judged.iter_batches(batch_size=None, batch_format="numpy"):
                for record in batch["record"]:
                    run.append(str(record))
    except BaseException:
        run.close()
        raise
    return run.finish()
