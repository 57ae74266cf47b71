"""The statistics of `gcpo compare` (`gcpo.sweeps.stats`): hand-checked small cases, the same cases through
scipy.stats (`t.interval`, `ttest_rel`, `trim_mean`, `mannwhitneyu`, the formulas rliable uses), and synthetic
reports whose answer is known (two arms, 3 seeds, 200 items, one arm's per-item success probability 0.1 above the
other's). Coverage by simulation: test_stats_coverage.py. Pure: numpy, scipy and pandas, no MLflow."""

import math

import numpy as np
import pandas as pd
import pytest

from scipy import stats as scipy_stats

from gcpo.sweeps import stats
from gcpo.sweeps.compare import Comparison, load_reports, summarize_arms, write_report

METRIC = "eval/basic_arithmetic/pass_at_1"


def synthetic(arms: dict[str, float], *, seeds=3, items=200, data_seed=0, shared_noise=True):
    """runs and items frames: arm -> the success probability added to each item's own (drawn once, shared by
    every arm and seed); `shared_noise`: one uniform draw per (seed, item) for every arm (a paired design, as when
    the arms differ by one switch), else a fresh draw per arm."""
    rng = np.random.default_rng(data_seed)
    base = rng.uniform(0.1, 0.6, items)
    noise = rng.uniform(size=(seeds, items))
    runs, rows = [], []
    for arm, lift in arms.items():
        draws = noise if shared_noise else rng.uniform(size=(seeds, items))
        correct = (draws < base + lift).astype(float)
        for s in range(seeds):
            runs.append({"arm": arm, "seed": str(s), "run_id": f"{arm}-{s}", "final": correct[s].mean()})
            rows += [{"arm": arm, "seed": str(s), "task": "basic_arithmetic", "item_id": f"i{i}", "index": i,
                      "correct": correct[s, i], "mean_at_k": correct[s, i], "format": 1.0} for i in range(items)]
    return pd.DataFrame(runs), pd.DataFrame(rows)


def interval_width(row) -> float:
    return row["high"] - row["low"]


def test_all_equal_values_give_a_zero_width_interval():
    interval = stats.mean_interval(np.full((3, 50), 0.3))
    assert interval.estimate == pytest.approx(0.3)
    assert (interval.low, interval.high) == (pytest.approx(0.3), pytest.approx(0.3))
    assert (interval.method, interval.seeds, interval.items) == ("seeds x items", 3, 50)


def test_seeds_only_is_scipys_t_interval():
    values = np.array([0.2, 0.35, 0.3])
    interval = stats.mean_interval(values[:, None], method=stats.BY_SEEDS)
    low, high = scipy_stats.t.interval(0.95, 2, loc=values.mean(), scale=scipy_stats.sem(values))
    assert (interval.low, interval.high) == (pytest.approx(low), pytest.approx(high))
    assert (interval.method, interval.seeds, interval.items, interval.df) == ("seeds", 3, 0, 2.0)


def test_one_seed_and_no_items_has_no_interval_and_one_seed_with_items_holds_items_only():
    alone = stats.mean_interval(np.array([[0.4]]), method=stats.BY_SEEDS)
    assert alone.estimate == 0.4 and math.isnan(alone.low) and math.isnan(alone.high)
    items = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    one = stats.mean_interval(items[None, :])
    low, high = scipy_stats.t.interval(0.95, 4, loc=0.6, scale=scipy_stats.sem(items))
    assert (one.method, one.seeds, one.items) == ("items only", 1, 5)
    assert (one.low, one.high) == (pytest.approx(low), pytest.approx(high))
    assert stats.reading(one) == "items only, no verdict"


def test_without_item_spread_the_crossed_interval_is_the_seeds_t_interval():
    """Each seed constant over its items: no item term, the interval is the t-interval over the seeds' means."""
    seed_values = np.array([0.2, 0.5, 0.3, 0.45])
    crossed = stats.mean_interval(np.repeat(seed_values[:, None], 20, axis=1))
    plain = scipy_stats.t.interval(0.95, 3, loc=seed_values.mean(), scale=scipy_stats.sem(seed_values))
    assert (crossed.low, crossed.high) == (pytest.approx(plain[0]), pytest.approx(plain[1]))
    assert crossed.df == pytest.approx(3.0)


def test_seeds_that_agree_item_for_item_add_nothing_over_one_seed():
    """Identical seeds: no seed term, the interval is one seed's items t-interval, however many seeds ran (the
    items are shared: more seeds do not make the item set less of a draw)."""
    row = (np.arange(50) % 2).astype(float)
    one = stats.mean_interval(row[None, :])
    for seeds in (2, 3, 10):
        many = stats.mean_interval(np.repeat(row[None, :], seeds, axis=0))
        assert many.method == "seeds x items"
        assert (many.low, many.high) == (pytest.approx(one.low), pytest.approx(one.high))


def test_crossed_interval_hand_checked_on_two_by_two():
    """[[1, 0], [1, 1]]: seed means 0.5, 1; item means 1, 0.5; grand 0.75; MS_seed = 2 var(0.5, 1) = 0.25,
    MS_item = 0.25, residuals +-0.25 -> MS_resid = 0.25: item term 0, half-width t_{1} sqrt(0.25 / 4)."""
    interval = stats.mean_interval(np.array([[1.0, 0.0], [1.0, 1.0]]))
    half = scipy_stats.t.ppf(0.975, 1) * math.sqrt(0.25 / 4)
    assert interval.estimate == 0.75
    assert (interval.low, interval.high) == (pytest.approx(0.75 - half), pytest.approx(0.75 + half))


def test_both_strata_share_one_t_whose_df_takes_the_seed_stratum_at_its_upper_quartile():
    """3 seeds x 4 items, both strata non-zero: SE^2 = MS_seed / (S N) + (MS_item - MS_resid) / (S N); df is
    Welch-Satterthwaite's with the seed stratum divided by the lower quartile of chi^2_2 / 2 (= -ln 0.75)."""
    values = np.array([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    seed_var = 4 * np.var(values.mean(axis=1), ddof=1) / 12
    resid = values - values.mean(axis=1)[:, None] - values.mean(axis=0)[None, :] + values.mean()
    item_var = (3 * np.var(values.mean(axis=0), ddof=1) - (resid ** 2).sum() / 6) / 12
    bound = seed_var / -math.log(0.75)
    df = (bound + item_var) ** 2 / (bound ** 2 / 2 + item_var ** 2 / 3)
    interval = stats.mean_interval(values)
    assert item_var > 0 and 2 < interval.df < 5
    assert (interval.se, interval.df) == (pytest.approx(math.sqrt(seed_var + item_var)), pytest.approx(df))
    assert interval.high - interval.estimate == pytest.approx(scipy_stats.t.ppf(0.975, df) * interval.se)


def test_paired_seeds_only_matches_scipys_paired_t_test():
    """Differences by seed: the same interval as scipy's ttest_rel, and it excludes 0 exactly when p < 0.05."""
    rng = np.random.default_rng(0)
    for case in range(20):
        a, b = rng.normal(0.3, 0.05, 4), rng.normal(0.3 + 0.04 * (case % 3), 0.05, 4)
        interval = stats.mean_interval((b - a)[:, None], method=stats.BY_SEEDS)
        test = scipy_stats.ttest_rel(b, a)
        ci = test.confidence_interval(0.95)
        assert (interval.low, interval.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
        assert (stats.reading(interval) != "includes 0") == (test.pvalue < 0.05)


def test_a_seed_missing_items_counts_over_the_items_it_has():
    """Seeds of other held-out sizes (merged reports): a seed's mean is over its own items, the interval over the
    items every seed has (seeds only when fewer than two are shared)."""
    values = np.array([[1.0, 1.0, np.nan, np.nan], [0.0, 0.0, 0.0, 0.0]])
    interval = stats.mean_interval(values)
    assert interval.estimate == 0.5 and interval.method == "seeds x items" and interval.items == 2
    lonely = stats.mean_interval(np.array([[1.0, np.nan, 0.0], [np.nan, 1.0, 1.0]]))
    assert (lonely.method, lonely.estimate) == ("seeds", 0.75)


def test_minimum_detectable_difference():
    assert stats.minimum_detectable_difference(0.01, 1e9) == pytest.approx((1.959964 + 0.841621) * 0.01, rel=1e-5)
    assert stats.minimum_detectable_difference(0.01, 2) == pytest.approx((4.302653 + 1.060660) * 0.01, rel=1e-5)
    assert stats.minimum_detectable_difference(0.01, 2, power=0.5) == pytest.approx(4.302653 * 0.01, rel=1e-5)
    assert math.isnan(stats.minimum_detectable_difference(math.nan, 2))


def test_iqm_and_probability_of_improvement_are_rliables():
    """rliable 1.2.0 (`metrics.aggregate_iqm`, `metrics.probability_of_improvement`) computes them with
    `scipy.stats.trim_mean(scores, 0.25)` and `mannwhitneyu(x, y, alternative="greater").statistic / (m n)`
    (0.5 for identical runs): the same formulas on the same cases."""
    values = [0.1, 0.2, 0.3, 0.4, 1.0]
    assert stats.interquartile_mean(values) == pytest.approx(scipy_stats.trim_mean(values, 0.25)) == 0.3
    assert stats.interquartile_mean([0.1, 0.2, 0.9]) == pytest.approx(0.4)  # below 4 values: the mean
    rng = np.random.default_rng(1)
    for x, y in [(rng.integers(0, 5, 3) / 4, rng.integers(0, 5, 4) / 4) for _ in range(20)] + [([0.5, 0.2], [0.5, 0.2])]:
        u = scipy_stats.mannwhitneyu(x, y, alternative="greater").statistic / (len(x) * len(y))
        assert stats.probability_of_improvement(x, y) == pytest.approx(u)
    assert stats.probability_of_improvement([0.5, 0.2], [0.5, 0.2]) == 0.5
    assert stats.probability_of_improvement([0.3], [0.3, 0.1]) == 0.75  # one tie (1/2) and one win


def test_paired_difference_finds_a_known_lift_of_one_tenth():
    runs, items = synthetic({"a": 0.0, "b": 0.1})
    differences, notes = stats.paired_differences(runs, items, METRIC, [("b", "a")])
    (row,) = differences.to_dict("records")
    assert row["low"] <= 0.1 <= row["high"] and row["low"] > 0.0, row
    assert (row["method"], row["seeds"], row["items"], row["reading"]) == ("seeds x items", 3, 200, "above 0")
    assert notes == [] and row["p_improve"] == 1.0 and 0 < row["mdd"] < 0.1
    assert row["estimate"] == pytest.approx(runs[runs.arm == "b"]["final"].mean() - runs[runs.arm == "a"]["final"].mean())


def test_paired_difference_with_independent_noise_still_covers_the_lift():
    runs, items = synthetic({"a": 0.0, "b": 0.1}, shared_noise=False, data_seed=3)
    (row,) = stats.paired_differences(runs, items, METRIC, [("b", "a")])[0].to_dict("records")
    assert row["low"] <= 0.1 <= row["high"], row


def test_one_seed_per_arm_gives_no_verdict_and_says_why():
    runs, items = synthetic({"a": 0.0, "b": 0.3}, seeds=1)
    (row,) = stats.paired_differences(runs, items, METRIC, [("b", "a")])[0].to_dict("records")
    assert row["method"] == "items only" and row["reading"] == "items only, no verdict" and row["low"] > 0
    assert math.isnan(row["p_improve"])  # one run against one: only a sign
    notes = stats.paired_differences(runs, items, METRIC, [("b", "a")])[1]
    assert any("cannot be told from seed noise" in n for n in notes)
    runs, items = synthetic({"a": 0.0, "b": 0.3}, seeds=2)
    notes = stats.paired_differences(runs, items, METRIC, [("b", "a")])[1]
    assert any(n.startswith("fewer than 3 paired seeds") for n in notes)


def test_identical_arms_differ_by_exactly_zero():
    runs, items = synthetic({"a": 0.0})
    twin = runs.assign(arm="twin", run_id=runs["run_id"] + "-twin")
    runs, items = pd.concat([runs, twin]), pd.concat([items, items.assign(arm="twin")])
    (row,) = stats.paired_differences(runs, items, METRIC, [("twin", "a")])[0].to_dict("records")
    assert (row["estimate"], row["low"], row["high"], row["p_improve"]) == (0.0, 0.0, 0.0, 0.5)


def test_seed_splits_and_the_aa_check():
    assert stats.seed_splits(["0", "1"]) == [(["0"], ["1"])]
    assert stats.seed_splits(["0", "1", "2", "3"]) == [(["0", "1"], ["2", "3"]), (["0", "2"], ["1", "3"]),
                                                       (["0", "3"], ["1", "2"])]
    assert len(stats.seed_splits([str(s) for s in range(5)])) == 12 and stats.seed_splits(["0"]) == []
    assert len(stats.seed_splits([str(s) for s in range(10)])) == stats.AA_SPLITS
    runs, items = synthetic({"a": 0.0}, seeds=4, items=100)
    aa = stats.aa_splits(runs, items, METRIC, "a")
    assert list(aa["first"]) == ["0,1", "0,2", "0,3"] and set(aa["method"]) == {"seeds x items"}
    assert set(aa["seeds"]) == {2} and 0.0 <= stats.false_positive_share(aa) <= 1.0
    with pytest.raises(ValueError, match="no arm 'b' for the A/A check; arms: a"):
        stats.aa_splits(runs, items, METRIC, "b")
    with pytest.raises(ValueError, match="needs at least 2 seeds of 'a'; it has 1"):
        stats.aa_splits(runs[runs.seed == "0"], items, METRIC, "a")


def test_intervals_shrink_as_items_grow():
    widths = []
    for n in (50, 200, 800):
        runs, items = synthetic({"a": 0.0}, items=n)
        intervals, _ = stats.arm_intervals(runs, items, METRIC)
        widths.append(interval_width(intervals.iloc[0]))
    assert widths[0] > widths[1] > widths[2] > 0, widths


def test_an_arms_interval_ignores_the_other_arms():
    runs, items = synthetic({"a": 0.0, "b": 0.1}, items=50)
    first = stats.arm_intervals(runs, items, METRIC)[0]
    pd.testing.assert_frame_equal(first, stats.arm_intervals(runs, items, METRIC)[0])  # deterministic
    alone = stats.arm_intervals(runs[runs.arm == "a"], items[items.arm == "a"], METRIC)[0]
    pd.testing.assert_frame_equal(alone, first.iloc[:1])


SEEDS_ONLY = "over seeds only (for this held-out set: the items' own luck is not in them)"


def test_without_items_the_interval_is_over_seeds_and_says_so():
    runs, items = synthetic({"a": 0.0, "b": 0.1}, items=50)
    intervals, notes = stats.arm_intervals(runs, items[items.arm == "b"], METRIC)
    assert list(intervals["method"]) == ["seeds", "seeds x items"]
    assert notes[0] == f"no per-item results for {METRIC}, intervals {SEEDS_ONLY}: a"
    assert notes[1].startswith("zero-width interval: the seeds' means are all equal") and notes[1].endswith(": b")
    assert intervals["se"][1] == 0.0 and len(notes) == 2  # b's 3 seeds all scored 21 of 50, by chance
    differences, notes = stats.paired_differences(runs, items[items.arm == "b"], METRIC, [("b", "a")])
    assert list(differences["method"]) == ["seeds"] and differences["seeds"].tolist() == [3]
    assert notes == [f"no per-item results for {METRIC}, differences {SEEDS_ONLY}: every pair"]
    _, notes = stats.arm_intervals(runs, items, "reward/mean")  # not a per-item metric
    assert notes[0] == f"no per-item results for reward/mean, intervals {SEEDS_ONLY}: every arm"


def test_pairs_share_seeds_or_are_left_out():
    runs, items = synthetic({"a": 0.0, "b": 0.1}, items=20)
    runs.loc[runs.arm == "b", "seed"] = runs.loc[runs.arm == "b", "seed"] + "0"
    differences, notes = stats.paired_differences(runs, items, METRIC, [("b", "a")])
    assert differences.empty and notes == ["no shared seed, no paired difference: b - a"]


def test_item_columns_and_pairs():
    assert stats.item_column("eval/gsm_symbolic/pass_at_1") == ("gsm_symbolic", "correct")
    assert stats.item_column("eval/gsm_symbolic/mean_at_4") == ("gsm_symbolic", "mean_at_k")
    assert stats.item_column("eval/gsm_symbolic/format_rate") == ("gsm_symbolic", "format")
    assert stats.item_column("eval/gsm_symbolic/response_length") is None
    assert stats.item_column("reward/mean") is None
    assert stats.arm_pairs(["x", "y", "z"], None) == [("y", "x"), ("z", "x")]
    assert stats.arm_pairs(["x", "y", "z"], "z") == [("x", "z"), ("y", "z")]
    assert stats.arm_pairs(["x", "y", "z"], "all") == [("y", "x"), ("z", "x"), ("z", "y")]
    with pytest.raises(ValueError, match="no arm 'w' to compare against; arms: x, y, z"):
        stats.arm_pairs(["x", "y", "z"], "w")


def synthetic_comparison(name: str, means: dict, **kwargs) -> Comparison:
    """A `Comparison` of `synthetic` runs with per-item results and no curves, as `load_comparison` builds one."""
    runs, items = synthetic(means, **kwargs)
    runs = runs.assign(run_name="r", status="FINISHED", best=runs["final"], steps_to_target=math.nan,
                       format=1.0, reward=0.0, golden_share=0.0, step_s=1.0, length=10.0, entropy=1.0)
    items = items.assign(run_id=items["arm"] + "-" + items["seed"], step=4)
    curves = pd.DataFrame(columns=["run_id", "arm", "seed", "key", "step", "value"])
    return Comparison(name, "", METRIC, "max", ["arm"], None, runs, summarize_arms(runs), curves, items=items)


def test_the_report_carries_intervals_and_differences(tmp_path):
    """A synthetic report through write_report and load_reports: items.csv, intervals.csv, differences.csv, the
    tables and the plots (never the word "significant"); the merged report draws the same intervals; --aa adds
    aa.csv and its lines."""
    cmp = synthetic_comparison("known", {"a": 0.0, "b": 0.1}, items=100)
    paths = write_report(cmp, tmp_path / "known", log_to_parent=False)
    differences = pd.read_csv(paths["differences"])
    assert differences[["arm", "baseline", "method"]].values.tolist() == [["a", "b", "seeds x items"]]
    assert differences["high"][0] < 0 < 0.1 + differences["high"][0]  # a - b: about -0.1
    table = paths["markdown"].read_text()
    assert "| a - b | -0." in table and "| seeds x items" not in table and "3 seeds x 100 items" in table
    assert "| below 0 |" in table and "significant" not in table + paths["table"].read_text()
    assert "paired differences in final pass_at_1" in paths["table"].read_text()
    assert all(paths[k].stat().st_size > 0 for k in ("interval_plot", "difference_plot", "items"))
    merged = load_reports([tmp_path / "known"])
    pd.testing.assert_frame_equal(merged.statistics().intervals, cmp.statistics().intervals)
    merged.baseline = "a"
    assert merged.statistics().differences[["arm", "baseline"]].values.tolist() == [["b", "a"]]
    merged.aa = ["a"]
    paths = write_report(merged, tmp_path / "aa", log_to_parent=False)
    assert len(pd.read_csv(paths["aa"])) == 2
    assert "a: 0 of 2 splits exclude 0 (0%), halves of 1 seed x 100 items (items only)" in paths["table"].read_text()


def test_a_one_seed_report_gives_no_verdict(tmp_path):
    """One seed per arm with items: the intervals hold items only, the difference reads "items only, no verdict"
    (drawn dashed), the notes say a difference cannot be told from seed noise."""
    cmp = synthetic_comparison("one", {"a": 0.0, "b": 0.3}, seeds=1, items=100)
    paths = write_report(cmp, tmp_path / "one", log_to_parent=False)
    table = paths["table"].read_text()
    assert "items only, no verdict" in table and "cannot be told from seed noise" in table
    assert "above 0" not in table and "significant" not in table
    assert set(pd.read_csv(paths["intervals"])["method"]) == {"items only"}
    assert paths["difference_plot"].stat().st_size > 0
