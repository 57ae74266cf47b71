"""Supervised imitation of golden answers (the `ga_sft` baseline, and GCPO's optional supervised term). Pure torch.

Is GCPO more than supervised learning on its golden answers? `ga_sft` answers by training on the golden answers
alone, with the same rollouts still sampled and scored for the metrics. Choices (ours; no paper fixes them):

- Token mean over golden-answer tokens: every golden token weighs the same, like DAPO's `token-mean`, so a long
  worked solution counts more than a short one (the usual SFT cross-entropy). Prompt tokens never count.
- Which prompts' golden answers (`algorithm.sft_prompts`): `all` prompts of the batch (plain SFT, the strongest
  imitation baseline), or `all_wrong`, only those whose rollouts all failed (the prompts GCPO injects into).
- A golden answer that fails its own verifier is never trained on (as for GCPO), and prompts without one are
  skipped.
- Mixed (`algorithm.sft_coef` = c > 0, with golden answers injected): loss = policy loss + c * `sft_loss` over the
  injected golden answers of the batch, normalised by their own global token count.
"""

from __future__ import annotations

import torch

from gcpo.algorithms.choices import SftPrompts
from gcpo.algorithms.losses import aggregate


def sft_loss(
    logp: torch.Tensor, mask: torch.Tensor, *, normalizer: torch.Tensor | float | None = None
) -> torch.Tensor:
    """Token-mean cross-entropy on golden-answer tokens: -sum_{i,t} m_{i,t} logp_{i,t} / N.

    `logp` (rows, T) is log pi(y_t | x, y_<t) of each target token; `mask` (rows, T) is 1 on golden-answer tokens
    and 0 on prompt tokens, padding and any row that is not a golden answer. N = `normalizer` when given (under
    data parallelism: the all-reduced sum of every rank's `mask.sum()`, so ranks agree), else `mask.sum()`;
    N is clamped to >= 1, so an empty batch gives 0.
    """
    return aggregate(-logp, mask, "token-mean", normalizer=normalizer)


def sft_prompt_mask(correct: torch.Tensor, has_golden: torch.Tensor, prompts: SftPrompts = "all") -> torch.Tensor:
    """(prompts,) bool: whose golden answer is imitated. `correct` (prompts, G) bool, `has_golden` (prompts,) bool.

    `all`: every prompt with a golden answer. `all_wrong`: those of them with no correct rollout.
    """
    if correct.dim() != 2:
        raise ValueError(f"correct must be (prompts, G), got shape {tuple(correct.shape)}")
    if prompts == "all":
        return has_golden.bool().clone()
    if prompts == "all_wrong":
        return has_golden.bool() & ~correct.bool().any(dim=1)
    raise ValueError(f"sft_prompts must be 'all' or 'all_wrong', got {prompts!r}")
