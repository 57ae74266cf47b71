"""The sync check: do the generators' log-probs match the trainer's recomputation of the same tokens?

A generator that samples from stale or corrupted weights gives log-probs that differ from the trainer's by
orders of magnitude more than fp32 kernel noise (measured here: about 1e-5 when in sync, above 0.1 after a
missed update), so one threshold separates the two cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from gcpo.logprobs import response_logprobs
from gcpo.rollout.types import PromptResult

DEFAULT_TOLERANCE = 1e-2  # mean |diff| above this means the generators do not hold the trainer's weights


@dataclass(frozen=True)
class Agreement:
    mean_abs_diff: float  # over every sampled token of every completion
    max_abs_diff: float
    num_tokens: int

    def ok(self, tolerance: float = DEFAULT_TOLERANCE) -> bool:
        return self.mean_abs_diff <= tolerance


def logprob_agreement(model: torch.nn.Module, results: Sequence[PromptResult], *, pad_token_id: int,
                      micro_batch_size: int = 8) -> Agreement:
    """Mean and max |generator log-prob - trainer log-prob| over every sampled token in `results`.

    Trainer log-probs come from `gcpo.logprobs.response_logprobs` under `torch.no_grad()`.
    Raises ValueError when there is no token to compare.
    """
    prompts, responses, gen_logps = [], [], []
    for result in results:
        for c in result.completions:
            if len(c.logprobs) != len(c.token_ids):
                raise ValueError(f"completion has {len(c.token_ids)} tokens but {len(c.logprobs)} log-probs")
            prompts.append(result.prompt_token_ids)
            responses.append(c.token_ids)
            gen_logps.append(c.logprobs)
    num_tokens = sum(len(r) for r in responses)
    if num_tokens == 0:
        raise ValueError("logprob_agreement: no sampled tokens to compare")
    with torch.no_grad():
        trainer_logp, mask, _ = response_logprobs(model, prompts, responses, pad_token_id=pad_token_id,
                                                  micro_batch_size=micro_batch_size)
    gen = torch.zeros_like(trainer_logp)
    for i, row in enumerate(gen_logps):
        gen[i, : len(row)] = torch.tensor(row, dtype=gen.dtype)
    diff = (gen - trainer_logp).abs() * mask
    return Agreement(mean_abs_diff=float(diff.sum() / mask.sum()), max_abs_diff=float(diff.max()),
                     num_tokens=num_tokens)
