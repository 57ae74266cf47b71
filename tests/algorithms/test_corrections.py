"""Rollout-mismatch corrections against hand computations: tis truncates, mis masks whole sequences by their
geometric-mean ratio, icepop masks tokens outside its band; rows no generator sampled keep weight 1."""

import math

import pytest
import torch

from gcpo.algorithms import correction_weights
from gcpo.algorithms.corrections import CorrectionSettings
from gcpo.config import ConfigError, load_config

# two sampled rows and one golden row; row 0 has 3 tokens, row 1 has 2 (one pad), row 2 (golden) 2
LOG_R = [[math.log(0.4), math.log(3.0), math.log(1.5)], [math.log(1.2), math.log(1.6), 0.0], [0.0, 0.0, 0.0]]
MASK = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 0]], dtype=torch.float32)
SAMPLED = torch.tensor([True, True, False])


def settings(kind, **bounds):
    values = {"cap": 2.0, "icepop_low": 0.5, "icepop_high": 5.0, "mis_ratio": "geometric"} | bounds
    return CorrectionSettings(kind=kind, **values)


def weights(kind, **bounds):
    behaviour = torch.zeros(3, 3)
    old = torch.tensor(LOG_R)  # old - behaviour = log r
    return correction_weights(old, behaviour, MASK, SAMPLED, settings(kind, **bounds))


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
        w, m = correction_weights(same, same.clone(), MASK, SAMPLED, settings(kind))
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


def test_mis_product_ratio_masks_by_the_product_of_the_token_ratios():
    """The product of row 0's ratios is 0.4 * 3 * 1.5 = 1.8 (kept at cap 2), row 1's 1.92 (kept); at cap 1.85 row 1
    is masked; the geometric mean would keep both (1.216, 1.386)."""
    w, _ = weights("mis", cap=2.0, mis_ratio="product")
    torch.testing.assert_close(w, torch.tensor([[1.8] * 3, [1.92, 1.92, 0.0], [1.0, 1.0, 0.0]]))
    w, m = weights("mis", cap=1.85, mis_ratio="product")
    torch.testing.assert_close(w, torch.tensor([[1.8] * 3, [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    assert m["masked_frac"].item() == pytest.approx(2 / 5)
    assert weights("mis", cap=1.85)[1]["masked_frac"].item() == 0.0


@pytest.mark.parametrize("kind", ["tis", "mis", "icepop"])
@pytest.mark.parametrize("mis_ratio", ["geometric", "product"])
@pytest.mark.parametrize("gap", [95.0, -95.0, 400.0])
def test_extreme_ratios_give_finite_weights(kind, mis_ratio, gap):
    """A generator log-prob hundreds of nats from the trainer's (e^95 overflows fp32): tis truncates at its cap,
    mis and icepop mask (weight 0); never NaN or inf, and padding stays 0."""
    old = torch.zeros(3, 3)
    behaviour = torch.full((3, 3), -gap)  # log r = gap on every token
    w, m = correction_weights(old, behaviour, MASK, SAMPLED, settings(kind, mis_ratio=mis_ratio))
    assert torch.isfinite(w).all() and all(torch.isfinite(v).all() for v in m.values())
    sampled_tokens = w[:2][MASK[:2].bool()]
    if kind == "tis":
        expected = 2.0 if gap > 0 else 0.0  # min(r, cap); e^-95 is 0 in fp32
        assert torch.allclose(sampled_tokens, torch.full_like(sampled_tokens, expected))
    else:
        assert (sampled_tokens == 0).all()
    torch.testing.assert_close(w[2], torch.tensor([1.0, 1.0, 0.0]))  # the golden row
    assert (w[~MASK.bool()] == 0).all()
