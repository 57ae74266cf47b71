"""The data types the training step passes between its parts.

`TrainingData` is rank 0's pre-rendered training split (built once per run by `gcpo.training.data`); `StepBatch`
is one step's batch, built on rank 0 by `gcpo.training.rollouts` and broadcast to every rank, which trains on its
shard of whole groups (`gcpo.training.update`).
"""

from __future__ import annotations

import dataclasses
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
    # token ids -> text (a golden-answer prefix hint's text, which the verifier reads before the continuation)
    decode: Callable[[Sequence[int]], str] | None = None
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
    # Provenance, per row: the weight version a generator sampled the response with, None for an injected golden
    # answer. A row never mixes sources (a golden-answer prefix hint sits in the row's prompt, see `hint_tokens`),
    # so this is every response token's provenance too. Empty = every row sampled with the trainer's weights.
    versions: list[int | None] = field(default_factory=list)
    # Per row: how many trailing prompt tokens are a golden-answer prefix hint (algorithm.golden_hint; 0 = none).
    # They are conditioning, not trained on: only response tokens carry a loss.
    hint_tokens: list[int] = field(default_factory=list)

    @property
    def num_groups(self) -> int:
        return self.rewards.shape[0]

    @property
    def group_size(self) -> int:
        return self.rewards.shape[1]

    def keep_groups(self, keep: list[bool]) -> "StepBatch":
        """The batch without the groups whose `keep` is False (the imitated golden answers stay)."""
        g = self.group_size
        rows = [r for r in range(len(self.responses)) if keep[r // g]]
        pick = lambda values: [values[r] for r in rows] if values else values  # noqa: E731
        mask = torch.tensor(keep, dtype=torch.bool)
        return dataclasses.replace(
            self, prompts=pick(self.prompts), responses=pick(self.responses), gen_logprobs=pick(self.gen_logprobs),
            rewards=self.rewards[mask], correct=self.correct[mask], is_golden=self.is_golden[mask],
            advantages=self.advantages[torch.tensor(rows, dtype=torch.long)], versions=pick(self.versions),
            hint_tokens=pick(self.hint_tokens),
            negative_prompts=pick(self.negative_prompts) if self.negative_prompts is not None else None)
