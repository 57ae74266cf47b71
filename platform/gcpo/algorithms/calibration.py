"""Clip ranges that learn from equal data: the clip fraction of a mini-batch as a function of the clip range, and
the range of one ratio level that matches another level's fraction. Pure torch.

Why: with two mini-batches a step, the second one sees a policy the first one moved. A token whose ratio moved
past the clip range *in the direction of its advantage* (rho > 1 + eps_high with A > 0, rho < 1 - eps_low with
A < 0) is clipped: it gives no gradient. GSPO's sequence range (3e-4 / 4e-4) against the token level's 0.2 / 0.28
clipped 56-80% of the second mini-batch's learnable tokens where the token level clipped 2-6% (measured
2026-12-06), so "token vs sequence ratio" also meant "all the data vs a third of it". Calibrating each level's range
to the same second-mini-batch clip fraction removes that confound.

`clip_fraction(log_ratio, advantages, mask, low, high)`: the share of learnable tokens (mask 1 and a non-zero
advantage) that the clipped surrogate's clipped branch takes, exactly the rule of `gcpo.algorithms.losses`'s
`_surrogate` (the ratio is exp(log_ratio): per token for the token level, the sequence's mean log-ratio on each of its
tokens for the sequence level).

`calibrate_clip(log_ratio, advantages, mask, target, high_over_low)`: the eps_low (with eps_high = high_over_low *
eps_low, keeping the level's asymmetry: GSPO's 4/3, DAPO's 1.4) whose clip fraction is `target`, by bisection in
log-space (the fraction falls as the range widens). The fraction is a step function of the range, so the result is
the narrowest range at or below the target, within a relative tolerance of 1e-4.
"""

from __future__ import annotations

import math

import torch


def clip_fraction(log_ratio: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, low: float,
                  high: float) -> float:
    """Share of learnable tokens clipped at the range (low, high); `log_ratio` and `mask` (rows, T), `advantages`
    (rows,) or (rows, T). 0 when nothing is learnable."""
    adv = advantages if advantages.dim() == 2 else advantages.unsqueeze(1).expand_as(log_ratio)
    learnable = mask.bool() & (adv != 0)
    ratio = torch.exp(log_ratio.clamp(-20.0, 20.0))
    clipped = ((adv > 0) & (ratio > 1.0 + high)) | ((adv < 0) & (ratio < 1.0 - low))
    n = int(learnable.sum())
    return float((clipped & learnable).sum()) / n if n else 0.0


def calibrate_clip(log_ratio: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, target: float, *,
                   high_over_low: float, bounds: tuple[float, float] = (1e-7, 0.99)) -> float:
    """The eps_low whose clip fraction (eps_high = high_over_low * eps_low) is at most `target`, the smallest such
    within a relative 1e-4; `bounds` limit the search (eps_low < 1: a ratio is never below 0)."""
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target clip fraction must lie in [0, 1], got {target}")
    lo, hi = math.log(bounds[0]), math.log(bounds[1])

    def fraction(log_eps: float) -> float:
        eps = math.exp(log_eps)
        return clip_fraction(log_ratio, advantages, mask, eps, high_over_low * eps)

    if fraction(lo) <= target:
        return bounds[0]
    if fraction(hi) > target:
        return bounds[1]
    while hi - lo > 1e-4:  # invariant: fraction(lo) > target >= fraction(hi)
        mid = (lo + hi) / 2
        if fraction(mid) > target:
            lo = mid
        else:
            hi = mid
    return math.exp(hi)
