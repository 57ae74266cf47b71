"""Micro-batches of whole groups, and their forward pass through the policy (or the reference model).

Every rank runs the same number of micro-batches (`gcpo.training.distributed.equal_chunks`); a rank short of
groups runs empty ones, whose forward is a 1-token dummy pass with weight 0, so ZeRO-3's parameter gathers and
ZeRO-2's gradient reductions stay matched across ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from gcpo.logprobs import response_logprobs
from gcpo.packing import group_consecutive, shared_prefix_logprobs

DUMMY_PROMPT, DUMMY_RESPONSE = [0], [0]


@dataclass
class Micro:
    """A micro-batch of responses (whole groups), or empty for a dummy pass."""

    prompts: list[list[int]]
    responses: list[list[int]]
    index: list[int]  # row positions in the step batch

    def with_prompts(self, prompts: Sequence[Sequence[int]]) -> "Micro":
        """The same responses after other prompts (`prompts` indexed like the step batch's rows)."""
        return Micro([list(prompts[r]) for r in self.index], self.responses, self.index)


def micro_batches(group_rows: Sequence[Sequence[int]], prompts, responses, groups_per_micro: int,
                  count: int) -> list[Micro]:
    """Split the shard's groups into exactly `count` micro-batches (trailing ones empty when short)."""
    out = []
    for k in range(count):
        rows = [r for g in group_rows[k * groups_per_micro : (k + 1) * groups_per_micro] for r in g]
        out.append(Micro([prompts[r] for r in rows], [responses[r] for r in rows], rows))
    return out


def forward_logprobs(module, micro: Micro, pad_id: int, micro_batch_size: int, with_entropy: bool = False,
                     shared_prefix: bool = False):
    """(logp, mask, entropy) of a micro-batch's responses, in one forward pass; an empty micro-batch runs a 1-token
    dummy pass (mask 0) for the collectives. `shared_prefix` (`trainer.shared_prefix`): consecutive rows with the
    same prompt (a group) share one copy of it (`gcpo.packing.shared_prefix_logprobs`, the same numbers)."""
    if not micro.index:
        logp, mask, ent = response_logprobs(module, [DUMMY_PROMPT], [DUMMY_RESPONSE], pad_token_id=pad_id,
                                            micro_batch_size=1, with_entropy=with_entropy)
        return logp, mask * 0, ent
    if shared_prefix:
        groups = group_consecutive(micro.prompts, micro.responses)
        return shared_prefix_logprobs(module, groups, pad_token_id=pad_id, with_entropy=with_entropy)
    return response_logprobs(module, micro.prompts, micro.responses, pad_token_id=pad_id,
                             micro_batch_size=max(micro_batch_size, len(micro.index)), with_entropy=with_entropy)


def pad_like(values: dict[int, torch.Tensor], rows: list[int], like: torch.Tensor) -> torch.Tensor:
    """Per-row tensors `values[r]` laid into a zero tensor shaped like `like` (row j <- values[rows[j]])."""
    out = torch.zeros_like(like)
    for j, r in enumerate(rows):
        out[j, : values[r].shape[0]] = values[r].to(like.device)
    return out
