"""One entry point from config to tasks: `load_splits(cfg.task)` -> (train, held_out).

- A built-in name (`gcpo.tasks.builtin.BUILTIN_TASKS`): generated offline, see that module for the splits.
- `jsonl`: rows of `task.path` (see `gcpo.tasks.jsonl`). With `task.eval_path`, that file is the held-out
  split; without it, `eval_size` rows drawn with `random.Random(seed)` are held out (kept in file order).
  Train keeps the remaining rows, in file order, minus any whose question is also held out, capped at
  `train_size` (the cap is logged). Bad rows raise, or are skipped and counted in `Task.skipped_rows`.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path

from gcpo.config import ConfigError, TaskConfig
from gcpo.tasks.builtin import BUILTIN_TASKS, builtin_held_out, builtin_splits
from gcpo.tasks.jsonl import DEFAULT_VERIFIER, read_jsonl
from gcpo.tasks.types import Split, Task

log = logging.getLogger(__name__)


def task_names() -> list[str]:
    """Names `task.name` accepts: the built-ins, then `jsonl`."""
    return [*BUILTIN_TASKS, "jsonl"]


def _jsonl_splits(cfg: TaskConfig) -> tuple[Task, Task]:
    if not cfg.path:
        raise ConfigError("task.path: required when task.name is 'jsonl'")
    name = Path(cfg.path).stem
    rows = read_jsonl(cfg.path, skip_bad_rows=cfg.skip_bad_rows)
    if cfg.eval_path:
        held = read_jsonl(cfg.eval_path, skip_bad_rows=cfg.skip_bad_rows)
        held_items, held_skipped = held.items, len(held.skipped)
        rest = rows.items
    else:
        if len(rows.items) <= cfg.eval_size:
            raise ConfigError(f"task.eval_size: {cfg.eval_size} held-out rows would leave no training rows in "
                              f"{cfg.path} ({len(rows.items)} usable rows); lower it or set task.eval_path")
        chosen = set(random.Random(cfg.seed).sample(range(len(rows.items)), cfg.eval_size))
        held_items = [item for i, item in enumerate(rows.items) if i in chosen]
        held_skipped = 0
        rest = [item for i, item in enumerate(rows.items) if i not in chosen]
    held_questions = {item.question for item in held_items}
    train_items = [item for item in rest if item.question not in held_questions]
    if len(train_items) < len(rest):
        log.warning("%s: dropped %d training row(s) whose question is also held out", cfg.path,
                    len(rest) - len(train_items))
    if len(train_items) > cfg.train_size:
        log.info("%s: using the first %d of %d training rows (task.train_size)", cfg.path, cfg.train_size,
                 len(train_items))
        train_items = train_items[: cfg.train_size]
    train = Task(name, "train", train_items, DEFAULT_VERIFIER, skipped_rows=len(rows.skipped), source=str(cfg.path))
    held_out = Task(name, "held_out", held_items, DEFAULT_VERIFIER, skipped_rows=held_skipped,
                    source=str(cfg.eval_path or cfg.path))
    return train, held_out


def absolute_paths(cfg: TaskConfig, base: Path) -> TaskConfig:
    """`cfg` with `path` and `eval_path` resolved against `base` (Ray workers' working folder is not the
    driver's, and the start-up check must read the files the run will)."""
    path = str((base / cfg.path).resolve()) if cfg.path else None
    eval_path = str((base / cfg.eval_path).resolve()) if cfg.eval_path else None
    return dataclasses.replace(cfg, path=path, eval_path=eval_path)


def load_splits(cfg: TaskConfig) -> tuple[Task, Task]:
    """(train, held_out) for `cfg` (see the module docstring); their questions never overlap."""
    if cfg.name == "jsonl":
        return _jsonl_splits(cfg)
    return builtin_splits(cfg.name, cfg.seed, cfg.train_size, cfg.eval_size)


def load_task(cfg: TaskConfig, split: Split) -> Task:
    """One split of `cfg`'s task (a built-in held-out split is generated without its train split)."""
    if split == "held_out" and cfg.name != "jsonl":
        return builtin_held_out(cfg.name, cfg.seed, cfg.eval_size)
    train, held_out = load_splits(cfg)
    return train if split == "train" else held_out


def held_out_tasks(cfg: TaskConfig, names: list[str] | None = None) -> list[Task]:
    """The held-out split of each task in `names`, all with `cfg`'s seed and sizes; `names=None` means
    `[cfg.name]`. A name is a built-in task, `jsonl` (`cfg`'s files), or a path to a `.jsonl` file whose rows
    are all held out (evaluation then takes its first `eval_size`)."""
    tasks = []
    for name in names or [cfg.name]:
        if name.endswith(".jsonl"):
            rows = read_jsonl(name, skip_bad_rows=cfg.skip_bad_rows)
            tasks.append(Task(Path(name).stem, "held_out", rows.items, DEFAULT_VERIFIER, len(rows.skipped), name))
        else:
            tasks.append(load_task(dataclasses.replace(cfg, name=name), "held_out"))
    return tasks
