"""Do a task's rows fit the model's context? Checked when the data is loaded, never when a row is first drawn.

`fit_to_context(task, tokenizer, max_model_len=, max_new_tokens=, skip_bad_rows=)` renders every item's prompt
(`render_prompts`: chat template + system prompt) and, for a training split, its golden answer
(`render_response`, batched), and requires

- prompt + `max_new_tokens` <= `max_model_len` (a generator rejects a longer request: it is never truncated);
- prompt + golden answer <= `max_model_len` (a training split only: the golden answer is injected as a response).

A row that does not fit raises `TaskDataError` naming the row (`FILE:LINE` for a JSONL row, the task, split and
item index for a built-in one) and the lengths, with how many other rows fail too; with `skip_bad_rows` the rows
that do not fit are dropped instead, counted in the returned task's `skipped_rows`, and logged once.

The same check runs on the driver before Ray starts (`gcpo.preflight`) and where the training worker builds its
data, so a dropped row is dropped in both places. `max_model_len` is the generator's context: see
`gcpo.preflight.model_context`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from gcpo.tasks.jsonl import TaskDataError
from gcpo.tasks.prompts import render_prompts
from gcpo.tasks.types import Task, TaskItem

if TYPE_CHECKING:
    from gcpo.config import RunConfig

log = logging.getLogger(__name__)

_LINE = re.compile(r":(\d+)$")


def item_location(task: Task, index: int) -> str:
    """Where item `index` of `task` comes from: `FILE:LINE` for a JSONL row (its id ends in `:LINE`),
    else `task NAME (SPLIT split) item INDEX`."""
    item_id = task.items[index].id
    line = _LINE.search(item_id)
    if task.source and line:
        return f"{task.source}:{line.group(1)}"
    return f"task {task.name} ({task.split} split) item {index} (id {item_id})"


@dataclass(frozen=True)
class TooLong:
    """One row that does not fit: where it is and why."""

    index: int
    location: str
    reason: str

    def message(self) -> str:
        return f"{self.location}: {self.reason}"


def _fmt(n: int) -> str:
    return f"{n:,}"


def find_too_long(task: Task, prompt_ids: Sequence[Sequence[int]], golden_ids: Sequence[Sequence[int] | None], *,
                  max_model_len: int, max_new_tokens: int) -> list[TooLong]:
    """The rows of `task` that do not fit (pure: lengths are given as token ids, one entry per item; a None
    golden answer is not checked)."""
    bad: list[TooLong] = []
    for i, (prompt, golden) in enumerate(zip(prompt_ids, golden_ids)):
        p = len(prompt)
        if p + max_new_tokens > max_model_len:
            reason = (f"the prompt has {_fmt(p)} tokens + rollout.max_new_tokens {_fmt(max_new_tokens)} = "
                      f"{_fmt(p + max_new_tokens)} > the model's context of {_fmt(max_model_len)} tokens")
        elif golden is not None and p + len(golden) > max_model_len:
            reason = (f"the prompt has {_fmt(p)} tokens + the golden answer {_fmt(len(golden))} = "
                      f"{_fmt(p + len(golden))} > the model's context of {_fmt(max_model_len)} tokens")
        else:
            continue
        bad.append(TooLong(i, item_location(task, i), reason))
    return bad


def too_long_error(bad: list[TooLong], total: int) -> TaskDataError:
    """The error for rows that do not fit: the first one in full, how many in all, and the ways out."""
    more = f" ({len(bad) - 1} more of {total} rows do not fit either)" if len(bad) > 1 else ""
    return TaskDataError(f"{bad[0].message()}{more}; shorten the row, lower rollout.max_new_tokens, or set "
                         f"task.skip_bad_rows=true to skip such rows")


def render_goldens(tokenizer: Any, items: Sequence[TaskItem]) -> list[list[int] | None]:
    """`render_response` of each item's golden answer (None where it has none), in one tokenizer call."""
    texts = [it.golden for it in items if it.golden]
    ids = iter(tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else [])
    return [list(next(ids)) if it.golden else None for it in items]


def fit_to_context(task: Task, tokenizer: Any, *, max_model_len: int, max_new_tokens: int,
                   skip_bad_rows: bool = False, check_golden: bool | None = None) -> Task:
    """`task` if every row fits (see the module docstring); else TaskDataError naming the first row that does not,
    or, with `skip_bad_rows`, a copy without those rows (their count added to `skipped_rows`).
    `check_golden`: also check prompt + golden answer; default: for a training split only."""
    if not task.items:
        return task
    if check_golden is None:
        check_golden = task.split == "train"
    prompt_ids = render_prompts(tokenizer, task.items)
    golden_ids = render_goldens(tokenizer, task.items) if check_golden else [None] * len(task.items)
    bad = find_too_long(task, prompt_ids, golden_ids, max_model_len=max_model_len, max_new_tokens=max_new_tokens)
    if not bad:
        return task
    if not skip_bad_rows:
        raise too_long_error(bad, len(task.items))
    dropped = {b.index for b in bad}
    log.warning("task %s (%s split): skipped %d row(s) that do not fit the model's context (task.skip_bad_rows=true); "
                "first: %s", task.name, task.split, len(bad), bad[0].message())
    return dataclasses.replace(task, items=[it for i, it in enumerate(task.items) if i not in dropped],
                               skipped_rows=task.skipped_rows + len(bad))


def fit_task(cfg: RunConfig, task: Task, tokenizer: Any, max_model_len: int) -> Task:
    """`fit_to_context` with `cfg`'s settings (`rollout.max_new_tokens`, `task.skip_bad_rows`): the one call the
    start-up check (`gcpo.preflight`) and the training worker (`gcpo.training.data`) both make."""
    return fit_to_context(task, tokenizer, max_model_len=max_model_len, max_new_tokens=cfg.rollout.max_new_tokens,
                          skip_bad_rows=cfg.task.skip_bad_rows)
