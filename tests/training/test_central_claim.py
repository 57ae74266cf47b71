"""The mission's central claim on the tiny model: where every rollout is wrong, GRPO leaves the policy unchanged
(zero advantage everywhere) while GCPO raises the golden answers' log-prob.

Real components in one process: the real task and verifier pool, a real generator (transformers backend), a real
DeepSpeed engine (world size 1, gloo).
"""

import pytest
import torch

from gcpo.config import load_config
from gcpo.models import tiny_dir
from gcpo.rollout import build_engine, sampling_settings
from gcpo.training.rollouts import collect_step_batch
from gcpo.training.data import build_training_data
from gcpo.logprobs import response_logprobs
from gcpo.training.deepspeed_policy import build_policy
from gcpo.training.sampler import PromptSampler
from gcpo.training.update import update_policy

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("single_process_group")]


def one_step(preset: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = load_config(preset=preset, overrides=[
        "model.name=tiny", "rollout.backend=transformers", "rollout.prompts_per_step=4", "rollout.group_size=4",
        "rollout.max_new_tokens=8", "task.train_size=16", "task.eval_size=4", "trainer.lr=1e-3"])
    model_dir = tiny_dir()
    tok = AutoTokenizer.from_pretrained(model_dir)
    data = build_training_data(cfg, tok)
    generator = build_engine(cfg.rollout, model_dir)
    batch, metrics, _ = collect_step_batch(generator, data, PromptSampler(len(data.prompt_ids), seed=0), cfg,
                                           sampling_settings(cfg.rollout), step=0)
    engine = build_policy(AutoModelForCausalLM.from_pretrained(model_dir), cfg.trainer, "float32")
    ref = AutoModelForCausalLM.from_pretrained(model_dir) if cfg.algorithm.kl_coef > 0 else None
    before = {k: v.detach().clone() for k, v in engine.module.state_dict().items()}
    golden_rows = batch.is_golden.flatten().nonzero().flatten().tolist()
    rows = golden_rows or list(range(len(batch.responses)))

    def golden_logp():
        with torch.no_grad():
            lp, mask, _ = response_logprobs(engine.module, [batch.prompts[r] for r in rows],
                                            [batch.responses[r] for r in rows], pad_token_id=0)
        return (lp * mask).sum(1)

    lp_before = golden_logp()
    update_policy(engine, batch, cfg, step=0, pad_id=tok.pad_token_id, ref_model=ref)
    changed = max((engine.module.state_dict()[k] - v).abs().max().item() for k, v in before.items())
    return metrics, batch, changed, lp_before, golden_logp()


def test_grpo_learns_nothing_from_all_wrong_groups():
    metrics, batch, changed, _, _ = one_step("grpo")
    assert metrics["groups/all_wrong_frac"] == 1.0  # a random tiny model never answers correctly
    assert torch.count_nonzero(batch.advantages) == 0
    assert changed == 0.0


def test_gcpo_raises_the_golden_answers_log_prob():
    metrics, batch, changed, lp_before, lp_after = one_step("gcpo")
    assert metrics["groups/all_wrong_frac"] == 1.0
    assert metrics["ga/injected_frac"] == 1.0 and metrics["ga/rejected"] == 0
    assert batch.is_golden.sum(1).tolist() == [1, 1, 1, 1]
    assert changed > 0
    assert (lp_after > lp_before).all(), (lp_before, lp_after)
