"""The data types the training step passes between its parts.

`TrainingData` is rank 0's pre-rendered training split (built once per run by `gcpo.training.data`); `StepBatch`
is one step's batch, built on rank 0 by `gcpo.training.rollouts` and broadcast to every rank, which trains on its
shard of whole groups (`gcpo.training.update`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch


@dataclass
class TrainingData:
    """The training split, pre-rendered: prompt ids, golden-answer ids (None where missing) per item."""

    questions: list[str]
    prompt_ids: list[list[int]]
    golden_ids: list[list[int] | None]
    golden_text: list[str | None]
    # (item indices, response texts) -> `gcpo.tasks.pool.Verdict`s (accuracy, format, reward, timed_out), in order
    verify: Callable[[Sequence[int], Sequence[str]], list]
    negative_prompt_ids: list[list[int]] | None = None  # guidance token credit only
    golden_verdicts: dict[int, object] = field(default_factory=dict)  # cache: item -> its golden answer's Verdict

    def golden_verdict(self, item: int):
        """The verifier's verdict on item `item`'s golden answer (verified once, then cached)."""
        if item not in self.golden_verdicts:
            self.golden_verdicts[item] = self.verify([item], [self.golden_text[item]])[0]
        return self.golden_verdicts[item]


@dataclass
class StepBatch:
    """One step's training data: G consecutive rows per group (row r belongs to group r // G)."""

    prompts: list[list[int]]
    responses: list[list[int]]
    gen_logprobs: list[list[float] | None]  # None for golden answers (not sampled by a generator)
    rewards: torch.Tensor  # (groups, G)
    correct: torch.Tensor  # (groups, G) bool
    is_golden: torch.Tensor  # (groups, G) bool
    advantages: torch.Tensor  # (groups * G,)
    alpha: float = 1.0  # GPG's B / (B - M), 1 unless algorithm.gpg_alpha
    negative_prompts: list[list[int]] | None = None  # guidance token credit only
    # loss "sft": the golden answers to imitate (one per chosen prompt), the update's only training rows
    golden_prompts: list[list[int]] = field(default_factory=list)
    golden_responses: list[list[int]] = field(default_factory=list)

    @property
    def num_groups(self) -> int:
        return self.rewards.shape[0]

    @property
    def group_size(self) -> int:
        return self.rewards.shape[1]
