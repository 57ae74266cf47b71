"""Rank 0's view of the task: the pre-rendered training split and the held-out tasks, each built once per run.

Bridges `gcpo.tasks` (items, prompts, golden answers, the verifier pool) and the training step
(`gcpo.training.types.TrainingData`). The verifier pool is the caller's (`gcpo.training.driver.Rank0Driver` owns one
for the whole run: training verification and every held-out evaluation share its processes).
"""

from __future__ import annotations

from gcpo.config import ModelConfig, RunConfig
from gcpo.console import PREFIX
from gcpo.training.types import TrainingData


def fit_rows(cfg: RunConfig, load, tokenizer, max_model_len: int | None) -> list:
    """The tasks `load()` reads, without the rows that cannot fit the generators' context
    (`task.skip_bad_rows`), or an error naming the first such row. The driver read, checked and reported the same
    rows before Ray started (`gcpo.preflight`), so the rows skipped when reading or fitting are not said again here
    (`console.reported_on_driver`)."""
    from gcpo.console import reported_on_driver
    from gcpo.tasks.lengths import fit_task

    with reported_on_driver():
        tasks = load()
        if max_model_len is None:
            return tasks
        return [fit_task(cfg, task, tokenizer, max_model_len) for task in tasks]


def build_training_data(cfg: RunConfig, tokenizer, verifier_pool=None,
                        max_model_len: int | None = None) -> TrainingData:
    """The training split of `cfg.task`, rendered with `tokenizer`, without the rows that cannot fit a context of
    `max_model_len` tokens (the rollout engine's; None = no check); verified by `verifier_pool` (a new pool from
    `cfg.task` when None). Items lacking a golden answer get one from `task.golden_model` when it is set."""
    from gcpo.tasks import load_task, render_negative_prompts, render_prompts, render_response
    from gcpo.tasks.pool import VerifierPool

    (task,) = fit_rows(cfg, lambda: [load_task(cfg.task, "train")], tokenizer, max_model_len)
    verifier_pool = verifier_pool or VerifierPool.from_config(cfg.task)
    if cfg.task.golden_model and any(it.golden is None for it in task.items):
        task = _fill_golden_answers(task, cfg, verifier_pool)
    items = task.items

    def verify(indices, texts):
        return verifier_pool.verify(list(texts), [items[i] for i in indices]).verdicts

    negative = (render_negative_prompts(tokenizer, items, cfg.algorithm.guidance_negative)
                if cfg.algorithm.token_credit == "guidance" else None)
    return TrainingData(
        questions=[it.question for it in items],
        prompt_ids=render_prompts(tokenizer, items),
        golden_ids=[render_response(tokenizer, it.golden) if it.golden else None for it in items],
        golden_text=[it.golden for it in items],
        verify=verify,
        negative_prompt_ids=negative,
        decode=lambda ids: tokenizer.decode(list(ids), skip_special_tokens=True),
    )


def _fill_golden_answers(task, cfg: RunConfig, verifier_pool):
    """Golden answers for items lacking one, written by `task.golden_model` through a rollout engine of its own."""
    from transformers import AutoTokenizer

    from gcpo.models import resolve_model
    from gcpo.rollout import build_engine
    from gcpo.tasks import generate_golden_answers

    model_dir = resolve_model(ModelConfig(name=cfg.task.golden_model))
    golden_engine = build_engine(cfg.rollout, model_dir, model_dtype=cfg.model.dtype)
    try:
        task, report = generate_golden_answers(task, golden_engine, AutoTokenizer.from_pretrained(model_dir),
                                               verifier_pool, model_id=str(cfg.task.golden_model))
    finally:
        golden_engine.shutdown()
    print(f"{PREFIX} golden answers from {report.model_id}: {report.accepted} accepted, {report.rejected} rejected "
          f"by the verifier ({report.from_cache} from the cache {report.cache_path})", flush=True)
    return task


def held_out_tasks(cfg: RunConfig, tokenizer, max_model_len: int | None) -> list:
    """The held-out tasks a run evaluates on (built once; none when `trainer.eval_every` is 0), without the rows
    that cannot fit the context (see `fit_rows`)."""
    from gcpo.tasks.loading import held_out_tasks as load_held_out

    if cfg.trainer.eval_every <= 0:
        return []
    return fit_rows(cfg, lambda: load_held_out(cfg.task), tokenizer, max_model_len)
