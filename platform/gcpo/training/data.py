"""Rank 0's view of the task: the pre-rendered training split and the held-out tasks, each built once per run.

Bridges `gcpo.tasks` (items, prompts, golden answers, the verifier pool) and the training step
(`gcpo.training.types.TrainingData`). The verifier pool is the caller's (`gcpo.training.driver.Rank0Driver` owns one
for the whole run: training verification and every held-out evaluation share its processes).
"""

from __future__ import annotations

from gcpo.config import ModelConfig, RunConfig
from gcpo.training.types import TrainingData


def build_training_data(cfg: RunConfig, tokenizer, verifier_pool=None) -> TrainingData:
    """The training split of `cfg.task`, rendered with `tokenizer`; verified by `verifier_pool` (a new pool from
    `cfg.task` when None). Items lacking a golden answer get one from `task.golden_model` when it is set."""
    from gcpo.tasks import load_task, render_negative_prompts, render_prompts, render_response
    from gcpo.tasks.pool import VerifierPool

    task = load_task(cfg.task, "train")
    if task.skipped_rows:
        print(f"[gcpo] task {task.name}: skipped {task.skipped_rows} bad rows (task.skip_bad_rows=true)", flush=True)
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
    )


def _fill_golden_answers(task, cfg: RunConfig, verifier_pool):
    """Golden answers for items lacking one, written by `task.golden_model` through a rollout engine of its own."""
    from transformers import AutoTokenizer

    from gcpo.models import resolve_model
    from gcpo.rollout import build_engine
    from gcpo.tasks import generate_golden_answers

    model_dir = resolve_model(ModelConfig(name=cfg.task.golden_model))
    golden_engine = build_engine(cfg.rollout, model_dir, dtype=cfg.model.dtype)
    try:
        task, report = generate_golden_answers(task, golden_engine, AutoTokenizer.from_pretrained(model_dir),
                                               verifier_pool, model_id=str(cfg.task.golden_model))
    finally:
        golden_engine.shutdown()
    print(f"[gcpo] golden answers from {report.model_id}: {report.accepted} accepted, {report.rejected} rejected "
          f"by the verifier ({report.from_cache} from the cache {report.cache_path})", flush=True)
    return task


def held_out_tasks(cfg: RunConfig) -> list:
    """The held-out tasks a run evaluates on (built once; none when `trainer.eval_every` is 0)."""
    from gcpo.tasks.loading import held_out_tasks as load_held_out

    return load_held_out(cfg.task) if cfg.trainer.eval_every > 0 else []
