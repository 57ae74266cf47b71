"""The imitation baseline (ga_sft) and GCPO's supervised term on the tiny model: the batch carries the chosen
prompts' golden answers, the update is the token-mean cross-entropy on them (checked against an independent
computation) and raises their log-prob; rollouts are still scored and measured.

Real components in one process: the real task and verifier pool, a real generator (transformers backend) or a
stub one, a real DeepSpeed engine (world size 1, gloo).
"""

import dataclasses

import pytest
import torch

from gcpo.config import load_config
from gcpo.models import tiny_dir
from gcpo.rollout import build_engine, sampling_settings
from gcpo.rollout.types import Completion, PromptResult
from gcpo.training.rollouts import collect_step_batch
from gcpo.training.data import build_training_data
from gcpo.logprobs import response_logprobs
from gcpo.training.deepspeed_policy import build_policy
from gcpo.training.sampler import PromptSampler
from gcpo.training.update import update_policy

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("single_process_group")]

SMALL = ["model.name=tiny", "rollout.backend=transformers", "rollout.prompts_per_step=4", "rollout.group_size=4",
         "rollout.max_new_tokens=8", "task.train_size=16", "task.eval_size=4", "trainer.lr=1e-3"]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir())


def _collect(cfg, tokenizer, engine=None):
    data = build_training_data(cfg, tokenizer)
    engine = engine(data) if engine else build_engine(cfg.rollout, tiny_dir())
    batch, metrics, _ = collect_step_batch(engine, data, PromptSampler(len(data.prompt_ids), seed=0), cfg,
                                           sampling_settings(cfg.rollout), step=0)
    return data, batch, metrics


def _policy(cfg):
    from transformers import AutoModelForCausalLM

    return build_policy(AutoModelForCausalLM.from_pretrained(tiny_dir()), cfg.trainer, "float32")


def _sum_and_count(engine, prompts, responses):
    """Independent numbers: per-answer summed log-prob and token count, one plain forward per sequence."""
    with torch.no_grad():
        rows = [response_logprobs(engine.module, [p], [r], pad_token_id=0)[0][0] for p, r in zip(prompts, responses)]
    return torch.stack([row.sum() for row in rows]), sum(len(r) for r in responses)


def test_ga_sft_imitates_every_prompts_golden_answer(tokenizer):
    cfg = load_config(preset="ga_sft", overrides=SMALL)
    data, batch, metrics = _collect(cfg, tokenizer)
    assert metrics["groups/all_wrong_frac"] == 1.0 and metrics["ga/injected_frac"] == 1.0
    assert not batch.is_golden.any() and len(batch.responses) == 16  # rollouts scored and kept, none replaced
    items = [data.prompt_ids.index(p) for p in batch.prompts[::4]]
    assert batch.golden_prompts == [data.prompt_ids[i] for i in items]
    assert batch.golden_responses == [data.golden_ids[i] for i in items]
    engine = _policy(cfg)
    lp_before, tokens = _sum_and_count(engine, batch.golden_prompts, batch.golden_responses)
    out = update_policy(engine, batch, cfg, step=0, pad_id=tokenizer.pad_token_id)
    # the loss of the one update: token-mean cross-entropy over every golden token of the batch
    assert out["loss/sft"] == pytest.approx(-lp_before.sum().item() / tokens, rel=1e-5)
    assert out["loss/policy"] == out["loss/sft"] and "policy/clip_frac" not in out
    assert out["policy/entropy"] > 0 and out["sync/logprob_abs_diff"] < 1e-3  # measured on the rollouts
    lp_after, _ = _sum_and_count(engine, batch.golden_prompts, batch.golden_responses)
    assert (lp_after > lp_before).all(), (lp_before, lp_after)


def test_ga_sft_with_nothing_to_imitate_steps_with_a_zero_gradient(tokenizer):
    cfg = load_config(preset="ga_sft", overrides=SMALL)
    _, batch, _ = _collect(cfg, tokenizer)
    engine = _policy(cfg)
    before = {k: v.detach().clone() for k, v in engine.module.state_dict().items()}
    out = update_policy(engine, dataclasses.replace(batch, golden_prompts=[], golden_responses=[]), cfg, step=0,
                        pad_id=tokenizer.pad_token_id)
    assert out["loss/sft"] == 0.0 and out["grad/norm"] == 0.0
    assert all(torch.equal(engine.module.state_dict()[k], v) for k, v in before.items())


class _HalfRightEngine:
    """Answers prompts at even positions with their golden answer first (a correct group), the rest wrongly."""

    weight_version = 0

    def __init__(self, data):
        self.data = data

    def generate(self, prompts, settings):
        out = []
        for k, p in enumerate(prompts):
            item = self.data.prompt_ids.index(list(p))
            wrong = Completion([0, 1], "no idea", [-1.0, -1.0], "stop", 0)
            right = Completion(self.data.golden_ids[item], self.data.golden_text[item],
                               [-1.0] * len(self.data.golden_ids[item]), "stop", 0)
            out.append(PromptResult(list(p), [right if k % 2 == 0 else wrong] + [wrong] * (settings.n - 1)))
        return out


@pytest.mark.parametrize("which, chosen", [("all", [0, 1, 2, 3]), ("all_wrong", [1, 3])])
def test_sft_prompts_picks_whose_golden_answers(tokenizer, which, chosen):
    cfg = load_config(preset="ga_sft", overrides=SMALL + [f"algorithm.sft_prompts={which}"])
    data, batch, metrics = _collect(cfg, tokenizer, _HalfRightEngine)
    assert metrics["groups/all_wrong_frac"] == 0.5
    assert batch.golden_prompts == [batch.prompts[4 * g] for g in chosen]
    assert metrics["ga/injected_frac"] == len(chosen) / 4


def test_gcpo_sft_coef_adds_cross_entropy_on_the_injected_golden_answers(tokenizer):
    cfg = load_config(preset="gcpo", overrides=SMALL + ["algorithm.sft_coef=0.5"])
    _, batch, metrics = _collect(cfg, tokenizer)
    assert metrics["ga/injected_frac"] == 1.0 and not batch.golden_responses  # injected as rollouts, not extra rows
    rows = batch.is_golden.flatten().nonzero().flatten().tolist()
    engine = _policy(cfg)
    lp, tokens = _sum_and_count(engine, [batch.prompts[r] for r in rows], [batch.responses[r] for r in rows])
    out = update_policy(engine, batch, cfg, step=0, pad_id=tokenizer.pad_token_id)
    assert out["loss/sft"] == pytest.approx(-lp.sum().item() / tokens, rel=1e-5)
    plain = update_policy(_policy(cfg), batch, dataclasses.replace(
        cfg, algorithm=dataclasses.replace(cfg.algorithm, sft_coef=0.0)), step=0, pad_id=tokenizer.pad_token_id)
    assert "loss/sft" not in plain and out["grad/norm"] != pytest.approx(plain["grad/norm"], rel=1e-3)
