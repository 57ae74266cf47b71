"""The start-up check: a run's config against its data and model, on the driver, before Ray starts.

Bad input is cheapest to find before Ray, the model and the generators are up, and clearest when named by the
key or the `FILE:LINE` at fault. `check_run(cfg)` (`gcpo train`, each distinct data set of a `gcpo sweep`) and
`check_eval_tasks(cfg, tasks, ...)` (`gcpo eval`) raise `ConfigError` or `TaskDataError` for:

- sizes: `task.eval_size` more than the held-out rows there are (a JSONL file split in two, an `eval_path` file,
  or a `.jsonl` passed to `gcpo eval --tasks`); an empty training split (`task.train_size` < 1 and
  `task.eval_size` < 0 are refused when the config is built, `gcpo.config`);
- the data: a missing file, a malformed row (`FILE:LINE`, see `gcpo.tasks.jsonl`), an unknown verifier name, an
  unknown built-in task; a `task.golden_model` that does not resolve when some row lacks a golden answer;
- the context: every prompt (+ `rollout.max_new_tokens`) and every training row's golden answer must fit the
  generator's context (`model_context`): `gcpo.tasks.fit_to_context`, which names `FILE:LINE` and the lengths;
- LoRA: every `model.lora.target_modules` name must be a linear layer of the model (checked on a weightless copy).

With `task.skip_bad_rows=true` malformed and over-long rows are skipped instead, counted and logged once.
The training worker applies the same `gcpo.tasks.lengths.fit_task` to its data (the same rows are dropped there).

The check only checks: it reads the config, the data and the model's config and tokenizer, and builds nothing. A
model that must be made first (the built-in warm start, `model.name=smollm2-warmstart`) is made by the command that
needs it, before this check (`gcpo.standalone.warmstart.ensure_builtin_warm_start`); until then the check names it
as not made yet. This module imports nothing from `gcpo.training`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from gcpo.config import ConfigError, ModelConfig, RunConfig
from gcpo.rollout.types import VLLM_MAX_MODEL_LEN
from gcpo.tasks.lengths import fit_task
from gcpo.tasks.types import Task


def model_context(model_dir: str | Path, backend: str) -> int:
    """The longest request (prompt + new tokens) the generators of `backend` accept for the model in
    `model_dir`: its `max_position_embeddings`, capped at `VLLM_MAX_MODEL_LEN` for vLLM."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if context is None:
        raise ConfigError(f"model.name: {model_dir} has no max_position_embeddings in its config.json, so its "
                          f"context length is unknown")
    return min(int(context), VLLM_MAX_MODEL_LEN) if backend == "vllm" else int(context)


@dataclass
class DataCheck:
    """What `check_run` / `check_eval_tasks` found (the tasks as the run will see them)."""

    model_dir: Path
    max_model_len: int
    train: Task | None
    held_out: list[Task]
    seconds: float = 0.0
    skipped: dict[str, int] = field(default_factory=dict)  # "<task> <split>" -> rows skipped (load + length)

    def summary(self) -> str:
        """One line: the rows the run will use, all checked against the model's context."""
        parts = [f"{len(self.train)} training"] if self.train is not None else []
        parts += [f"{len(t)} held-out" for t in self.held_out]
        names = sorted({t.name for t in ([self.train] if self.train is not None else []) + self.held_out})
        skipped = sum(self.skipped.values())
        return (f"data checked: {' and '.join(parts)} rows of {', '.join(names)} fit the model's context "
                f"({self.max_model_len:,} tokens)" + (f"; {skipped} row(s) skipped" if skipped else ""))


def _where(task: Task) -> str:
    return task.source if task.source else f"task {task.name}"


def _check_eval_size(cfg: RunConfig, task: Task) -> None:
    if len(task.items) < cfg.task.eval_size:
        skipped = f" ({task.skipped_rows} skipped)" if task.skipped_rows else ""
        raise ConfigError(f"task.eval_size: {cfg.task.eval_size} held-out rows asked for, but {_where(task)} has "
                          f"only {len(task.items)} usable held-out row(s){skipped}; lower task.eval_size")


def _check_golden_model(cfg: RunConfig, train: Task) -> None:
    if cfg.task.golden_model and any(item.golden is None for item in train.items):
        from gcpo.models import resolve_model

        try:
            resolve_model(ModelConfig(name=cfg.task.golden_model))
        except ConfigError as e:
            raise ConfigError(str(e).replace("model.name:", "task.golden_model:", 1)) from None


def _check_lora_targets(cfg: RunConfig, model_dir: Path) -> None:
    """`model.lora.target_modules` against the model's linear layers, on a weightless (meta-device) copy."""
    if cfg.model.lora.rank == 0:
        return
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from gcpo.models import check_target_modules

    with torch.device("meta"):
        check_target_modules(AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir)), cfg.model.lora)


def _tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def check_run(cfg: RunConfig, *, base: Path | None = None) -> DataCheck:
    """Check a training run's config against its data and model (see the module docstring). Relative task paths
    are read from `base` (default: the current folder)."""
    from gcpo.models import resolve_model
    from gcpo.tasks.loading import absolute_paths, load_splits

    started = time.monotonic()
    if base is not None:
        cfg = dataclasses.replace(cfg, task=absolute_paths(cfg.task, base))
    train, held_out = load_splits(cfg.task)
    _check_golden_model(cfg, train)
    model_dir = resolve_model(cfg.model)
    _check_lora_targets(cfg, model_dir)
    tokenizer = _tokenizer(model_dir)
    context = model_context(model_dir, cfg.rollout.backend)
    _check_eval_size(cfg, held_out)  # the config against the file; rows too long to use are reported apart
    train = fit_task(cfg, train, tokenizer, context)
    held_out = fit_task(cfg, held_out, tokenizer, context)
    if not train.items:
        raise ConfigError(f"task.train_size: {_where(train)} has no usable training rows left"
                          + (f" ({train.skipped_rows} skipped)" if train.skipped_rows else ""))
    skipped = {f"{t.name} {t.split}": t.skipped_rows for t in (train, held_out) if t.skipped_rows}
    return DataCheck(model_dir, context, train, [held_out], time.monotonic() - started, skipped)


def check_eval_tasks(cfg: RunConfig, tasks: Sequence[Task], tokenizer: Any, model_dir: str | Path) -> list[Task]:
    """`gcpo eval`'s check: each held-out task has `task.eval_size` rows and they fit the context; returns the
    tasks as evaluation should see them (over-long rows dropped with `task.skip_bad_rows=true`)."""
    context = model_context(model_dir, cfg.rollout.backend)
    for task in tasks:
        _check_eval_size(cfg, task)
    return [fit_task(cfg, task, tokenizer, context) for task in tasks]


def _data_key(cfg: RunConfig) -> str:
    """The settings `check_run` depends on: two configs with the same key need one check (a repr: the model's
    LoRA settings hold a list)."""
    return repr((dataclasses.astuple(cfg.task), dataclasses.astuple(cfg.model), cfg.rollout.backend,
                 cfg.rollout.max_new_tokens))


def check_runs(configs: Iterable[RunConfig], *, base: Path | None = None) -> list[DataCheck]:
    """`check_run` for each distinct data setting among `configs` (a sweep's arms)."""
    seen: dict[str, DataCheck] = {}
    for cfg in configs:
        key = _data_key(cfg)
        if key not in seen:
            seen[key] = check_run(cfg, base=base)
    return list(seen.values())
