"""Rank 0's batch building: rewards come from the verifier's verdicts alone (a real `VerifierPool`, a real hanging
verification). The rollout engine is a scripted stand-in returning fixed completions, so every reward below is
known by hand."""

import pytest
import torch

from gcpo.config import load_config
from gcpo.rollout import sampling_settings
from gcpo.rollout.types import Completion, PromptResult
from gcpo.tasks import TaskItem, VerifierPool
from gcpo.training.rollouts import collect_step_batch
from gcpo.training.sampler import PromptSampler
from gcpo.training.types import TrainingData

pytestmark = pytest.mark.integration

PATHOLOGICAL = "<answer>9**9**9</answer>"  # verification runs for minutes: the pool's timeout kills it
ITEMS = [  # golden 0 is correct but not in the format (trailing text); golden 1 is correct and formatted
    TaskItem("m:0", "half?", "1/2", "<answer>\\frac{1}{2}</answer> trailing", "math"),
    TaskItem("m:1", "half?", "1/2", "<answer>1/2</answer>", "math"),
]
RESPONSES = {  # prompt ids -> the generator's G = 2 responses
    (10,): ["<answer>2</answer>", "<answer>3</answer>"],  # all wrong, both formatted: the golden answer goes in
    (11,): [PATHOLOGICAL, "<answer>1/2</answer>"],  # mixed: a timed-out verification and a correct answer
}


class ScriptedEngine:
    weight_version = 0

    def generate(self, prompts, settings):
        return [PromptResult(list(p), [Completion([1, 2], text, [-0.5, -0.5], "stop", 0)
                                       for text in RESPONSES[tuple(p)]]) for p in prompts]


@pytest.fixture(scope="module")
def verifier_pool():
    with VerifierPool(workers=2, timeout_s=2.0, format_weight=0.5) as p:
        yield p


def test_rewards_are_the_verdicts_and_a_timed_out_verification_earns_nothing(verifier_pool):
    cfg = load_config(preset="gcpo", overrides=["rollout.group_size=2", "rollout.prompts_per_step=2",
                                                "task.format_reward=0.5"])
    data = TrainingData(
        questions=[it.question for it in ITEMS], prompt_ids=[[10], [11]], golden_ids=[[7, 7, 7], [8, 8]],
        golden_text=[it.golden for it in ITEMS],
        verify=lambda idx, texts: verifier_pool.verify(list(texts), [ITEMS[i] for i in idx]).verdicts,
    )
    batch, metrics, _ = collect_step_batch(ScriptedEngine(), data, PromptSampler(2, seed=0), cfg,
                                           sampling_settings(cfg.rollout), step=0)
    by_item = {tuple(batch.prompts[2 * g]): g for g in range(batch.num_groups)}
    wrong, mixed = by_item[(10,)], by_item[(11,)]
    # wrong answers in the format earn the format weight; the injected golden answer earns what its own verdict
    # says (correct, but not in the format: 1.0, not 1.5)
    assert batch.rewards[wrong].tolist() == [0.5, 1.0]
    assert batch.is_golden[wrong].tolist() == [False, True]
    # the timed-out verification earns no reward of any kind, though its response is in the format
    assert batch.rewards[mixed].tolist() == [0.0, 1.5]
    assert metrics["reward/verify_timeouts"] == 1.0
    # the generators' own samples: 0.5 + 0.5 + 0 + 1.5 over 4 (the golden answer is not a sample)
    assert metrics["reward/mean"] == pytest.approx(0.625)
    assert metrics["reward/format"] == pytest.approx(1.0)  # the timed-out response's format is still reported
    assert metrics["ga/injected_frac"] == pytest.approx(0.5)
    assert metrics["batch/samples"] == 4.0  # the generators' samples (the golden answer is not one)
    assert batch.advantages.shape == (4,) and torch.isfinite(batch.advantages).all()


class HintedEngine(ScriptedEngine):
    """The scripted samples, and after a golden-answer hint ([10, 7]: item 0's prompt + its first golden token) a
    continuation that completes the hint's text to a correct, formatted answer."""

    weight_version = 3

    def generate(self, prompts, settings):
        if all(tuple(p) in RESPONSES for p in prompts):
            return [PromptResult(list(p), [Completion([1, 2], text, [-0.5, -0.5], "stop", 3)
                                           for text in RESPONSES[tuple(p)]]) for p in prompts]
        assert [list(p) for p in prompts] == [[10, 7]] and settings.n == 1
        return [PromptResult([10, 7], [Completion([5, 6], "1/2</answer>", [-0.3, -0.2], "stop", 3)])]


def test_a_hint_resamples_an_all_wrong_group_after_a_golden_prefix_and_records_provenance(verifier_pool):
    from gcpo.training.rollouts import HintState

    cfg = load_config(preset="ga_hint", overrides=["rollout.group_size=2", "rollout.prompts_per_step=2",
                                                   "task.format_reward=0.5", "algorithm.hint_rollouts=1"])
    data = TrainingData(
        questions=[it.question for it in ITEMS], prompt_ids=[[10], [11]], golden_ids=[[7, 7, 7], [8, 8]],
        golden_text=[it.golden for it in ITEMS],
        verify=lambda idx, texts: verifier_pool.verify(list(texts), [ITEMS[i] for i in idx]).verdicts,
        decode=lambda ids: {(7,): "<answer>"}[tuple(ids)],
    )
    hint = HintState(fraction=0.5)  # floor(0.5 x 3 golden tokens) = 1 hint token
    batch, metrics, samples = collect_step_batch(HintedEngine(), data, PromptSampler(2, seed=0), cfg,
                                                 sampling_settings(cfg.rollout), step=4, hint=hint)
    by_item = {tuple(batch.prompts[2 * g]): g for g in range(batch.num_groups)}
    wrong = by_item[(10,)]
    rows = [2 * wrong, 2 * wrong + 1]
    # the last response of the all-wrong group was sampled again after the hint; its prompt holds the hint, its
    # response only the continuation (what is trained on); the verifier judged hint + continuation
    assert [batch.prompts[r] for r in rows] == [[10], [10, 7]]
    assert [batch.responses[r] for r in rows] == [[1, 2], [5, 6]]
    assert [batch.hint_tokens[r] for r in rows] == [0, 1]
    assert batch.gen_logprobs[rows[1]] == [-0.3, -0.2]
    assert batch.rewards[wrong].tolist() == [0.5, 1.5]  # wrong + formatted; "<answer>1/2</answer>" correct
    assert batch.versions == [3] * 4 and not batch.is_golden.any()  # every row sampled, at version 3
    assert metrics["hint/success"] == 1.0 and metrics["hint/groups_frac"] == 0.5
    assert metrics["hint/tokens_mean"] == 1.0 and metrics["hint/fraction"] == 0.5
    assert metrics["reward/mean"] == pytest.approx(0.625)  # the unhinted samples, as without hints
    assert metrics["batch/samples"] == 5.0  # 4 in the round, and the hinted re-sample
    assert hint.fraction == pytest.approx(0.25)  # success 1 > target 0.5: the controller shortens the hint
    hinted = [s for s in samples if s["hint_tokens"]]
    assert [(s["response"], s["version"]) for s in hinted] == [("<answer>1/2</answer>", 3)]
