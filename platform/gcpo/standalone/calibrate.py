"""`gcpo probe --calibrate-clip`: a sequence-ratio clip range that learns from as much of a step's data as the
token ratio's does (docs/algorithms.md, "Clip ranges on equal data").

With two mini-batches a step (`trainer.mini_batches=2`, the study regime), the second mini-batch is scored by a
policy the first one moved, and its tokens that moved past the clip range in the direction of their advantage give
no gradient. How many depends on the range: at GSPO's sequence range (3e-4 / 4e-4) 56-80% of the second
mini-batch's learnable tokens were clipped where the token level's 0.2 / 0.28 clipped 2-6% (measured 2026-12-06).
Comparing the two levels at those ranges compares "all of the data" with "a third of it".

The measurement, on each of `batches` probe batches of the base config (the prompt sampler seeded 0, 1, ...; every
batch from a fresh copy of the starting policy, the transformers engine sampling):
1. the batch's old log-probs under the starting policy (`score_rollouts`);
2. one update on the first mini-batch (the first half of the groups, as `update_policy` splits them): the same at
   both levels, since on the first mini-batch every ratio is 1 (the negative control,
   `tests/training/test_switch_sensitivity.py`); KL is left out (the levels are compared without it);
3. the second mini-batch's log-probs under the moved policy: its token log-ratios, and each row's mean log-ratio
   (the sequence ratio of GSPO) on every token.
Pooled over the batches, the token level's clip fraction at the base's token range (`clip_low` / `clip_high`) is the
target; the sequence range is the one whose fraction matches it (`gcpo.algorithms.calibration.calibrate_clip`),
keeping the base's `clip_high_sequence / clip_low_sequence` ratio. The fractions are per learnable token (a
non-zero advantage), the same count as `policy/clip_frac_learnable_u2` in training.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from gcpo.algorithms.calibration import calibrate_clip, clip_fraction
from gcpo.config import RunConfig
from gcpo.logprobs import pad_responses
from gcpo.training.types import StepBatch


@dataclass
class SecondHalf:
    """One probe batch's second mini-batch under the moved policy: (rows, T) token log-ratios and sequence
    log-ratios (each row's mean on each of its tokens), the mask and the rows' advantages."""

    token_log_ratio: torch.Tensor
    sequence_log_ratio: torch.Tensor
    mask: torch.Tensor
    advantages: torch.Tensor


@dataclass
class Calibration:
    token_range: tuple[float, float]
    target: float  # the token level's pooled clip fraction of the second mini-batches
    sequence_range: tuple[float, float]  # calibrated
    base_sequence_range: tuple[float, float]
    per_batch: list[dict]  # per probe batch: token, base sequence and calibrated sequence fractions, rows

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def halves(batch: StepBatch, mini_batches: int) -> tuple[StepBatch, StepBatch]:
    """The first mini-batch's groups and the second's (`update_policy`'s split of one rank's groups)."""
    from gcpo.training.update import split_mini_batches

    parts = split_mini_batches(list(range(batch.num_groups)), mini_batches)
    return tuple(batch.keep_groups([g in part for g in range(batch.num_groups)]) for part in parts[:2])


def second_half(policy_engine, batch: StepBatch, cfg: RunConfig, *, pad_id: int) -> SecondHalf:
    """Steps 1-3 of the module docstring on one batch (moves `policy_engine` by one update)."""
    from gcpo.training.update import score_rollouts, update_policy

    first, second = halves(batch, max(cfg.trainer.mini_batches, 2))
    old = score_rollouts(policy_engine, second, cfg, pad_id=pad_id).old
    one = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, epochs=1, mini_batches=1),
                              algorithm=dataclasses.replace(cfg.algorithm, kl_coef=0.0))
    update_policy(policy_engine, first, one, step=0, pad_id=pad_id)
    new = score_rollouts(policy_engine, second, cfg, pad_id=pad_id).old
    rows = sorted(new)
    token = [(new[r] - old[r]).tolist() for r in rows]
    sequence = [[sum(t) / max(len(t), 1)] * len(t) for t in token]
    token_lr, mask = pad_responses(token, torch.float32)
    sequence_lr, _ = pad_responses(sequence, torch.float32)
    return SecondHalf(token_lr, sequence_lr, mask, second.advantages[rows].float())


def _pooled(parts: list[SecondHalf], field: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log-ratio, advantages, mask) of every probe batch's second half, padded to one width (`clip_fraction`'s
    argument order)."""
    width = max(p.mask.shape[1] for p in parts)
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]))  # noqa: E731
    return (torch.cat([pad(getattr(p, field)) for p in parts]), torch.cat([p.advantages for p in parts]),
            torch.cat([pad(p.mask) for p in parts]))


def calibrate(parts: list[SecondHalf], cfg: RunConfig) -> Calibration:
    """The calibrated sequence range for the probe batches' second halves (see the module docstring)."""
    a = cfg.algorithm
    token_range = (a.clip_low, a.clip_high)
    base_sequence = (a.clip_low_sequence, a.clip_high_sequence)
    target = clip_fraction(*_pooled(parts, "token_log_ratio"), *token_range)
    sequence, adv, mask = _pooled(parts, "sequence_log_ratio")
    high_over_low = base_sequence[1] / base_sequence[0] if base_sequence[0] > 0 else 1.0
    low = calibrate_clip(sequence, adv, mask, target, high_over_low=high_over_low)
    calibrated = (_round(low), _round(low * high_over_low))
    per_batch = [{"rows": int(p.mask.shape[0]), "learnable_tokens": int((p.mask.bool() & (p.advantages != 0)[:, None]).sum()),
                  "token": clip_fraction(p.token_log_ratio, p.advantages, p.mask, *token_range),
                  "sequence_base": clip_fraction(p.sequence_log_ratio, p.advantages, p.mask, *base_sequence),
                  "sequence_calibrated": clip_fraction(p.sequence_log_ratio, p.advantages, p.mask, *calibrated),
                  "median_abs_sequence_log_ratio": float(p.sequence_log_ratio[p.mask.bool()].abs().median())}
                 for p in parts]
    return Calibration(token_range, target, calibrated, base_sequence, per_batch)


def _round(x: float) -> float:
    """Rounded up to three significant digits (a range to write in a YAML file): only wider, so the clip fraction
    stays at or below the target."""
    if not (x > 0 and math.isfinite(x)):
        return x
    unit = 10 ** (math.floor(math.log10(x)) - 2)
    return float(f"{math.ceil(x / unit - 1e-9) * unit:.3g}")


def run_calibration(cfg: RunConfig, *, batches: int, progress=print) -> Calibration:
    """Build the model, the transformers engine and the verifier pool of `cfg`, and measure `batches` probe
    batches, each from a fresh copy of the starting policy."""
    from transformers import AutoTokenizer

    from gcpo.models import load_causal_lm, pad_token_id, resolve_model
    from gcpo.rollout import build_engine
    from gcpo.standalone.probe import batch_collector
    from gcpo.tasks.pool import VerifierPool
    from gcpo.training.deepspeed_policy import build_policy
    from gcpo.training.distributed import single_process_group
    from gcpo.training.lora import apply_lora

    model_dir = resolve_model(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pad_id = pad_token_id(tokenizer)
    rollout = build_engine(dataclasses.replace(cfg.rollout, backend="transformers"), model_dir,
                           model_dtype=cfg.model.dtype)
    pool = VerifierPool.from_config(cfg.task)
    trainer = dataclasses.replace(cfg.trainer, zero_stage=0, num_workers=1)
    parts = []
    try:
        with single_process_group():
            collect = batch_collector(rollout, tokenizer, pool)
            for b in range(batches):
                seeded = dataclasses.replace(cfg, trainer=dataclasses.replace(trainer, seed=cfg.trainer.seed + b))
                batch = collect(seeded)
                model = apply_lora(load_causal_lm(model_dir, cfg.model.dtype), cfg.model.lora)
                policy_engine = build_policy(model, trainer, cfg.model.dtype)
                parts.append(second_half(policy_engine, batch, seeded, pad_id=pad_id))
                progress(f"probe batch {b + 1}/{batches}: {parts[-1].mask.shape[0]} rows in the second mini-batch")
    finally:
        pool.close()
        rollout.shutdown()
    return calibrate(parts, cfg)


def format_calibration(c: Calibration, label: str) -> str:
    """The printout: per probe batch the second mini-batch's clip fractions, then the calibrated range."""
    lines = [label, "", f"{'batch':>5} {'rows':>5} {'learnable':>9} {'token':>7} {'seq base':>9} {'seq calib':>9} "
                        f"{'median |log s|':>14}"]
    for i, p in enumerate(c.per_batch):
        lines.append(f"{i + 1:>5} {p['rows']:>5} {p['learnable_tokens']:>9} {p['token']:>7.3f} {p['sequence_base']:>9.3f} "
                     f"{p['sequence_calibrated']:>9.3f} {p['median_abs_sequence_log_ratio']:>14.3g}")
    low, high = c.sequence_range
    lines += ["", f"token range {c.token_range[0]:g} / {c.token_range[1]:g}: pooled clip fraction {c.target:.3f} "
                  f"of the second mini-batches' learnable tokens",
              f"sequence range with the same fraction: {low:g} / {high:g} "
              f"(base {c.base_sequence_range[0]:g} / {c.base_sequence_range[1]:g})",
              f"use it: algorithm.clip_low_sequence={low:g} algorithm.clip_high_sequence={high:g}"]
    return "\n".join(lines)
