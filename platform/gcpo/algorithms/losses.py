"""Policy losses, KL estimators and token aggregation. Pure torch, no I/O.

Shapes: token tensors are (responses, T) with `mask` 1 on response tokens; `advantages` is (responses,).
Loss aggregation is kept apart from the per-token loss (`aggregate`), and takes an optional global normaliser so
data-parallel workers each divide by the *global* count (see `agg_normalizer`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from gcpo.algorithms.choices import Agg, GoldenRatio, KLEstimator, RatioLevel, values
from gcpo.algorithms.golden import golden_token_loss

AGGREGATIONS: tuple[str, ...] = values(Agg)


def agg_normalizer(mask: torch.Tensor, agg: Agg, max_response_len: int | None = None) -> torch.Tensor:
    """The denominator `aggregate` uses for this (local) batch; all-reduce (sum) it across workers for DP.

    token-mean: number of valid tokens. seq-mean-token-mean: number of sequences.
    seq-mean-token-sum-norm: number of sequences * max_response_len (a constant, default mask.shape[1]), so
    the normaliser never depends on the responses' lengths (Dr.GRPO).
    """
    mask = mask.float()
    if agg == "token-mean":
        return mask.sum()
    if agg == "seq-mean-token-mean":
        return torch.tensor(float(mask.shape[0]))
    if agg == "seq-mean-token-sum-norm":
        return torch.tensor(float(mask.shape[0] * (max_response_len or mask.shape[1])))
    raise ValueError(f"agg must be one of {', '.join(AGGREGATIONS)}; got {agg!r}")


def aggregate(
    values: torch.Tensor,
    mask: torch.Tensor,
    agg: Agg,
    *,
    normalizer: torch.Tensor | float | None = None,
    max_response_len: int | None = None,
) -> torch.Tensor:
    """Reduce per-token `values` (responses, T) to a scalar.

    token-mean: sum_{i,t} v m / N. seq-mean-token-mean: sum_i (sum_t v m / sum_t m) / N.
    seq-mean-token-sum-norm: sum_{i,t} v m / N. N is `normalizer` when given (the global one under data
    parallelism), else `agg_normalizer(mask, agg, max_response_len)`.
    """
    if agg not in AGGREGATIONS:
        raise ValueError(f"agg must be one of {', '.join(AGGREGATIONS)}; got {agg!r}")
    mask = mask.to(values.dtype)
    if normalizer is None:
        normalizer = agg_normalizer(mask, agg, max_response_len)
    normalizer = torch.clamp(torch.as_tensor(normalizer, dtype=values.dtype), min=1.0)
    if agg == "seq-mean-token-mean":
        per_seq = (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return per_seq.sum() / normalizer
    return (values * mask).sum() / normalizer


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: KLEstimator = "k3", *,
               clamp: float | None = None) -> torch.Tensor:
    """Per-token estimate of KL(pi_theta || pi_ref), with l = logp - ref_logp.

    k1 = l; k2 = l^2 / 2; k3 = exp(-l) + l - 1 (>= 0 always; l clamped to [-20, 20] so it stays finite).
    `clamp` = c > 0 clamps the estimate's value to [-c, c] (verl's `kl_penalty`, c = 10; `algorithm.kl_clamp`).
    A clamped token contributes no gradient, which bounds k3's per-token gradient 1 - pi_ref/pi (unbounded as the
    policy leaves the reference: e^20 at the log-ratio clamp) to about e^2.6 - 1 = 12.5 at c = 10.
    """
    log_ratio = logp - ref_logp
    if estimator == "k1":
        kl = log_ratio
    elif estimator == "k2":
        kl = 0.5 * log_ratio.pow(2)
    elif estimator == "k3":
        log_ratio = log_ratio.clamp(-20.0, 20.0)
        kl = torch.exp(-log_ratio) + log_ratio - 1.0
    else:
        raise ValueError(f"kl_estimator must be 'k1', 'k2' or 'k3', got {estimator!r}")
    return kl.clamp(-clamp, clamp) if clamp else kl


def importance_ratio(
    logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor, ratio_level: RatioLevel
) -> torch.Tensor:
    """Per-token ratio (responses, T).

    token: rho_t = exp(logp_t - old_logp_t).
    sequence (GSPO): s_i = exp(mean_t (logp - old_logp)) for every token of o_i, written as
    exp(sg[log s_i] + logp_t - sg[logp_t]) so its value is s_i and each token's gradient is s_i * grad logp_t
    (GSPO-token form: the same gradient as the sequence objective under a per-sequence token mean).
    """
    mask = mask.to(logp.dtype)
    log_ratio = (logp - old_logp) * mask
    if ratio_level == "token":
        return torch.exp(log_ratio.clamp(-20.0, 20.0))
    if ratio_level == "sequence":
        seq_log_ratio = log_ratio.sum(dim=1, keepdim=True) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        tok = seq_log_ratio.detach().clamp(-20.0, 20.0) + logp - logp.detach()
        return torch.exp(tok)
    raise ValueError(f"importance_ratio needs ratio_level 'token' or 'sequence', got {ratio_level!r}")


@dataclass(frozen=True)
class PolicyLossSettings:
    """The numbers and choices of `policy_loss`, built once per run from the config
    (`gcpo.training.objectives.loss_settings`), or from `NEUTRAL` with changes (`neutral(**changes)`, for tests
    and scripts): no defaults here, so every value has one source (`gcpo.algorithms.presets.NEUTRAL`).

    `clip_low` / `clip_high`: the clip range of `ratio_level` (the token range, or the sequence range for the
    sequence ratio); `agg`: the aggregation; `kl_coef` (0 = no KL), `kl_estimator`, `kl_clamp` (the estimate's
    value clamp, 0 = none); `dual_clip` (0 = off); `golden_ratio` and `shaping_gamma` (golden-answer rows)."""

    ratio_level: RatioLevel
    clip_low: float
    clip_high: float
    agg: Agg
    kl_coef: float
    kl_estimator: KLEstimator
    kl_clamp: float
    dual_clip: float
    golden_ratio: GoldenRatio
    shaping_gamma: float

    @classmethod
    def neutral(cls, **changes) -> "PolicyLossSettings":
        """NEUTRAL's values (the plain clipped token surrogate, no KL) with `changes`."""
        from gcpo.algorithms.presets import NEUTRAL

        values = {"ratio_level": NEUTRAL["ratio_level"], "clip_low": NEUTRAL["clip_low"],
                  "clip_high": NEUTRAL["clip_high"], "agg": NEUTRAL["loss_agg"], "kl_coef": NEUTRAL["kl_coef"],
                  "kl_estimator": NEUTRAL["kl_estimator"], "kl_clamp": NEUTRAL["kl_clamp"],
                  "dual_clip": NEUTRAL["dual_clip"], "golden_ratio": NEUTRAL["golden_ratio"],
                  "shaping_gamma": NEUTRAL["golden_shaping_gamma"]}
        return cls(**(values | changes))


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    settings: PolicyLossSettings,
    *,
    ref_logp: torch.Tensor | None = None,
    token_weights: torch.Tensor | None = None,
    normalizer: torch.Tensor | float | None = None,
    max_response_len: int | None = None,
    golden: torch.Tensor | None = None,
    kl_rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped surrogate (or plain policy gradient), aggregated, plus beta * KL (`settings`: the numbers).

    Token advantage A_{i,t} = A_i * w_{i,t} (w = `token_weights`, default 1).
    ratio_level token|sequence: per token -min(rho A, clip(rho, 1-clip_low, 1+clip_high) A); with
    `dual_clip` = c > 1, tokens with A < 0 are further bounded by -c A (dual-clip PPO).
    ratio_level none (GPG): -A * logp.
    Golden-answer rows (`golden`, (responses,) bool): with `golden_ratio` `clip` they are rows like any other; with
    `unclipped` or `shaped` their tokens take `golden_token_loss` instead (no ratio, no clip; `shaping_gamma` is
    LUFFY's gamma) and never count as clipped.
    KL (kl_coef > 0, needs `ref_logp`): + kl_coef * aggregate(KL over the rows of `kl_rows`), (responses,) bool,
    default every row. KL(pi || pi_ref) is estimated from samples of pi: rows that are not the policy's own samples
    of the task's prompt (injected golden answers, hint-conditioned rows) estimate nothing and are left out. The
    aggregation's normaliser is the policy term's, so excluded rows dilute rather than renormalise (stated choice:
    the KL term's weight does not jump with the number of golden rows in a micro-batch).
    Returns (loss, metrics) with detached 0-dim tensors: `pg_loss`, `clip_frac` (share of tokens whose clipped
    branch was taken), `clip_learnable` and `learnable_tokens` (the same over tokens with a non-zero advantage
    that go through the ratio: those a clip can take out of the gradient), `ratio_mean`, `ratio_max`, and with
    KL on `kl` (mean over the KL rows' tokens), `kl_tokens`, `pg_grad_sq` and `kl_grad_sq` (squared norms of
    each term's gradient with respect to the token log-probs; both reach the parameters through the same
    d logp / d theta, so their ratio is the KL term's share of the update at the log-prob level).
    """
    if advantages.dim() != 1 or advantages.shape[0] != logp.shape[0]:
        raise ValueError(f"advantages must be (responses,)={logp.shape[0]}, got {tuple(advantages.shape)}")
    adv = advantages.to(logp.dtype).unsqueeze(1).expand_as(logp)
    if token_weights is not None:
        adv = adv * token_weights.detach().to(logp.dtype)
    per_token, ratio, clip_taken = _surrogate(logp, old_logp, adv, mask, settings)
    learnable = (adv != 0) & mask.bool()
    if golden is not None and settings.golden_ratio != "clip":
        rows = golden.to(device=logp.device, dtype=torch.bool).unsqueeze(1)
        per_token = torch.where(rows, golden_token_loss(logp, adv, settings.golden_ratio,
                                                        gamma=settings.shaping_gamma), per_token)
        clip_taken = clip_taken * ~rows
        learnable = learnable & ~rows
    metrics = _ratio_metrics(ratio, clip_taken, mask, learnable)
    agg = functools.partial(aggregate, mask=mask, agg=settings.agg, normalizer=normalizer,
                            max_response_len=max_response_len)
    loss = agg(per_token)
    metrics["pg_loss"] = loss.detach()
    if settings.kl_coef > 0:
        kl_loss, kl_metrics = _kl_term(logp, ref_logp, mask, kl_rows, settings, agg)
        metrics |= kl_metrics | _grad_norms(logp, loss, kl_loss)
        loss = loss + kl_loss
    return loss, metrics


def _kl_term(logp, ref_logp, mask, kl_rows, settings: PolicyLossSettings, agg) -> tuple[torch.Tensor, dict]:
    """kl_coef * the aggregated KL estimate over the tokens of `kl_rows`, and its metrics `kl`, `kl_tokens`."""
    if ref_logp is None:
        raise ValueError("kl_coef > 0 needs ref_logp (log-probs under the frozen reference model)")
    kl_mask = mask.to(logp.dtype)
    if kl_rows is not None:
        kl_mask = kl_mask * kl_rows.to(device=logp.device, dtype=logp.dtype).unsqueeze(1)
    kl = kl_penalty(logp, ref_logp, settings.kl_estimator, clamp=settings.kl_clamp or None)
    tokens = kl_mask.sum()
    kl_metrics = {"kl": ((kl * kl_mask).sum() / tokens.clamp(min=1.0)).detach(), "kl_tokens": tokens.detach()}
    return settings.kl_coef * agg(kl * kl_mask), kl_metrics


def _grad_norms(logp: torch.Tensor, pg_loss: torch.Tensor, kl_loss: torch.Tensor) -> dict[str, torch.Tensor]:
    """Squared norms of the policy term's and the KL term's gradients with respect to `logp` (0 when `logp`
    carries no gradient): what `kl/grad_share` is made of."""
    if not logp.requires_grad:
        zero = torch.zeros(())
        return {"pg_grad_sq": zero, "kl_grad_sq": zero}
    pg_grad, kl_grad = (torch.autograd.grad(term, logp, retain_graph=True, allow_unused=True)[0]
                        for term in (pg_loss, kl_loss))
    return {name: (g.detach().pow(2).sum() if g is not None else torch.zeros(()))
            for name, g in (("pg_grad_sq", pg_grad), ("kl_grad_sq", kl_grad))}


def _surrogate(logp, old_logp, adv, mask, settings: PolicyLossSettings
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-token loss, ratio, 1 where the clipped branch was taken) of the clipped surrogate; for ratio_level
    `none`, GPG's -A logp with ratio 1 and nothing clipped."""
    if settings.ratio_level == "none":
        return -adv * logp, torch.ones_like(logp), torch.zeros_like(logp)
    ratio = importance_ratio(logp, old_logp, mask, settings.ratio_level)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - settings.clip_low, 1.0 + settings.clip_high)
    per_token = torch.maximum(unclipped, clipped)
    clip_taken = (clipped > unclipped).to(logp.dtype)
    if settings.dual_clip > 0:
        bounded = torch.minimum(per_token, -adv * settings.dual_clip)
        per_token = torch.where(adv < 0, bounded, per_token)
    return per_token, ratio, clip_taken


def _ratio_metrics(ratio: torch.Tensor, clip_taken: torch.Tensor, mask: torch.Tensor, learnable: torch.Tensor
                   ) -> dict[str, torch.Tensor]:
    """clip_frac, ratio_mean and ratio_max over the valid tokens, clip_learnable and learnable_tokens, detached."""
    with torch.no_grad():
        maskf = mask.to(ratio.dtype)
        n_tok = maskf.sum().clamp(min=1.0)
        return {"clip_frac": (clip_taken * maskf).sum() / n_tok, "ratio_mean": (ratio * maskf).sum() / n_tok,
                "ratio_max": torch.where(mask.bool(), ratio, torch.zeros_like(ratio)).max(),
                "clip_learnable": (clip_taken * learnable).sum(), "learnable_tokens": learnable.sum().to(ratio.dtype)}
