import math

import pytest
import torch

from gcpo.algorithms import (
    agg_normalizer,
    aggregate,
    group_advantages,
    importance_ratio,
    kl_penalty,
    policy_loss,
)

COMMON = dict(clip_low=0.2, clip_high=0.2, agg="token-mean")


def _loss(logp, old, adv, mask=None, **kw):
    mask = torch.ones_like(logp) if mask is None else mask
    args = {**COMMON, "ratio_level": "token", **kw}
    return policy_loss(logp, old, torch.tensor(adv), mask, **args)


def test_token_clip_hand_computed():
    logp = torch.tensor([[-1.0, -2.0]])
    old = torch.tensor([[-1.5, -2.0]])  # ratios e^0.5 = 1.6487 and 1
    loss, m = _loss(logp, old, [1.0])
    # token 0: max(-1.6487, -1.2) = -1.2 (clipped); token 1: -1; token mean
    assert loss.item() == pytest.approx((-1.2 - 1.0) / 2, abs=1e-6)
    assert m["clip_frac"].item() == pytest.approx(0.5)
    assert m["ratio_mean"].item() == pytest.approx((math.exp(0.5) + 1) / 2, abs=1e-6)


def test_negative_advantage_clips_below():
    logp = torch.tensor([[math.log(0.5), math.log(1.6)]])
    old = torch.zeros(1, 2)
    loss, m = _loss(logp, old, [-1.0])
    # ratio 0.5 -> max(0.5, 0.8) = 0.8 (clipped); ratio 1.6 -> max(1.6, 1.2) = 1.6 (unclipped)
    assert loss.item() == pytest.approx((0.8 + 1.6) / 2, abs=1e-6)
    assert m["clip_frac"].item() == pytest.approx(0.5)


def test_clip_higher_clips_only_above_one_plus_clip_high():
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.25, 1.30, 0.75]]))
    loss, m = _loss(logp, old, [1.0], clip_low=0.2, clip_high=0.28)
    # 1.25 < 1.28: not clipped; 1.30 -> 1.28; 0.75 with A > 0: min(0.75, 0.8)*A = 0.75, not clipped
    assert loss.item() == pytest.approx(-(1.25 + 1.28 + 0.75) / 3, abs=1e-6)
    assert m["clip_frac"].item() == pytest.approx(1 / 3)


def test_dual_clip_bounds_negative_advantage():
    logp = torch.log(torch.tensor([[5.0]]))
    loss, _ = _loss(logp, torch.zeros(1, 1), [-1.0], dual_clip=3.0)
    assert loss.item() == pytest.approx(3.0)  # min(max(5, 1.2), 3)
    loss, _ = _loss(logp, torch.zeros(1, 1), [-1.0])
    assert loss.item() == pytest.approx(5.0)


def test_sequence_ratio_is_exp_mean_and_shared():
    logp = torch.tensor([[-1.0, -2.0, -3.0, 0.0]], requires_grad=True)
    old = torch.tensor([[-1.2, -1.9, -3.3, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    ratio = importance_ratio(logp, old, mask, "sequence")
    s = math.exp((0.2 - 0.1 + 0.3) / 3)
    assert torch.allclose(ratio[0, :3], torch.full((3,), s), atol=1e-6)
    # GSPO-token form: d ratio_t / d logp_t = s on the token itself, nothing across tokens
    ratio[0, 0].backward()
    assert logp.grad[0, 0].item() == pytest.approx(s, abs=1e-6)
    assert torch.all(logp.grad[0, 1:] == 0)


def test_sequence_clip_hand_computed():
    logp = torch.tensor([[-1.0, -1.0], [-1.0, -1.0]])
    old = torch.tensor([[-1.5, -1.5], [-1.1, -1.1]])  # s = e^0.5 (clipped), e^0.1 (not)
    loss, m = policy_loss(logp, old, torch.tensor([1.0, 1.0]), torch.ones(2, 2), ratio_level="sequence",
                          clip_low=0.2, clip_high=0.2, agg="seq-mean-token-mean")
    assert loss.item() == pytest.approx(-(1.2 + math.exp(0.1)) / 2, abs=1e-6)
    assert m["clip_frac"].item() == pytest.approx(0.5)


def test_plain_policy_gradient():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, _ = policy_loss(logp, logp.detach() + 3, torch.tensor([2.0, -1.0]), mask, ratio_level="none",
                          clip_low=0.2, clip_high=0.2, agg="token-mean")
    # -A logp over 3 valid tokens: -(2*-1 + 2*-2 + -1*-0.5) / 3 ; old log-probs are ignored
    assert loss.item() == pytest.approx(-(-2 - 4 + 0.5) / 3)


def test_aggregations_hand_computed():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert aggregate(values, mask, "token-mean").item() == pytest.approx(10 / 4)
    assert aggregate(values, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate(values, mask, "seq-mean-token-sum-norm").item() == pytest.approx(10 / (2 * 3))
    assert aggregate(values, mask, "seq-mean-token-sum-norm", max_response_len=10).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="token-mean"):
        aggregate(values, mask, "mean")


def test_dr_grpo_normaliser_ignores_lengths():
    short = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    long = torch.ones(2, 4)
    assert agg_normalizer(short, "seq-mean-token-sum-norm", 64) == agg_normalizer(long, "seq-mean-token-sum-norm", 64)
    assert agg_normalizer(short, "token-mean") != agg_normalizer(long, "token-mean")


def test_kl_estimators_hand_computed():
    logp, ref = torch.tensor([-1.0]), torch.tensor([-1.5])
    assert kl_penalty(logp, ref, "k1").item() == pytest.approx(0.5)
    assert kl_penalty(logp, ref, "k2").item() == pytest.approx(0.125)
    assert kl_penalty(logp, ref, "k3").item() == pytest.approx(math.exp(-0.5) + 0.5 - 1)


def test_k3_never_negative():
    g = torch.Generator().manual_seed(0)
    logp, ref = torch.randn(1000, generator=g) * 5, torch.randn(1000, generator=g) * 5
    assert (kl_penalty(logp, ref, "k3") >= 0).all()


def test_kl_term_added_and_required():
    logp = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -2.0]])
    base, _ = _loss(logp, logp.detach(), [1.0])
    with_kl, m = _loss(logp, logp.detach(), [1.0], ref_logp=ref, kl_coef=0.1, kl_estimator="k1")
    assert (with_kl - base).item() == pytest.approx(0.1 * 0.5 / 2)
    assert m["kl"].item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="ref_logp"):
        _loss(logp, logp.detach(), [1.0], kl_coef=0.1)


def test_token_weights_scale_advantages():
    logp = torch.tensor([[-1.0, -1.0]])
    loss, _ = policy_loss(logp, logp, torch.tensor([1.0]), torch.ones(1, 2), ratio_level="none",
                          token_weights=torch.tensor([[1.5, 0.5]]), **COMMON)
    assert loss.item() == pytest.approx(-(1.5 * -1 + 0.5 * -1) / 2)


def test_zero_variance_group_gives_zero_gradient_under_grpo():
    logits = torch.randn(4, 5, 11, requires_grad=True)
    tokens = torch.randint(0, 11, (4, 5))
    logp = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    adv = group_advantages(torch.zeros(1, 4), norm="group").flatten()
    loss, _ = policy_loss(logp, logp.detach(), adv, torch.ones(4, 5), ratio_level="token",
                          clip_low=0.2, clip_high=0.2, agg="seq-mean-token-mean")
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0


@pytest.mark.parametrize("ratio_level", ["token", "sequence", "none"])
@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_gradient_matches_finite_differences(ratio_level, agg):
    g = torch.Generator().manual_seed(1)
    logp = (-torch.rand(3, 4, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    old = logp.detach() + torch.randn(3, 4, generator=g, dtype=torch.float64) * 0.05  # inside the clip range
    ref = logp.detach() + torch.randn(3, 4, generator=g, dtype=torch.float64) * 0.3
    adv = torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.float64)

    def fn(x):
        return policy_loss(x, old, adv, mask, ratio_level=ratio_level, clip_low=0.3, clip_high=0.3, agg=agg,
                           ref_logp=ref, kl_coef=0.1)[0]

    assert torch.autograd.gradcheck(fn, (logp,), eps=1e-6, atol=1e-6)
