import math

import pytest
import torch

from gcpo.algorithms import conspo_loss, conspo_margin, sequence_scores


def test_single_positive_hand_computed():
    scores = torch.tensor([[-1.0, -2.0, -3.0]])
    correct = torch.tensor([[True, False, False]])
    loss, m = conspo_loss(scores, correct, tau=1.0, margin=0.0)
    expected = -math.log(math.exp(-1) / (math.exp(-1) + math.exp(-2) + math.exp(-3)))
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    loss, _ = conspo_loss(scores, correct, tau=0.5, margin=0.5)
    a = (-1 - 0.5) / 0.5
    expected = -math.log(math.exp(a) / (math.exp(a) + math.exp(-4) + math.exp(-6)))
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert m["score_gap"].item() == pytest.approx(-1 - (-2.5))


def test_each_positive_contrasts_only_against_negatives():
    scores = torch.tensor([[-1.0, -1.5, -2.0], [-1.0, -1.0, -1.0], [-0.5, -0.7, -0.9]])
    correct = torch.tensor([[True, True, False], [False, False, False], [True, True, True]])
    loss, m = conspo_loss(scores, correct, tau=1.0, margin=0.0)
    lp = lambda p, n: math.log1p(math.exp(n - p))  # -log(e^p / (e^p + e^n))
    expected = (lp(-1.0, -2.0) + lp(-1.5, -2.0)) / 2  # groups without contrast contribute nothing
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert m["num_contrast_groups"].item() == 1 and m["num_positives"].item() == 2


def test_no_contrast_anywhere_is_zero_and_finite():
    loss, _ = conspo_loss(torch.randn(2, 4, requires_grad=True), torch.zeros(2, 4, dtype=torch.bool),
                          tau=1.0, margin=0.3)
    assert loss.item() == 0.0


def test_gradient_separates_positive_from_negative():
    scores = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    loss, _ = conspo_loss(scores, torch.tensor([[True, False]]), tau=1.0, margin=0.2)
    loss.backward()
    assert scores.grad[0, 0] < 0 < scores.grad[0, 1]  # descent raises the positive, lowers the negative


def test_margin_schedule_and_scores():
    assert conspo_margin(0, 0.0, 0.5, 101) == 0.0
    assert conspo_margin(50, 0.0, 0.5, 101) == pytest.approx(0.25)
    assert conspo_margin(100, 0.0, 0.5, 101) == 0.5  # the ramp's last step reaches the end value
    assert conspo_margin(500, 0.0, 0.5, 101) == 0.5
    assert conspo_margin(0, 0.0, 0.5, 1) == 0.5  # a one-step ramp is at its end from the start
    logp = torch.tensor([[-1.0, -3.0, 9.0]])
    assert sequence_scores(logp, torch.tensor([[1, 1, 0]])).item() == pytest.approx(-2.0)

