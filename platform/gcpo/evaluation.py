"""Held-out evaluation: pass@1 (greedy) and mean@k (sampled) per task, plus format rate and response length.

`evaluate(engine, tokenizer, tasks, eval_size=, k=, max_new_tokens=)` runs, for each task's first `eval_size`
items (`evaluate_config(engine, tokenizer, cfg)` takes all of these from a run config):
- pass@1: one greedy response (temperature 0) per item; the fraction verified correct;
- mean@k: `k` samples per item at temperature 1, top-p 1 (the policy's own distribution); the mean accuracy
  over all k x items samples (an unbiased estimate of the per-sample accuracy, not pass@k); `k = 0` asks for
  greedy responses alone (no mean@k metric; an item's `mean_at_k` is None): a training run's intermediate
  evaluations with `trainer.eval_intermediate=greedy`;
- format_rate and response_length: over the greedy responses (deterministic, so runs compare exactly);
  length in generated tokens;
- timeouts: verifications that timed out (scored 0), greedy and sampled together.
Generation stops at `stop` (default `</answer>`, as in training). The engine is any `RolloutEngine` (the vLLM
pool or the transformers fallback); verification runs in a `VerifierPool` (the caller's, or a temporary one).

MLflow rejects `@` in metric names, so metrics are `eval/<task>/pass_at_1` and `eval/<task>/mean_at_<k>`
(the table shows `pass@1`, `mean@<k>`), plus `eval/<task>/format_rate`, `.../response_length`, `.../timeouts`.

Per item (`ItemResult`, `TaskEval.item_results`, `EvalResult.items_json`): the task, the item's index in the
held-out split and its id, `correct` (its greedy response verified correct: pass@1's term, 0 or 1), `mean_at_k`
(the mean accuracy of its k samples) and `format` (its greedy response's format); `gcpo.eval_items` defines
them. A training run logs them at each held-out evaluation as `eval/items_step_<NNNNN>.json`; `gcpo compare`
reads the final one to bootstrap over items (`gcpo.sweeps.stats`).
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from gcpo.config import RunConfig
from gcpo.eval_items import ItemResult, item_results, items_json
from gcpo.rollout.types import RolloutEngine, SamplingSettings, generate_many
from gcpo.tasks.pool import VerifierPool
from gcpo.tasks.prompts import SYSTEM_PROMPT, render_prompts
from gcpo.tasks.types import Task


@dataclass(frozen=True)
class TaskEval:
    """One task's scores, and its items' (`item_results`, empty where not recorded)."""

    task: str
    items: int
    k: int
    pass_at_1: float
    mean_at_k: float
    format_rate: float
    response_length: float
    timeouts: int
    seconds: float
    item_results: tuple[ItemResult, ...] = field(default=(), repr=False)

    def metrics(self, prefix: str = "eval") -> dict[str, float]:
        """MLflow metrics; no `mean_at_<k>` when greedy only (k = 0)."""
        base = f"{prefix}/{self.task}/"
        sampled = {f"{base}mean_at_{self.k}": self.mean_at_k} if self.k else {}
        return {
            f"{base}pass_at_1": self.pass_at_1,
            **sampled,
            f"{base}format_rate": self.format_rate,
            f"{base}response_length": self.response_length,
            f"{base}timeouts": float(self.timeouts),
        }

    def row(self) -> dict[str, Any]:
        sampled = {f"mean@{self.k}": round(self.mean_at_k, 4)} if self.k else {}
        return {
            "task": self.task, "items": self.items, "pass@1": round(self.pass_at_1, 4), **sampled,
            "format_rate": round(self.format_rate, 4), "response_length": round(self.response_length, 1),
            "timeouts": self.timeouts, "seconds": round(self.seconds, 1),
        }


@dataclass(frozen=True)
class EvalResult:
    """Every task's scores, as metrics (MLflow names), rows (CSV / JSON) or a Markdown table."""

    tasks: list[TaskEval]

    def metrics(self, prefix: str = "eval") -> dict[str, float]:
        out: dict[str, float] = {}
        for t in self.tasks:
            out.update(t.metrics(prefix))
        return out

    def rows(self) -> list[dict[str, Any]]:
        return [t.row() for t in self.tasks]

    def table(self) -> str:
        rows = self.rows()
        if not rows:
            return "(no tasks)"
        headers = list(rows[0])
        cells = [[str(r.get(h, "")) for h in headers] for r in rows]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]

        def line(values: list[str]) -> str:
            return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"

        return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(c) for c in cells)])

    def items(self) -> list[ItemResult]:
        """Every task's per-item results, task by task."""
        return [item for t in self.tasks for item in t.item_results]

    def items_json(self) -> str:
        """The per-item results as a JSON table (`{"columns": [...], "data": [[...], ...]}`, MLflow's table
        layout; `pandas.DataFrame(data, columns=columns)` reads it back)."""
        return items_json(self.items())

    def csv(self) -> str:
        """The rows as CSV text (header line first)."""
        buffer = io.StringIO()
        rows = self.rows()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["task"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()


def evaluate_task(engine: RolloutEngine, tokenizer: Any, task: Task, pool: VerifierPool, *, k: int,
                  max_new_tokens: int, stop: Sequence[str] = ("</answer>",), seed: int | None = None,
                  system_prompt: str = SYSTEM_PROMPT) -> TaskEval:
    """Score every item of `task` (see the module docstring)."""
    start = time.monotonic()
    items = task.items
    prompts = render_prompts(tokenizer, items, system_prompt)
    jobs = [(prompts, SamplingSettings(n=1, temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens,
                                       stop=tuple(stop)))]
    if k:
        jobs.append((prompts, SamplingSettings(n=k, temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens,
                                               stop=tuple(stop), seed=seed)))
    greedy, *rest = generate_many(engine, jobs)  # one call where the engine can: the two passes share decode steps
    sampled = rest[0] if rest else []
    greedy_texts = [r.completions[0].text for r in greedy]
    sampled_texts = [c.text for r in sampled for c in r.completions]
    batch = pool.verify(greedy_texts + sampled_texts, list(items) + [item for item in items for _ in range(k)])
    g, s = batch.verdicts[: len(items)], batch.verdicts[len(items) :]
    per_item = item_results(task.name, items, g, s, k)
    n = max(len(items), 1)
    return TaskEval(
        task=task.name, items=len(items), k=k,
        pass_at_1=sum(r.correct for r in per_item) / n,
        mean_at_k=sum(r.mean_at_k for r in per_item) / n if k else float("nan"),
        format_rate=sum(r.format for r in per_item) / n,
        response_length=sum(len(r.completions[0].token_ids) for r in greedy) / n,
        timeouts=batch.timeouts, seconds=time.monotonic() - start, item_results=per_item,
    )


def evaluate(
    engine: RolloutEngine,
    tokenizer: Any,
    tasks: Sequence[Task],
    *,
    eval_size: int | None = None,
    k: int = 4,
    max_new_tokens: int = 96,
    stop: Sequence[str] = ("</answer>",),
    seed: int | None = None,
    pool: VerifierPool | None = None,
    verify_timeout_s: float = 5.0,
    system_prompt: str = SYSTEM_PROMPT,
) -> EvalResult:
    """pass@1 and mean@k of `engine` on the first `eval_size` items (all if None) of each task. `seed` fixes
    the mean@k samples (`SamplingSettings.seed`: the same draws at every evaluation of a run, so successive
    evaluations differ only through the weights); None draws from the engine's own stream. A temporary
    `VerifierPool(timeout_s=verify_timeout_s)` is used when `pool` is None (the format weight plays no part:
    accuracy and format are reported apart). `k = 0`: greedy responses only."""
    if k < 0:
        raise ValueError(f"k must be >= 0 (mean@k samples per item; 0 = greedy only), got {k}")
    own_pool = pool is None
    pool = pool or VerifierPool(timeout_s=verify_timeout_s)
    try:
        return EvalResult([
            evaluate_task(engine, tokenizer, task if eval_size is None else task.head(eval_size), pool, k=k,
                          max_new_tokens=max_new_tokens, stop=stop, seed=seed, system_prompt=system_prompt)
            for task in tasks
        ])
    finally:
        if own_pool:
            pool.close()


def evaluate_config(engine: RolloutEngine, tokenizer: Any, cfg: RunConfig, *, tasks: Sequence[Task] | None = None,
                    pool: VerifierPool | None = None, greedy_only: bool = False) -> EvalResult:
    """`evaluate` with a run config's settings: the held-out split of `cfg.task` (or `tasks`),
    `task.eval_size`, `trainer.eval_k`, `rollout.max_new_tokens`, `rollout.stop`, `rollout.seed` (the mean@k
    draws), `task.verify_timeout_s`. Pass `tasks` and `pool` when evaluating repeatedly (a training run), so the
    held-out split is built once and no verifier workers are started per call; `greedy_only`: no sampled answers
    (k = 0)."""
    from gcpo.tasks.loading import held_out_tasks

    return evaluate(engine, tokenizer, tasks if tasks is not None else held_out_tasks(cfg.task),
                    eval_size=cfg.task.eval_size, k=0 if greedy_only else cfg.trainer.eval_k,
                    max_new_tokens=cfg.rollout.max_new_tokens, stop=cfg.rollout.stop, seed=cfg.rollout.seed, pool=pool,
                    verify_timeout_s=cfg.task.verify_timeout_s)
