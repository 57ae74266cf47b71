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
from gcpo.algorithms.losses import PolicyLossSettings

COMMON = dict(clip_low=0.2, clip_high=0.2, agg="token-mean")


def _loss(logp, old, adv, mask=None, ref_logp=None, **kw):
    mask = torch.ones_like(logp) if mask is None else mask
    settings = PolicyLossSettings.neutral(**{**COMMON, "ratio_level": "token", **kw})
    return policy_loss(logp, old, torch.tensor(adv), mask, settings, ref_logp=ref_logp)


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
    loss, m = policy_loss(logp, old, torch.tensor([1.0, 1.0]), torch.ones(2, 2),
                          PolicyLossSettings.neutral(ratio_level="sequence", agg="seq-mean-token-mean"))
    assert loss.item() == pytest.approx(-(1.2 + math.exp(0.1)) / 2, abs=1e-6)
    assert m["clip_frac"].item() == pytest.approx(0.5)


def test_plain_policy_gradient():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, _ = policy_loss(logp, logp.detach() + 3, torch.tensor([2.0, -1.0]), mask,
                          PolicyLossSettings.neutral(ratio_level="none", agg="token-mean"))
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
    loss, _ = policy_loss(logp, logp, torch.tensor([1.0]), torch.ones(1, 2),
                          PolicyLossSettings.neutral(**{**COMMON, "ratio_level": "none"}),
                          token_weights=torch.tensor([[1.5, 0.5]]))
    assert loss.item() == pytest.approx(-(1.5 * -1 + 0.5 * -1) / 2)


def test_zero_variance_group_gives_zero_gradient_under_grpo():
    logits = torch.randn(4, 5, 11, requires_grad=True)
    tokens = torch.randint(0, 11, (4, 5))
    logp = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    adv = group_advantages(torch.zeros(1, 4), norm="group").flatten()
    loss, _ = policy_loss(logp, logp.detach(), adv, torch.ones(4, 5),
                          PolicyLossSettings.neutral(ratio_level="token", agg="seq-mean-token-mean"))
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
        settings = PolicyLossSettings.neutral(ratio_level=ratio_level, clip_low=0.3, clip_high=0.3, agg=agg,
                                              kl_coef=0.1)
        return policy_loss(x, old, adv, mask, settings, ref_logp=ref)[0]

    assert torch.autograd.gradcheck(fn, (logp,), eps=1e-6, atol=1e-6)


# -- a KL that regularises (k3's value clamped; only the policy's own samples), learnable clip fractions


def test_k3_clamp_bounds_the_value_and_the_gradient():
    """k3 = e^-l + l - 1 clamped at 10: a token far below the reference (l = -11, the golden digits after one
    update) gives no gradient instead of e^11 - 1; tokens inside the clamp keep k3's own value and gradient."""
    logp = torch.tensor([-11.0, -2.0, 0.5, 12.0], requires_grad=True)
    ref = torch.zeros(4)
    unclamped = kl_penalty(logp, ref, "k3")
    assert unclamped[0].item() == pytest.approx(math.exp(11) - 12)
    clamped = kl_penalty(logp, ref, "k3", clamp=10.0)
    assert clamped.max().item() == pytest.approx(10.0)
    clamped.sum().backward()
    # d k3 / d l = 1 - e^-l inside the clamp, 0 outside (values 59,863 and 10.000006 are clamped)
    expected = [0.0, 1 - math.exp(2.0), 1 - math.exp(-0.5), 0.0]
    torch.testing.assert_close(logp.grad, torch.tensor(expected))
    assert logp.grad.abs().max().item() < math.exp(2.61)  # the bound the docs state: about e^2.6 - 1 at c = 10


def test_kl_over_the_policys_own_samples_only():
    """Row 1 is a golden answer: with `kl_rows` leaving it out its gradient is the policy term's alone, and the
    KL metric averages the sampled row's tokens only."""
    logp = torch.tensor([[-1.0, -2.0], [-9.0, -8.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0], [-0.5, -0.5]])
    settings = PolicyLossSettings.neutral(agg="token-mean", kl_coef=0.5)
    rows = torch.tensor([True, False])
    loss, m = policy_loss(logp, logp.detach(), torch.tensor([1.0, 1.0]), torch.ones(2, 2), settings, ref_logp=ref,
                          kl_rows=rows)
    loss.backward()
    k3 = [math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 1 - 1]
    assert m["kl"].item() == pytest.approx(sum(k3) / 2) and m["kl_tokens"].item() == 2
    # golden row: only -A * ratio / N with ratio 1 -> d/dlogp = -1/4 per token
    torch.testing.assert_close(logp.grad[1], torch.tensor([-0.25, -0.25]))
    # sampled row: -1/4 plus 0.5 * (1 - e^-l) / 4
    grad0 = [-0.25 + 0.5 * (1 - math.exp(-0.5)) / 4, -0.25 + 0.5 * (1 - math.exp(1.0)) / 4]
    torch.testing.assert_close(logp.grad[0], torch.tensor(grad0))
    # the gradient norms each term hands the log-probs: ||pg|| = sqrt(4) / 4, ||kl|| over row 0 only
    assert m["pg_grad_sq"].item() == pytest.approx(4 / 16)
    kl_sq = sum((0.5 * (1 - math.exp(-l)) / 4) ** 2 for l in (0.5, -1.0))
    assert m["kl_grad_sq"].item() == pytest.approx(kl_sq, rel=1e-5)


def test_clip_fraction_over_learnable_tokens_leaves_out_zero_advantages_and_padding():
    logp = torch.zeros(3, 2)
    old = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]))  # ratio 2 everywhere: clipped if A > 0
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    _, m = _loss(logp, old, [1.0, 1.0, 0.0], mask=mask)  # row 2: zero advantage (a zero-variance group)
    assert m["learnable_tokens"].item() == 3 and m["clip_learnable"].item() == 3
    assert m["clip_frac"].item() == pytest.approx(3 / 5)  # the old metric counts row 2's tokens as unclipped


def test_with_the_ratio_at_one_both_levels_give_the_same_gradient():
    """The negative control of the ratio-level switch: with one mini-batch (old log-probs = the policy's own) the
    token and the sequence ratio are both 1 and the two levels' gradients are equal, whatever their clip ranges."""
    torch.manual_seed(0)
    logits = torch.randn(3, 5)
    mask = torch.tensor([[1.0] * 5, [1.0] * 3 + [0.0] * 2, [1.0] * 4 + [0.0]])
    grads = {}
    for level, clip in (("token", 0.2), ("sequence", 3e-4)):
        logp = torch.log_softmax(logits, -1).clone().requires_grad_(True)
        settings = PolicyLossSettings.neutral(ratio_level=level, clip_low=clip, clip_high=clip)
        loss, m = policy_loss(logp, logp.detach(), torch.tensor([1.0, -0.5, 2.0]), mask, settings)
        loss.backward()
        grads[level] = logp.grad
        assert m["clip_frac"].item() == 0.0
    torch.testing.assert_close(grads["token"], grads["sequence"], rtol=0, atol=1e-7)
