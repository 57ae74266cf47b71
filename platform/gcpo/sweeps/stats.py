"""Intervals, paired differences, A/A checks and robust aggregates for `gcpo compare` (pure: numpy, scipy and
pandas, no MLflow).

An arm's value is the mean over its seeds (runs) of the final held-out metric; with per-item results, the mean
over seeds of the mean over held-out items, the same number. Its uncertainty has two sources: which seeds were run
(a seed is one draw of the training's randomness) and which items the held-out set holds (one draw of the task's
items). Every seed is evaluated on the same items, so the design is seeds x items *crossed*, and the two sources
do not shrink together: more seeds do not make the item set any less of a draw.

- **An arm's 95% interval with per-item results ("seeds x items")**: two strata, estimated separately and
  combined in one Student t whose degrees of freedom are Welch-Satterthwaite's over the two, the seed stratum
  entering them at its 75% upper confidence bound.
  * Seed stratum: the per-seed means' variance over seeds / S (the mean square of seeds, MS_seed / (S N), in a
    two-way seeds x items ANOVA), S - 1 degrees of freedom. It holds the seed-to-seed variance and the
    item-by-seed noise (a seed's own luck on each item).
  * Item stratum: sigma_item^2 / N estimated by (MS_item - MS_resid) / (S N), floored at 0, N - 1 degrees of
    freedom: the variance of the item means minus the part the seeds' own noise puts there. Items are shared by
    the seeds, so this term is not divided by S.
  * se^2 = seed + item; df = (seed' + item)^2 / (seed'^2 / (S - 1) + item^2 / (N - 1)) with seed' = seed /
    q_0.25, q_0.25 the lower quartile of chi^2_{S-1} / (S - 1) (`SEED_DF_QUANTILE`); half-width = t_df se.
  Why the bound: with the plain estimate in the Welch-Satterthwaite degrees of freedom the interval covered 91.5%
  at 3 seeds with a large seed share and its A/A false-positive rate reached 5.9% (one t over the three ANOVA
  terms: 91-92% and 7%): the estimated degrees of freedom grow exactly when the seeds' mean square happens to be
  small. Adding the two strata's half-widths in quadrature (each with its own t, Zou's MOVER; what this module
  did before) keeps 95% there but covers 97.3% at 3 seeds when the seeds barely differ (MOVER, like the
  fiducial interval, is conservative when a 2-df stratum and a 99-df one are of similar size). Taking the seed stratum at its upper
  quartile bound in the degrees of freedom keeps every simulated case within 94-96%
  (`tests/sweeps/test_stats_coverage.py`, numbers in docs/sweeps.md). `Interval.se` and `Interval.df` are this
  se and df: what `minimum_detectable_difference` takes.
- **Seeds only ("seeds")**, where an arm's runs logged no per-item results (runs from before they were recorded,
  or a metric that is not per item, such as `reward/mean`): the t-interval over the seeds' final values, S - 1
  degrees of freedom (`scipy.stats.t.interval`). It covers which seeds were run *for this held-out set*: the
  items' own luck is not in it (nothing measures it), and the report's notes say so.
- **One seed with items ("items only")**: the t-interval over the items (N - 1 degrees of freedom). It holds the
  items only: seed-to-seed variation is not in it, so it cannot tell an arm's difference from seed noise, and the
  report says so (no verdict). One seed and no items: no interval.
- **Seeds that hold different items** (reports merged from runs of other `task.eval_size`): the estimate is still
  the mean over seeds of each seed's mean over its own items; the interval is drawn from the items every seed has
  (seeds-only when fewer than two items are shared by all).
- **Paired differences** between two arms that share seeds: on every shared (seed, item) pair d = arm - baseline,
  seed i of one arm paired with seed i of the other; the same interval on d (seeds x items, items only for one
  shared seed, seeds only without items for both). The estimate is the mean over shared seeds of the mean of d.
  Each difference carries its reading ("above 0", "below 0", "includes 0"; "items only, no verdict" with one
  shared seed), its minimum detectable difference (`minimum_detectable_difference`, 80% power) and the
  probability of improvement.
- **Probability of improvement** (rliable's): P(X > Y) + 0.5 P(X = Y) over every pair of one seed of the arm and
  one seed of the baseline (their final values): the Mann-Whitney U over m n; shown when both arms have 2 or more
  seeds (one against one is only the sign of one difference). **IQM**: rliable's interquartile
  mean, the 25% trimmed mean of the seeds' values (`scipy.stats.trim_mean`; equal to the mean below 4 seeds).
- **A/A check** (`aa_splits`): one arm against itself, its seeds split into two halves paired in order, the paired
  interval of every such split: the share that excludes 0 is an empirical false-positive rate (about 5% when the
  intervals are right; most splits exclude 0 at one seed per half, where seed noise is read as an effect).

Assumed: seeds independent draws of the training's randomness, items independent draws from the population the
claim is about, seed and item effects (nearly) additive on the metric's scale, seed means near normal. Measured by
simulation (binary items, logit-scale effects, 4000 studies a case): the arm interval covers 94.0-95.8% at 3, 5
and 10 seeds with items and 93.9-95.5% over seeds only; the A/A false-positive rate of the paired difference is
4.4-5.4% at 3 and 5 seeds.

No resampling: the intervals are deterministic, the same report gives the same numbers.

What one item is worth: at N held-out items one item moves an arm's pass@1 by 1/N (0.02 at N = 50); the items'
half-width of a 95% interval is about 1.96 * sqrt(p (1 - p) / N) for one seed: 0.14 at p = 0.5 and N = 50, 0.10
at N = 100, 0.07 at N = 200; seeds shrink only the seeds' share of it, never the item-set part.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

LEVEL = 0.95
POWER = 0.8
ITEM_KEY = ["task", "item_id"]
BY_ITEMS, BY_SEEDS, ITEMS_ONLY = "seeds x items", "seeds", "items only"
MIN_PAIRED_SEEDS = 3  # fewer paired seeds than this: the report warns
AA_SPLITS = 20  # at most this many seed splits per A/A check
SEED_DF_QUANTILE = 0.25  # the seed stratum enters the degrees of freedom at its 75% upper bound (module docstring)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its interval (`low`, `high` NaN when nothing measures its spread); `method`: "seeds x
    items", "seeds" or "items only"; `seeds` and `items` it rests on (items 0 for seeds only); `se` and `df`: its
    standard error and degrees of freedom (NaN without an interval)."""

    estimate: float
    low: float
    high: float
    method: str
    seeds: int
    items: int
    se: float = math.nan
    df: float = math.nan


def t_quantile(level: float, df) -> np.ndarray:
    """The two-sided Student t quantile of `level` on `df` degrees of freedom (inf df: the normal's)."""
    return scipy_stats.t.ppf((1 + level) / 2, df)


def crossed_mean_squares(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The grand mean and the two-way ANOVA mean squares (seeds, items, residual) of complete seeds x items
    matrices: `values` of shape (..., S, N) with S, N >= 2, no NaN; every leading index is one matrix."""
    seeds, items = values.shape[-2:]
    seed_means, item_means = values.mean(axis=-1), values.mean(axis=-2)
    grand = seed_means.mean(axis=-1)
    ms_seed = items * seed_means.var(axis=-1, ddof=1)
    ms_item = seeds * item_means.var(axis=-1, ddof=1)
    resid = values - seed_means[..., :, None] - item_means[..., None, :] + grand[..., None, None]
    ms_resid = (resid ** 2).sum(axis=(-2, -1)) / ((seeds - 1) * (items - 1))
    return grand, ms_seed, ms_item, ms_resid


def crossed_interval_arrays(values: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, ...]:
    """The two-strata interval of the module docstring for complete seeds x items matrices (..., S, N): (estimate,
    half-width, standard error, degrees of freedom), each of the leading shape. Vectorised: the simulation tests
    draw thousands of matrices at once."""
    seeds, items = values.shape[-2:]
    grand, ms_seed, ms_item, ms_resid = crossed_mean_squares(values)
    seed_var = ms_seed / (seeds * items)  # the per-seed means' variance / S
    item_var = np.maximum(ms_item - ms_resid, 0.0) / (seeds * items)  # sigma_item^2 / N
    seed_bound = seed_var / (scipy_stats.chi2.ppf(SEED_DF_QUANTILE, seeds - 1) / (seeds - 1))
    total = seed_var + item_var
    with np.errstate(invalid="ignore", divide="ignore"):
        df = (seed_bound + item_var) ** 2 / (seed_bound ** 2 / (seeds - 1) + item_var ** 2 / (items - 1))
    df = np.where(total > 0, df, np.inf)
    return grand, t_quantile(level, df) * np.sqrt(total), np.sqrt(total), df


def t_interval(values: np.ndarray, method: str, seeds: int, items: int, level: float = LEVEL) -> Interval:
    """The Student t interval of the mean of `values` (one value per unit: seeds, or one seed's items), n - 1
    degrees of freedom: `scipy.stats.t.interval`. One value: no interval."""
    values = np.asarray(values, dtype=float)
    estimate = float(values.mean())
    if len(values) < 2:
        return Interval(estimate, math.nan, math.nan, method, seeds, items)
    se, df = float(values.std(ddof=1) / math.sqrt(len(values))), len(values) - 1
    if se == 0.0:
        return Interval(estimate, estimate, estimate, method, seeds, items, 0.0, float(df))
    low, high = scipy_stats.t.interval(level, df, loc=estimate, scale=se)
    return Interval(estimate, float(low), float(high), method, seeds, items, se, float(df))


def mean_interval(values: np.ndarray, *, level: float = LEVEL, method: str | None = None) -> Interval:
    """An arm's (or a paired difference's) estimate and interval from its seeds x items `values` (NaN: that seed
    lacks that item; seeds x 1 with `method` "seeds": one final value per seed), by the rules of the module
    docstring: seeds x items, seeds only, or items only (one seed)."""
    values = np.asarray(values, dtype=float).reshape(len(values), -1)
    values = values[~np.isnan(values).all(axis=1)]
    seeds, items = values.shape
    if seeds == 0:
        return Interval(math.nan, math.nan, math.nan, method or BY_ITEMS, 0, 0)
    seed_means = np.nanmean(values, axis=1)
    if method == BY_SEEDS or items == 1:
        return t_interval(seed_means, BY_SEEDS, seeds, 0, level)
    if seeds == 1:
        return t_interval(values[0][~np.isnan(values[0])], ITEMS_ONLY, 1, int((~np.isnan(values[0])).sum()), level)
    shared = values[:, ~np.isnan(values).any(axis=0)]
    if shared.shape[1] < 2:
        return t_interval(seed_means, BY_SEEDS, seeds, 0, level)
    _, half, se, df = crossed_interval_arrays(shared, level)
    estimate = float(seed_means.mean())
    return Interval(estimate, estimate - float(half), estimate + float(half), BY_ITEMS, seeds, shared.shape[1],
                    float(se), float(df))


def minimum_detectable_difference(se: float, df: float, *, level: float = LEVEL, power: float = POWER) -> float:
    """The smallest true difference a two-sided test at `level` (0.95: alpha 0.05) finds with probability `power`
    (0.8), given the difference's standard error `se` and degrees of freedom `df`:
    MDD = (t_{1 - alpha/2, df} + t_{power, df}) * se. At many degrees of freedom (1.96 + 0.84) * se = 2.80 se; at 2
    (three paired seeds, seed noise dominant) (4.30 + 1.06) * se = 5.36 se. Pure; `gcpo compare` reports it per
    difference, and a study plan can solve it for the seeds and items a claim needs."""
    if not (se >= 0 and df > 0):
        return math.nan
    return float((scipy_stats.t.ppf((1 + level) / 2, df) + scipy_stats.t.ppf(power, df)) * se)


def interquartile_mean(values: Sequence[float]) -> float:
    """rliable's IQM: the mean of the middle 50% of `values` (`scipy.stats.trim_mean`, 25% cut at each end);
    the plain mean below 4 values. NaN for none."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return float(scipy_stats.trim_mean(values, 0.25)) if len(values) else math.nan


def probability_of_improvement(x: Sequence[float], y: Sequence[float], *, min_runs: int = 1) -> float:
    """rliable's probability of improvement of X over Y on one task: P(X > Y) + 0.5 P(X = Y) over every pair of one
    run of X and one run of Y (the Mann-Whitney U statistic over m n). NaN when either has fewer than `min_runs`
    runs (the report asks for 2: one run against one is only the sign of one difference)."""
    x, y = np.asarray(x, dtype=float)[:, None], np.asarray(y, dtype=float)[None, :]
    if x.size < max(min_runs, 1) or y.size < max(min_runs, 1):
        return math.nan
    return float(np.mean((x > y) + 0.5 * (x == y)))


def reading(interval: Interval) -> str:
    """What an interval of a difference says, in words: "above 0", "below 0", "includes 0"; with one seed (items
    only) "items only, no verdict"; "no interval" without one. Never "significant"."""
    if interval.method == ITEMS_ONLY:
        return "items only, no verdict"
    if math.isnan(interval.low):
        return "no interval"
    return "above 0" if interval.low > 0 else "below 0" if interval.high < 0 else "includes 0"


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


def finals(runs: pd.DataFrame, arm: str) -> pd.Series:
    """An arm's final metric by seed (the last run of a seed logged twice)."""
    chosen = runs[runs["arm"] == arm].dropna(subset=["final"]).drop_duplicates("seed", keep="last")
    return chosen.set_index("seed")["final"]


def _arm_values(runs: pd.DataFrame, values: pd.DataFrame, arm: str) -> tuple[np.ndarray, str]:
    """An arm's seeds x items (when every seed with a final value has items), else its seeds' final values."""
    by_seed = finals(runs, arm)
    matrix = _item_matrix(values, arm, by_seed.index)
    if len(by_seed) and matrix.notna().any(axis=1).all():
        return matrix.to_numpy(float), BY_ITEMS
    return by_seed.to_numpy(float)[:, None], BY_SEEDS


def arm_intervals(runs: pd.DataFrame, items: pd.DataFrame, metric: str, *,
                  level: float = LEVEL) -> tuple[pd.DataFrame, list[str]]:
    """One row per arm (in `runs`' order of first appearance): its interval (module docstring) and the IQM of its
    seeds' final values, with notes on the arms that fell back to seeds only or to items only."""
    values, rows = metric_items(items, metric), []
    for arm in runs["arm"].drop_duplicates():
        matrix, method = _arm_values(runs, values, arm)
        interval = mean_interval(matrix, level=level, method=method)
        rows.append({"arm": arm, **asdict(interval), "iqm": interquartile_mean(finals(runs, arm))})
    frame = pd.DataFrame(rows, columns=["arm", *Interval.__dataclass_fields__, "iqm"])
    return frame, _notes(frame, list(frame["arm"]), metric, "intervals", "every arm")


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
    a, b = finals(runs, arm), finals(runs, baseline)
    seeds = sorted(set(a.index) & set(b.index))
    return _difference_matrix(values, (arm, seeds), (baseline, seeds), a[seeds] - b[seeds])


def _difference_matrix(values: pd.DataFrame, ours: tuple[str, list], theirs: tuple[str, list],
                       final_differences: pd.Series) -> tuple[np.ndarray, str]:
    """Seeds x items of `ours` - `theirs` ((arm, seeds) each, seeds paired in order) when every pair of seeds has
    items for both, else `final_differences` by seed."""
    mine, other = _item_matrix(values, *ours), _item_matrix(values, *theirs)
    if len(ours[1]) and len(mine.columns) and len(other.columns):
        d = mine.to_numpy(float) - other.reindex(columns=mine.columns).to_numpy(float)  # NaN: an item one lacks
        if (~np.isnan(d)).any(axis=1).all():
            return d, BY_ITEMS
    return final_differences.to_numpy(float)[:, None], BY_SEEDS


def _difference_row(d: np.ndarray, method: str, x: pd.Series, y: pd.Series, level: float) -> dict:
    """One differences.csv row's numbers: the interval of `d`, its reading, MDD and probability of improvement of
    the seeds' finals `x` over `y`."""
    interval = mean_interval(d, level=level, method=method)
    return {**asdict(interval), "reading": reading(interval),
            "mdd": minimum_detectable_difference(interval.se, interval.df, level=level),
            "p_improve": probability_of_improvement(x, y, min_runs=2)}


DIFFERENCE_COLUMNS = ["arm", "baseline", *Interval.__dataclass_fields__, "reading", "mdd", "p_improve"]


def paired_differences(runs: pd.DataFrame, items: pd.DataFrame, metric: str, pairs: Sequence[tuple[str, str]], *,
                       level: float = LEVEL) -> tuple[pd.DataFrame, list[str]]:
    """One row per (arm, baseline) pair: the mean of arm - baseline over their shared (seed, item) pairs (or
    shared seeds, with a note, without items), its interval and reading, its minimum detectable difference and the
    probability of improvement; pairs that share no seed are left out with a note."""
    values, rows, unshared = metric_items(items, metric), [], []
    for arm, baseline in pairs:
        d, method = _paired_values(runs, values, arm, baseline)
        if not len(d):
            unshared.append(f"{arm} - {baseline}")
            continue
        row = _difference_row(d, method, finals(runs, arm), finals(runs, baseline), level)
        rows.append({"arm": arm, "baseline": baseline, **row})
    frame = pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS)
    labels = [f"{a} - {b}" for a, b in zip(frame["arm"], frame["baseline"])]
    notes = _notes(frame, labels, metric, "differences", "every pair")
    return frame, notes + ([f"no shared seed, no paired difference: {'; '.join(unshared)}"] if unshared else [])


def seed_splits(seeds: Sequence[str], limit: int = AA_SPLITS) -> list[tuple[list[str], list[str]]]:
    """Ways to split `seeds` (sorted) into two halves of len // 2 seeds each (an odd one out sits out), the first
    half always holding the first seed so that no split appears twice mirrored; at most `limit`, in order."""
    seeds = sorted(seeds)
    half = len(seeds) // 2
    out = []
    if half == 0:
        return out
    for rest_of_first in itertools.combinations(seeds[1:], half - 1):
        first = [seeds[0], *rest_of_first]
        for second in itertools.combinations([s for s in seeds if s not in first], half):
            out.append((first, list(second)))
            if len(out) >= limit:
                return out
    return out


AA_COLUMNS = ["arm", "first", "second", *Interval.__dataclass_fields__, "reading"]


def aa_splits(runs: pd.DataFrame, items: pd.DataFrame, metric: str, arm: str, *, level: float = LEVEL,
              limit: int = AA_SPLITS) -> pd.DataFrame:
    """The A/A check of one arm (a negative control): for each split of its seeds into two halves
    (`seed_splits`), the paired interval of first half - second half (seed i of one half paired with seed i of
    the other, on their shared items). The true difference is 0: the share of rows whose interval excludes it is
    an empirical false-positive rate. Raises ValueError for an unknown arm or one with fewer than 2 seeds."""
    if arm not in set(runs["arm"]):
        raise ValueError(f"no arm {arm!r} for the A/A check; arms: {', '.join(runs['arm'].drop_duplicates())}")
    by_seed, values = finals(runs, arm), metric_items(items, metric)
    splits = seed_splits(list(by_seed.index), limit)
    if not splits:
        raise ValueError(f"the A/A check needs at least 2 seeds of {arm!r}; it has {len(by_seed)}")
    rows = []
    for first, second in splits:
        final_d = pd.Series(by_seed[first].to_numpy() - by_seed[second].to_numpy(), index=first)
        d, method = _difference_matrix(values, (arm, first), (arm, second), final_d)
        interval = mean_interval(d, level=level, method=method)
        rows.append({"arm": arm, "first": ",".join(first), "second": ",".join(second), **asdict(interval),
                     "reading": reading(interval)})
    return pd.DataFrame(rows, columns=AA_COLUMNS)


def false_positive_share(aa: pd.DataFrame) -> float:
    """The share of an A/A check's splits whose interval excludes 0 (items-only ones count: they are what a
    one-seed comparison would have shown)."""
    if aa.empty:
        return math.nan
    return float(((aa["low"] > 0) | (aa["high"] < 0)).mean())


def _named(labels: list[str], flags, every: str) -> str:
    """The labels whose flag is set ("; " between them: arm labels hold commas), or `every` when all are."""
    chosen = [label for label, flag in zip(labels, flags) if flag]
    return every if len(chosen) == len(labels) else "; ".join(chosen)


def _notes(frame: pd.DataFrame, labels: list[str], metric: str, what: str, every: str) -> list[str]:
    """Notes naming the rows (arms or pairs) without per-item results, those with no interval, those resting on
    one seed (items only: no verdict), those with a zero-width interval and, for differences, those on fewer than
    `MIN_PAIRED_SEEDS` seeds."""
    seeds_only = frame["method"] == BY_SEEDS
    alone = seeds_only & frame["low"].isna()
    one_seed = frame["method"] == ITEMS_ONLY
    notes = []
    if seeds_only.any():
        notes.append(f"no per-item results for {metric}, {what} over seeds only (for this held-out set: the "
                     f"items' own luck is not in them): {_named(labels, seeds_only, every)}")
    if alone.any():
        notes.append(f"one seed and no items, no interval: {_named(labels, alone, every)}")
    if one_seed.any():
        notes.append(f"one seed: {what} over held-out items only; seed-to-seed variation is not in them, so a "
                     f"difference between arms cannot be told from seed noise (run 3 or more seeds): "
                     f"{_named(labels, one_seed, every)}")
    flat = frame["se"] == 0.0
    if flat.any():
        notes.append(f"zero-width interval: the seeds' means are all equal (and the items add no spread beyond the "
                     f"seeds' own noise), so nothing measured varied; it does not bound the true value, run more "
                     f"seeds: {_named(labels, flat, every)}")
    few = (frame["seeds"] == 2) & (what == "differences")
    if few.any():
        notes.append(f"fewer than {MIN_PAIRED_SEEDS} paired seeds: the interval rests on 1 degree of freedom for "
                     f"the seeds (wide, and only as good as the normal approximation): {_named(labels, few, every)}")
    return notes
