"""Guidance-contrastive token credit (arXiv 2605.29198). Pure torch, computed without gradient.

Each sampled response is scored under the original prompt (logp_pos) and under a negative prompt (logp_neg: the
question plus an instruction to answer wrongly, or an empty question). Per token:
    delta = clamp(logp_neg - logp_pos, -20, 20);  d = min(exp(delta) - delta - 1, 10)
d >= 0 is large where the token depends on the real question. Weights are normalised within each response so
they average to 1 over its valid tokens, and token advantage = sequence advantage * weight.

Two mappings from d to weights:
- `rank` (default, as in the paper's public code): rank the response's tokens by d, map percentile p in (0, 1]
  to p^power (power ~ 2.15), then normalise. Ties are broken by position (stable sort).
- `value`: use d itself (+1e-6 so an all-zero response gets uniform weights), then normalise.
"""

from __future__ import annotations

from typing import Literal

import torch


@torch.no_grad()
def guidance_token_weights(
    logp_pos: torch.Tensor,
    logp_neg: torch.Tensor,
    mask: torch.Tensor,
    *,
    mode: Literal["rank", "value"] = "rank",
    power: float,
) -> torch.Tensor:
    """(responses, T) weights, 0 on masked tokens, mean 1 over each response's valid tokens."""
    maskb = mask.bool()
    maskf = mask.to(logp_pos.dtype)
    delta = (logp_neg - logp_pos).clamp(-20.0, 20.0)
    d = (torch.exp(delta) - delta - 1.0).clamp(max=10.0)
    if mode == "value":
        raw = (d + 1e-6) * maskf
    elif mode == "rank":
        # Masked tokens sort first (score -inf), so valid tokens get ranks (T - n + 1)..T; shift to 1..n.
        keyed = torch.where(maskb, d, torch.full_like(d, -float("inf")))
        order = torch.argsort(keyed, dim=1, stable=True)
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(d.shape[1]).expand_as(order).contiguous())
        n_valid = maskf.sum(dim=1, keepdim=True)
        rank_in_valid = ranks.to(d.dtype) - (d.shape[1] - n_valid) + 1.0
        percentile = rank_in_valid / n_valid.clamp(min=1.0)
        raw = percentile.clamp(min=0.0).pow(power) * maskf
    else:
        raise ValueError(f"mode must be 'rank' or 'value', got {mode!r}")
    mean = raw.sum(dim=1, keepdim=True) / maskf.sum(dim=1, keepdim=True).clamp(min=1.0)
    return torch.where(maskb, raw / mean.clamp(min=1e-12), torch.zeros_like(raw))
