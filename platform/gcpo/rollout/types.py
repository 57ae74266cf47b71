"""The rollout interface every generation backend implements (vLLM pool, transformers fallback).

Prompts travel as token ids (already rendered with the chat template by the task), so the trainer and the
generators see exactly the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence

import torch

# The vLLM pool's cap on its context (min(the model's context, this)), which bounds the KV cache a request may need.
VLLM_MAX_MODEL_LEN = 2048


@dataclass(frozen=True)
class SamplingSettings:
    n: int = 1  # samples per prompt (the group size G)
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 96
    stop: tuple[str, ...] = ()  # the stop string is kept in the text and tokens (include_stop_str_in_output)
    # When set, the samples are a function of (seed, prompt position, sample index) alone, not of the engine's
    # history: a resumed run re-samples exactly what the uninterrupted run sampled at that step.
    seed: int | None = None


@dataclass
class Completion:
    token_ids: list[int]
    text: str
    logprobs: list[float]  # log-prob of each sampled token under the generating weights
    finish_reason: str  # "stop" (EOS or stop string) or "length"
    weight_version: int


@dataclass
class PromptResult:
    prompt_token_ids: list[int]
    completions: list[Completion] = field(default_factory=list)


class RolloutEngine(Protocol):
    """Results come back in prompt order, each with exactly `settings.n` completions."""

    weight_version: int
    max_model_len: int  # the longest request (prompt + new tokens) it accepts

    def generate(self, prompts: Sequence[Sequence[int]], settings: SamplingSettings) -> list[PromptResult]: ...

    def update_weights(self, state_dict: Mapping[str, torch.Tensor], version: int) -> float:
        """Load new weights into every engine without restarting; returns seconds taken. A subset is allowed
        (LoRA sends only the adapted layers): the other weights stay the engine's start-up weights, which is
        also what an engine restarted after a failure gets them from."""
        ...

    def shutdown(self) -> None: ...


def generator_dtype(rollout_dtype: str, model_dtype: str) -> str:
    """The generators' weights dtype: `rollout.dtype`, or the model's when that is "auto" (a model dtype of "auto"
    resolved on this machine, `gcpo.hardware`)."""
    from gcpo.hardware import concrete_dtype

    return concrete_dtype(model_dtype) if rollout_dtype == "auto" else rollout_dtype


def generate_many(engine: RolloutEngine, jobs: Sequence[tuple[Sequence[Sequence[int]], SamplingSettings]]
                  ) -> list[list[PromptResult]]:
    """Several `(prompts, settings)` batches: in one call where the engine offers `generate_many` (the vLLM pool:
    the batches share decode steps), else one `generate` after another. One result list per job."""
    many = getattr(engine, "generate_many", None)
    return many(jobs) if many is not None else [engine.generate(prompts, settings) for prompts, settings in jobs]
