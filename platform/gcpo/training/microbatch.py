"""Micro-batches of whole groups, and their forward pass through the policy (or the reference model).

Every rank runs the same number of micro-batches (`gcpo.training.distributed.max_over_ranks`); a rank short of
groups runs empty ones, whose forward is a 1-token dummy pass with weight 0, so ZeRO-3's parameter gathers and
ZeRO-2's gradient reductions stay matched across ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from gcpo.logprobs import response_logprobs
from gcpo.packing import forward_tokens, group_consecutive, shared_prefix_logprobs

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


def forward_slots(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], shared_prefix: bool) -> int:
    """Token slots (padding included) of one forward over these rows: rows x the longest prompt + response, or,
    with `shared_prefix`, the packed groups' (`gcpo.packing.forward_tokens`). What `trainer.max_tokens_per_micro`
    bounds."""
    if not responses:
        return 0
    if shared_prefix:
        return forward_tokens(group_consecutive(prompts, responses))
    return len(responses) * max(len(p) + len(r) for p, r in zip(prompts, responses))


def real_tokens(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], shared_prefix: bool) -> int:
    """The tokens one forward over these rows computes that are not padding (a shared prompt counts once)."""
    if shared_prefix:
        return sum(len(p) + sum(len(r) for r in rs) for p, rs in group_consecutive(prompts, responses))
    return sum(len(p) + len(r) for p, r in zip(prompts, responses))


def split_groups(group_rows: Sequence[Sequence[int]], prompts, responses, *, groups_per_micro: int,
                 max_tokens: int = 0, shared_prefix: bool = False) -> list[list[Sequence[int]]]:
    """This rank's groups (each a list of row indices) cut into micro-batches, in order: `groups_per_micro` groups
    each (`max_tokens` 0), or as many consecutive groups as fit `max_tokens` token slots (`forward_slots`; a group
    larger than the budget goes alone)."""
    if max_tokens <= 0:
        return [list(group_rows[k : k + groups_per_micro]) for k in range(0, len(group_rows), groups_per_micro)]
    chunks: list[list[Sequence[int]]] = []
    for rows in group_rows:
        candidate = (chunks[-1] if chunks else []) + [rows]
        flat = [r for g in candidate for r in g]
        if chunks and forward_slots([prompts[r] for r in flat], [responses[r] for r in flat],
                                    shared_prefix) <= max_tokens:
            chunks[-1] = candidate
        else:
            chunks.append([rows])
    return chunks


def micro_batches(chunks: Sequence[Sequence[Sequence[int]]], prompts, responses, count: int) -> list[Micro]:
    """The micro-batches of `split_groups`' chunks, exactly `count` of them (trailing ones empty when short: every
    rank runs the same number of passes)."""
    out = []
    for k in range(count):
        rows = [r for g in (chunks[k] if k < len(chunks) else []) for r in g]
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
