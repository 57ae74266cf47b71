"""Per-item held-out results: the record (`ItemResult`), the pure function that builds them from one task's
verdicts (`item_results`), their JSON table (`items_json`) and the artifact a training run logs them to at each
held-out evaluation (`items_artifact(step)`: `eval/items_step_<NNNNN>.json`). No torch here: `gcpo compare`
reads them (`gcpo.sweeps.compare`), `gcpo.evaluation` makes them.

An item's `correct` is its greedy response verified correct (0 or 1: pass@1 is their mean), `mean_at_k` the mean
accuracy of its k samples (mean@k is their mean), `format` its greedy response's format (0 or 1); `index` is its
position in the task's held-out split, `item_id` its stable id (`TaskItem.id`).
"""

from __future__ import annotations

import json
from dataclasses import astuple, dataclass, fields
from typing import Any, Sequence

ITEMS_ARTIFACT = "eval/items_step_{step:05d}.json"


def items_artifact(step: int) -> str:
    """The artifact path of the per-item results of the evaluation logged at `step`."""
    return ITEMS_ARTIFACT.format(step=step)


@dataclass(frozen=True)
class ItemResult:
    """One held-out item's result in one evaluation (see the module docstring)."""

    task: str
    index: int
    item_id: str
    correct: float
    mean_at_k: float | None  # None: greedy only (an intermediate evaluation with trainer.eval_intermediate=greedy)
    format: float


ITEM_COLUMNS = [f.name for f in fields(ItemResult)]


def item_results(task: str, items: Sequence[Any], greedy: Sequence[Any], sampled: Sequence[Any],
                 k: int) -> tuple[ItemResult, ...]:
    """Per-item results from the verdicts of one task's evaluation: `greedy`, one verdict per item; `sampled`,
    k per item, item by item (as `evaluate_task` asks for them; k = 0: none, `mean_at_k` None). Verdicts need
    `accuracy` and `format`."""
    if len(greedy) != len(items) or len(sampled) != k * len(items):
        raise ValueError(f"{len(items)} items need {len(items)} greedy and {k * len(items)} sampled verdicts, "
                         f"got {len(greedy)} and {len(sampled)}")
    return tuple(
        ItemResult(task, i, item.id, float(g.accuracy),
                   sum(v.accuracy for v in sampled[i * k:(i + 1) * k]) / k if k else None, float(g.format))
        for i, (item, g) in enumerate(zip(items, greedy))
    )


def items_json(items: Sequence[ItemResult]) -> str:
    """Items as a JSON table (`{"columns": [...], "data": [[...], ...]}`, MLflow's table layout;
    `pandas.DataFrame(data, columns=columns)` reads it back)."""
    return json.dumps({"columns": ITEM_COLUMNS, "data": [list(astuple(item)) for item in items]}) + "\n"
