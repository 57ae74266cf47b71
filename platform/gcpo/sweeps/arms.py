"""A comparison's data and its arms: `Comparison` (the runs, curves and per-item results of an experiment, grouped
into arms), one run's row of runs.csv, and the per-arm summary (mean and std over seeds) — no MLflow, no files.

Per run: final and best value of the metric, the first step reaching `target`, the final format rate and reward,
the mean golden-answer share (`ga/injected_frac`), mean seconds per step, final response length and entropy. Per
arm: mean and std over its runs (std with ddof=1; 0 for a single run); steps-to-target is the mean over runs that
reached it, with the count that did. `Comparison.statistics()` adds the intervals, paired differences and A/A
checks of `gcpo.sweeps.stats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from gcpo.eval_items import ITEM_COLUMNS
from gcpo.sweeps import stats

SEED_KEYS = ("trainer.seed",)
IGNORED_PARAM_PREFIXES = ("tracking.", "cluster.", "trainer.output_dir")
CURVE_COLUMNS = ["run_id", "arm", "seed", "key", "step", "value"]
ITEMS_FRAME_COLUMNS = ["run_id", "arm", "seed", "step", *ITEM_COLUMNS]
SUMMARY_COLUMNS = ("final", "best", "format", "reward", "golden_share", "step_s", "length", "entropy")


def items_frame(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Per-item results of several runs as one frame (ITEMS_FRAME_COLUMNS; empty without any)."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=ITEMS_FRAME_COLUMNS)
    out = pd.concat(frames, ignore_index=True)[ITEMS_FRAME_COLUMNS]
    return out.astype({"arm": str, "seed": str, "task": str, "item_id": str})


@dataclass(frozen=True)
class Statistics:
    """The statistics of a comparison: per arm (`intervals`), per pair (`differences`), the A/A checks (`aa`: one
    row per seed split of each checked arm) and notes."""

    intervals: pd.DataFrame
    differences: pd.DataFrame
    aa: pd.DataFrame
    notes: list[str]


@dataclass
class Comparison:
    experiment: str
    tracking_uri: str
    metric: str
    mode: str
    keys: list[str]
    target: float | None
    runs: pd.DataFrame  # one row per run
    arms: pd.DataFrame  # one row per arm
    curves: pd.DataFrame  # columns: run_id, arm, seed, key, step, value
    parent_run_id: str | None = None
    notes: list[str] = field(default_factory=list)
    items: pd.DataFrame = field(default_factory=lambda: items_frame([]))  # per run, its final evaluation's items
    baseline: str | None = None  # None: the table's first arm; "all": every pair
    aa: list[str] = field(default_factory=list)  # arms checked against themselves (`stats.aa_splits`)
    _statistics: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def statistics(self) -> Statistics:
        """Each arm's 95% interval, the paired differences and the A/A checks (`gcpo.sweeps.stats`), computed once
        per setting; an unknown baseline or A/A arm raises ValueError."""
        settings = (self.baseline, tuple(self.aa))
        if self._statistics is None or self._statistics[0] != settings:
            arms = list(self.arms["arm"])
            intervals, notes = stats.arm_intervals(self.runs, self.items, self.metric)
            differences, more = stats.paired_differences(self.runs, self.items, self.metric,
                                                         stats.arm_pairs(arms, self.baseline))
            checks = [stats.aa_splits(self.runs, self.items, self.metric, arm) for arm in self.aa]
            aa = pd.concat(checks, ignore_index=True) if checks else pd.DataFrame(columns=stats.AA_COLUMNS)
            intervals = intervals.set_index("arm").reindex(arms).reset_index()
            self._statistics = (settings, Statistics(intervals, differences, aa, notes + more))
        return self._statistics[1]


def default_metric(runs) -> str:
    """The first `eval/*/pass_at_1` any of the MLflow `runs` logged, else `reward/accuracy`."""
    for run in runs:
        for key in sorted(run.data.metrics):
            if key.startswith("eval/") and key.endswith("/pass_at_1"):
                return key
    return "reward/accuracy"


def differing_params(runs) -> list[str]:
    """The params whose values differ between the MLflow `runs` (seeds, tracking and cluster keys excepted). When
    the runs' presets differ (plain `gcpo train --preset` runs, not a sweep), `preset` stands for every value a
    preset sets: the keys are `preset` and those that differ between runs of one preset."""
    keys = set().union(*(r.data.params for r in runs)) if runs else set()
    keys = sorted(k for k in keys if k not in SEED_KEYS and not k.startswith(IGNORED_PARAM_PREFIXES))
    differing = [k for k in keys if len({r.data.params.get(k) for r in runs}) > 1]
    if "preset" not in differing:
        return differing
    presets = {r.data.params.get("preset") for r in runs}
    within = [k for k in differing if k != "preset" and any(
        len({r.data.params.get(k) for r in runs if r.data.params.get("preset") == p}) > 1 for p in presets)]
    return ["preset", *within]


def run_row(run, ident: dict, params: dict, histories: dict[str, list], metric: str, mode: str,
            target: float | None) -> dict:
    """One run's row of runs.csv (see the module docstring)."""
    values = histories.get(metric, [])
    best_fn = max if mode == "max" else min
    reached = [s for s, v in values if target is not None and (v >= target if mode == "max" else v <= target)]
    format_key = metric.rsplit("/", 1)[0] + "/format_rate" if metric.startswith("eval/") else None
    return {"arm": ident["arm"], "seed": ident["seed"], "run_id": ident["run_id"], "run_name": run.info.run_name,
            "status": run.info.status, **params,
            "final": _last(values), "best": best_fn(v for _, v in values) if values else math.nan,
            "steps_to_target": reached[0] if reached else math.nan,
            "format": _last(histories.get(format_key, [])), "reward": _last(histories.get("reward/mean", [])),
            "golden_share": _mean(histories.get("ga/injected_frac", [])),
            "step_s": _mean(histories.get("time/step_s", [])),
            "length": _last(histories.get("response/length_mean", [])),
            "entropy": _last(histories.get("policy/entropy", []))}


def parse_param(text: str | None):
    """An MLflow param (a string) back to bool / number where it is one, for sorting and plotting."""
    if text is None:
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def _last(history: list[tuple[int, float]]) -> float:
    return history[-1][1] if history else math.nan


def _mean(history: list[tuple[int, float]]) -> float:
    return sum(v for _, v in history) / len(history) if history else math.nan


def summarize_arms(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over the runs of each arm (std 0 for one run); steps-to-target over the runs that reached it."""
    out = []
    for arm, group in runs.groupby("arm", sort=False):
        row = {"arm": arm, "runs": len(group)}
        for col in SUMMARY_COLUMNS:
            values = group[col].dropna()
            row[f"{col}_mean"] = values.mean() if len(values) else math.nan
            row[f"{col}_std"] = values.std(ddof=1) if len(values) > 1 else 0.0
        reached = group["steps_to_target"].dropna()
        row["steps_to_target"] = reached.mean() if len(reached) else math.nan
        row["reached"] = len(reached)
        out.append(row)
    return pd.DataFrame(out).sort_values("final_mean", ascending=False).reset_index(drop=True)
