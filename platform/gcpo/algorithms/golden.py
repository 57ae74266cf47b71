"""GCPO golden answers: which response of a group the golden answer replaces (`golden_replacement_index`), and
how a golden row's tokens enter the policy loss (`golden_token_loss`, `algorithm.golden_ratio`). Pure torch.

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

from gcpo.algorithms.choices import GaReplace, GoldenRatio


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


def golden_token_loss(logp: torch.Tensor, advantages: torch.Tensor, treatment: GoldenRatio, *,
                      gamma: float) -> torch.Tensor:
    """Per-token loss of golden-answer rows under `algorithm.golden_ratio` (`treatment`), shape of `logp`.

    A golden answer was sampled by no generator: it has no behaviour log-prob, and its "old" log-prob is only the
    trainer's own recomputation at the start of the step. Under the clipped surrogate (`clip`, the default and
    the behaviour before this switch) its ratio starts at 1 and, with a positive advantage, the first update that
    raises its likelihood past 1 + eps_high takes it out of the gradient: at GSPO's sequence range (4e-4) a golden
    answer teaches for one update per step at most. The other treatments drop the ratio for these rows:

    - `unclipped`: `-A * logp` per token (`advantages` is the per-token advantage A_t): the plain policy gradient
      A grad log pi at any ratio, as GPG's loss (arXiv 2504.02546) and the supervised term of mixed RL + SFT
      objectives; the golden row keeps teaching however far the policy has moved within the step.
    - `shaped`: `-A * pi / (pi + gamma)`, pi = exp(logp) (LUFFY's policy shaping by regularised importance
      sampling for off-policy guidance traces, "Learning to Reason under Off-Policy Guidance", arXiv 2504.14945:
      the off-policy ratio pi_theta / pi_behaviour with the unknown behaviour probability taken as 1, reshaped by
      f(x) = x / (x + gamma), gamma = 0.1, and not clipped). Its gradient is A * gamma pi / (pi + gamma)^2 *
      grad log pi: against the raw ratio pi (weight pi) it amplifies low-probability tokens by gamma / (pi +
      gamma)^2; against `unclipped` (weight 1) it weights each token by at most 1/4 (at pi = gamma), so
      near-certain and near-impossible tokens teach little.

    `clip` is not a per-row loss of its own (the surrogate computes it): asking for it here is an error.
    """
    if treatment == "unclipped":
        return -advantages * logp
    if treatment == "shaped":
        prob = torch.exp(logp)
        return -advantages * prob / (prob + gamma)
    raise ValueError(f"golden_token_loss takes treatment 'unclipped' or 'shaped', got {treatment!r}")
