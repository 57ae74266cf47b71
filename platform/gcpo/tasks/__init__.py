"""Tasks: datasets, golden answers, verifiers (rewards). What the training loop calls:

- `load_splits(cfg.task)` -> (train, held_out) `Task`s; `load_task(cfg.task, split)`; `held_out_tasks(cfg.task,
  names)` for evaluation. Built-ins: `basic_arithmetic` (default), `multi_arithmetic`, `gsm_symbolic`; or
  `jsonl` files (`read_jsonl`).
- `render_prompts(tokenizer, items)` -> prompt token ids (chat template + `SYSTEM_PROMPT`);
  `render_response(tokenizer, item.golden)` -> a golden answer's response token ids;
  `render_negative_prompts(tokenizer, items, mode)` -> the guidance-contrastive negative prompts.
- `VerifierPool.from_config(cfg.task)`; `pool.verify(responses, items)` -> `BatchVerdicts` (per-response
  accuracy, format, reward, timed_out; counters; `.metrics()`).
- `fit_to_context(task, tokenizer, max_model_len=, max_new_tokens=, skip_bad_rows=)` -> the task if every prompt
  (+ max_new_tokens) and golden answer fits the context, else `TaskDataError` naming `FILE:LINE` (or the rows
  dropped and counted in `skipped_rows`); `item_location(task, i)` -> `FILE:LINE` or the built-in item.
- `check_golden_answers(task, pool)`; `generate_golden_answers(task, engine, tokenizer, pool, model_id=...)`.

This package imports neither torch nor transformers.
"""

from gcpo.tasks.answers import extract_answer, is_well_formed, tagged
from gcpo.tasks.builtin import BUILTIN_TASKS
from gcpo.tasks.golden import GoldenCheck, GoldenReport, check_golden_answers, generate_golden_answers
from gcpo.tasks.jsonl import TaskDataError, read_jsonl
from gcpo.tasks.lengths import fit_to_context, item_location
from gcpo.tasks.loading import held_out_tasks, load_splits, load_task, task_names
from gcpo.tasks.pool import BatchVerdicts, Verdict, VerifierPool
from gcpo.tasks.prompts import SYSTEM_PROMPT, render_negative_prompts, render_prompts, render_response
from gcpo.tasks.types import Task, TaskItem
from gcpo.tasks.verifiers import VERIFIERS

__all__ = [
    "BUILTIN_TASKS", "BatchVerdicts", "GoldenCheck", "GoldenReport", "SYSTEM_PROMPT", "Task", "TaskDataError",
    "TaskItem", "VERIFIERS", "Verdict", "VerifierPool", "check_golden_answers", "extract_answer",
    "fit_to_context", "generate_golden_answers", "held_out_tasks", "is_well_formed", "item_location", "load_splits",
    "load_task", "read_jsonl", "render_negative_prompts", "render_prompts", "render_response", "tagged", "task_names",
]
