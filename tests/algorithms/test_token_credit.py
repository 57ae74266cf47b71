import math

import pytest
import torch

from gcpo.algorithms import guidance_token_weights

POS = torch.tensor([[-1.0, -1.0, -1.0, -1.0]])
NEG = torch.tensor([[-1.0, -3.0, -0.5, 0.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0]])


def _d(delta):
    return min(math.exp(delta) - delta - 1, 10.0)


def test_value_mode_hand_computed():
    w = guidance_token_weights(POS, NEG, MASK, mode="value", power=2.15)
    d = [_d(0.0) + 1e-6, _d(-2.0) + 1e-6, _d(0.5) + 1e-6]
    mean = sum(d) / 3
    assert torch.allclose(w[0, :3], torch.tensor([x / mean for x in d]), atol=1e-5)
    assert w[0, 3] == 0


def test_rank_mode_hand_computed():
    w = guidance_token_weights(POS, NEG, MASK, mode="rank", power=2.0)
    # d = [0, 1.135, 0.149] -> ranks 1, 3, 2 of 3 -> percentiles 1/3, 1, 2/3 -> squared
    raw = [(1 / 3) ** 2, 1.0, (2 / 3) ** 2]
    mean = sum(raw) / 3
    assert torch.allclose(w[0, :3], torch.tensor([x / mean for x in raw]), atol=1e-6)
    assert w[0, 3] == 0


def test_weights_average_to_one_and_need_no_grad():
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(5, 9, generator=g, requires_grad=True)
    neg = torch.randn(5, 9, generator=g)
    mask = (torch.rand(5, 9, generator=g) > 0.3).float()
    mask[:, 0] = 1
    for mode in ("rank", "value"):
        w = guidance_token_weights(pos, neg, mask, mode=mode, power=2.15)
        assert not w.requires_grad
        means = (w * mask).sum(1) / mask.sum(1)
        assert torch.allclose(means, torch.ones(5), atol=1e-5)


def test_extreme_gaps_are_clamped():
    w = guidance_token_weights(torch.tensor([[-50.0, -1.0]]), torch.tensor([[0.0, -1.0]]), torch.ones(1, 2),
                               mode="value", power=2.15)
    assert torch.isfinite(w).all()
    assert w[0, 0].item() == pytest.approx(2 * (10 + 1e-6) / (10 + 2e-6), rel=1e-5)
