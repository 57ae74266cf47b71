"""The data every task is made of: `TaskItem` (one question) and `Task` (one split of one task)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

Split = Literal["train", "held_out", "warmstart"]
SPLITS: tuple[Split, ...] = ("train", "held_out", "warmstart")


@dataclass(frozen=True)
class TaskItem:
    """One question with everything needed to score and to teach it.

    - `id`: stable within its task (built-ins: `<task>/<split>/<seed>/<index>`; JSONL: `<file name>:<line>`).
    - `answer`: the reference answer the verifier compares against (a string, e.g. "48" or "1/2").
    - `golden`: a complete response in the policy's format (brief reasoning, then `<answer>VALUE</answer>`),
      or None when the item has none.
    - `verifier`: the name of the verifier that scores responses (a key of `gcpo.tasks.verifiers.VERIFIERS`).
    - `metadata`: whatever the source carried (reasoning-gym metadata, extra JSONL fields); never used to score.
    """

    id: str
    question: str
    answer: str
    golden: str | None
    verifier: str
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)  # items hash by their other fields


@dataclass
class Task:
    """One split of one task: its items, the verifier its items use by default, the rows skipped on load, and
    `source`, the JSONL file its items were read from (None for a built-in task), so a row can be named
    `FILE:LINE` (`gcpo.tasks.lengths.item_location`)."""

    name: str
    split: Split
    items: list[TaskItem]
    verifier: str
    skipped_rows: int = 0
    source: str | None = None

    def __len__(self) -> int:
        return len(self.items)

    def head(self, n: int) -> "Task":
        """The same task restricted to its first `n` items (the held-out prefix used by evaluation)."""
        return Task(self.name, self.split, self.items[:n], self.verifier, self.skipped_rows, self.source)
