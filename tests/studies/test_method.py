"""`gcpo.studies.method` against hand computations, scipy, and synthetic studies whose truth is known.

The synthetic studies draw each arm's seeds x items matrix as a seed effect + an item effect shared by every arm
+ the arm's own item effect + a seed's noise on each item (normal; the variances below are of the order the study
regime's pass@1 shows at 100 items), so paired differences carry the components `method.Components` names.
`python -m pytest tests/studies/test_method.py -s` prints the measured rates (docs/studies.md quotes them).
"""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from gcpo.studies import method
from gcpo.sweeps import stats

# per arm: seed sd 0.03, the arm's own item effect sd 0.1, a seed's noise on an item sd 0.4 (Bernoulli-like)
ARM = {"seed": 0.03 ** 2, "item": 0.1 ** 2, "resid": 0.4 ** 2}
DIFFERENCE = method.Components(2 * ARM["seed"], 2 * ARM["item"], 2 * ARM["resid"], 0, 0)  # of arm - reference
STUDIES, ITEMS = 4000, 100


def arms_matrices(rng, arms: int, seeds: int, lifts=None) -> np.ndarray:
    """(STUDIES, arms, seeds, ITEMS) synthetic studies; `lifts` (per arm) the true differences from arm 0."""
    lifts = np.zeros(arms) if lifts is None else np.asarray(lifts)
    shared = rng.normal(0, 0.2, (STUDIES, 1, 1, ITEMS))  # item difficulty: the same for every arm
    own = rng.normal(0, math.sqrt(ARM["item"]), (STUDIES, arms, 1, ITEMS))
    seed = rng.normal(0, math.sqrt(ARM["seed"]), (STUDIES, arms, seeds, 1))
    noise = rng.normal(0, math.sqrt(ARM["resid"]), (STUDIES, arms, seeds, ITEMS))
    return 0.5 + lifts[None, :, None, None] + shared + own + seed + noise


def holm_declares(differences: np.ndarray, *alphas: float) -> list[np.ndarray]:
    """(STUDIES, m, S, N) differences -> for each alpha, per study whether Holm at it rejects any comparison."""
    p = method.p_values(differences)
    return [np.array([np.any(row <= method.holm(row, alpha)[1]) for row in p]) for alpha in alphas]


def test_holm_matches_a_hand_computation():
    adjusted, levels = method.holm([0.01, 0.04, 0.03, 0.005, math.nan])
    # sorted 0.005 (x4 = 0.02 <= 0.05: rejected), 0.01 (x3 = 0.03: rejected), 0.03 (x2 = 0.06 > 0.05: stop), 0.04
    np.testing.assert_allclose(adjusted[:4], [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(levels[:4], [0.05 / 3, 0.025, 0.025, 0.0125])
    assert math.isnan(adjusted[4]) and math.isnan(levels[4])
    assert all(math.isnan(x) for x in method.holm([])[0]) and len(method.holm([])[0]) == 0


def test_an_interval_at_its_p_value_touches_zero():
    rng = np.random.default_rng(0)
    values = method.simulated_differences(DIFFERENCE, 0.05, 4, ITEMS, 3, rng)
    for matrix, p in zip(values, method.p_values(values)):
        interval = stats.mean_interval(matrix, level=1 - p)
        assert min(abs(interval.low), abs(interval.high)) == pytest.approx(0, abs=1e-9)
        assert stats.reading(stats.mean_interval(matrix, level=1 - 1.01 * p)) != "includes 0"


def test_seed_only_p_values_are_scipys_t_test():
    rng = np.random.default_rng(1)
    seeds = rng.normal(0.02, 0.03, (5, 6))
    ours = method.p_values(seeds[:, :, None], stats.BY_SEEDS)
    np.testing.assert_allclose(ours, scipy_stats.ttest_1samp(seeds, 0.0, axis=1).pvalue, rtol=1e-6)


def test_factorial_contrasts_are_yates_effects():
    factors = {"a": [0, 1], "b.c": [False, True]}
    points = {"00": {"a": 0, "b.c": False}, "10": {"a": 1, "b.c": False}, "01": {"a": 0, "b.c": True},
              "11": {"a": 1, "b.c": True}}
    y = {"00": 1.0, "10": 3.0, "01": 2.0, "11": 6.0}
    effects = {name: sum(w * y[arm] for arm, w in weights.items())
               for name, weights in method.factorial_contrasts(factors, points)}
    assert effects == {"a": 3.0, "c": 2.0, "a x c": 1.0}  # (3+6)/2-(1+2)/2; (2+6)/2-(1+3)/2; ((6-2)-(3-1))/2


def test_verdict_words_follow_the_interval():
    assert method.verdict("gcpo", "grpo", 0.08, 0.02, 0.14, 0.05) == (
        method.BEATS, "gcpo beats grpo by 0.080 (0.020 to 0.140)")
    assert method.verdict("gcpo", "grpo", -0.08, -0.14, -0.02, 0.05) == (
        method.BEATS, "grpo beats gcpo by 0.080 (0.020 to 0.140)")
    assert method.verdict("gcpo", "grpo", 0.01, -0.03, 0.04, 0.05) == (
        method.NO_DIFFERENCE, "no difference larger than 0.040 between gcpo and grpo")
    kind, words = method.verdict("gcpo", "grpo", 0.01, -0.09, 0.11, 0.05)
    assert kind == method.TOO_WIDE and words.startswith("too wide to tell gcpo from grpo")
    assert method.verdict("a", "b", 0.1, math.nan, math.nan, 0.05)[0] == method.NO_VERDICT
    assert method.decided([method.BEATS, method.NO_DIFFERENCE]) and not method.decided([method.BEATS, method.TOO_WIDE])


def test_components_recover_the_truth_and_seeds_needed_reaches_the_target():
    rng = np.random.default_rng(2)
    truth = method.Components(0.02 ** 2, 0.05 ** 2, 0.3 ** 2, 0, 0)
    found = method.pooled_components([method.variance_components(m)
                                      for m in method.simulated_differences(truth, 0.0, 20, 400, 20, rng)])
    assert found.seed == pytest.approx(truth.seed, rel=0.25) and found.item == pytest.approx(truth.item, rel=0.1)
    assert found.resid == pytest.approx(truth.resid, rel=0.02)
    alpha = method.adjusted_alpha(3, 2)
    needed = method.seeds_needed(truth, ITEMS, 0.06, alpha=alpha)
    assert method.planned_mdd(truth, needed, ITEMS, alpha=alpha) <= 0.06 < \
        method.planned_mdd(truth, needed - 1, ITEMS, alpha=alpha)
    assert method.seeds_needed(truth, ITEMS, 0.01, alpha=alpha) is None  # the items alone keep it above 0.01
    assert method.variance_components(np.array([[0.1], [0.3], [0.2]])).seed == pytest.approx(0.01)


@pytest.mark.parametrize("seeds", [3, 5, 10])
def test_the_planned_mdd_matches_a_simulation(seeds, capsys):
    """The true difference a simulated study finds with 80% power (one comparison of m = 3, Bonferroni level)
    is within 20% of the plan's MDD; twice the MDD is found at least 80% of the time."""
    rng = np.random.default_rng(seeds)
    alpha = method.adjusted_alpha(3)
    noise = method.simulated_differences(DIFFERENCE, 0.0, seeds, ITEMS, STUDIES, rng)
    half = stats.crossed_interval_arrays(noise, 1 - alpha)[1]  # a shift moves the estimate, not the width
    estimate = noise.mean(axis=(1, 2))
    power = lambda delta: float(np.mean(np.abs(estimate + delta) > half))  # noqa: E731
    low, high = 0.0, 1.0
    for _ in range(40):  # power grows with the true difference
        middle = (low + high) / 2
        low, high = (middle, high) if power(middle) < 0.8 else (low, middle)
    simulated = (low + high) / 2
    planned = method.planned_mdd(DIFFERENCE, seeds, ITEMS, alpha=alpha)
    with capsys.disabled():
        print(f"\n[mdd] {seeds} seeds x {ITEMS} items, alpha {alpha:.4f}: planned {planned:.4f}, simulated "
              f"{simulated:.4f} (ratio {planned / simulated:.3f}); power at the plan's MDD {power(planned):.3f}, "
              f"at twice it {power(2 * planned):.3f}")
    assert planned == pytest.approx(simulated, rel=0.2)
    assert power(2 * planned) >= 0.8


def test_holm_keeps_the_family_error_near_five_percent(capsys):
    """Three arms against a reference, no true difference: the share of studies where Holm declares any."""
    rng = np.random.default_rng(10)
    rates = {}
    for seeds in (3, 5):
        y = arms_matrices(rng, 4, seeds)
        rates[seeds] = float(holm_declares(y[:, 1:] - y[:, :1], method.ALPHA)[0].mean())
    with capsys.disabled():
        print(f"\n[holm] zero difference, 3 comparisons, {STUDIES} studies: family-wise error "
              + ", ".join(f"{s} seeds {r:.4f}" for s, r in rates.items()))
    assert all(0.02 <= r <= 0.07 for r in rates.values())


def test_a_difference_of_twice_the_mdd_is_found_after_holm(capsys):
    rng = np.random.default_rng(11)
    seeds, alpha = 5, method.adjusted_alpha(3)
    lift = 2 * method.planned_mdd(DIFFERENCE, seeds, ITEMS, alpha=alpha)
    y = arms_matrices(rng, 4, seeds, lifts=[0, lift, 0, 0])
    p = method.p_values(y[:, 1:] - y[:, :1])
    found = np.mean([row[0] <= method.holm(row)[1][0] for row in p])
    with capsys.disabled():
        print(f"\n[power] 2 x MDD = {lift:.4f} at {seeds} seeds, Holm over 3: found in {found:.4f}")
    assert found >= 0.8


def test_repeated_looks_keep_the_error_at_five_percent(capsys):
    """Looks at 3, 5 and 7 seeds (the same seeds growing), Holm at alpha / 3 per look: the share of null studies
    declaring any difference at any look, against the naive rule (alpha at every look)."""
    rng = np.random.default_rng(12)
    looks = [3, 5, 7]
    y = arms_matrices(rng, 4, looks[-1])
    d = y[:, 1:] - y[:, :1]
    split = np.zeros(STUDIES, bool)
    naive = np.zeros(STUDIES, bool)
    for seeds in looks:
        at_split, at_alpha = holm_declares(d[:, :, :seeds], method.look_alpha(len(looks)), method.ALPHA)
        split, naive = split | at_split, naive | at_alpha
    with capsys.disabled():
        print(f"\n[looks] zero difference, looks at {looks} seeds, 3 comparisons: any false difference at any "
              f"look {split.mean():.4f} with alpha/{len(looks)} per look; {naive.mean():.4f} with alpha each look")
    assert 0.01 <= split.mean() <= 0.06 and naive.mean() > split.mean()


def test_a_tie_between_seeds_is_no_test_and_never_a_holm_rejection():
    # two seeds with the same mean and no item share (MS_item 1/6 < MS_resid 1/3): a zero-width interval at
    # every level. Its p is 1 (before: 1e-12, rejected first, which loosened the other comparison's level)
    tie = np.array([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
    assert stats.mean_interval(tie).low == stats.mean_interval(tie).high == 0.75
    strong = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.9]])
    p = method.p_values(np.stack([tie, strong]))
    assert p[0] == 1.0 and p[1] < 0.01
    assert method.holm(p)[1].tolist() == [0.05, 0.025]  # strong rejected at the first step's alpha / 2
    jitter = tie + np.array([[0.0, 0.0, 0.0, 0.01], [0.0, 0.0, 0.0, 0.0]])  # the seeds now differ: a real test
    assert 0 < method.p_values(jitter[None])[0] < 1


def test_the_seed_shares_upper_bound_by_hand_and_its_coverage():
    # 2 seeds (1 degree of freedom), no seed share measured: the stratum's mean square is sigma_e^2 = 0.1; its 80%
    # upper bound divides by chi2_{0.2, 1} = z_{0.6}^2 (P(Z^2 <= x) = 0.2 <=> P(|Z| <= sqrt x) = 0.2)
    parts = method.Components(0.0, 0.01, 0.1, 2, 300)
    upper = method.seed_share_upper(parts)
    chi2 = scipy_stats.norm.ppf(0.6) ** 2
    assert upper.seed == pytest.approx((0.1 / chi2 - 0.1) / 300)
    assert (upper.item, upper.resid, upper.seeds, upper.items) == (0.01, 0.1, 2, 300)
    assert method.planned_mdd(upper, 3, 300) > method.planned_mdd(parts, 3, 300)
    # over synthetic studies with a known seed share the bound is above it in 80% of them where the seed stratum
    # is well above the residual (the bound is exact for the stratum), and more often where the seed share is
    # small: a share estimated below 0 is first raised to 0 (`variance_components`), which lifts the bound
    rng = np.random.default_rng(5)
    seeds, items, studies = 3, 100, 1500
    for sd_seed, low, high in ((0.2, 0.76, 0.84), (0.03, 0.8, 1.0)):
        values = (rng.normal(0, sd_seed, (studies, seeds, 1)) + rng.normal(0, 0.2, (studies, 1, items))
                  + rng.normal(0, 0.4, (studies, seeds, items)))
        above = np.mean([method.seed_share_upper(method.variance_components(v)).seed >= sd_seed ** 2
                         for v in values])
        print(f"\nsd seed {sd_seed}: the seed share's 80% upper bound is above it in {above:.1%} of {studies} "
              f"synthetic studies (3 seeds)")
        assert low <= above <= high
