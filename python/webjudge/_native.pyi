"""Type stubs of the native module (src/python/): the engine's judge layer as the Python half
calls it. Rows, rubrics, records and judgements cross as JSON text."""

from typing import Callable, List, Optional, Tuple

MAX_SEQUENCES: int
SCORE_RUBRIC_TEMPLATE: str

class WebjudgeError(Exception): ...

def render(protocol_name: str, row: str, rubric_text: Optional[str] = None) -> str: ...
def parse(protocol_name: str, critique: str) -> str: ...
def report(protocol_name: str, output: bytes) -> str: ...
def protocols() -> List[str]: ...
def template(protocol_name: str) -> str: ...
def rubric_text(rubric_text: str, relative: bool) -> str: ...
def split_part_names(file_name: str) -> Optional[List[str]]: ...

class Cancel:
    def __init__(self) -> None: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...

class NativeJudge:
    @staticmethod
    def load(
        path: str,
        sequences: int = 1,
        context: Optional[int] = None,
        slot_context: Optional[int] = None,
        prefill_chunk: Optional[int] = None,
        subgroups: bool = True,
        matvec: str = "exact",
    ) -> "NativeJudge": ...
    @property
    def family(self) -> Optional[str]: ...
    @property
    def adapter(self) -> str: ...
    @property
    def sequences(self) -> int: ...
    @property
    def matvec(self) -> str: ...
    def prompt(self, protocol_name: str, row: str, rubric_text: Optional[str] = None) -> Tuple[str, List[int]]: ...
    def judge_item(
        self,
        method: str,
        query: str,
        responses: List[str],
        protocol_name: Optional[str] = None,
        rubric_text: Optional[str] = None,
        reference_answer: Optional[str] = None,
        swap: bool = False,
        max_new_tokens: int = 1024,
        truncate: bool = False,
        on_text: Optional[Callable[..., object]] = None,
        cancel: Optional[Cancel] = None,
    ) -> str: ...
    def judge_rows(
        self,
        rows: List[Tuple[int, str]],
        protocol_name: Optional[str] = None,
        rubric_text: Optional[str] = None,
        swap: bool = False,
        max_new_tokens: int = 1024,
        truncate: bool = False,
        run: Optional[str] = None,
        on_record: Optional[Callable[[str], object]] = None,
        on_text: Optional[Callable[[int, str, str], object]] = None,
        cancel: Optional[Cancel] = None,
    ) -> List[str]: ...

class FileRun:
    @staticmethod
    def open(
        input: str,
        output: str,
        model: str,
        protocol_name: Optional[str] = None,
        rubric_text: Optional[str] = None,
        swap: bool = False,
        max_new_tokens: int = 1024,
        truncate: bool = False,
        context: Optional[int] = None,
        limit: Optional[int] = None,
        matvec: str = "exact",
    ) -> "FileRun": ...
    @property
    def todo(self) -> List[Tuple[int, str]]: ...
    @property
    def done(self) -> int: ...
    @property
    def run(self) -> str: ...
    @property
    def protocol(self) -> str: ...
    @property
    def slot_context(self) -> int: ...
    @property
    def notes(self) -> List[str]: ...
    def append(self, record: str) -> None: ...
    def finish(self) -> str: ...
    def close(self) -> None: ...
