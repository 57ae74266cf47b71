"""Group-relative advantages and GPG's gradient correction. Pure torch.

Shapes: `rewards` is (prompts, G), one row per group of G responses to the same prompt.
"""

from __future__ import annotations

import torch

from gcpo.algorithms.choices import AdvNorm


def group_advantages(rewards: torch.Tensor, norm: AdvNorm = "group", eps: float = 1e-6) -> torch.Tensor:
    """A_i = (r_i - mean_group(r)) / F_norm, same shape as `rewards`.

    F_norm: `group` -> the group's std + eps (GRPO); `batch` -> std of all rewards + eps; `none` -> 1
    (Dr.GRPO, GPG). Stds are the unbiased (n-1) estimator, as in GRPO reference code. A zero-variance
    group gives exactly zero (its centred rewards are exactly zero before any division).
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (prompts, G), got shape {tuple(rewards.shape)}")
    rewards = rewards.float()
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    # A group whose rewards are all equal is exactly zero even if mean() rounds.
    zero_var = (rewards == rewards[:, :1]).all(dim=1, keepdim=True)
    centred = torch.where(zero_var, torch.zeros_like(centred), centred)
    if norm == "group":
        scale = rewards.std(dim=1, keepdim=True) + eps
    elif norm == "batch":
        scale = rewards.std() + eps if rewards.numel() > 1 else torch.ones(())
    elif norm == "none":
        return centred
    else:
        raise ValueError(f"norm must be 'group', 'batch' or 'none', got {norm!r}")
    return centred / scale


def zero_variance_groups(rewards: torch.Tensor) -> torch.Tensor:
    """(prompts,) bool: groups whose G rewards are all equal (they carry no group-relative signal)."""
    return (rewards == rewards[:, :1]).all(dim=1)


def gpg_alpha(rewards: torch.Tensor) -> float:
    """GPG's accurate-gradient-estimation factor alpha = B / (B - M) (arXiv 2504.02546, eq. 7).

    B is the number of responses in the batch, M the number in zero-variance groups. When every group is
    degenerate (B == M) the gradient is exactly zero whatever alpha is; we return 1.0 so the value stays finite.
    """
    zero = zero_variance_groups(rewards)
    b = rewards.numel()
    m = int(zero.sum()) * rewards.shape[1]
    return 1.0 if b == m else b / (b - m)
