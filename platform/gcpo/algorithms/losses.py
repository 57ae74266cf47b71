"""Policy losses, KL estimators and token aggregation. Pure torch, no I/O.

Shapes: token tensors are (responses, T) with `mask` 1 on response tokens; `advantages` is (responses,).
Loss aggregation is kept apart from the per-token loss (`aggregate`), and takes an optional global normaliser so
data-parallel workers each divide by the *global* count (see `agg_normalizer`).
"""

from __future__ import annotations

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


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: KLEstimator = "k3") -> torch.Tensor:
    """Per-token estimate of KL(pi_theta || pi_ref), with l = logp - ref_logp.

    k1 = l; k2 = l^2 / 2; k3 = exp(-l) + l - 1 (>= 0 always). l is clamped to [-20, 20] for k3 to stay finite.
    """
    log_ratio = logp - ref_logp
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio.pow(2)
    if estimator == "k3":
        log_ratio = log_ratio.clamp(-20.0, 20.0)
        return torch.exp(-log_ratio) + log_ratio - 1.0
    raise ValueError(f"kl_estimator must be 'k1', 'k2' or 'k3', got {estimator!r}")


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


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    ratio_level: RatioLevel,
    clip_low: float,
    clip_high: float,
    agg: Agg,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    kl_estimator: KLEstimator = "k3",
    token_weights: torch.Tensor | None = None,
    dual_clip: float = 0.0,
    normalizer: torch.Tensor | float | None = None,
    max_response_len: int | None = None,
    golden: torch.Tensor | None = None,
    golden_ratio: GoldenRatio = "clip",
    shaping_gamma: float = 0.1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped surrogate (or plain policy gradient), aggregated, plus beta * KL.

    Token advantage A_{i,t} = A_i * w_{i,t} (w = `token_weights`, default 1).
    ratio_level token|sequence: per token -min(rho A, clip(rho, 1-clip_low, 1+clip_high) A); with
    `dual_clip` = c > 1, tokens with A < 0 are further bounded by -c A (dual-clip PPO).
    ratio_level none (GPG): -A * logp.
    Golden-answer rows (`golden`, (responses,) bool): with `golden_ratio` `clip` they are rows like any other; with
    `unclipped` or `shaped` their tokens take `golden_token_loss` instead (no ratio, no clip; `shaping_gamma` is
    LUFFY's gamma) and never count as clipped.
    Loss = aggregate(per-token loss) + kl_coef * aggregate(KL) when kl_coef > 0 (needs `ref_logp`).
    Returns (loss, metrics) with detached 0-dim tensors: `pg_loss`, `clip_frac` (share of tokens whose clipped
    branch was taken), `ratio_mean`, `ratio_max`, and `kl` when KL is on.
    """
    if advantages.dim() != 1 or advantages.shape[0] != logp.shape[0]:
        raise ValueError(f"advantages must be (responses,)={logp.shape[0]}, got {tuple(advantages.shape)}")
    adv = advantages.to(logp.dtype).unsqueeze(1).expand_as(logp)
    if token_weights is not None:
        adv = adv * token_weights.detach().to(logp.dtype)
    per_token, ratio, clip_taken = _surrogate(logp, old_logp, adv, mask, ratio_level, clip_low, clip_high, dual_clip)
    if golden is not None and golden_ratio != "clip":
        rows = golden.to(device=logp.device, dtype=torch.bool).unsqueeze(1)
        per_token = torch.where(rows, golden_token_loss(logp, adv, golden_ratio, gamma=shaping_gamma), per_token)
        clip_taken = clip_taken * ~rows
    metrics = _ratio_metrics(ratio, clip_taken, mask)
    loss = aggregate(per_token, mask, agg, normalizer=normalizer, max_response_len=max_response_len)
    metrics["pg_loss"] = loss.detach()
    if kl_coef > 0:
        if ref_logp is None:
            raise ValueError("kl_coef > 0 needs ref_logp (log-probs under the frozen reference model)")
        kl = kl_penalty(logp, ref_logp, kl_estimator)
        loss = loss + kl_coef * aggregate(kl, mask, agg, normalizer=normalizer, max_response_len=max_response_len)
        metrics["kl"] = ((kl * mask.to(logp.dtype)).sum() / mask.to(logp.dtype).sum().clamp(min=1.0)).detach()
    return loss, metrics


def _surrogate(logp, old_logp, adv, mask, ratio_level: RatioLevel, clip_low: float, clip_high: float,
               dual_clip: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-token loss, ratio, 1 where the clipped branch was taken) of the clipped surrogate; for ratio_level
    `none`, GPG's -A logp with ratio 1 and nothing clipped."""
    if ratio_level == "none":
        return -adv * logp, torch.ones_like(logp), torch.zeros_like(logp)
    ratio = importance_ratio(logp, old_logp, mask, ratio_level)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)
    clip_taken = (clipped > unclipped).to(logp.dtype)
    if dual_clip > 0:
        bounded = torch.minimum(per_token, -adv * dual_clip)
        per_token = torch.where(adv < 0, bounded, per_token)
    return per_token, ratio, clip_taken


def _ratio_metrics(ratio: torch.Tensor, clip_taken: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """clip_frac, ratio_mean and ratio_max over the valid tokens, detached."""
    with torch.no_grad():
        maskf = mask.to(ratio.dtype)
        n_tok = maskf.sum().clamp(min=1.0)
        return {"clip_frac": (clip_taken * maskf).sum() / n_tok, "ratio_mean": (ratio * maskf).sum() / n_tok,
                "ratio_max": torch.where(mask.bool(), ratio, torch.zeros_like(ratio)).max()}
