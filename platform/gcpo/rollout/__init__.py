"""Rollout generation: the vLLM generator actor pool, weight sync, the transformers fallback.

Entry points for the training loop:
- `build_engine(cfg.rollout, model_dir)` -> a `RolloutEngine` (`VLLMPool` or `TransformersEngine`);
- `sampling_settings(cfg.rollout)` -> the `SamplingSettings` of a training step;
- `engine.generate(prompt_token_ids, settings)`, `engine.update_weights(state_dict, version)`,
  `engine.shutdown()`; `generate_many(engine, jobs)` for several batches with different settings at once;
- `logprob_agreement(model, results, pad_token_id=...)` -> generator vs trainer log-prob differences.

Ray and vLLM are imported only when the vLLM backend is built.
"""

from __future__ import annotations

import typing
from pathlib import Path

from gcpo.config import RolloutBackend, RolloutConfig
from gcpo.rollout.agreement import Agreement, logprob_agreement
from gcpo.rollout.hf_engine import ContextLengthError, TransformersEngine
from gcpo.rollout.types import (
    Completion,
    PromptResult,
    RolloutEngine,
    SamplingSettings,
    generate_many,
    generator_dtype,
)

__all__ = [
    "Agreement", "Completion", "ContextLengthError", "PromptResult", "RolloutEngine", "SamplingSettings",
    "TransformersEngine", "build_engine", "generate_many", "logprob_agreement", "sampling_settings",
]


def sampling_settings(cfg: RolloutConfig) -> SamplingSettings:
    """The sampling settings of one training step: G = `group_size` samples per prompt."""
    return SamplingSettings(n=cfg.group_size, temperature=cfg.temperature, top_p=cfg.top_p,
                            max_new_tokens=cfg.max_new_tokens, stop=tuple(cfg.stop))


def build_engine(cfg: RolloutConfig, model_dir: str | Path, *, model_dtype: str = "float32") -> RolloutEngine:
    """The engine `cfg.backend` names, its weights in `cfg.dtype` (`model_dtype`, the model's, when "auto").
    "vllm" needs a running Ray (see `gcpo.cluster.init_ray`)."""
    if cfg.backend == "transformers":
        return TransformersEngine(model_dir, dtype=generator_dtype(cfg.dtype, model_dtype), seed=cfg.seed)
    if cfg.backend == "vllm":
        from gcpo.rollout.vllm_pool import VLLMPool

        return VLLMPool(cfg, model_dir, model_dtype=model_dtype)
    allowed = ", ".join(repr(b) for b in typing.get_args(RolloutBackend))
    raise ValueError(f"rollout.backend: unknown backend {cfg.backend!r}; allowed: {allowed}")
