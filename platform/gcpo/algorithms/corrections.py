"""Rollout-mismatch corrections (`algorithm.rollout_correction`): the generator that sampled a response (the
behaviour policy, mu) is not exactly the trainer's policy at the same weights (the proximal policy, pi_old: the
trainer's own recomputed log-probs), because their kernels differ (bf16 generators, `rollout.dtype=bfloat16`,
differ by about 3e-2 per token on average) or, off-policy, their weights do. Each correction turns the per-token
ratio r_t = pi_old(y_t) / mu(y_t) = exp(old_logp_t - behaviour_logp_t) into a detached weight on the token's
policy-gradient term (the clipped surrogate's advantage), leaving the PPO ratio pi_theta / pi_old as it is
(decoupled PPO, as AReaL):

- `none`: weight 1.
- `tis` (truncated importance sampling; Yao et al. 2025, "Your Efficient RL Framework Secretly Brings You
  Off-Policy RL Training"): w_t = min(r_t, `correction_cap`), cap 2 by default (their value).
- `mis` (masked importance sampling at the sequence level, after Liu et al. 2025, "When Speed Kills
  Stability"): every token of a sequence gets w = rho when 1 / cap <= rho <= cap, and 0 (the whole sequence
  masked) otherwise, where rho is the sequence's ratio, by `mis_ratio`:
  - `geometric` (the default, a choice of ours): rho = exp(mean_t log r_t), length-normalised. A band [1/2, 2] on
    it is a band [2^-L, 2^L] on the product: on fp32 generators in sync it masked 0.0% of the rows of the
    off-policy grid's batches (measured 2026-12-06), so it rarely acts;
  - `product` (Liu et al.'s sequence ratio): rho = exp(sum_t log r_t), computed in log space (never overflows);
    it masked 45.8% of the same rows at [1/2, 2]: every token's small gap adds up over the sequence.
- `icepop` (Ring-1T's IcePop, Ling Team 2025): token-level two-sided masking, w_t = r_t when
  `icepop_low` <= r_t <= `icepop_high` (0.5 and 5 by default, the paper's), else 0.

Rows without a behaviour log-prob (an injected golden answer: no generator sampled it) keep weight 1 and are
counted apart: the correction does not apply to them.

Extreme ratios: the log-ratio is clamped to [-80, 80] before it is exponentiated (e^80 is finite in fp32), and a
mask is applied by selection, never by multiplying a weight by 0, so a generator log-prob hundreds of nats below
the trainer's gives weight `cap` (tis) or 0 (masked: mis, icepop), never NaN or inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gcpo.algorithms.choices import MisRatio, RolloutCorrection

LOG_RATIO_BOUND = 80.0  # |log r| beyond which a ratio is taken as e^80 (finite in fp32: e^88.7 overflows)


@dataclass(frozen=True)
class CorrectionSettings:
    """`algorithm.rollout_correction` (`kind`) and its bounds: TIS's and MIS's `cap`, IcePop's band, MIS's ratio."""

    kind: RolloutCorrection
    cap: float
    icepop_low: float
    icepop_high: float
    mis_ratio: MisRatio


def correction_weights(old_logp: torch.Tensor, behaviour_logp: torch.Tensor, mask: torch.Tensor,
                       sampled: torch.Tensor, settings: CorrectionSettings
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token weights (rows, T) for the policy-gradient term, detached, and their metrics.

    `old_logp`, `behaviour_logp`, `mask`: (rows, T); `sampled`: (rows,) bool, False for rows with no behaviour
    log-prob (golden answers: weight 1). Metrics over the sampled rows' tokens: `weight_mean`, `masked_frac`
    (share of tokens whose weight is 0), `ratio_mean` (mean r_t before any truncation or mask)."""
    maskf = mask.to(old_logp.dtype)
    log_ratio = ((old_logp - behaviour_logp).detach() * maskf).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)
    ratio = torch.exp(log_ratio)
    zero = torch.zeros_like(ratio)
    kind, cap = settings.kind, settings.cap
    if kind == "none":
        weights = torch.ones_like(ratio)
    elif kind == "tis":
        weights = ratio.clamp(max=cap)
    elif kind == "mis":
        seq_log = log_ratio.sum(1)
        if settings.mis_ratio == "geometric":
            seq_log = seq_log / maskf.sum(1).clamp(min=1.0)
        elif settings.mis_ratio != "product":
            raise ValueError(f"mis_ratio must be 'geometric' or 'product', got {settings.mis_ratio!r}")
        keep = seq_log.abs() <= math.log(cap)
        weights = torch.where(keep, torch.exp(seq_log.clamp(max=math.log(cap))), 0.0).unsqueeze(1).expand_as(ratio)
    elif kind == "icepop":
        weights = torch.where((ratio >= settings.icepop_low) & (ratio <= settings.icepop_high), ratio, zero)
    else:
        raise ValueError(f"unknown rollout correction {kind!r}")
    counted = maskf * sampled.to(maskf.dtype).unsqueeze(1)
    weights = torch.where(mask.bool(), torch.where(sampled.unsqueeze(1), weights, torch.ones_like(weights)), zero)
    n = counted.sum().clamp(min=1.0)
    metrics = {"weight_mean": (weights * counted).sum() / n, "masked_frac": ((weights == 0) * counted).sum() / n,
               "ratio_mean": (ratio * counted).sum() / n, "tokens": counted.sum()}
    return weights.detach(), metrics
