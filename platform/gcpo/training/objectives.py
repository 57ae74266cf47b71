"""The loss table: one entry per `algorithm.loss`, each a small named set of functions with explicit arguments.

An `Objective` says
- `trains_on`: the rows its updates train on: the rollouts (`"rollouts"`, groups of G rows) or the batch's golden
  answers to imitate (`"golden"`, each its own group of one row);
- `settings(a)`: its numbers and choices, read from the `algorithm` config once per run (the clipped loss's is a
  `ClippedSettings`: the math's `PolicyLossSettings` and `CorrectionSettings` and the guidance power), so the math
  never sees the config tree;
- `normalizer(rows, s)`: the local denominator of a mini-batch (the update all-reduces it, so every rank divides
  by the global count);
- `loss(x, s)`: the loss of one micro-batch (already divided by the global normaliser), plus its named totals;
- `summarize(totals, s)`: its metrics from those totals, summed over micro-batches, updates and ranks (with the
  update's own `updates` and `micro_batches` counts among them), and `per_update`: the totals also kept for each
  optimiser update apart, summarized by `summarize_update(totals, s, u)` (the clipped loss: the clip fraction over
  learnable tokens and the KL term's gradient share, per mini-batch).

`objective_for(a)` binds an entry to its settings (`BoundObjective`); the update calls only that. Adding a loss
kind is adding an entry to `OBJECTIVES` (and its value to `AlgorithmConfig.loss`). The math lives in
`gcpo.algorithms`; this table only wires it to the step batch. How micro-batches, mini-batches and ranks are
arranged around it is `gcpo.training.update`'s business.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

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
from gcpo.algorithms.corrections import CorrectionSettings
from gcpo.algorithms.losses import PolicyLossSettings
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
    # (rows,) bool: the policy's own samples of the task's prompt (not golden, no hint): the rows KL is taken over
    kl_rows: torch.Tensor | None = None


@dataclass(frozen=True)
class Objective:
    name: str
    trains_on: Literal["rollouts", "golden"]
    totals: tuple[str, ...]  # the named totals `loss` returns (summed over micro-batches, updates and ranks)
    settings: Callable[[AlgorithmConfig], Any]
    normalizer: Callable[[MiniRows, Any], torch.Tensor]
    loss: Callable[[MicroInputs, Any], tuple[torch.Tensor, dict[str, float]]]
    summarize: Callable[[dict[str, float], Any], dict[str, float]]
    per_update: tuple[str, ...] = ()  # totals also kept per optimiser update
    summarize_update: Callable[[dict[str, float], Any, int], dict[str, float]] | None = None


@dataclass(frozen=True)
class BoundObjective:
    """A table entry with its settings, built once per run by `objective_for`."""

    objective: Objective
    settings: Any

    @property
    def trains_on(self) -> str:
        return self.objective.trains_on

    def totals(self, updates: int) -> tuple[str, ...]:
        """Every total's name: the summed ones, then `name@u` for each per-update total and update u."""
        return self.objective.totals + tuple(f"{name}@{u}" for u in range(updates) for name in self.objective.per_update)

    def normalizer(self, rows: MiniRows) -> torch.Tensor:
        return self.objective.normalizer(rows, self.settings)

    def loss(self, x: MicroInputs) -> tuple[torch.Tensor, dict[str, float]]:
        return self.objective.loss(x, self.settings)

    def summarize(self, totals: dict[str, float], updates: int) -> dict[str, float]:
        """The metrics of the whole update, then each optimiser update's (`summarize_update`, u counted from 1)."""
        out = self.objective.summarize(totals, self.settings)
        if self.objective.summarize_update is not None:
            for u in range(updates):
                mine = {name: totals.get(f"{name}@{u}", 0.0) for name in self.objective.per_update}
                out |= self.objective.summarize_update(mine, self.settings, u + 1)
        return out


# -- clipped: the clipped surrogate (token or sequence ratio) or plain policy gradient, with KL and token credit


@dataclass(frozen=True)
class ClippedSettings:
    """The clipped loss's numbers: the policy loss's, the rollout correction's (`kind` "none": off) and the guidance
    token credit's rank power (used when the step batch carries negative prompts)."""

    policy: PolicyLossSettings
    correction: CorrectionSettings
    guidance_power: float


def clip_range(a: AlgorithmConfig) -> tuple[float, float]:
    """(eps_low, eps_high) of the ratio level in use: `clip_low` / `clip_high` for the token ratio,
    `clip_low_sequence` / `clip_high_sequence` for the sequence ratio (GSPO's range is ~1000x tighter)."""
    if a.ratio_level == "sequence":
        return a.clip_low_sequence, a.clip_high_sequence
    return a.clip_low, a.clip_high


def loss_settings(a: AlgorithmConfig) -> PolicyLossSettings:
    """The policy loss's settings of an `algorithm` config (the clip range of its ratio level)."""
    clip_low, clip_high = clip_range(a)
    return PolicyLossSettings(ratio_level=a.ratio_level, clip_low=clip_low, clip_high=clip_high, agg=a.loss_agg,
                              kl_coef=a.kl_coef, kl_estimator=a.kl_estimator, kl_clamp=a.kl_clamp,
                              dual_clip=a.dual_clip, golden_ratio=a.golden_ratio,
                              shaping_gamma=a.golden_shaping_gamma)


def _clipped_settings(a: AlgorithmConfig) -> ClippedSettings:
    correction = CorrectionSettings(kind=a.rollout_correction, cap=a.correction_cap, icepop_low=a.icepop_low,
                                    icepop_high=a.icepop_high, mis_ratio=a.mis_ratio)
    return ClippedSettings(loss_settings(a), correction, a.guidance_power)


def _clipped_normalizer(rows: MiniRows, s: ClippedSettings) -> torch.Tensor:
    if not rows.responses:
        return torch.zeros(())
    _, mask = pad_responses(rows.responses, torch.float32)
    return agg_normalizer(mask, s.policy.agg, rows.max_response_len)


def _token_weights(x: MicroInputs, s: ClippedSettings) -> tuple[torch.Tensor | None, dict[str, float]]:
    """Guidance token credit's weights times the rollout correction's, and the correction's totals."""
    weights, corrected = None, {}
    if x.negative_logp is not None:
        weights = guidance_token_weights(x.logp.detach(), x.negative_logp, x.mask, power=s.guidance_power)
    if x.behaviour_logp is not None:
        device = x.logp.device
        cw, cm = correction_weights(x.old_logp, x.behaviour_logp.to(device), x.mask, x.sampled.to(device),
                                    s.correction)
        weights = cw if weights is None else weights * cw
        n = float(cm["tokens"])
        corrected = {"correction_tokens": n, "correction_weight_sum": float(cm["weight_mean"]) * n,
                     "correction_masked": float(cm["masked_frac"]) * n,
                     "correction_ratio_sum": float(cm["ratio_mean"]) * n}
    return weights, corrected


def _clipped_loss(x: MicroInputs, s: ClippedSettings) -> tuple[torch.Tensor, dict[str, float]]:
    weights, corrected = _token_weights(x, s)
    loss, pm = policy_loss(
        x.logp, x.old_logp, x.advantages.to(x.logp.device), x.mask, s.policy, ref_logp=x.ref_logp,
        token_weights=weights, normalizer=x.normalizer, max_response_len=x.max_response_len, golden=x.golden,
        kl_rows=x.kl_rows,
    )
    tokens = x.mask.sum().item()
    totals = {"tokens": tokens, "clipped_tokens": float(pm["clip_frac"]) * tokens,
              "ratio_sum": float(pm["ratio_mean"]) * tokens, "clipped_learnable": float(pm["clip_learnable"]),
              "learnable_tokens": float(pm["learnable_tokens"])}
    if s.policy.kl_coef > 0:
        totals |= {"kl_sum": float(pm["kl"]) * float(pm["kl_tokens"]), "kl_tokens": float(pm["kl_tokens"]),
                   "pg_grad_sq": float(pm["pg_grad_sq"]), "kl_grad_sq": float(pm["kl_grad_sq"])}
    return loss, totals | corrected


def _kl_grad_share(totals: dict[str, float]) -> float:
    """||g_KL|| / (||g_PG|| + ||g_KL||) of the gradients with respect to the token log-probs (0 without KL)."""
    kl, pg = math.sqrt(totals["kl_grad_sq"]), math.sqrt(totals["pg_grad_sq"])
    return kl / (kl + pg) if kl + pg > 0 else 0.0


def _clipped_summary(totals: dict[str, float], s: ClippedSettings) -> dict[str, float]:
    tokens = max(totals["tokens"], 1.0)
    out = {"policy/clip_frac": totals["clipped_tokens"] / tokens, "policy/ratio_mean": totals["ratio_sum"] / tokens,
           "policy/clip_frac_learnable": totals["clipped_learnable"] / max(totals["learnable_tokens"], 1.0)}
    if s.policy.kl_coef > 0:
        out["kl/mean"] = totals["kl_sum"] / max(totals["kl_tokens"], 1.0)
        out["kl/grad_share"] = _kl_grad_share(totals)
    if s.correction.kind != "none":  # over the sampled rows' tokens (golden answers are not corrected)
        corrected = max(totals["correction_tokens"], 1.0)
        out |= {"correction/weight_mean": totals["correction_weight_sum"] / corrected,
                "correction/masked_frac": totals["correction_masked"] / corrected,
                "correction/ratio_mean": totals["correction_ratio_sum"] / corrected}
    return out


def _clipped_update_summary(totals: dict[str, float], s: ClippedSettings, u: int) -> dict[str, float]:
    """Optimiser update u's (its mini-batch's) clip fraction over learnable tokens, and the KL term's gradient
    share: the second mini-batch is where a ratio level's range decides how much of the batch still teaches."""
    out = {f"policy/clip_frac_learnable_u{u}": totals["clipped_learnable"] / max(totals["learnable_tokens"], 1.0)}
    if s.policy.kl_coef > 0:
        out[f"kl/grad_share_u{u}"] = _kl_grad_share(totals)
    return out


# -- conspo: group-wise InfoNCE over sequence scores


@dataclass(frozen=True)
class ConspoSettings:
    """ConSPO's temperature and margin schedule (`margin_steps` already resolved: `with_run_span`)."""

    tau: float
    margin_start: float
    margin_end: float
    margin_steps: int


def _conspo_settings(a: AlgorithmConfig) -> ConspoSettings:
    return ConspoSettings(a.conspo_tau, a.conspo_margin_start, a.conspo_margin_end, a.conspo_margin_steps)


def _conspo_normalizer(rows: MiniRows, s: ConspoSettings) -> torch.Tensor:
    return conspo_normalizer(rows.correct)


def _conspo_loss(x: MicroInputs, s: ConspoSettings) -> tuple[torch.Tensor, dict[str, float]]:
    group_size = x.correct.shape[1]
    scores = sequence_scores(x.logp, x.mask).reshape(-1, group_size)
    margin = conspo_margin(x.step, s.margin_start, s.margin_end, s.margin_steps)
    loss, cm = conspo_loss(scores, x.correct.to(scores.device), tau=s.tau, margin=margin,
                           normalizer=x.normalizer)
    groups = float(cm["num_contrast_groups"])
    return loss, {"contrast_groups": groups, "positives": float(cm["num_positives"]),
                  "score_gap_sum": float(cm["score_gap"]) * groups, "margin": margin}


def _conspo_summary(totals: dict[str, float], s: ConspoSettings) -> dict[str, float]:
    updates = max(totals["updates"], 1.0)
    return {"conspo/contrast_groups": totals["contrast_groups"] / updates,
            "conspo/positives": totals["positives"] / updates,
            "conspo/score_gap": totals["score_gap_sum"] / max(totals["contrast_groups"], 1.0),
            "conspo/margin": totals["margin"] / max(totals["micro_batches"], 1.0)}


# -- sft: token-mean cross-entropy on the golden answers alone (the ga_sft imitation baseline)


def _no_settings(a: AlgorithmConfig) -> None:
    return None


def _sft_normalizer(rows: MiniRows, s: None) -> torch.Tensor:
    return torch.tensor(float(sum(len(r) for r in rows.responses)))  # golden-answer tokens


def _sft_loss(x: MicroInputs, s: None) -> tuple[torch.Tensor, dict[str, float]]:
    loss = sft_loss(x.logp, x.mask, normalizer=x.normalizer)
    return loss, {"sft": loss.item()}


def _sft_summary(totals: dict[str, float], s: None) -> dict[str, float]:
    return {"loss/sft": totals["sft"] / max(totals["updates"], 1.0)}


_PER_UPDATE = ("clipped_learnable", "learnable_tokens", "pg_grad_sq", "kl_grad_sq")

OBJECTIVES: dict[str, Objective] = {
    "clipped": Objective("clipped", "rollouts", ("tokens", "clipped_tokens", "ratio_sum", "kl_sum", "kl_tokens",
                                                 "correction_tokens", "correction_weight_sum", "correction_masked",
                                                 "correction_ratio_sum", *_PER_UPDATE),
                         _clipped_settings, _clipped_normalizer, _clipped_loss, _clipped_summary,
                         per_update=_PER_UPDATE, summarize_update=_clipped_update_summary),
    "conspo": Objective("conspo", "rollouts", ("contrast_groups", "positives", "score_gap_sum", "margin"),
                        _conspo_settings, _conspo_normalizer, _conspo_loss, _conspo_summary),
    "sft": Objective("sft", "golden", ("sft",), _no_settings, _sft_normalizer, _sft_loss, _sft_summary),
}


def objective_for(a: AlgorithmConfig) -> BoundObjective:
    """The table entry of `algorithm.loss`, bound to its settings (built here, once per run)."""
    entry = OBJECTIVES[a.loss]
    return BoundObjective(entry, entry.settings(a))
