"""GCPO golden-answer injection: which response of a group the golden answer replaces. Pure torch.

GCPO (arXiv 2510.07790) replaces one rollout with the golden answer when every rollout of a group is wrong, so
the group has a contrast. The paper does not say which rollout is replaced, nor whether all-correct groups get
anything; our choices, each a switch (`algorithm.ga_replace`, `algorithm.ga_on_all_correct`):

- `last` (default): index G-1. Rollouts are i.i.d. samples, so any fixed index is an unbiased pick; a fixed
  index makes runs reproducible and easy to read in logs.
- `longest`: the longest response (often a truncated ramble), keeping the shorter attempts as negatives.
- `random`: uniform, from a caller-seeded generator.
- `ga_on_all_correct` (off by default): also inject into all-correct groups. With binary accuracy rewards the
  group stays zero-variance (the golden answer is correct too), so this only matters when the reward has a graded
  part (e.g. the format component) that separates the golden answer from the rollouts.

Groups without a golden answer are never touched.
"""

from __future__ import annotations

import torch

from gcpo.algorithms.choices import GaReplace


def golden_replacement_index(
    correct: torch.Tensor,
    has_golden: torch.Tensor,
    *,
    replace: GaReplace = "last",
    on_all_correct: bool = False,
    lengths: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(prompts,) long: the index in each group to overwrite with its golden answer, or -1 for none.

    `correct` is (prompts, G) bool (verifier accuracy, not the format part); `has_golden` is (prompts,) bool;
    `lengths` (prompts, G) is required for `longest` (ties go to the lowest index).
    """
    if correct.dim() != 2:
        raise ValueError(f"correct must be (prompts, G), got shape {tuple(correct.shape)}")
    correct = correct.bool()
    eligible = ~correct.any(dim=1)
    if on_all_correct:
        eligible = eligible | correct.all(dim=1)
    eligible = eligible & has_golden.bool()
    prompts, group = correct.shape
    if replace == "last":
        pick = torch.full((prompts,), group - 1, dtype=torch.long)
    elif replace == "longest":
        if lengths is None:
            raise ValueError("ga_replace='longest' needs the responses' lengths")
        pick = lengths.argmax(dim=1)
    elif replace == "random":
        pick = torch.randint(0, group, (prompts,), generator=generator)
    else:
        raise ValueError(f"ga_replace must be 'last', 'longest' or 'random', got {replace!r}")
    return torch.where(eligible, pick, torch.full_like(pick, -1))
