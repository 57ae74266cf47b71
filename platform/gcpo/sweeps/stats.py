"""Bootstrap confidence intervals and paired differences for `gcpo compare` (pure: numpy and pandas, no MLflow).

An arm's value is the mean over its seeds (runs) of the final held-out metric; with per-item results, the mean
over seeds of the mean over held-out items, the same number.

- **Interval per arm: a hierarchical percentile bootstrap over seeds and items.** Each of `resamples` replicates
  (default 2000, `gcpo compare --bootstrap N`) draws the arm's seeds with replacement, then the held-out items
  with replacement, and takes the mean over the drawn seeds of each seed's mean over the drawn items. Every seed
  is evaluated on the same held-out items, so one item draw serves all the seeds of a replicate: drawing items
  apart for each seed would count the luck of one item set as S independent ones and narrow the interval by up
  to sqrt(S). (Where seeds hold different items, as in reports merged from runs of other `task.eval_size`, a
  seed's mean is over the drawn items it has.) The 95% interval is the 2.5th and 97.5th percentiles of the
  replicates. Both sources of variation are in it: which seeds were run, and which items the held-out set holds.
- **Seeds only** when an arm's runs logged no per-item results (runs from before they were recorded, or a metric
  that is not per item, such as `reward/mean`): the replicates draw the seeds' final values with replacement.
  The report's notes say which arms fell back. One seed and no items leaves nothing to resample: no interval.
- **Paired differences** between two arms that share seeds: on every shared (seed, item) pair the difference
  d = arm - baseline; the same bootstrap on d (seeds, then items), so a resampled pair always keeps both arms'
  results on the same seed and item together. The estimate is the mean over shared seeds of the mean of d.
  Without items for both arms, the differences of the shared seeds' final values, resampled by seed.
- **Randomness**: numpy's `default_rng` seeded with the report's seed (default 0, `--bootstrap-seed`) and the
  CRC32 of the arm's (or the pair's) names, so the same inputs give the same interval, and an arm's interval does
  not change when other arms join the report.

What one item is worth: at N held-out items one item moves an arm's pass@1 by 1/N (0.02 at N = 50); the items'
half-width of a 95% interval is about 1.96 * sqrt(p (1 - p) / N): 0.14 at p = 0.5 and N = 50, 0.10 at N = 100,
0.07 at N = 200, whatever the number of seeds (they share the items).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import pandas as pd

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
ITEM_KEY = ["task", "item_id"]
BY_ITEMS, BY_SEEDS = "seeds x items", "seeds"


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval (`low`, `high` NaN when there was nothing to resample);
    `method`: "seeds x items" or "seeds"; `seeds` resampled; `items` resampled (0 for seeds only)."""

    estimate: float
    low: float
    high: float
    method: str
    seeds: int
    items: int


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """The generator for one arm or pair: `seed` and the CRC32 of the names (see the module docstring)."""
    return np.random.default_rng([seed, *(zlib.crc32(name.encode()) for name in names)])


def bootstrap_replicates(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """`resamples` replicates of the mean over rows (seeds) of each row's mean over columns (items) of `values`
    (NaN: that seed lacks that item): rows drawn with replacement, then columns with replacement, one column draw
    shared by the drawn rows. A row none of whose items was drawn sits out its replicate."""
    seeds, items = values.shape
    present = ~np.isnan(values)
    item_draws = rng.multinomial(items, np.full(items, 1 / items), size=resamples).astype(float)  # (B, items)
    seed_draws = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=resamples).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0: a seed none of whose items was drawn
        seed_means = (item_draws @ np.where(present, values, 0.0).T) / (item_draws @ present.T)  # (B, seeds)
        seed_draws[np.isnan(seed_means)] = 0.0
        return (seed_draws * np.nan_to_num(seed_means)).sum(axis=1) / seed_draws.sum(axis=1)


def bootstrap_interval(values: np.ndarray, *, resamples: int = RESAMPLES, rng: np.random.Generator,
                       method: str = BY_ITEMS, level: float = LEVEL) -> Interval:
    """The mean over rows of the rows' means over their values, with its percentile interval (see
    `bootstrap_replicates`). `values`: seeds x items, or seeds x 1 (the seeds-only bootstrap, `method` "seeds")."""
    values = np.asarray(values, dtype=float).reshape(len(values), -1)
    values = values[~np.isnan(values).all(axis=1)]
    seeds, items = values.shape
    if seeds == 0:
        return Interval(math.nan, math.nan, math.nan, method, 0, 0)
    estimate = float(np.mean(np.nanmean(values, axis=1)))
    if method == BY_SEEDS and seeds == 1:
        return Interval(estimate, math.nan, math.nan, method, 1, 0)
    replicates = bootstrap_replicates(values, resamples, rng)
    low, high = np.nanquantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return Interval(estimate, float(low), float(high), method, seeds, items if method == BY_ITEMS else 0)


def item_column(metric: str) -> tuple[str, str] | None:
    """The per-item column that averages to `metric`, with its task: `eval/<task>/pass_at_1` -> (task,
    "correct"), `eval/<task>/mean_at_<k>` -> (task, "mean_at_k"), `eval/<task>/format_rate` -> (task, "format");
    None for any other metric."""
    parts = metric.split("/")
    if len(parts) != 3 or parts[0] != "eval":
        return None
    column = {"pass_at_1": "correct", "format_rate": "format"}.get(parts[2])
    if column is None and parts[2].startswith("mean_at_"):
        column = "mean_at_k"
    return (parts[1], column) if column else None


def metric_items(items: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The (arm, seed, task, item_id, value) rows of `items` (a report's items.csv) that make up `metric`, one
    per (arm, seed, item); empty when the metric is not per item."""
    found = item_column(metric)
    columns = ["arm", "seed", *ITEM_KEY, "value"]
    if found is None or items.empty:
        return pd.DataFrame(columns=columns)
    task, column = found
    chosen = items[items["task"] == task]
    chosen = chosen.assign(value=chosen[column].astype(float))[columns]
    return chosen.drop_duplicates(["arm", "seed", *ITEM_KEY], keep="last")


def _item_matrix(values: pd.DataFrame, arm: str, seeds: Sequence[str]) -> pd.DataFrame:
    """Seeds x items of one arm's values (rows in `seeds`' order; a seed without items is all NaN)."""
    chosen = values[values["arm"] == arm]
    matrix = chosen.pivot(index="seed", columns=ITEM_KEY, values="value") if len(chosen) else pd.DataFrame()
    return matrix.reindex(list(seeds))


def _finals(runs: pd.DataFrame, arm: str) -> pd.Series:
    """An arm's final metric by seed (the last run of a seed logged twice)."""
    chosen = runs[runs["arm"] == arm].dropna(subset=["final"]).drop_duplicates("seed", keep="last")
    return chosen.set_index("seed")["final"]


def _arm_values(runs: pd.DataFrame, values: pd.DataFrame, arm: str) -> tuple[np.ndarray, str]:
    """An arm's seeds x items (when every seed with a final value has items), else its seeds' final values."""
    finals = _finals(runs, arm)
    matrix = _item_matrix(values, arm, finals.index)
    if len(finals) and matrix.notna().any(axis=1).all():
        return matrix.to_numpy(float), BY_ITEMS
    return finals.to_numpy(float)[:, None], BY_SEEDS


def arm_intervals(runs: pd.DataFrame, items: pd.DataFrame, metric: str, *, resamples: int = RESAMPLES,
                  seed: int = SEED) -> tuple[pd.DataFrame, list[str]]:
    """One row per arm (in `runs`' order of first appearance): its interval over seeds and items, or over seeds
    only where its runs logged no per-item results (then a note says so)."""
    values, rows = metric_items(items, metric), []
    for arm in runs["arm"].drop_duplicates():
        matrix, method = _arm_values(runs, values, arm)
        interval = bootstrap_interval(matrix, resamples=resamples, rng=rng_for(seed, arm), method=method)
        rows.append({"arm": arm, **asdict(interval)})
    frame = pd.DataFrame(rows, columns=["arm", *Interval.__dataclass_fields__])
    return frame, _fallback_notes(frame, list(frame["arm"]), metric, "intervals over seeds only", "every arm")


def arm_pairs(arms: Sequence[str], baseline: str | None) -> list[tuple[str, str]]:
    """(arm, baseline) pairs: every arm against `baseline` (default the first arm), or every pair of arms with
    `baseline="all"` (each arm against every arm before it in `arms`)."""
    arms = list(arms)
    if not arms:
        return []
    if baseline == "all":
        return [(b, a) for i, a in enumerate(arms) for b in arms[i + 1:]]
    baseline = baseline or arms[0]
    if baseline not in arms:
        raise ValueError(f"no arm {baseline!r} to compare against; arms: {', '.join(arms)}")
    return [(arm, baseline) for arm in arms if arm != baseline]


def _paired_values(runs: pd.DataFrame, values: pd.DataFrame, arm: str, baseline: str) -> tuple[np.ndarray, str]:
    """Shared seeds x items of arm - baseline (NaN where the pair is missing) when both arms have items for every
    shared seed, else the shared seeds' differences of final values."""
    a, b = _finals(runs, arm), _finals(runs, baseline)
    seeds = sorted(set(a.index) & set(b.index))
    ours, theirs = _item_matrix(values, arm, seeds), _item_matrix(values, baseline, seeds)
    if seeds and len(ours.columns) and len(theirs.columns):
        d = ours - theirs  # aligned on the items: NaN where one of them lacks the item
        if d.notna().any(axis=1).all():
            return d.to_numpy(float), BY_ITEMS
    return (a[seeds] - b[seeds]).to_numpy(float)[:, None], BY_SEEDS


def paired_differences(runs: pd.DataFrame, items: pd.DataFrame, metric: str, pairs: Sequence[tuple[str, str]], *,
                       resamples: int = RESAMPLES, seed: int = SEED) -> tuple[pd.DataFrame, list[str]]:
    """One row per (arm, baseline) pair: the mean of arm - baseline over their shared (seed, item) pairs (or
    shared seeds, with a note, without items), with its bootstrap interval; pairs that share no seed are left out
    with a note."""
    values, rows, unshared = metric_items(items, metric), [], []
    for arm, baseline in pairs:
        d, method = _paired_values(runs, values, arm, baseline)
        if not len(d):
            unshared.append(f"{arm} - {baseline}")
            continue
        interval = bootstrap_interval(d, resamples=resamples, rng=rng_for(seed, arm, baseline), method=method)
        rows.append({"arm": arm, "baseline": baseline, **asdict(interval)})
    frame = pd.DataFrame(rows, columns=["arm", "baseline", *Interval.__dataclass_fields__])
    labels = [f"{a} - {b}" for a, b in zip(frame["arm"], frame["baseline"])]
    notes = _fallback_notes(frame, labels, metric, "differences paired by seed only", "every pair")
    return frame, notes + ([f"no shared seed, no paired difference: {'; '.join(unshared)}"] if unshared else [])


def _named(labels: list[str], flags, every: str) -> str:
    """The labels whose flag is set ("; " between them: arm labels hold commas), or `every` when all are."""
    chosen = [label for label, flag in zip(labels, flags) if flag]
    return every if len(chosen) == len(labels) else "; ".join(chosen)


def _fallback_notes(frame: pd.DataFrame, labels: list[str], metric: str, what: str, every: str) -> list[str]:
    """One note naming the rows (arms or pairs) without per-item results, one naming those left with no interval
    (a single seed and no items)."""
    seeds_only = frame["method"] == BY_SEEDS
    alone = seeds_only & frame["low"].isna()
    notes = [f"no per-item results for {metric}, {what}: {_named(labels, seeds_only, every)}"] \
        if seeds_only.any() else []
    return notes + ([f"one seed and no items, no interval: {_named(labels, alone, every)}"] if alone.any() else [])
