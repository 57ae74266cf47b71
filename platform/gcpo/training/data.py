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
    items = task.items
    pool = VerifierPool.from_config(cfg.task)

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


def evaluate_policy(engine, tokenizer, cfg: RunConfig) -> dict[str, float]:
    """Held-out metrics of the generators' current weights: `eval/<task>/pass_at_1`, `mean_at_<k>`, format, length."""
    from gcpo.evaluation import evaluate_config

    return evaluate_config(engine, tokenizer, cfg).metrics()
