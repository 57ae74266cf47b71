"""Golden answers: checking them, and generating missing ones with a larger local model (the paper's
"reference from a larger model" setting).

`generate_golden_answers(task, engine, tokenizer, pool, model_id=...)`: for every item without a golden answer,
sample `samples` responses from `engine` (a RolloutEngine serving the larger model; `tokenizer` is *that*
model's, so its own chat template renders the same system prompt and question), score them with the item's
verifier, and keep the first candidate, in sample order, that is both correct and well formed. Choices:
- sampling (default temperature 0.7, top-p 1) rather than greedy, so several distinct tries per item;
- an item with no accepted candidate keeps `golden=None` and counts as rejected;
- the cache is one JSON file per (task name, model id) under `<cache>/golden/`, mapping item id ->
  {"question", "golden" (or null when rejected)}; an entry is reused only if its question text is unchanged,
  so the cache is keyed by task + model + item id. Rejections are cached too: a rerun asks the model nothing it
  already answered. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcpo.tasks.pool import VerifierPool
from gcpo.tasks.prompts import SYSTEM_PROMPT, render_prompts
from gcpo.tasks.types import Task, TaskItem

if TYPE_CHECKING:
    from gcpo.rollout.types import RolloutEngine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GoldenCheck:
    """How many items' golden answers pass their own verifier, and the ids of those that fail."""

    passed: int
    failed_ids: list[str]
    missing: int


def check_golden_answers(task: Task, pool: VerifierPool) -> GoldenCheck:
    """Score every item's golden answer with the item's verifier (accuracy and format must both be 1)."""
    pairs = [(item, golden) for item in task.items if (golden := item.golden) is not None]
    verdicts = pool.verify([golden for _, golden in pairs], [item for item, _ in pairs]).verdicts
    failed = [item.id for (item, _), v in zip(pairs, verdicts) if not (v.accuracy == 1.0 and v.format == 1.0)]
    return GoldenCheck(passed=len(pairs) - len(failed), failed_ids=failed, missing=len(task.items) - len(pairs))


@dataclass(frozen=True)
class GoldenReport:
    """What `generate_golden_answers` did. `accepted` + `rejected` = `requested` (items lacking a golden);
    `from_cache` of them were decided by an earlier run, `generated` were sent to the model now."""

    model_id: str
    requested: int
    accepted: int
    rejected: int
    from_cache: int
    generated: int
    cache_path: Path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[-60:] or "model"


def golden_cache_path(cache_dir: str | Path, task_name: str, model_id: str) -> Path:
    """`<cache_dir>/golden/<task>--<model slug>-<hash of model id>.json` (the hash tells apart paths whose
    slugs collide)."""
    digest = hashlib.sha1(model_id.encode()).hexdigest()[:10]
    return Path(cache_dir) / "golden" / f"{_slug(task_name)}--{_slug(model_id)}-{digest}.json"


def _read_cache(path: Path, task_name: str, model_id: str) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("task") != task_name or data.get("model") != model_id:
        raise ValueError(f"{path}: golden cache of task {data.get('task')!r} / model {data.get('model')!r}, "
                         f"expected {task_name!r} / {model_id!r}")
    return dict(data["entries"])


def _write_cache(path: Path, task_name: str, model_id: str, entries: dict[str, dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"task": task_name, "model": model_id, "entries": entries}, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def generate_golden_answers(
    task: Task,
    engine: "RolloutEngine",
    tokenizer: Any,
    pool: VerifierPool,
    *,
    model_id: str,
    cache_dir: str | Path | None = None,
    samples: int = 4,
    temperature: float = 0.7,
    max_new_tokens: int = 256,
    system_prompt: str = SYSTEM_PROMPT,
) -> tuple[Task, GoldenReport]:
    """`task` with golden answers filled in where the larger model found a verified one (see the module
    docstring), and the report. `model_id` names the model in the cache key (its path or name);
    `cache_dir` defaults to `gcpo.models.cache_dir()`."""
    from gcpo.rollout.types import SamplingSettings

    if cache_dir is None:
        from gcpo.models import cache_dir as default_cache_dir

        cache_dir = default_cache_dir()
    path = golden_cache_path(cache_dir, task.name, model_id)
    entries = _read_cache(path, task.name, model_id)
    lacking = [item for item in task.items if item.golden is None]
    cached = [item for item in lacking if entries.get(item.id, {}).get("question") == item.question]
    cached_ids = {item.id for item in cached}
    todo = [item for item in lacking if item.id not in cached_ids]
    if todo:
        settings = SamplingSettings(n=samples, temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens,
                                    stop=("</answer>",))
        results = engine.generate(render_prompts(tokenizer, todo, system_prompt), settings)
        texts = [c.text.strip() for r in results for c in r.completions]
        pairs = [item for item, r in zip(todo, results) for _ in r.completions]
        verdicts = pool.verify(texts, pairs).verdicts
        for i, item in enumerate(todo):
            golden = None
            for text, v in zip(texts[i * samples : (i + 1) * samples], verdicts[i * samples : (i + 1) * samples]):
                if v.accuracy == 1.0 and v.format == 1.0:
                    golden = text
                    break
            entries[item.id] = {"question": item.question, "golden": golden}
        _write_cache(path, task.name, model_id, entries)
    filled: list[TaskItem] = [
        replace(item, golden=entries[item.id]["golden"]) if item.golden is None else item for item in task.items
    ]
    accepted = sum(entries[item.id]["golden"] is not None for item in lacking)
    report = GoldenReport(model_id=model_id, requested=len(lacking), accepted=accepted,
                          rejected=len(lacking) - accepted, from_cache=len(cached), generated=len(todo),
                          cache_path=path)
    log.info("golden answers for %s from %s: %d accepted, %d rejected (%d from cache)", task.name, model_id,
             report.accepted, report.rejected, report.from_cache)
    return replace(task, items=filled), report
