import math

import pytest
import torch

from gcpo.algorithms import gpg_alpha, group_advantages

REWARDS = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])


def test_group_norm_hand_computed():
    adv = group_advantages(REWARDS, norm="group")
    # group 0: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = sqrt(1/3)
    a = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    assert torch.allclose(adv[0], torch.tensor([a, -a, -a, a]), atol=1e-6)
    assert torch.equal(adv[1], torch.zeros(4)) and torch.equal(adv[2], torch.zeros(4))


def test_batch_norm_hand_computed():
    adv = group_advantages(REWARDS, norm="batch")
    # 12 rewards, 6 ones: mean 0.5, unbiased var 12 * 0.25 / 11
    a = 0.5 / (math.sqrt(3 / 11) + 1e-6)
    assert torch.allclose(adv[0], torch.tensor([a, -a, -a, a]), atol=1e-6)
    assert torch.equal(adv[1], torch.zeros(4))


def test_no_norm_is_centred_reward():
    rewards = torch.tensor([[1.0, 0.0, 0.5]])
    assert torch.allclose(group_advantages(rewards, norm="none"), torch.tensor([[0.5, -0.5, 0.0]]))


def test_zero_variance_exactly_zero_for_awkward_values():
    rewards = torch.full((2, 7), 0.1)  # mean() of 0.1s is not exactly 0.1 in float32
    for norm in ("group", "batch", "none"):
        assert torch.equal(group_advantages(rewards, norm=norm), torch.zeros(2, 7))


def test_bad_inputs():
    with pytest.raises(ValueError, match="prompts, G"):
        group_advantages(torch.zeros(4))
    with pytest.raises(ValueError, match="norm"):
        group_advantages(REWARDS, norm="std")


def test_gpg_alpha():
    assert gpg_alpha(REWARDS) == pytest.approx(12 / (12 - 8))
    assert gpg_alpha(torch.tensor([[1.0, 0.0], [0.0, 1.0]])) == 1.0
    # all degenerate: defined as 1.0, never inf or NaN
    assert gpg_alpha(torch.zeros(3, 4)) == 1.0
