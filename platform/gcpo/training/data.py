"""Rank 0's view of the task: the pre-rendered training split and the held-out evaluation.

Bridges `gcpo.tasks` (items, prompts, golden answers, the verifier pool) and the training step
(`gcpo.training.collect.TrainingData`).
"""

from __future__ import annotations

from gcpo.config import RunConfig
from gcpo.training.collect import TrainingData


def build_training_data(cfg: RunConfig, tokenizer) -> TrainingData:
    from gcpo.tasks import load_task, render_negative_prompts, render_prompts, render_response
    from gcpo.tasks.pool import VerifierPool

    task = load_task(cfg.task, "train")
    if task.skipped_rows:
        print(f"[gcpo] task {task.name}: skipped {task.skipped_rows} bad rows (task.skip_bad_rows=true)", flush=True)
    pool = VerifierPool.from_config(cfg.task)
    if cfg.task.golden_model and any(it.golden is None for it in task.items):
        task = _fill_golden_answers(task, cfg, pool)
    items = task.items

    def verify(indices, texts):
        return pool.verify(list(texts), [items[i] for i in indices]).verdicts

    golden_ids = [render_response(tokenizer, it.golden) if it.golden else None for it in items]
    negative = (render_negative_prompts(tokenizer, items, cfg.algorithm.guidance_negative)
                if cfg.algorithm.token_credit == "guidance" else None)
    return TrainingData(
        questions=[it.question for it in items],
        prompt_ids=render_prompts(tokenizer, items),
        golden_ids=golden_ids,
        golden_text=[it.golden for it in items],
        verify=verify,
        negative_prompt_ids=negative,
    )


def _fill_golden_answers(task, cfg: RunConfig, pool):
    """Golden answers for items lacking one, written by `task.golden_model` through the rollout engine."""
    from transformers import AutoTokenizer

    from gcpo.config import ModelConfig
    from gcpo.models import resolve_model
    from gcpo.rollout import build_engine
    from gcpo.tasks import generate_golden_answers

    model_dir = resolve_model(ModelConfig(name=cfg.task.golden_model))
    engine = build_engine(cfg.rollout, model_dir, dtype=cfg.model.dtype)
    try:
        task, report = generate_golden_answers(task, engine, AutoTokenizer.from_pretrained(model_dir), pool,
                                               model_id=str(cfg.task.golden_model))
    finally:
        engine.shutdown()
    print(f"[gcpo] golden answers from {report.model_id}: {report.accepted} accepted, {report.rejected} rejected "
          f"by the verifier ({report.from_cache} from the cache {report.cache_path})", flush=True)
    return task


def evaluate_policy(engine, tokenizer, cfg: RunConfig) -> dict[str, float]:
    """Held-out metrics of the generators' current weights: `eval/<task>/pass_at_1`, `mean_at_<k>`, format, length."""
    from gcpo.evaluation import evaluate_config

    return evaluate_config(engine, tokenizer, cfg).metrics()
