"""`gcpo.standalone.calibrate`: the pooled calibration over probe batches of different widths, against the
calibration functions applied by hand (the measurement on a model: tests/standalone/test_probe.py)."""

import torch

from gcpo.algorithms.calibration import clip_fraction
from gcpo.config import load_config
from gcpo.standalone.calibrate import SecondHalf, calibrate, halves


def _half(seed: int, rows: int, width: int) -> SecondHalf:
    g = torch.Generator().manual_seed(seed)
    token = torch.randn(rows, width, generator=g) * 0.05
    mask = torch.ones(rows, width)
    mask[0, width // 2:] = 0
    sequence = ((token * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True)).expand(rows, width) * mask
    return SecondHalf(token * mask, sequence.contiguous(), mask, torch.randn(rows, generator=g))


def test_calibration_pools_batches_of_different_widths_and_matches_the_token_fraction():
    cfg = load_config(preset="gcpo", overrides=["algorithm.clip_low=0.02", "algorithm.clip_high=0.028"])
    parts = [_half(0, 8, 5), _half(1, 8, 9), _half(2, 6, 3)]
    cal = calibrate(parts, cfg)
    assert cal.token_range == (0.02, 0.028) and cal.base_sequence_range == (3e-4, 4e-4)
    learnable = [int((p.mask.bool() & (p.advantages != 0)[:, None]).sum()) for p in parts]
    token = sum(clip_fraction(p.token_log_ratio, p.advantages, p.mask, 0.02, 0.028) * n for p, n in zip(parts, learnable))
    assert abs(cal.target - token / sum(learnable)) < 1e-9
    low, high = cal.sequence_range
    assert abs(high / low - 4 / 3) < 0.01
    pooled = sum(b["sequence_calibrated"] * n for b, n in zip(cal.per_batch, learnable)) / sum(learnable)
    assert pooled <= cal.target + 1e-3  # rounded to 3 digits
    assert [b["rows"] for b in cal.per_batch] == [8, 8, 6]
    assert all(b["sequence_base"] >= b["sequence_calibrated"] for b in cal.per_batch)


def test_halves_split_the_groups_as_the_update_does():
    from gcpo.training.types import StepBatch

    batch = StepBatch(prompts=[[g] for g in range(5) for _ in range(2)], responses=[[1]] * 10, gen_logprobs=[None] * 10,
                      rewards=torch.zeros(5, 2), correct=torch.zeros(5, 2, dtype=torch.bool),
                      is_golden=torch.zeros(5, 2, dtype=torch.bool), advantages=torch.arange(10.0))
    first, second = halves(batch, 2)
    assert [p[0] for p in first.prompts[::2]] == [0, 1, 2] and [p[0] for p in second.prompts[::2]] == [3, 4]
    assert second.advantages.tolist() == [6.0, 7.0, 8.0, 9.0]
