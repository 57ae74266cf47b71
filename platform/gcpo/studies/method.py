"""The statistics of a study (pure: numpy and scipy, no I/O): planning, Holm's adjustment, the repeated-looks rule,
factorial contrasts and the verdict words. The intervals themselves are `gcpo.sweeps.stats`' (two strata: seeds
and held-out items, crossed); this module builds on them. docs/studies.md writes the method out.

- **Variance components** of a seeds x items matrix (an arm's metric, or a paired difference arm - reference on
  shared seeds and items), from the two-way ANOVA mean squares (`stats.crossed_mean_squares`): the seed share
  sigma_s^2 = max(MS_seed - MS_resid, 0) / N, the item share sigma_i^2 = max(MS_item - MS_resid, 0) / S and a
  seed's own noise on one item sigma_e^2 = MS_resid. With one value per seed (no per-item results) the seeds'
  variance is all there is: sigma_s^2 = var(seed values), sigma_i^2 = sigma_e^2 = 0.
- **The seed share's upper bound** (`seed_share_upper`): the seed stratum's mean square at its one-sided 80%
  chi-square bound on S - 1 degrees of freedom, less sigma_e^2. Exact for the stratum; above the true seed share
  in at least 80% of studies (more where the share is small: an estimate below 0 is first raised to 0; the
  simulation in tests/studies/test_method.py). The plan gives the MDD at it beside the point estimate: a pilot of
  2 seeds measures the seed share on 1 degree of freedom and often finds 0. warm_claims' pilot did (gcpo - grpo:
  MDD 0.21 at 3 seeds; 0.83 at the bound), and the study's 3 seeds found sd 0.054 and reached 0.66.
- **Planning**: at S seeds and N items the estimate's variance is (sigma_s^2 + sigma_e^2 / N) / S (the seed
  stratum) + sigma_i^2 / N (the item stratum, not divided by S: every seed sees the same items); its degrees of
  freedom are Welch-Satterthwaite's over the strata (S - 1 and N - 1). The minimum detectable difference is
  the true difference the two-strata interval excludes 0 for with 80% power: |estimate| / se > c with c the
  interval's half-width in standard errors at the expected strata variances, the estimate over its estimated
  standard error a noncentral t on those degrees of freedom (`scipy.stats.nct`); the (t_{alpha/2} + t_power) se
  of `stats.minimum_detectable_difference` is the same at many degrees of freedom and a third too small at 3
  seeds. The level is the *adjusted* alpha / (m K) for m comparisons in the study and K looks (the first,
  strictest step of Holm's procedure within a look, Bonferroni over looks). Seeds needed: the fewest S whose
  MDD is at most the target difference (none when the item stratum alone leaves it above the target: then more
  items are needed, not seeds).
- **p-value of an interval**: the alpha at which the two-strata interval's half-width equals |estimate| (the
  interval is a function of its level; found by bisection in log alpha), so an interval at level 1 - a excludes
  0 exactly when p < a. Holm's procedure runs on these p-values.
  Where nothing varied (every seed's contrast the same and no item share: a metric on a few hundred items takes
  few values, so two seeds can tie exactly) the interval has zero width at every level: p is 1, so the comparison
  stays in the family but is never rejected (a p of 0 would be rejected first and loosen every other level).
- **Holm's adjustment** over the study's m comparisons at family level alpha: sort the p-values, compare the k-th
  smallest with alpha / (m - k + 1), stop at the first that fails. Each comparison's adjusted interval is drawn at
  level 1 - alpha_j: alpha / (m - k + 1) for the k-th rejection, alpha / (m - r) for every comparison not rejected
  (r rejections) — so an adjusted interval excludes 0 exactly when Holm rejects. Adjusted p-values:
  max over k' <= k of min(1, (m - k' + 1) p_(k')).
- **Repeated looks** (`gcpo study run --until-decided`): at most K looks (fixed before the study starts: the
  file's `until_decided.looks`), each using family level alpha / K (Bonferroni over looks). By the union bound the
  probability that any look declares any false difference is at most alpha, however the looks are correlated.
  The report of such a study always uses alpha / K, whether the study stopped early or not.
- **Factorial contrasts** (two levels per factor, coded -1 / +1, 2^k arms sharing seeds): the effect of a set F of
  factors is sum over arms of (prod over f in F of x_f) y_arm / 2^(k-1): a main effect is mean(high) - mean(low),
  a two-factor interaction half the difference between one factor's effect at the other's two levels (Yates'
  convention). Each effect is a seeds x items matrix, so it gets the same interval as a paired difference.
- **Verdict words**, from the adjusted interval of a difference A - B (A better when `mode` is max and it is
  above 0): "A beats B by x (low to high)" when the interval excludes 0; "no difference larger than d" when it
  holds 0 and reaches no further than d = max(|low|, |high|) <= the claim's target difference; "too wide to tell"
  otherwise; "no verdict" without an interval (one seed) or with a zero-width one (nothing varied: it bounds
  nothing). A comparison is decided in the first two cases.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import optimize
from scipy import stats as scipy_stats

from gcpo.sweeps import stats

ALPHA = 0.05
POWER = stats.POWER
MAX_PLANNED_SEEDS = 1000
SEED_UPPER_CONFIDENCE = 0.8  # the plan's pessimistic line: the pilot's seed share at its 80% upper bound
BEATS, NO_DIFFERENCE, TOO_WIDE, NO_VERDICT = "beats", "no difference", "too wide to tell", "no verdict"


@dataclass(frozen=True)
class Components:
    """Variance components of a metric or a paired difference (module docstring), with the seeds and items they
    were estimated from."""

    seed: float
    item: float
    resid: float
    seeds: int
    items: int


def variance_components(values: np.ndarray) -> Components:
    """The components of one complete seeds x items matrix (S >= 2; N = 1: seed values only)."""
    values = np.asarray(values, dtype=float)
    seeds, items = values.shape
    if seeds < 2:
        raise ValueError(f"variance components need at least 2 seeds, got {seeds}")
    if items < 2:
        return Components(float(values[:, 0].var(ddof=1)), 0.0, 0.0, seeds, 1)
    _, ms_seed, ms_item, ms_resid = (float(x) for x in stats.crossed_mean_squares(values))
    return Components(max(ms_seed - ms_resid, 0.0) / items, max(ms_item - ms_resid, 0.0) / seeds, ms_resid,
                      seeds, items)


def seed_share_upper(parts: Components, confidence: float = SEED_UPPER_CONFIDENCE) -> Components:
    """`parts` with the seed share at its one-sided `confidence` upper bound: the seed stratum's mean square
    N sigma_s^2 + sigma_e^2 on S - 1 degrees of freedom, scaled by (S - 1) / chi2_{1 - confidence, S - 1}, less
    sigma_e^2. A pilot's seed share rests on few seeds (2 seeds: 1 degree of freedom) and is often 0; at its upper
    bound the plan says what the design detects if the seeds disagree more than the pilot's did."""
    df = max(parts.seeds - 1, 1)
    stratum = parts.items * parts.seed + parts.resid
    upper = stratum * df / scipy_stats.chi2.ppf(1 - confidence, df)
    return Components(max(upper - parts.resid, 0.0) / parts.items, parts.item, parts.resid, parts.seeds, parts.items)


def pooled_components(parts: Sequence[Components]) -> Components:
    """Several estimates of the same components (the pilot's pairs) averaged, weighted by their seeds - 1."""
    if not parts:
        raise ValueError("no variance components to pool")
    weights = np.array([p.seeds - 1 for p in parts], dtype=float)
    mean = lambda name: float(np.average([getattr(p, name) for p in parts], weights=weights))  # noqa: E731
    return Components(mean("seed"), mean("item"), mean("resid"), int(sum(p.seeds for p in parts)),
                      int(min(p.items for p in parts)))


def planned_error(parts: Components, seeds: int, items: int) -> tuple[float, float]:
    """The standard error and Welch-Satterthwaite degrees of freedom of an estimate at `seeds` x `items`."""
    seed_var = (parts.seed + parts.resid / items) / seeds
    item_var = parts.item / items if items > 1 else 0.0
    total = seed_var + item_var
    if total == 0:
        return 0.0, math.inf
    df = total ** 2 / (seed_var ** 2 / (seeds - 1) + (item_var ** 2 / (items - 1) if items > 1 else 0.0))
    return math.sqrt(total), df


def adjusted_alpha(comparisons: int, looks: int = 1, alpha: float = ALPHA) -> float:
    """The per-comparison alpha a plan assumes: alpha / (m K) (Holm's first step, Bonferroni over looks)."""
    return alpha / (max(comparisons, 1) * max(looks, 1))


def t_test_power(difference: float, se: float, df: float, critical: float) -> float:
    """The power of the two-sided test |estimate| / se > `critical` for a true `difference`: P(|T| > critical) with
    T noncentral t on `df` degrees of freedom, noncentrality difference / se (`scipy.stats.nct`)."""
    shift = difference / se
    lower = scipy_stats.nct.cdf(-critical, df, shift)  # (NaN far in the tail in scipy 1.17: it is ~0 there)
    return float(scipy_stats.nct.sf(critical, df, shift) + (0.0 if math.isnan(lower) else lower))


def planned_critical(parts: Components, seeds: int, items: int, alpha: float) -> float:
    """The two-strata interval's half-width at level 1 - alpha, at the expected strata variances, in standard
    errors: sqrt(t_{S-1}^2 V_seed + t_{N-1}^2 V_item) / sqrt(V_seed + V_item) (`gcpo.sweeps.stats`)."""
    seed_var = (parts.seed + parts.resid / items) / seeds
    item_var = parts.item / items if items > 1 else 0.0
    half = math.sqrt(stats.t_quantile(1 - alpha, seeds - 1) ** 2 * seed_var
                     + (stats.t_quantile(1 - alpha, items - 1) ** 2 * item_var if items > 1 else 0.0))
    return half / math.sqrt(seed_var + item_var)


def planned_mdd(parts: Components, seeds: int, items: int, *, alpha: float = ALPHA, power: float = POWER) -> float:
    """The minimum detectable difference at `seeds` x `items` and two-sided `alpha` (already adjusted): the true
    difference the two-strata interval excludes 0 for with probability `power` (`t_test_power` at
    `planned_critical`, solved with `scipy.optimize.brentq`). `stats.minimum_detectable_difference`'s
    (t_{alpha/2} + t_power) se is its start; at few seeds the noncentral t is wider (at 3 seeds and alpha 0.017,
    by a third: the simulation in tests/studies/test_method.py)."""
    if seeds < 2:
        return math.nan
    se, df = planned_error(parts, seeds, items)
    approximate = stats.minimum_detectable_difference(se, df, level=1 - alpha, power=power)
    if not se > 0 or math.isinf(df):
        return approximate
    critical = planned_critical(parts, seeds, items, alpha)
    high = approximate
    while t_test_power(high, se, df, critical) < power:
        high *= 2
    return float(optimize.brentq(lambda d: t_test_power(d, se, df, critical) - power, 0.0, high,
                                 xtol=1e-10 * high))


def seeds_needed(parts: Components, items: int, target: float, *, alpha: float = ALPHA, power: float = POWER,
                 most: int = MAX_PLANNED_SEEDS) -> int | None:
    """The fewest seeds (>= 2) whose MDD at `items` is at most `target`; None when `most` seeds do not reach it
    (the item stratum alone keeps it above: more items are needed)."""
    if not planned_mdd(parts, most, items, alpha=alpha, power=power) <= target:
        return None
    low, high = 2, most
    while low < high:  # the MDD falls as seeds grow
        middle = (low + high) // 2
        if planned_mdd(parts, middle, items, alpha=alpha, power=power) <= target:
            high = middle
        else:
            low = middle + 1
    return low


def _half_widths(values: np.ndarray, method: str, alpha: np.ndarray) -> np.ndarray:
    """Half-widths of the intervals of (..., S, N) matrices at levels 1 - alpha (alpha of the leading shape)."""
    seeds = values.shape[-2]
    if method == stats.BY_SEEDS or values.shape[-1] == 1:
        seed_values = values.mean(axis=-1)
        return stats.t_quantile(1 - alpha, seeds - 1) * seed_values.std(axis=-1, ddof=1) / math.sqrt(seeds)
    return stats.crossed_interval_arrays(values, 1 - alpha)[1]


def p_values(values: np.ndarray, method: str = stats.BY_ITEMS, iterations: int = 40) -> np.ndarray:
    """For complete (..., S, N) matrices: the alpha at which each interval's half-width equals |its estimate|
    (module docstring); NaN below 2 seeds (items only: no verdict); 1 where nothing varied (a zero-width interval
    at every level: no test, so never a Holm rejection, but counted in the family). Vectorised bisection in log
    alpha."""
    values = np.asarray(values, dtype=float)
    lead = values.shape[:-2]
    if values.shape[-2] < 2:
        return np.full(lead, np.nan)
    estimate = np.abs(values.mean(axis=(-2, -1)))
    low, high = np.full(lead, math.log(1e-12)), np.zeros(lead)
    with np.errstate(invalid="ignore", divide="ignore"):
        for _ in range(iterations):
            middle = (low + high) / 2
            wide = _half_widths(values, method, np.exp(middle)) > estimate  # still holds 0: alpha is larger
            low, high = np.where(wide, middle, low), np.where(wide, high, middle)
        scale = np.abs(values).max(axis=(-2, -1))  # a zero width up to the sums' rounding
        varied = _half_widths(values, method, np.full(lead, ALPHA)) > 1e-9 * scale
    return np.where((estimate > 0) & varied, np.exp(high), 1.0)


def holm(p: Sequence[float], alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down procedure over `p` (NaN: no test, left out of the family): the adjusted p-values and
    each comparison's interval alpha (module docstring); NaN where p is NaN."""
    p = np.asarray(p, dtype=float)
    tested = np.flatnonzero(~np.isnan(p))
    adjusted, levels = np.full(p.shape, np.nan), np.full(p.shape, np.nan)
    order = tested[np.argsort(p[tested], kind="stable")]
    m, running, rejecting = len(order), 0.0, True
    for k, j in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[j]))
        adjusted[j] = running
        rejecting = rejecting and p[j] <= alpha / (m - k)
        levels[j] = alpha / (m - k) if rejecting else math.nan
    rejected = int(np.sum(~np.isnan(levels[order]))) if m else 0
    levels[order[rejected:]] = alpha / (m - rejected) if m > rejected else math.nan
    return adjusted, levels


def look_alpha(looks: int, alpha: float = ALPHA) -> float:
    """The family level of each of at most `looks` looks: alpha / looks (Bonferroni over looks)."""
    return alpha / max(looks, 1)


def factorial_contrasts(factors: dict[str, list], points: dict[str, dict]) -> list[tuple[str, dict[str, float]]]:
    """Every main effect and interaction of a two-level factorial: (name, {arm: weight}), main effects first.
    `points`: arm label -> its factor values. A main effect's name is the factor's short name, an interaction's
    the names joined with ' x '."""
    names = {key: key.rsplit(".", 1)[-1] for key in factors}
    out = []
    scale = 2 ** (len(factors) - 1)
    for order in range(1, len(factors) + 1):
        for chosen in itertools.combinations(factors, order):
            weights = {arm: math.prod(1 if point[f] == factors[f][1] else -1 for f in chosen) / scale
                       for arm, point in points.items()}
            out.append((" x ".join(names[f] for f in chosen), weights))
    return out


def verdict(better: str, worse: str, estimate: float, low: float, high: float, target: float) -> tuple[str, str]:
    """(kind, words) for the adjusted interval [low, high] of `better` - `worse` (positive: `better` is ahead):
    BEATS, NO_DIFFERENCE or TOO_WIDE (module docstring); NO_VERDICT without an interval."""
    if math.isnan(low) or math.isnan(high):
        return NO_VERDICT, f"no verdict on {better} vs {worse}: no interval (one seed, or none)"
    if low == high:
        return NO_VERDICT, (f"no verdict on {better} vs {worse}: nothing varied (a zero-width interval does not "
                            f"bound the difference; run more seeds)")
    if low > 0 or high < 0:
        winner, loser = (better, worse) if low > 0 else (worse, better)
        sign = 1 if low > 0 else -1
        a, b = sorted((sign * low, sign * high))
        return BEATS, f"{winner} beats {loser} by {abs(estimate):.3f} ({a:.3f} to {b:.3f})"
    reach = max(abs(low), abs(high))
    if reach <= target:
        return NO_DIFFERENCE, f"no difference larger than {reach:.3f} between {better} and {worse}"
    return TOO_WIDE, (f"too wide to tell {better} from {worse}: {estimate:+.3f} ({low:.3f} to {high:.3f}) holds 0 "
                      f"and differences up to {reach:.3f} (target {target:.3f})")


def decided(kinds: Sequence[str]) -> bool:
    """Whether every comparison has an answer (beats, or no difference larger than the target)."""
    return all(kind in (BEATS, NO_DIFFERENCE) for kind in kinds)


def simulated_differences(parts: Components, difference: float, seeds: int, items: int, studies: int,
                          rng: np.random.Generator) -> np.ndarray:
    """Synthetic paired differences with known truth: (studies, seeds, items) draws of difference + u_seed +
    v_item + e, the three normal with the variances of `parts`. What the tests (and docs/studies.md's numbers)
    check the plan, Holm and the looks rule against."""
    u = rng.normal(0, math.sqrt(parts.seed), (studies, seeds, 1))
    v = rng.normal(0, math.sqrt(parts.item), (studies, 1, items))
    e = rng.normal(0, math.sqrt(parts.resid), (studies, seeds, items))
    return difference + u + v + e


def interval_at(values: np.ndarray, method: str, alpha: float) -> stats.Interval:
    """`stats.mean_interval` of one matrix at level 1 - alpha (alpha NaN: no interval, the estimate alone)."""
    if math.isnan(alpha):
        point = stats.mean_interval(values, method=method)
        return stats.Interval(point.estimate, math.nan, math.nan, point.method, point.seeds, point.items)
    return stats.mean_interval(values, level=1 - alpha, method=method)


__all__ = ["ALPHA", "Components", "adjusted_alpha", "decided", "factorial_contrasts", "holm", "interval_at",
           "look_alpha", "p_values", "planned_error", "planned_mdd", "pooled_components", "seed_share_upper",
           "seeds_needed", "simulated_differences", "t_test_power", "variance_components", "verdict"]
