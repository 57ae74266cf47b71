"""User data: tasks read from JSONL files (one JSON object per line), e.g. GSM8K-style files.

Fields of a row:
- `question` (string, required, non-empty);
- `answer` (string or number, required, non-empty): the reference answer. A GSM8K answer (a worked solution
  ending in `#### VALUE`) is split: VALUE becomes the reference and, when `golden` is absent, the worked
  solution becomes the golden answer (`gcpo.tasks.builtin.golden_from_worked_solution`);
- `golden` (string, optional): a complete response in the policy's format, so it must be well formed (one
  `<answer>...</answer>` at the end);
- `task` (string, optional, default `math`): the verifier, a key of `gcpo.tasks.verifiers.VERIFIERS`;
- any other field is kept in the item's metadata.

Blank lines are ignored. Any other malformed line raises `TaskDataError("FILE:LINE: what is wrong")`; with
`skip_bad_rows` it is skipped instead, and its message is returned (and logged as a count), never dropped
silently. Item ids are `<file name>:<line number>`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from gcpo.tasks.answers import is_well_formed
from gcpo.tasks.builtin import golden_from_worked_solution
from gcpo.tasks.types import TaskItem
from gcpo.tasks.verifiers import VERIFIERS

log = logging.getLogger(__name__)

DEFAULT_VERIFIER = "math"
_KNOWN_FIELDS = ("question", "answer", "golden", "task")


class TaskDataError(ValueError):
    """A task data file is malformed; the message starts with `FILE:LINE:`."""


@dataclass
class JsonlRows:
    """The items read from one file, and one message per skipped line."""

    items: list[TaskItem]
    skipped: list[str]


def _text_field(row: Mapping[str, Any], name: str, *, numbers: bool = False) -> str:
    value = row[name]
    if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        expected = "a string or a number" if numbers else "a string"
        raise ValueError(f"field '{name}' must be {expected}, got {type(value).__name__} {value!r:.40}")
    if not value.strip():
        raise ValueError(f"field '{name}' is empty")
    return value.strip()


def parse_row(row: Any, item_id: str) -> TaskItem:
    """One decoded JSON value -> TaskItem; ValueError saying which field is wrong (the caller adds FILE:LINE)."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    for name in ("question", "answer"):
        if name not in row:
            raise ValueError(f"missing field '{name}'")
    question = _text_field(row, "question")
    answer = _text_field(row, "answer", numbers=True)
    golden = None if row.get("golden") is None else _text_field(row, "golden")
    if "####" in answer:
        worked, answer = answer, answer.rsplit("####", 1)[1].strip()
        if not answer:
            raise ValueError("field 'answer' has nothing after '####'")
        if golden is None:
            golden = golden_from_worked_solution(worked, answer)
    if golden is not None and not is_well_formed(golden):
        raise ValueError("field 'golden' must be a response ending with one <answer>VALUE</answer>")
    verifier = DEFAULT_VERIFIER if row.get("task") is None else _text_field(row, "task")
    if verifier not in VERIFIERS:
        raise ValueError(f"field 'task': unknown verifier {verifier!r}; known: {', '.join(sorted(VERIFIERS))}")
    metadata = {k: v for k, v in row.items() if k not in _KNOWN_FIELDS}
    return TaskItem(id=item_id, question=question, answer=answer, golden=golden, verifier=verifier,
                    metadata=metadata)


def read_jsonl(path: str | Path, *, skip_bad_rows: bool = False) -> JsonlRows:
    """Read every row of `path` (see the module docstring for the rules and errors)."""
    path = Path(path)
    if not path.is_file():
        raise TaskDataError(f"{path}: task data file not found")
    items: list[TaskItem] = []
    skipped: list[str] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from None
                items.append(parse_row(row, f"{path.name}:{lineno}"))
            except ValueError as e:
                message = f"{path}:{lineno}: {e}"
                if not skip_bad_rows:
                    raise TaskDataError(message + " (set task.skip_bad_rows=true to skip bad rows)") from None
                skipped.append(message)
    if skipped:
        log.warning("%s: skipped %d bad row(s); first: %s", path, len(skipped), skipped[0])
    return JsonlRows(items, skipped)
