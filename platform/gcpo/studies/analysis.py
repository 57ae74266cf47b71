"""One study's tables from its claims' comparisons (pure pandas and numpy; no MLflow, no files): each arm's mean
and 95% interval (`gcpo.sweeps.stats.arm_intervals`), each comparison (an arm against the claim's reference, or a
factorial effect) as a seeds x items contrast with its interval, p-value, Holm-adjusted interval across the whole
study, reached detectable difference and verdict (`gcpo.studies.method`), and the pilot's variance components
for `gcpo study plan`.

A contrast is drawn on the seeds every arm it weighs shares and on the held-out items all of them have (seeds
paired by `trainer.seed`); when any of those arms lacks per-item results, on the seeds' final values only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from gcpo.studies import method
from gcpo.studies.study_file import Claim, Study
from gcpo.sweeps import stats

COMPARISON_COLUMNS = ["claim", "comparison", "estimate", "low95", "high95", "p", "p_holm", "alpha",
                      "low", "high", "mdd", "seeds_needed", "verdict", "words", "method", "seeds", "items"]


def arm_frames(runs: pd.DataFrame, items: pd.DataFrame, metric: str, arms: list[str]) -> dict[str, pd.DataFrame]:
    """Each arm's seeds x items values (rows: seeds with a final value; columns: (task, item_id)), or its seeds'
    final values as one column "final" when its runs logged no per-item results."""
    values, out = stats.metric_items(items, metric), {}
    for arm in arms:
        by_seed = stats.finals(runs, arm)
        chosen = values[values["arm"] == arm]
        matrix = chosen.pivot(index="seed", columns=stats.ITEM_KEY, values="value") if len(chosen) else None
        if matrix is not None and matrix.reindex(by_seed.index).notna().any(axis=1).all():
            out[arm] = matrix.reindex(by_seed.index)
        else:
            out[arm] = by_seed.to_frame("final")
    return out


def contrast_matrix(frames: dict[str, pd.DataFrame], weights: dict[str, float]) -> tuple[np.ndarray, str]:
    """sum of weight x arm over the shared seeds (and shared complete items): a (seeds, items) matrix and its
    method (`stats.BY_ITEMS` or `stats.BY_SEEDS`); (0, 1) when an arm is missing or no seed is shared."""
    used = [arm for arm, w in weights.items() if w]
    if any(arm not in frames or frames[arm].empty for arm in used):
        return np.empty((0, 1)), stats.BY_SEEDS
    seeds = sorted(set.intersection(*(set(frames[arm].index) for arm in used)))
    by_items = all(list(frames[arm].columns) != ["final"] for arm in used)
    if by_items:
        chosen = [frames[arm].loc[seeds] for arm in used]
        columns = [c for c in chosen[0].columns if all(c in f.columns and f[c].notna().all() for f in chosen)]
        by_items = len(columns) >= 2 or len(seeds) == 1 and len(columns) >= 1
    if not by_items:
        finals = sum(weights[arm] * frames[arm].mean(axis=1).loc[seeds].to_numpy(float) for arm in used)
        return np.asarray(finals, float).reshape(len(seeds), 1), stats.BY_SEEDS
    total = sum(weights[arm] * frames[arm].loc[seeds, columns].to_numpy(float) for arm in used)
    return np.asarray(total, float), stats.BY_ITEMS


def claim_contrasts(claim: Claim) -> list[dict[str, Any]]:
    """The claim's comparisons: (name, better, worse or None for an interaction, weights)."""
    if not claim.factorial:
        return [{"comparison": f"{arm} - {claim.reference}", "better": arm, "worse": claim.reference,
                 "weights": {arm: 1.0, claim.reference: -1.0}} for arm in claim.arms if arm != claim.reference]
    out = []
    for name, weights in method.factorial_contrasts(claim.factors, claim.points):
        factor = next((key for key in claim.factors if key.rsplit(".", 1)[-1] == name), None)
        if factor is None:
            out.append({"comparison": f"interaction {name}", "better": name, "worse": None, "weights": weights})
            continue
        low, high = claim.factors[factor]
        out.append({"comparison": f"effect of {name}", "better": f"{name}={high}", "worse": f"{name}={low}",
                    "weights": weights})
    return out


def _row(claim: Claim, contrast: dict, matrix: np.ndarray, how: str) -> dict[str, Any]:
    """One comparison's unadjusted numbers (the adjusted ones come with the study's Holm step)."""
    interval = stats.mean_interval(matrix, method=how) if len(matrix) else stats.Interval(
        math.nan, math.nan, math.nan, how, 0, 0)
    p = method.p_values(matrix[None], how)[0] if len(matrix) and interval.method != stats.ITEMS_ONLY else math.nan
    return {"claim": claim.name, "comparison": contrast["comparison"], "estimate": interval.estimate,
            "low95": interval.low, "high95": interval.high, "p": float(p), "method": interval.method,
            "seeds": interval.seeds, "items": interval.items, "_matrix": matrix, "_contrast": contrast}


def _words(row: dict, claim: Claim, mode: str) -> tuple[str, str]:
    """The verdict of an adjusted row: the difference turned to "higher is better" when the metric is minimised."""
    sign = 1 if mode == "max" else -1
    est, low, high = sign * row["estimate"], *sorted((sign * row["low"], sign * row["high"]))
    contrast = row["_contrast"]
    if contrast["worse"] is not None:
        return method.verdict(contrast["better"], contrast["worse"], est, low, high, claim.target_difference)
    kind, _ = method.verdict("a", "b", est, low, high, claim.target_difference)
    name, reach = contrast["better"], max(abs(low), abs(high))
    return kind, {method.BEATS: f"{name} interact: {row['estimate']:+.3f} ({row['low']:.3f} to {row['high']:.3f})",
                  method.NO_DIFFERENCE: f"no interaction {name} larger than {reach:.3f}",
                  method.TOO_WIDE: f"too wide to tell whether {name} interact ({row['low']:.3f} to "
                                   f"{row['high']:.3f}, target {claim.target_difference:.3f})",
                  method.NO_VERDICT: f"no verdict on {name}: " + (
                      "nothing varied (a zero-width interval does not bound it; run more seeds)"
                      if row["low"] == row["high"] else "no interval")}[kind]


def _adjust(row: dict, claim: Claim, alpha: float, mode: str) -> dict[str, Any]:
    matrix, how = row.pop("_matrix"), row["method"]
    interval = method.interval_at(matrix, how, alpha) if len(matrix) else None
    row["low"], row["high"] = (interval.low, interval.high) if interval else (math.nan, math.nan)
    row["alpha"] = alpha
    row["mdd"], row["seeds_needed"] = _what_it_would_take(matrix, alpha, claim.target_difference)
    row["verdict"], row["words"] = _words(row, claim, mode)
    row.pop("_contrast")
    return row


def _what_it_would_take(matrix: np.ndarray, alpha: float, target: float) -> tuple[float, float]:
    """The difference this design detects (the reached MDD, at the comparison's Holm level) and the paired seeds
    the claim's target difference would need at the noise measured here (`method.seeds_needed` on this matrix's
    own variance components, at the same items and level; inf when the items alone keep it above the target);
    NaN below 2 seeds."""
    if len(matrix) < 2 or math.isnan(alpha):
        return math.nan, math.nan
    parts = method.variance_components(matrix)
    needed = method.seeds_needed(parts, matrix.shape[1], target, alpha=alpha)
    return method.planned_mdd(parts, *matrix.shape, alpha=alpha), math.inf if needed is None else float(needed)


def study_comparisons(study: Study, comparisons: dict[str, Any]) -> pd.DataFrame:
    """Every comparison of the study's claims (`comparisons`: claim -> its merged `Comparison`, claims without
    results left out), Holm-adjusted together at the looks rule's family level (`method.look_alpha`)."""
    rows = []
    for name, cmp in comparisons.items():
        claim = study.claims[name]
        frames = arm_frames(cmp.runs, cmp.items, cmp.metric, claim.arms)
        for contrast in claim_contrasts(claim):
            matrix, how = contrast_matrix(frames, contrast["weights"])
            rows.append(_row(claim, contrast, matrix, how))
    p_holm, alphas = method.holm([r["p"] for r in rows], method.look_alpha(study.looks))
    out = [{**_adjust(row, study.claims[row["claim"]], float(a), study.mode), "p_holm": float(q)}
           for row, q, a in zip(rows, p_holm, alphas)]
    return pd.DataFrame(out, columns=COMPARISON_COLUMNS)


def study_arms(study: Study, comparisons: dict[str, Any]) -> pd.DataFrame:
    """Each claim's arms (in the claim's order) with their 95% intervals and IQM (`iqm` shown where at least 4
    seeds ran and it differs from the mean at the report's precision: seeds disagree)."""
    frames = []
    for name, cmp in comparisons.items():
        intervals, _ = stats.arm_intervals(cmp.runs, cmp.items, cmp.metric)
        arms = [a for a in study.claims[name].arms if a in set(intervals["arm"])]
        chosen = intervals.set_index("arm").loc[arms].reset_index()
        disagree = (chosen["seeds"] >= 4) & ((chosen["iqm"] - chosen["estimate"]).abs() >= 0.0005)
        frames.append(chosen.assign(claim=name, iqm=chosen["iqm"].where(disagree)))
    if not frames:
        return pd.DataFrame(columns=["claim", "arm", *stats.Interval.__dataclass_fields__, "iqm"])
    out = pd.concat(frames, ignore_index=True)
    return out[["claim", "arm", *stats.Interval.__dataclass_fields__, "iqm"]]


def pilot_components(claim: Claim, runs: pd.DataFrame, items: pd.DataFrame, metric: str) -> tuple[
        method.Components | None, str]:
    """The variance components a plan of `claim` assumes, and where they come from: the claim's own contrasts
    where the pilot has 2 or more shared seeds of their arms, else every pilot arm against the pilot's first
    (paired differences), scaled to the claim's contrasts (a contrast's variance is sum(w^2) / 2 times a paired
    difference's). None without 2 seeds of any pair."""
    arms = list(runs["arm"].drop_duplicates())
    frames = arm_frames(runs, items, metric, arms)
    own = [contrast_matrix(frames, c["weights"])[0] for c in claim_contrasts(claim)]
    own = [m for m in own if len(m) >= 2]
    if own:
        return method.pooled_components([method.variance_components(m) for m in own]), "the claim's own arms"
    pairs = [contrast_matrix(frames, {a: 1.0, arms[0]: -1.0})[0] for a in arms[1:]]
    pairs = [m for m in pairs if len(m) >= 2]
    if not pairs:
        return None, "no pair of pilot arms with 2 shared seeds"
    pooled = method.pooled_components([method.variance_components(m) for m in pairs])
    scale = sum(w * w for w in claim_contrasts(claim)[0]["weights"].values()) / 2
    scaled = method.Components(pooled.seed * scale, pooled.item * scale, pooled.resid * scale, pooled.seeds,
                               pooled.items)
    return scaled, f"paired differences of the pilot's arms ({', '.join(arms)}), scaled by {scale:g}"


def metric_components(claim: Claim, runs: pd.DataFrame, items: pd.DataFrame, metric: str) -> tuple[
        method.Components | None, str]:
    """The components of the metric itself (one arm's seeds x items): the claim's reference arm where the pilot
    has 2 or more of its seeds, else the pilot's first such arm; None without one."""
    arms = list(runs["arm"].drop_duplicates())
    frames = arm_frames(runs, items, metric, arms)
    for arm in [claim.reference, *arms]:
        if arm in frames and len(frames[arm].dropna(axis=1)) >= 2:
            return method.variance_components(frames[arm].dropna(axis=1).to_numpy(float)), arm
    return None, ""
