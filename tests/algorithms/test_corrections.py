"""Rollout-mismatch corrections against hand computations: tis truncates, mis masks whole sequences by their
geometric-mean ratio, icepop masks tokens outside its band; rows no generator sampled keep weight 1."""

import math

import pytest
import torch

from gcpo.algorithms import correction_weights
from gcpo.config import ConfigError, load_config

# two sampled rows and one golden row; row 0 has 3 tokens, row 1 has 2 (one pad), row 2 (golden) 2
LOG_R = [[math.log(0.4), math.log(3.0), math.log(1.5)], [math.log(1.2), math.log(1.6), 0.0], [0.0, 0.0, 0.0]]
MASK = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 0]], dtype=torch.float32)
SAMPLED = torch.tensor([True, True, False])


def weights(kind, **bounds):
    behaviour = torch.zeros(3, 3)
    old = torch.tensor(LOG_R)  # old - behaviour = log r
    return correction_weights(old, behaviour, MASK, SAMPLED, kind, **bounds)


def test_tis_truncates_each_tokens_ratio_at_the_cap():
    w, m = weights("tis", cap=2.0)
    expected = torch.tensor([[0.4, 2.0, 1.5], [1.2, 1.6, 0.0], [1.0, 1.0, 0.0]])
    torch.testing.assert_close(w, expected)
    assert m["weight_mean"].item() == pytest.approx((0.4 + 2.0 + 1.5 + 1.2 + 1.6) / 5)
    assert m["ratio_mean"].item() == pytest.approx((0.4 + 3.0 + 1.5 + 1.2 + 1.6) / 5)
    assert m["masked_frac"].item() == 0.0 and m["tokens"].item() == 5


def test_mis_keeps_or_masks_whole_sequences_by_their_geometric_mean_ratio():
    w, m = weights("mis", cap=2.0)
    geo0 = (0.4 * 3.0 * 1.5) ** (1 / 3)  # 1.216: inside [1/2, 2], kept at weight geo0 on every token
    geo1 = (1.2 * 1.6) ** (1 / 2)  # 1.386: kept
    torch.testing.assert_close(w, torch.tensor([[geo0] * 3, [geo1, geo1, 0.0], [1.0, 1.0, 0.0]]))
    w, m = weights("mis", cap=1.3)  # now row 1 (1.386 > 1.3) is masked whole, row 0 kept
    torch.testing.assert_close(w, torch.tensor([[geo0] * 3, [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    assert m["masked_frac"].item() == pytest.approx(2 / 5)


def test_icepop_masks_tokens_outside_its_band_and_keeps_the_ratio_inside():
    w, m = weights("icepop", icepop_low=0.5, icepop_high=2.5)
    torch.testing.assert_close(w, torch.tensor([[0.0, 0.0, 1.5], [1.2, 1.6, 0.0], [1.0, 1.0, 0.0]]))
    assert m["masked_frac"].item() == pytest.approx(2 / 5)
    assert m["weight_mean"].item() == pytest.approx((1.5 + 1.2 + 1.6) / 5)


def test_none_is_one_and_in_sync_generators_leave_every_correction_at_one():
    w, _ = weights("none")
    torch.testing.assert_close(w, MASK)
    same = torch.randn(3, 3)  # generator log-probs equal to the trainer's: every ratio is 1
    for kind in ("tis", "mis", "icepop"):
        w, m = correction_weights(same, same.clone(), MASK, SAMPLED, kind)
        torch.testing.assert_close(w, MASK)
        assert m["masked_frac"].item() == 0.0


def test_the_config_refuses_bounds_that_cannot_work_and_losses_it_does_not_correct():
    with pytest.raises(ConfigError, match="algorithm.correction_cap"):
        load_config(overrides=["algorithm.correction_cap=1"])
    with pytest.raises(ConfigError, match="algorithm.icepop_low"):
        load_config(overrides=["algorithm.icepop_low=2"])
    with pytest.raises(ConfigError, match="algorithm.rollout_correction"):
        load_config(preset="conspo", overrides=["algorithm.rollout_correction=tis"])
    with pytest.raises(ConfigError, match="rollout_correction"):
        load_config(overrides=["algorithm.rollout_correction=tiss"])
