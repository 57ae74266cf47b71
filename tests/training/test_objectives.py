"""The loss table (`gcpo.training.objectives`) and the update's metric tally, against hand computations."""

import math
import typing

import pytest
import torch

from gcpo.config import AlgorithmConfig, load_config
from gcpo.training.objectives import OBJECTIVES, MicroInputs, MiniRows, objective_for
from gcpo.training.update import Tally, with_run_span


def test_every_loss_kind_has_exactly_one_entry():
    kinds = typing.get_args(typing.get_type_hints(AlgorithmConfig)["loss"])
    assert set(OBJECTIVES) == set(kinds)
    assert all(entry.name == name for name, entry in OBJECTIVES.items())
    assert objective_for(AlgorithmConfig(loss="conspo")).objective is OBJECTIVES["conspo"]


def _inputs(logp, old, adv, correct, normalizer, mask=None):
    mask = torch.ones_like(logp) if mask is None else mask
    return MicroInputs(logp, mask, torch.tensor(adv), torch.tensor(correct), old, None, None,
                       torch.tensor(float(normalizer)), step=0, max_response_len=4)


def test_clipped_entry_on_policy_is_minus_advantage_times_ratio_token_mean():
    a = load_config(preset="dapo").algorithm  # token-mean, clip 0.2 / 0.28
    logp = torch.log(torch.tensor([[0.5, 0.25], [0.5, 0.5]]))
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    rows = MiniRows([[1, 2], [3]], torch.zeros(0, 2, dtype=torch.bool), 4)
    assert objective_for(a).normalizer(rows).item() == 3  # tokens
    loss, totals = objective_for(a).loss(_inputs(logp, logp.clone(), [1.0, -2.0], [[True, False]], 3, mask))
    assert loss.item() == pytest.approx((-1.0 - 1.0 + 2.0) / 3)  # ratio 1 everywhere: -(A) per token / N
    assert totals == {"tokens": 3.0, "clipped_tokens": 0.0, "ratio_sum": 3.0, "clipped_learnable": 0.0,
                      "learnable_tokens": 3.0}
    moved = logp.detach() - torch.log(torch.tensor(2.0))  # the old policy gave each token half the probability
    _, totals = objective_for(a).loss(_inputs(logp, moved, [1.0, -2.0], [[True, False]], 3, mask))
    # ratio 2: A > 0 is clipped at 1.28 (2 tokens), A < 0 keeps the unclipped branch (1 token)
    assert totals["clipped_tokens"] == pytest.approx(2.0) and totals["ratio_sum"] == pytest.approx(6.0)
    summary = objective_for(a).summarize({**totals, "updates": 1.0}, 0)
    assert summary == {"policy/clip_frac": pytest.approx(2 / 3), "policy/ratio_mean": pytest.approx(2.0),
                       "policy/clip_frac_learnable": pytest.approx(2 / 3)}


def test_conspo_entry_counts_contrastive_positives_and_reports_its_metrics():
    a = with_run_span(load_config(preset="conspo")).algorithm  # the margin's span resolved, as update_policy does
    correct = torch.tensor([[True, False], [True, True], [False, False]])
    rows = MiniRows([[1]] * 6, correct, 4)
    assert objective_for(a).normalizer(rows).item() == 1  # only group 0 has a contrast
    logp = torch.log(torch.tensor([[0.5], [0.25], [0.5], [0.5], [0.5], [0.5]]))
    loss, totals = objective_for(a).loss(_inputs(logp, None, [0.0] * 6, correct.tolist(), 1))
    s_pos, s_neg = math.log(0.5), math.log(0.25)  # tau 1, margin 0 at step 0
    assert loss.item() == pytest.approx(-math.log(math.exp(s_pos) / (math.exp(s_pos) + math.exp(s_neg))), rel=1e-6)
    assert totals["contrast_groups"] == 1.0 and totals["positives"] == 1.0
    assert totals["score_gap_sum"] == pytest.approx(s_pos - s_neg)
    summary = objective_for(a).summarize({**totals, "updates": 1.0, "micro_batches": 1.0}, 0)
    assert summary["conspo/score_gap"] == pytest.approx(math.log(2)) and summary["conspo/margin"] == 0.0


def test_sft_entry_is_the_golden_token_mean_cross_entropy():
    a = load_config(preset="ga_sft").algorithm
    rows = MiniRows([[1, 2, 3], [4]], torch.zeros(0, 4, dtype=torch.bool), 4)
    assert objective_for(a).normalizer(rows).item() == 4  # golden-answer tokens
    logp = torch.log(torch.tensor([[0.5, 0.5, 0.5], [0.25, 1.0, 1.0]]))
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    loss, totals = objective_for(a).loss(_inputs(logp, None, [0.0, 0.0], [[False] * 4], 4, mask))
    assert loss.item() == pytest.approx(-(3 * math.log(0.5) + math.log(0.25)) / 4)
    assert objective_for(a).summarize({**totals, "updates": 2.0}, 0) == {"loss/sft": pytest.approx(loss.item() / 2)}


def test_tally_sums_named_totals_and_keeps_maxima():
    tally = Tally(("a", "b"), maxima=("m",))
    tally.add("a", 1.5)
    tally.add("a", torch.tensor(2.0))
    tally.maximum("m", 3.0)
    tally.maximum("m", 1.0)
    assert tally.reduced() == {"a": 3.5, "b": 0.0, "m": 3.0}
    with pytest.raises(KeyError):  # an undeclared name would desynchronise the ranks' reductions
        tally.add("c", 1.0)


def test_each_ratio_level_uses_its_own_clip_range():
    """clip_low / clip_high clip the token ratio, clip_*_sequence the sequence ratio (GSPO's range by default)."""
    from gcpo.training.objectives import clip_range

    a = load_config(preset="gcpo", overrides=["algorithm.clip_high=0.28"]).algorithm
    assert clip_range(a) == (3e-4, 4e-4)
    token = load_config(preset="gcpo", overrides=["algorithm.ratio_level=token", "algorithm.clip_high=0.28"]).algorithm
    assert clip_range(token) == (0.2, 0.28)
    logp = torch.log(torch.tensor([[0.5, 0.5]]))
    moved = logp - math.log(1.1)  # ratio 1.1 on both tokens: inside the token range, far outside the sequence one
    for algo, clipped in ((a, 2.0), (token, 0.0)):
        _, totals = objective_for(algo).loss(_inputs(logp, moved, [1.0], [[True, False]], 1))
        assert totals["clipped_tokens"] == pytest.approx(clipped)


def test_a_rollout_correction_leaves_golden_rows_at_weight_one_under_every_golden_ratio():
    """Row 0 sampled, row 1 a golden answer (no behaviour log-prob: 0 in the padded tensor). TIS weights the sampled
    row by min(pi_old / mu, 2) = 2 here; the golden row's gradient is the same with and without the correction."""
    logp = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.25]]))
    behaviour = torch.tensor([[math.log(0.1)] * 2, [0.0, 0.0]])
    sampled, golden = torch.tensor([True, False]), torch.tensor([False, True])

    def grads(kind, golden_ratio):
        a = load_config(preset="gcpo", overrides=[f"algorithm.rollout_correction={kind}",
                                                  f"algorithm.golden_ratio={golden_ratio}"]).algorithm
        x = logp.clone().requires_grad_(True)
        inputs = _inputs(x, x.detach().clone(), [-1.0, 1.0], [[False, True]], 2)
        inputs.behaviour_logp, inputs.sampled, inputs.golden = behaviour, sampled, golden
        loss, totals = objective_for(a).loss(inputs)
        loss.backward()
        return x.grad, totals

    for golden_ratio in ("clip", "unclipped", "shaped"):
        plain, _ = grads("none", golden_ratio)
        corrected, totals = grads("tis", golden_ratio)
        torch.testing.assert_close(corrected[1], plain[1])  # the golden row: weight 1
        torch.testing.assert_close(corrected[0], 2 * plain[0])  # the sampled row: weight min(0.5 / 0.1, 2) = 2
        assert totals["correction_tokens"] == 2.0  # only the sampled row's tokens are counted


def test_the_margin_span_defaults_to_the_run_length():
    """conspo_margin_steps 0 (the default) is the run's trainer.steps: an 8-step run ends at the final margin."""
    from gcpo.algorithms import conspo_margin

    cfg = with_run_span(load_config(preset="conspo", overrides=["trainer.steps=8"]))
    assert cfg.algorithm.conspo_margin_steps == 8
    a = cfg.algorithm
    margins = [conspo_margin(step, a.conspo_margin_start, a.conspo_margin_end, a.conspo_margin_steps)
               for step in range(8)]  # the run's 0-based steps
    assert margins[0] == 0.0 and margins[-1] == a.conspo_margin_end == 0.5  # the end value is reached
    assert margins[4] == pytest.approx(0.5 * 4 / 7)
    fixed = with_run_span(load_config(preset="conspo", overrides=["algorithm.conspo_margin_steps=100"]))
    assert fixed.algorithm.conspo_margin_steps == 100


def test_each_optimiser_update_reports_its_own_learnable_clip_fraction_and_kl_share():
    """Totals declared per update (`name@u`) are added to while the tally's `update` is u, and the bound objective
    turns them into `policy/clip_frac_learnable_u<u+1>` and `kl/grad_share_u<u+1>`."""
    a = load_config(preset="grpo").algorithm  # KL on
    objective = objective_for(a)
    names = objective.totals(2)
    assert "clipped_learnable@1" in names and "kl_grad_sq@0" in names
    tally = Tally(names + ("updates",))
    for u, (clipped, learnable, pg_sq, kl_sq) in enumerate([(0, 10, 9.0, 1.0), (6, 8, 1.0, 9.0)]):
        tally.update = u
        for name, value in (("clipped_learnable", clipped), ("learnable_tokens", learnable),
                            ("pg_grad_sq", pg_sq), ("kl_grad_sq", kl_sq), ("tokens", 20), ("kl_tokens", 10)):
            tally.add(name, value)
    summary = objective.summarize(tally.reduced() | {"updates": 2.0}, 2)
    assert summary["policy/clip_frac_learnable_u1"] == 0.0
    assert summary["policy/clip_frac_learnable_u2"] == pytest.approx(6 / 8)
    assert summary["policy/clip_frac_learnable"] == pytest.approx(6 / 18)  # both updates together
    assert summary["kl/grad_share_u1"] == pytest.approx(1 / (3 + 1))  # ||kl|| / (||pg|| + ||kl||)
    assert summary["kl/grad_share_u2"] == pytest.approx(3 / (1 + 3))
    assert summary["kl/grad_share"] == pytest.approx(math.sqrt(10) / (2 * math.sqrt(10)))
    no_kl = objective_for(load_config(preset="dapo").algorithm).summarize(tally.reduced() | {"updates": 2.0}, 2)
    assert "kl/grad_share_u1" not in no_kl and "policy/clip_frac_learnable_u2" in no_kl


def test_kl_rows_are_the_policys_own_samples_of_the_task_prompt():
    """Golden answers and hint-conditioned rows are not samples of pi given the task's prompt: KL leaves them out."""
    from gcpo.training.types import StepBatch
    from gcpo.training.update import own_samples

    batch = StepBatch(prompts=[[1]] * 4, responses=[[2]] * 4, advantages=torch.zeros(4), rewards=torch.zeros(1, 4),
                      correct=torch.zeros(1, 4), is_golden=torch.tensor([[False, False, False, True]]),
                      gen_logprobs=[[0.0]] * 3 + [None], hint_tokens=[0, 2, 0, 0])
    assert own_samples(batch, [0, 1, 2, 3]).tolist() == [True, False, True, False]
    assert own_samples(batch, [2]).tolist() == [True]
