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
  Stability"): the sequence's ratio is taken as the geometric mean of its token ratios, rho = exp(mean_t
  log r_t) (length-normalised: the plain product of a 64-token sequence under or overflows long before the
  policies differ much; a choice of ours); every token of the sequence gets w = rho when 1 / cap <= rho <= cap,
  and 0 (the whole sequence masked) otherwise.
- `icepop` (Ring-1T's IcePop, Ling Team 2025): token-level two-sided masking, w_t = r_t when
  `icepop_low` <= r_t <= `icepop_high` (0.5 and 5 by default, the paper's), else 0.

Rows without a behaviour log-prob (an injected golden answer: no generator sampled it) keep weight 1 and are
counted apart: the correction does not apply to them.
"""

from __future__ import annotations

import torch

from gcpo.algorithms.choices import RolloutCorrection


def correction_weights(old_logp: torch.Tensor, behaviour_logp: torch.Tensor, mask: torch.Tensor,
                       sampled: torch.Tensor, kind: RolloutCorrection, *, cap: float = 2.0,
                       icepop_low: float = 0.5, icepop_high: float = 5.0
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token weights (rows, T) for the policy-gradient term, detached, and their metrics.

    `old_logp`, `behaviour_logp`, `mask`: (rows, T); `sampled`: (rows,) bool, False for rows with no behaviour
    log-prob (golden answers: weight 1). Metrics over the sampled rows' tokens: `weight_mean`, `masked_frac`
    (share of tokens whose weight is 0), `ratio_mean` (mean r_t before any truncation or mask)."""
    maskf = mask.to(old_logp.dtype)
    log_ratio = (old_logp - behaviour_logp).detach() * maskf
    ratio = torch.exp(log_ratio)
    if kind == "none":
        weights = torch.ones_like(ratio)
    elif kind == "tis":
        weights = ratio.clamp(max=cap)
    elif kind == "mis":
        geo = torch.exp(log_ratio.sum(1) / maskf.sum(1).clamp(min=1.0))
        keep = (geo >= 1.0 / cap) & (geo <= cap)
        weights = (geo * keep).unsqueeze(1).expand_as(ratio)
    elif kind == "icepop":
        weights = ratio * ((ratio >= icepop_low) & (ratio <= icepop_high))
    else:
        raise ValueError(f"unknown rollout correction {kind!r}")
    counted = maskf * sampled.to(maskf.dtype).unsqueeze(1)
    weights = torch.where(sampled.unsqueeze(1), weights, torch.ones_like(weights)) * maskf
    n = counted.sum().clamp(min=1.0)
    metrics = {"weight_mean": (weights * counted).sum() / n, "masked_frac": ((weights == 0) * counted).sum() / n,
               "ratio_mean": (ratio * counted).sum() / n, "tokens": counted.sum()}
    return weights.detach(), metrics
