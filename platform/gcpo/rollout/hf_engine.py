"""The transformers `generate` fallback engine: one in-process model, same contract as the vLLM pool.

Choices (shared with the vLLM pool so the two backends are interchangeable):
- Log-probs are those of the distribution the trainer scores: `log_softmax` of the model's *raw* logits
  (temperature 1, no top-p), gathered at the sampled tokens. Sampling itself uses temperature and top-p.
  vLLM's default `logprobs_mode="raw_logprobs"` returns the same quantity. With temperature 1 and top-p 1 it
  is exactly the sampling distribution.
- Temperature 0 is greedy decoding. No top-k is applied (vLLM's default).
- A completion ends at EOS (the EOS token is kept in `token_ids` and `logprobs`, not in `text`), at the first
  stop string (kept in the text and tokens, the text cut right after it), or at `max_new_tokens` ("length").
- Randomness: `torch.manual_seed(seed)` once at construction; calls then draw from the global torch RNG, so a
  fresh engine with the same seed and the same call sequence reproduces its samples.
- Prompts longer than the model's context (`prompt + max_new_tokens > max_position_embeddings`) are rejected.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping, Sequence

import torch

from gcpo.rollout.types import Completion, PromptResult, SamplingSettings


class ContextLengthError(ValueError):
    """A request does not fit the model's context; it is rejected rather than truncated."""


def check_context(prompts: Sequence[Sequence[int]], max_new_tokens: int, max_model_len: int) -> None:
    """Raise ContextLengthError naming the first prompt whose length + max_new_tokens exceeds max_model_len."""
    for i, p in enumerate(prompts):
        if len(p) + max_new_tokens > max_model_len:
            raise ContextLengthError(
                f"prompt {i} has {len(p)} tokens + max_new_tokens {max_new_tokens} = {len(p) + max_new_tokens} "
                f"> the model's context of {max_model_len} tokens; shorten the prompt or lower "
                f"rollout.max_new_tokens (requests are never truncated silently)")


class TransformersEngine:
    """RolloutEngine on one transformers model in this process (CPU or the model's device).

    `batch_size` caps how many sequences (prompts x n) run through one `generate` call.
    """

    def __init__(self, model_dir: str | Path, *, dtype: str = "float32", seed: int = 0, batch_size: int = 64):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_dir = Path(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=getattr(torch, dtype))
        self.model.eval()
        self.batch_size = batch_size
        self.eos_token_id = self.tokenizer.eos_token_id
        self.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_token_id
        self.max_model_len = int(self.model.config.max_position_embeddings)
        self.weight_version = 0
        self._rng = torch.Generator().manual_seed(seed).get_state()  # the engine's own stream

    def generate(self, prompts: Sequence[Sequence[int]], settings: SamplingSettings) -> list[PromptResult]:
        check_context(prompts, settings.max_new_tokens, self.max_model_len)
        flat = [list(p) for p in prompts for _ in range(settings.n)]
        completions: list[Completion] = []
        with torch.random.fork_rng(devices=[]):  # never disturb the caller's RNG (the trainer shares the process)
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            else:
                torch.set_rng_state(self._rng)
            for start in range(0, len(flat), self.batch_size):
                completions.extend(self._generate_batch(flat[start : start + self.batch_size], settings))
            if settings.seed is None:
                self._rng = torch.get_rng_state()
        return [
            PromptResult(prompt_token_ids=list(p), completions=completions[i * settings.n : (i + 1) * settings.n])
            for i, p in enumerate(prompts)
        ]

    @torch.no_grad()
    def _generate_batch(self, seqs: list[list[int]], settings: SamplingSettings) -> list[Completion]:
        from transformers import GenerationConfig

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        attn = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):  # left padding: every row's next token is at the same column
            ids[i, width - len(s) :] = torch.tensor(s)
            attn[i, width - len(s) :] = 1
        greedy = settings.temperature == 0
        config = GenerationConfig(
            max_new_tokens=settings.max_new_tokens, do_sample=not greedy,
            temperature=None if greedy else settings.temperature, top_p=None if greedy else settings.top_p,
            top_k=None, pad_token_id=self.pad_token_id, eos_token_id=self.eos_token_id,
            stop_strings=list(settings.stop) or None, return_dict_in_generate=True, output_logits=True,
        )
        device = self.model.device
        out = self.model.generate(input_ids=ids.to(device), attention_mask=attn.to(device), generation_config=config,
                                  tokenizer=self.tokenizer)
        new_tokens = out.sequences[:, width:].cpu()
        logp = torch.stack(out.logits, dim=1).float().log_softmax(-1)  # (B, steps, V) raw logits
        sampled_logp = logp.gather(-1, new_tokens.unsqueeze(-1).to(logp.device)).squeeze(-1).cpu()
        result = []
        for row, row_logp in zip(new_tokens.tolist(), sampled_logp.tolist()):
            tokens, text, reason = self._finish(row, settings.stop)
            result.append(Completion(token_ids=tokens, text=text, logprobs=row_logp[: len(tokens)],
                                     finish_reason=reason, weight_version=self.weight_version))
        return result

    def _finish(self, row: list[int], stop: Sequence[str]) -> tuple[list[int], str, str]:
        """Cut a generated row at EOS (kept), the first stop string (kept) or the end; return tokens, text, reason."""
        eos_at = row.index(self.eos_token_id) if self.eos_token_id in row else None
        body = row if eos_at is None else row[:eos_at]
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        if stop and any(s in text for s in stop):
            for k in range(1, len(body) + 1):  # the shortest prefix whose text holds a stop string
                prefix = self.tokenizer.decode(body[:k], skip_special_tokens=True)
                hits = [prefix.index(s) + len(s) for s in stop if s in prefix]
                if hits:
                    return body[:k], prefix[: min(hits)], "stop"
        if eos_at is not None:
            return row[: eos_at + 1], text, "stop"
        return row, text, "length"

    def update_weights(self, state_dict: Mapping[str, torch.Tensor], version: int) -> float:
        """Copy `state_dict` into the model in place: every weight, or only those that changed (LoRA sends the
        adapted layers alone). A name the model does not have is an error. Returns seconds."""
        start = time.perf_counter()
        _, unexpected = self.model.load_state_dict(dict(state_dict), strict=False)
        if unexpected:
            raise KeyError(f"update_weights: names the model does not have: {unexpected}")
        self.weight_version = version
        return time.perf_counter() - start

    def shutdown(self) -> None:
        """Nothing to release beyond the model itself (freed with the engine)."""
