"""Batch-filling policies: which groups to keep and whether to sample more prompts. Pure torch.

The training loop keeps a candidate batch of groups. After each sampling round (and after golden-answer
injection) it calls `fill_decision` on the candidate batch's `valid` flags (a group is valid when its rewards
are not all equal), drops the groups not kept, and samples another round if asked.

- `none`: keep everything, never sample more.
- `dapo` (DAPO dynamic sampling): keep only valid groups; while fewer than `target` are kept and rounds remain,
  sample more; once enough, keep the first `target` valid ones. At the cap, train on the valid groups found
  (possibly fewer than `target`, possibly none: the loop then skips the update and counts it).
- `gpg` (GPG's beta_th threshold): if the valid fraction of the candidate batch is at least `beta_th`, or the
  round cap is reached, keep everything (alpha = B/(B-M) corrects for the invalid groups); otherwise keep only
  the valid groups and sample more (they are accumulated into the next round's batch).
"""

from __future__ import annotations

from dataclasses import dataclass
import torch

from gcpo.algorithms.choices import FillPolicy


@dataclass(frozen=True)
class FillDecision:
    keep: torch.Tensor  # (groups,) bool: which candidate groups stay
    sample_more: bool  # whether to sample another round of prompts


def fill_decision(
    valid: torch.Tensor,
    *,
    policy: FillPolicy,
    target: int,
    beta_th: float,
    round_index: int,
    max_rounds: int,
) -> FillDecision:
    """Decide for the candidate batch; `round_index` counts extra rounds already sampled (0 on the first)."""
    valid = valid.bool()
    can_sample = round_index < max_rounds
    if policy == "none":
        return FillDecision(torch.ones_like(valid), False)
    if policy == "dapo":
        n_valid = int(valid.sum())
        if n_valid >= target:
            keep = valid & (valid.cumsum(0) <= target)
            return FillDecision(keep, False)
        return FillDecision(valid.clone(), can_sample)
    if policy == "gpg":
        frac = float(valid.float().mean()) if valid.numel() else 0.0
        if frac >= beta_th or not can_sample:
            return FillDecision(torch.ones_like(valid), False)
        return FillDecision(valid.clone(), True)
    raise ValueError(f"batch_filling must be 'none', 'dapo' or 'gpg', got {policy!r}")
