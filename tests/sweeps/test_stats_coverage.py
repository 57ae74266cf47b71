"""Coverage of `gcpo.sweeps.stats`'s intervals by simulation, with the true value known.

The model: a held-out set of N = 100 items drawn from a population of varied difficulty (logit of an item's pass
rate ~ N(-0.5, 1.5^2): pass rates from about 0.03 to 0.9), a seed effect per run on the same logit scale, ~ N(0,
sd^2) with sd 0.15 (a small seed-to-seed share: two seeds of one arm differ by ~0.02 in pass@1) or 0.8 (a large
one: ~0.13, like the study regime's seeds, which disagreed on 9-17 of 100 items), and each (seed, item) a Bernoulli
draw. The arm's true value is the population's mean pass rate, E[sigmoid(-0.5 + a + b)], by Gauss-Hermite
quadrature: the interval must cover both which seeds ran and which items the set holds. On the seeds-only path
(no per-item results) the truth is the mean over seeds *for the drawn item set* (what seeds-only data can speak
for; module docstring of stats). Paired arms share the items; their seeds are independent (the worst case for
pairing). 4000 replications per case (Monte Carlo error of a 95% coverage: 0.34 points), vectorised: about a
second per case. `python -m pytest tests/sweeps/test_stats_coverage.py -s` prints the measured numbers (the table in
docs/sweeps.md).
"""

import math

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as scipy_stats

from gcpo.sweeps import stats

REPS, ITEMS, CENTER, ITEM_SD = 4000, 100, -0.5, 1.5
SHARES = {"small": 0.15, "large": 0.8}  # the seed effect's sd on the logit scale
NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(80)
WEIGHTS = WEIGHTS / WEIGHTS.sum()


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def population_mean(lift: float, seed_sd: float) -> float:
    """E[sigmoid(CENTER + lift + a + b)] over items a ~ N(0, ITEM_SD^2) and seeds b ~ N(0, seed_sd^2)."""
    return float(WEIGHTS @ sigmoid(CENTER + lift + math.hypot(ITEM_SD, seed_sd) * NODES))


def draw(rng, seeds: int, seed_sd: float, item_effects=None, lift: float = 0.0):
    """REPS studies of one arm: (item effects (REPS, 1, N), outcomes (REPS, seeds, N))."""
    a = rng.normal(0, ITEM_SD, (REPS, 1, ITEMS)) if item_effects is None else item_effects
    b = rng.normal(0, seed_sd, (REPS, seeds, 1))
    outcomes = (rng.uniform(size=(REPS, seeds, ITEMS)) < sigmoid(CENTER + lift + a + b)).astype(float)
    return a, outcomes


def covered(estimate, half, truth) -> float:
    return float(np.mean(np.abs(estimate - truth) <= half))


def excluded_zero(estimate, half) -> float:
    return float(np.mean(np.abs(estimate) > half))


@pytest.mark.parametrize("share", SHARES)
@pytest.mark.parametrize("seeds", [3, 5, 10])
def test_arm_interval_covers_95_percent_with_items(seeds, share):
    rng = np.random.default_rng([seeds, len(share)])
    _, y = draw(rng, seeds, SHARES[share])
    estimate, half, _, _ = stats.crossed_interval_arrays(y)
    coverage = covered(estimate, half, population_mean(0.0, SHARES[share]))
    print(f"\narm interval, seeds x items, {seeds} seeds, {share} seed share: coverage {coverage:.3f}")
    assert 0.93 <= coverage <= 0.97, coverage


@pytest.mark.parametrize("share", SHARES)
@pytest.mark.parametrize("seeds", [3, 5, 10])
def test_arm_interval_covers_95_percent_over_seeds_only(seeds, share):
    rng = np.random.default_rng([seeds, len(share), 1])
    a, y = draw(rng, seeds, SHARES[share])
    finals = y.mean(axis=2)
    half = stats.t_quantile(0.95, seeds - 1) * finals.std(axis=1, ddof=1) / math.sqrt(seeds)
    per_item = sigmoid(CENTER + a[:, 0, :, None] + SHARES[share] * NODES)  # (REPS, N, nodes)
    truth = (per_item @ WEIGHTS).mean(axis=1)  # over seeds, for each study's item set
    coverage = covered(finals.mean(axis=1), half, truth)
    one = stats.mean_interval(finals[0][:, None], method=stats.BY_SEEDS)  # the same numbers as the arrays above
    assert one.high - one.estimate == pytest.approx(half[0])
    print(f"\narm interval, seeds only, {seeds} seeds, {share} seed share: coverage {coverage:.3f}")
    assert 0.93 <= coverage <= 0.97, coverage


def aa_differences(rng, seeds: int, seed_sd: float, lift: float = 0.0):
    """REPS paired studies: arm B (with `lift` on the logit scale) - arm A on shared items, independent seeds."""
    a, baseline = draw(rng, seeds, seed_sd)
    _, arm = draw(rng, seeds, seed_sd, item_effects=a, lift=lift)
    return arm - baseline


@pytest.mark.parametrize("share", SHARES)
@pytest.mark.parametrize("seeds", [3, 5])
def test_aa_false_positive_rate_is_at_most_5_percent(seeds, share):
    rng = np.random.default_rng([seeds, len(share), 2])
    estimate, half, _, _ = stats.crossed_interval_arrays(aa_differences(rng, seeds, SHARES[share]))
    rate = excluded_zero(estimate, half)
    print(f"\nA/A paired difference, {seeds} seeds, {share} seed share: false-positive rate {rate:.3f}")
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / REPS), rate


def test_one_seed_per_arm_reads_seed_noise_as_an_effect():
    """Why one seed gives no verdict: the items-only interval of an A/A difference at one seed per arm excludes 0
    far more often than 5% when seeds differ (the issue measured 25%)."""
    rng = np.random.default_rng(7)
    d = aa_differences(rng, 1, SHARES["large"])[:, 0, :]
    half = stats.t_quantile(0.95, ITEMS - 1) * d.std(axis=1, ddof=1) / math.sqrt(ITEMS)
    rate = excluded_zero(d.mean(axis=1), half)
    print(f"\nA/A at one seed per arm, items-only interval, large seed share: false-positive rate {rate:.3f}")
    assert rate > 0.3, rate
    assert stats.reading(stats.mean_interval(d[0][None, :])) == "items only, no verdict"


def lift_for(difference: float, seed_sd: float) -> float:
    """The logit-scale lift whose true difference in mean pass rate is `difference`."""
    return optimize.brentq(lambda x: population_mean(x, seed_sd) - population_mean(0.0, seed_sd) - difference,
                           0.0, 10.0)


@pytest.mark.parametrize("seeds, seed_sd", [(3, 0.15), (5, 0.15), (3, 0.3), (5, 0.3), (10, 0.8)])
def test_twice_the_detectable_difference_is_found_80_percent_of_the_time(seeds, seed_sd):
    """MDD from the A/A studies' median standard error and degrees of freedom at this design; a true difference of
    2 MDD is found (interval above 0) in at least 80% of the studies; at 1 MDD about 80% (printed). (At 3 and 5
    seeds with the large seed share the MDD is 0.3 or more: twice it is past what pass@1 can gain here.)"""
    rng = np.random.default_rng([seeds, int(seed_sd * 100), 3])
    _, _, se, df = stats.crossed_interval_arrays(aa_differences(rng, seeds, seed_sd))
    mdd = stats.minimum_detectable_difference(float(np.median(se)), float(np.median(df)))
    found = {}
    for times in (1, 2):
        d = aa_differences(rng, seeds, seed_sd, lift=lift_for(times * mdd, seed_sd))
        estimate, half, _, _ = stats.crossed_interval_arrays(d)
        found[times] = float(np.mean(estimate - half > 0))
        coverage = covered(estimate, half, times * mdd)
    print(f"\npaired, {seeds} seeds, seed sd {seed_sd}: MDD {mdd:.3f}; found at 1 MDD {found[1]:.3f}, at 2 MDD "
          f"{found[2]:.3f}; coverage at 2 MDD {coverage:.3f}")
    assert found[2] >= 0.8, found
    assert 0.93 <= coverage <= 0.97, coverage


def test_a_percentile_bootstrap_over_three_seeds_is_too_narrow():
    """Why not `scipy.stats.bootstrap` (or the hierarchical bootstrap this replaced) over seeds: at 3 seeds the
    percentile bootstrap of the seeds' means covers far less than 95% (it acts like a z-interval with the variance
    shrunk by (n-1)/n); the t-interval on the same data covers 95%. 2000 studies, seed effects only."""
    rng = np.random.default_rng(11)
    finals = rng.normal(0.3, 0.05, (2000, 3))
    boot = scipy_stats.bootstrap((finals,), np.mean, axis=1, n_resamples=999, method="percentile",
                                 random_state=rng, vectorized=True).confidence_interval
    t_half = stats.t_quantile(0.95, 2) * finals.std(axis=1, ddof=1) / math.sqrt(3)
    boot_coverage = float(np.mean((boot.low <= 0.3) & (0.3 <= boot.high)))
    t_coverage = covered(finals.mean(axis=1), t_half, 0.3)
    print(f"\n3 seeds: percentile bootstrap coverage {boot_coverage:.3f}, t-interval {t_coverage:.3f}")
    assert boot_coverage < 0.85 and 0.93 <= t_coverage <= 0.97
