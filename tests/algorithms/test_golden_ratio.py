"""`algorithm.golden_ratio`: how golden-answer rows meet the ratio and its clip, against hand computations of the
per-token loss and its gradient. Sampled rows are the same under every value; the golden row is clipped out under
`clip` (ratio 1.5 > 1.2 with A > 0), gets -A grad logp under `unclipped` and LUFFY's shaped weight under `shaped`."""

import math

import pytest
import torch

from gcpo.algorithms import golden_token_loss, policy_loss
from gcpo.algorithms.losses import PolicyLossSettings
from gcpo.config import ConfigError, load_config

# rows: 0 sampled (A = -1, ratio 0.9), 1 sampled (A = +1, ratio 1.1, one padded token), 2 golden (A = +1, ratio 1.5)
PROBS = [[0.3, 0.2], [0.4, 0.6], [0.5, 0.1]]
RATIOS = [[0.9, 0.9], [1.1, 1.1], [1.5, 1.5]]
ADV = torch.tensor([-1.0, 1.0, 1.0])
MASK = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
GOLDEN = torch.tensor([False, False, True])
N = 5.0  # valid tokens (token-mean)
GAMMA = 0.1


def loss_and_grad(golden_ratio, ratio_level="token", clip=(0.2, 0.2)):
    logp = torch.log(torch.tensor(PROBS)).requires_grad_(True)
    old = logp.detach() - torch.log(torch.tensor(RATIOS))
    settings = PolicyLossSettings.neutral(ratio_level=ratio_level, clip_low=clip[0], clip_high=clip[1],
                                          agg="token-mean", golden_ratio=golden_ratio, shaping_gamma=GAMMA)
    loss, metrics = policy_loss(logp, old, ADV, MASK, settings, golden=GOLDEN)
    loss.backward()
    return loss.item(), logp.grad, metrics


def sampled_part():
    """(loss, grad) of the sampled rows by hand: both ratios lie inside [0.8, 1.2], so -A rho per token."""
    loss = (1 * 0.9 + 1 * 0.9 - 1 * 1.1) / N
    grad = torch.tensor([[0.9, 0.9], [-1.1, 0.0]]) / N  # d(-A rho)/dlogp = -A rho
    return loss, grad


def test_clip_treats_the_golden_row_like_any_other_row_and_clips_it_out():
    loss, grad, metrics = loss_and_grad("clip")
    s_loss, s_grad = sampled_part()
    assert loss == pytest.approx(s_loss + 2 * (-1.2) / N)  # clipped branch: -A (1 + 0.2), constant in theta
    torch.testing.assert_close(grad[:2], s_grad)
    torch.testing.assert_close(grad[2], torch.zeros(2))  # no gradient: the golden answer teaches nothing
    assert metrics["clip_frac"].item() == pytest.approx(2 / N)


def test_unclipped_gives_the_golden_row_the_plain_policy_gradient_at_any_ratio():
    loss, grad, metrics = loss_and_grad("unclipped")
    s_loss, s_grad = sampled_part()
    assert loss == pytest.approx(s_loss + (-math.log(0.5) - math.log(0.1)) / N)  # -A logp per token
    torch.testing.assert_close(grad[:2], s_grad)
    torch.testing.assert_close(grad[2], torch.tensor([-1.0, -1.0]) / N)  # -A, whatever the ratio
    assert metrics["clip_frac"].item() == 0.0  # golden rows never count as clipped


def test_shaped_is_luffys_regularised_ratio():
    loss, grad, _ = loss_and_grad("shaped")
    s_loss, s_grad = sampled_part()
    shaped = [p / (p + GAMMA) for p in PROBS[2]]  # f(pi) = pi / (pi + gamma): 0.8333, 0.5
    assert loss == pytest.approx(s_loss - sum(shaped) / N)
    torch.testing.assert_close(grad[:2], s_grad)
    # d/dlogp [-A pi / (pi + gamma)] = -A gamma pi / (pi + gamma)^2: 0.1389 at pi = 0.5, 0.25 at pi = 0.1 = gamma
    by_hand = torch.tensor([-GAMMA * p / (p + GAMMA) ** 2 for p in PROBS[2]]) / N
    torch.testing.assert_close(grad[2], by_hand)
    assert by_hand[1].item() == pytest.approx(-0.25 / N)  # the largest weight, 1/4, at pi = gamma


def test_the_sequence_ratio_does_not_reach_unclipped_golden_rows():
    _, grad, _ = loss_and_grad("unclipped", ratio_level="sequence", clip=(3e-4, 4e-4))
    torch.testing.assert_close(grad[2], torch.tensor([-1.0, -1.0]) / N)
    _, grad, _ = loss_and_grad("clip", ratio_level="sequence", clip=(3e-4, 4e-4))
    torch.testing.assert_close(grad[2], torch.zeros(2))  # s = 1.5 > 1 + 4e-4: clipped out


def test_without_golden_rows_every_value_is_the_same_loss():
    logp = torch.log(torch.tensor(PROBS))
    old = logp - torch.log(torch.tensor(RATIOS))
    losses = {value: policy_loss(logp, old, ADV, MASK,
                                 PolicyLossSettings.neutral(agg="token-mean", golden_ratio=value),
                                 golden=torch.zeros(3, dtype=torch.bool))[0]
              for value in ("clip", "unclipped", "shaped")}
    assert losses["clip"].item() == losses["unclipped"].item() == losses["shaped"].item()


def test_golden_token_loss_refuses_clip_and_the_config_checks_its_fields():
    with pytest.raises(ValueError, match="'unclipped' or 'shaped'"):
        golden_token_loss(torch.zeros(1, 1), torch.ones(1, 1), "clip", gamma=0.1)
    assert load_config(preset="gcpo", overrides=["algorithm.golden_ratio=shaped"]).algorithm.golden_ratio == "shaped"
    with pytest.raises(ConfigError, match="algorithm.golden_ratio: invalid value 'unclip'"):
        load_config(overrides=["algorithm.golden_ratio=unclip"])
    with pytest.raises(ConfigError, match="algorithm.golden_shaping_gamma: must be > 0"):
        load_config(overrides=["algorithm.golden_shaping_gamma=0"])
    with pytest.raises(ConfigError, match="algorithm.golden_ratio: .* needs loss 'clipped'"):
        load_config(preset="conspo", overrides=["algorithm.golden_ratio=unclipped"])
    with pytest.raises(ConfigError, match=r"algorithm.clip_low_sequence: must lie in \[0, 1\)"):
        load_config(overrides=["algorithm.clip_low_sequence=1.0"])
    with pytest.raises(ConfigError, match="algorithm.clip_high_sequence: must be >= 0"):
        load_config(overrides=["algorithm.clip_high_sequence=-1e-4"])
