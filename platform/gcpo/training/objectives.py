"""The loss table: one entry per `algorithm.loss`, each a small named set of functions with explicit arguments.

An `Objective` says
- `trains_on`: the rows its updates train on: the rollouts (`"rollouts"`, groups of G rows) or the batch's golden
  answers to imitate (`"golden"`, each its own group of one row);
- `normalizer(rows)`: the local denominator of a mini-batch (the update all-reduces it, so every rank divides by
  the global count);
- `loss(x, a)`: the loss of one micro-batch (already divided by the global normaliser), plus its named totals;
- `summarize(totals, a)`: its metrics from those totals, summed over micro-batches, updates and ranks (with the
  update's own `updates` and `micro_batches` counts among them).

Adding a loss kind is adding an entry to `OBJECTIVES` (and its value to `AlgorithmConfig.loss`). The math lives in
`gcpo.algorithms`; this table only wires it to the step batch. How micro-batches, mini-batches and ranks are
arranged around it is `gcpo.training.update`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch

from gcpo.algorithms import (
    agg_normalizer,
    conspo_loss,
    conspo_margin,
    conspo_normalizer,
    correction_weights,
    guidance_token_weights,
    policy_loss,
    sequence_scores,
    sft_loss,
)
from gcpo.config import AlgorithmConfig
from gcpo.logprobs import pad_responses


@dataclass
class MiniRows:
    """The rows of one mini-batch on this rank, for the normaliser."""

    responses: list[list[int]]  # the training responses of the mini-batch's rows
    correct: torch.Tensor  # (groups, G) bool, the mini-batch's groups (rollout objectives)
    max_response_len: int  # rollout.max_new_tokens


@dataclass
class MicroInputs:
    """What one micro-batch's loss sees. Token tensors are (rows, T), padded like `logp`."""

    logp: torch.Tensor  # log-probs under the policy being trained (with grad)
    mask: torch.Tensor
    advantages: torch.Tensor  # (rows,)
    correct: torch.Tensor  # (groups, G) bool, the micro-batch's groups
    old_logp: torch.Tensor | None  # the old policy's log-probs (rollout objectives)
    ref_logp: torch.Tensor | None  # the reference model's (algorithm.kl_coef > 0)
    negative_logp: torch.Tensor | None  # under the negative prompts (algorithm.token_credit = guidance)
    normalizer: torch.Tensor  # the global normaliser of the mini-batch
    step: int  # the training step (ConSPO's margin schedule)
    max_response_len: int
    # the generators' log-probs (algorithm.rollout_correction != none), 0 on rows no generator sampled, and
    # (rows,) bool: which rows a generator sampled (False: injected golden answers)
    behaviour_logp: torch.Tensor | None = None
    sampled: torch.Tensor | None = None
    golden: torch.Tensor | None = None  # (rows,) bool: injected golden answers (algorithm.golden_ratio)


@dataclass(frozen=True)
class Objective:
    name: str
    trains_on: Literal["rollouts", "golden"]
    totals: tuple[str, ...]  # the named totals `loss` returns (summed over micro-batches, updates and ranks)
    normalizer: Callable[[MiniRows, AlgorithmConfig], torch.Tensor]
    loss: Callable[[MicroInputs, AlgorithmConfig], tuple[torch.Tensor, dict[str, float]]]
    summarize: Callable[[dict[str, float], AlgorithmConfig], dict[str, float]]


# -- clipped: the clipped surrogate (token or sequence ratio) or plain policy gradient, with KL and token credit


def clip_range(a: AlgorithmConfig) -> tuple[float, float]:
    """(eps_low, eps_high) of the ratio level in use: `clip_low` / `clip_high` for the token ratio,
    `clip_low_sequence` / `clip_high_sequence` for the sequence ratio (GSPO's range is ~1000x tighter)."""
    if a.ratio_level == "sequence":
        return a.clip_low_sequence, a.clip_high_sequence
    return a.clip_low, a.clip_high


def _clipped_normalizer(rows: MiniRows, a: AlgorithmConfig) -> torch.Tensor:
    if not rows.responses:
        return torch.zeros(())
    _, mask = pad_responses(rows.responses, torch.float32)
    return agg_normalizer(mask, a.loss_agg, rows.max_response_len)


def _clipped_loss(x: MicroInputs, a: AlgorithmConfig) -> tuple[torch.Tensor, dict[str, float]]:
    weights, corrected = None, {}
    if x.negative_logp is not None:
        weights = guidance_token_weights(x.logp.detach(), x.negative_logp, x.mask, power=a.guidance_power)
    if x.behaviour_logp is not None:
        cw, cm = correction_weights(x.old_logp, x.behaviour_logp.to(x.logp.device), x.mask, x.sampled.to(x.logp.device),
                                    a.rollout_correction, cap=a.correction_cap, icepop_low=a.icepop_low,
                                    icepop_high=a.icepop_high)
        weights = cw if weights is None else weights * cw
        n = float(cm["tokens"])
        corrected = {"correction_tokens": n, "correction_weight_sum": float(cm["weight_mean"]) * n,
                     "correction_masked": float(cm["masked_frac"]) * n, "correction_ratio_sum": float(cm["ratio_mean"]) * n}
    clip_low, clip_high = clip_range(a)
    loss, pm = policy_loss(
        x.logp, x.old_logp, x.advantages.to(x.logp.device), x.mask, ratio_level=a.ratio_level,
        clip_low=clip_low, clip_high=clip_high, agg=a.loss_agg, ref_logp=x.ref_logp, kl_coef=a.kl_coef,
        kl_estimator=a.kl_estimator, token_weights=weights, dual_clip=a.dual_clip, normalizer=x.normalizer,
        max_response_len=x.max_response_len, golden=x.golden, golden_ratio=a.golden_ratio,
        shaping_gamma=a.golden_shaping_gamma,
    )
    tokens = x.mask.sum().item()
    return loss, {"tokens": tokens, "clipped_tokens": float(pm["clip_frac"]) * tokens,
                  "ratio_sum": float(pm["ratio_mean"]) * tokens, "kl_sum": float(pm.get("kl", 0.0)) * tokens,
                  **corrected}


def _clipped_summary(totals: dict[str, float], a: AlgorithmConfig) -> dict[str, float]:
    tokens = max(totals["tokens"], 1.0)
    out = {"policy/clip_frac": totals["clipped_tokens"] / tokens, "policy/ratio_mean": totals["ratio_sum"] / tokens}
    if a.kl_coef > 0:
        out["kl/mean"] = totals["kl_sum"] / tokens
    if a.rollout_correction != "none":  # over the sampled rows' tokens (golden answers are not corrected)
        corrected = max(totals["correction_tokens"], 1.0)
        out |= {"correction/weight_mean": totals["correction_weight_sum"] / corrected,
                "correction/masked_frac": totals["correction_masked"] / corrected,
                "correction/ratio_mean": totals["correction_ratio_sum"] / corrected}
    return out


# -- conspo: group-wise InfoNCE over sequence scores


def _conspo_normalizer(rows: MiniRows, a: AlgorithmConfig) -> torch.Tensor:
    return conspo_normalizer(rows.correct)


def _conspo_loss(x: MicroInputs, a: AlgorithmConfig) -> tuple[torch.Tensor, dict[str, float]]:
    group_size = x.correct.shape[1]
    scores = sequence_scores(x.logp, x.mask).reshape(-1, group_size)
    margin = conspo_margin(x.step, a.conspo_margin_start, a.conspo_margin_end, a.conspo_margin_steps)
    loss, cm = conspo_loss(scores, x.correct.to(scores.device), tau=a.conspo_tau, margin=margin,
                           normalizer=x.normalizer)
    groups = float(cm["num_contrast_groups"])
    return loss, {"contrast_groups": groups, "positives": float(cm["num_positives"]),
                  "score_gap_sum": float(cm["score_gap"]) * groups, "margin": margin}


def _conspo_summary(totals: dict[str, float], a: AlgorithmConfig) -> dict[str, float]:
    updates = max(totals["updates"], 1.0)
    return {"conspo/contrast_groups": totals["contrast_groups"] / updates,
            "conspo/positives": totals["positives"] / updates,
            "conspo/score_gap": totals["score_gap_sum"] / max(totals["contrast_groups"], 1.0),
            "conspo/margin": totals["margin"] / max(totals["micro_batches"], 1.0)}


# -- sft: token-mean cross-entropy on the golden answers alone (the ga_sft imitation baseline)


def _sft_normalizer(rows: MiniRows, a: AlgorithmConfig) -> torch.Tensor:
    return torch.tensor(float(sum(len(r) for r in rows.responses)))  # golden-answer tokens


def _sft_loss(x: MicroInputs, a: AlgorithmConfig) -> tuple[torch.Tensor, dict[str, float]]:
    loss = sft_loss(x.logp, x.mask, normalizer=x.normalizer)
    return loss, {"sft": loss.item()}


def _sft_summary(totals: dict[str, float], a: AlgorithmConfig) -> dict[str, float]:
    return {"loss/sft": totals["sft"] / max(totals["updates"], 1.0)}


OBJECTIVES: dict[str, Objective] = {
    "clipped": Objective("clipped", "rollouts", ("tokens", "clipped_tokens", "ratio_sum", "kl_sum", "correction_tokens",
                                                 "correction_weight_sum", "correction_masked", "correction_ratio_sum"),
                         _clipped_normalizer, _clipped_loss, _clipped_summary),
    "conspo": Objective("conspo", "rollouts", ("contrast_groups", "positives", "score_gap_sum", "margin"),
                        _conspo_normalizer, _conspo_loss, _conspo_summary),
    "sft": Objective("sft", "golden", ("sft",), _sft_normalizer, _sft_loss, _sft_summary),
}


def objective_for(a: AlgorithmConfig) -> Objective:
    """The table entry of `algorithm.loss`."""
    return OBJECTIVES[a.loss]
