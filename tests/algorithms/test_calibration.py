"""Clip fractions and the calibrated clip range, against hand counts and the loss's own clip rule."""

import math

import pytest
import torch

from gcpo.algorithms import policy_loss
from gcpo.algorithms.calibration import calibrate_clip, clip_fraction
from gcpo.algorithms.losses import PolicyLossSettings


def test_clip_fraction_counts_tokens_moved_past_the_range_in_their_advantages_direction():
    log_ratio = torch.log(torch.tensor([[1.3, 0.7, 1.05], [0.7, 1.3, 1.0]]))
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    # A > 0: 1.3 clipped (> 1.2), 0.7 and 1.05 not; A < 0: 0.7 clipped (< 0.8), 1.3 not: 2 of 5 learnable tokens
    assert clip_fraction(log_ratio, adv, mask, 0.2, 0.2) == pytest.approx(2 / 5)
    assert clip_fraction(log_ratio, adv, mask, 0.5, 0.5) == 0.0
    assert clip_fraction(log_ratio, torch.zeros(2), mask, 0.2, 0.2) == 0.0  # nothing learnable


def test_clip_fraction_agrees_with_the_loss():
    torch.manual_seed(0)
    logp = torch.randn(6, 7) * 0.1 - 2
    old = logp + torch.randn(6, 7) * 0.05
    adv = torch.tensor([1.0, -1.0, 0.5, 0.0, -2.0, 1.0])
    mask = (torch.rand(6, 7) > 0.2).float()
    for low, high in ((0.02, 0.03), (0.05, 0.05), (0.2, 0.28)):
        _, m = policy_loss(logp, old, adv, mask, PolicyLossSettings.neutral(clip_low=low, clip_high=high))
        expected = m["clip_learnable"].item() / m["learnable_tokens"].item()
        assert clip_fraction(logp - old, adv, mask, low, high) == pytest.approx(expected)


def test_calibrated_range_reaches_the_target_fraction():
    torch.manual_seed(1)
    log_ratio = torch.randn(40, 16) * 0.01  # sequence-level sized moves
    adv = torch.randn(40)
    mask = torch.ones(40, 16)
    for target in (0.05, 0.2, 0.4):  # at most about half the tokens moved with their advantage
        eps = calibrate_clip(log_ratio, adv, mask, target, high_over_low=4 / 3)
        assert clip_fraction(log_ratio, adv, mask, eps, 4 / 3 * eps) <= target
        narrower = eps * (1 - 1e-3)
        assert clip_fraction(log_ratio, adv, mask, narrower, 4 / 3 * narrower) > target - 1 / 640 - 1e-9
    assert calibrate_clip(log_ratio, adv, mask, 1.0, high_over_low=1.0) == 1e-7
    with pytest.raises(ValueError, match="target"):
        calibrate_clip(log_ratio, adv, mask, 1.5, high_over_low=1.0)
    assert math.isfinite(calibrate_clip(log_ratio * 1000, adv, mask, 0.0, high_over_low=1.0))
