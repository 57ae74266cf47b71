"""ConSPO: group-wise InfoNCE over length-normalised sequence log-probs, with a curriculum margin. Pure torch.

Only the abstract is available, so these are our choices, stated:
- Score s_i = mean_t log pi_theta(o_{i,t}) over the response tokens (gradient flows through it).
- Positives are the verifier-accepted responses (accuracy, not format); negatives the rest of the same group.
- For each positive p: loss_p = -log( exp((s_p - m)/tau) / (exp((s_p - m)/tau) + sum_n exp(s_n/tau)) ).
  The margin m handicaps the positive, so the loss keeps pushing until s_p exceeds the negatives by about m.
- Groups with no positive or no negative have no contrast and contribute nothing (like GRPO's zero-variance
  groups); the batch loss is the mean over all positives that have at least one negative (a global count, so
  pass `normalizer` under data parallelism).
- Margin schedule: linear from `start` at step 0 to `end` at step `steps` - 1 (the ramp's last step, the run's
  last step by default), then constant. (Before 2026-12, `step / steps`: the run's last step reached 7/8 of the
  way at 8 steps, and `end` was never used.)
"""

from __future__ import annotations

import torch


def sequence_scores(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(responses,) length-normalised sequence log-prob: sum_t logp m / sum_t m."""
    maskf = mask.to(logp.dtype)
    return (logp * maskf).sum(dim=1) / maskf.sum(dim=1).clamp(min=1.0)


def conspo_margin(step: int, start: float, end: float, steps: int) -> float:
    """Linear curriculum over 0-based steps: `start` at step 0, `end` at step `steps` - 1 and after (`end` from
    the first step when `steps` <= 1)."""
    if steps <= 1:
        return end
    frac = min(max(step / (steps - 1), 0.0), 1.0)
    return start + (end - start) * frac


def contrastive_roles(correct: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(positives, negatives, contrast) of `correct` (prompts, G): a group has a contrast when it holds at least one
    correct and one wrong response; positives and negatives are counted only in such groups."""
    pos = correct.bool()
    neg = ~pos
    contrast = pos.any(dim=1) & neg.any(dim=1)  # (prompts,)
    return pos & contrast.unsqueeze(1), neg & contrast.unsqueeze(1), contrast


def conspo_normalizer(correct: torch.Tensor) -> torch.Tensor:
    """The loss's denominator for these groups: the number of contrastive positives (sum it over ranks under DP)."""
    return contrastive_roles(correct)[0].sum().float()


def conspo_loss(
    scores: torch.Tensor,
    correct: torch.Tensor,
    *,
    tau: float,
    margin: float,
    normalizer: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean InfoNCE loss over contrastive positives; `scores`, `correct` are (prompts, G).

    Returns (loss, metrics) with `num_pairs_groups` (groups with a contrast), `num_positives`, and
    `score_gap` (mean positive score minus mean negative score over contrastive groups).
    """
    if scores.shape != correct.shape or scores.dim() != 2:
        raise ValueError(f"scores and correct must both be (prompts, G); got {tuple(scores.shape)}, "
                         f"{tuple(correct.shape)}")
    pos, neg, contrast = contrastive_roles(correct)
    s = scores / tau
    neg_inf = torch.finfo(scores.dtype).min
    # log sum_n exp(s_n / tau), per group: (prompts, 1)
    neg_lse = torch.logsumexp(torch.where(neg, s, torch.full_like(s, neg_inf)), dim=1, keepdim=True)
    pos_logit = s - margin / tau
    # -log(e^a / (e^a + e^b)) = softplus(b - a)
    per_response = torch.nn.functional.softplus(neg_lse - pos_logit)
    per_response = torch.where(pos, per_response, torch.zeros_like(per_response))
    n_pos = pos.sum().to(scores.dtype)
    norm = torch.as_tensor(normalizer if normalizer is not None else n_pos, dtype=scores.dtype).clamp(min=1.0)
    loss = per_response.sum() / norm
    with torch.no_grad():
        if contrast.any():
            gap = (scores[pos].mean() - scores[neg].mean())
        else:
            gap = torch.zeros(())
        metrics = {"num_contrast_groups": contrast.sum().float(), "num_positives": n_pos.detach(),
                   "score_gap": gap.detach()}
    return loss, metrics
