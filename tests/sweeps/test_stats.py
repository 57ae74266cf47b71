"""The bootstrap of `gcpo compare` (`gcpo.sweeps.stats`): hand-checked small cases, and synthetic reports whose
answer is known (two arms, 3 seeds, 200 items, one arm's per-item success probability 0.1 above the other's).
Pure: numpy and pandas, no MLflow."""

import math

import numpy as np
import pandas as pd
import pytest

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
    interval = stats.bootstrap_interval(np.full((3, 50), 0.3), rng=stats.rng_for(0, "a"))
    assert interval.estimate == pytest.approx(0.3)
    assert (interval.low, interval.high) == (pytest.approx(0.3), pytest.approx(0.3))
    assert (interval.method, interval.seeds, interval.items) == ("seeds x items", 3, 50)


def test_two_seeds_zero_and_one_hand_checked():
    """Seeds only, values 0 and 1: a replicate is the mean of two draws, 0, 0.5 or 1 with chances 1/4, 1/2, 1/4,
    so the 2.5th and 97.5th percentiles are 0 and 1."""
    values = np.array([[0.0], [1.0]])
    replicates = stats.bootstrap_replicates(values, 20000, np.random.default_rng(0))
    shares = [np.mean(replicates == v) for v in (0.0, 0.5, 1.0)]
    assert shares == pytest.approx([0.25, 0.5, 0.25], abs=0.01)
    interval = stats.bootstrap_interval(values, rng=np.random.default_rng(0), method=stats.BY_SEEDS)
    assert (interval.estimate, interval.low, interval.high, interval.items) == (0.5, 0.0, 1.0, 0)


def test_one_seed_without_items_has_no_interval_and_items_of_one_seed_do():
    alone = stats.bootstrap_interval(np.array([[0.4]]), rng=np.random.default_rng(0), method=stats.BY_SEEDS)
    assert alone.estimate == 0.4 and math.isnan(alone.low) and math.isnan(alone.high)
    items = stats.bootstrap_interval(np.array([[0.0, 1.0, 1.0, 0.0]]), rng=np.random.default_rng(0))
    assert items.estimate == 0.5 and items.low < 0.5 < items.high


def test_a_seed_missing_items_counts_over_the_items_it_has():
    """Seeds of other held-out sizes (merged reports): a seed's mean is over its own items."""
    values = np.array([[1.0, 1.0, np.nan, np.nan], [0.0, 0.0, 0.0, 0.0]])
    interval = stats.bootstrap_interval(values, rng=np.random.default_rng(0))
    assert interval.estimate == 0.5 and 0.0 <= interval.low <= interval.high <= 1.0


def test_paired_difference_finds_a_known_lift_of_one_tenth():
    runs, items = synthetic({"a": 0.0, "b": 0.1})
    differences, notes = stats.paired_differences(runs, items, METRIC, [("b", "a")])
    (row,) = differences.to_dict("records")
    assert row["low"] <= 0.1 <= row["high"] and row["low"] > 0.0, row
    assert (row["method"], row["seeds"], row["items"]) == ("seeds x items", 3, 200) and notes == []
    assert row["estimate"] == pytest.approx(runs[runs.arm == "b"]["final"].mean() - runs[runs.arm == "a"]["final"].mean())


def test_paired_difference_with_independent_noise_still_covers_the_lift():
    runs, items = synthetic({"a": 0.0, "b": 0.1}, shared_noise=False, data_seed=3)
    (row,) = stats.paired_differences(runs, items, METRIC, [("b", "a")])[0].to_dict("records")
    assert row["low"] <= 0.1 <= row["high"], row


def test_the_paired_interval_covers_a_known_lift_in_95_percent_of_data_sets():
    """100 synthetic studies (3 seeds x 200 items, per-item success probabilities shared by the seeds, each arm's
    outcomes drawn apart, a true lift of 0.1): the interval covers it at least as often as it claims (the
    bootstrap is conservative: each seed's mean carries the item noise that the item draw counts again)."""
    covered = 0
    for data_seed in range(100):
        rng = np.random.default_rng(data_seed)
        p = rng.uniform(0.1, 0.6, 200)
        a, b = (rng.uniform(size=(2, 3, 200)) < np.stack([p, p + 0.1])[:, None]).astype(float)
        interval = stats.bootstrap_interval(b - a, resamples=400, rng=rng)
        covered += interval.low <= 0.1 <= interval.high
    assert covered >= 95, covered


def test_one_item_draw_serves_every_seed():
    """Seeds that agree item for item: more of them add no information about other items, so the interval is as
    wide as one seed's (about 1.96 * sqrt(p (1 - p) / N) = 0.14 at p = 0.5, N = 50)."""
    one = np.zeros((1, 50))
    one[0, :25] = 1.0
    intervals = [stats.bootstrap_interval(np.repeat(one, s, axis=0), rng=np.random.default_rng(0)) for s in (1, 3)]
    assert [i.high - i.low for i in intervals] == pytest.approx([0.28, 0.28], abs=0.02)


def test_identical_arms_differ_by_exactly_zero():
    runs, items = synthetic({"a": 0.0})
    twin = runs.assign(arm="twin", run_id=runs["run_id"] + "-twin")
    runs, items = pd.concat([runs, twin]), pd.concat([items, items.assign(arm="twin")])
    (row,) = stats.paired_differences(runs, items, METRIC, [("twin", "a")])[0].to_dict("records")
    assert (row["estimate"], row["low"], row["high"]) == (0.0, 0.0, 0.0)


def test_intervals_shrink_as_items_grow():
    widths = []
    for n in (50, 200, 800):
        runs, items = synthetic({"a": 0.0}, items=n)
        intervals, _ = stats.arm_intervals(runs, items, METRIC)
        widths.append(interval_width(intervals.iloc[0]))
    assert widths[0] > widths[1] > widths[2] > 0, widths


def test_same_seed_same_interval_another_seed_another():
    runs, items = synthetic({"a": 0.0, "b": 0.1}, items=50)
    first = stats.arm_intervals(runs, items, METRIC, seed=7)[0]
    again = stats.arm_intervals(runs, items, METRIC, seed=7)[0]
    other = stats.arm_intervals(runs, items, METRIC, seed=8)[0]
    pd.testing.assert_frame_equal(first, again)
    assert not first[["low", "high"]].equals(other[["low", "high"]])
    alone = stats.arm_intervals(runs[runs.arm == "a"], items[items.arm == "a"], METRIC, seed=7)[0]
    pd.testing.assert_frame_equal(alone, first.iloc[:1])  # an arm's interval ignores the other arms


def test_without_items_the_bootstrap_is_over_seeds_and_says_so():
    runs, items = synthetic({"a": 0.0, "b": 0.1}, items=50)
    intervals, notes = stats.arm_intervals(runs, items[items.arm == "b"], METRIC)
    assert list(intervals["method"]) == ["seeds", "seeds x items"]
    assert notes == [f"no per-item results for {METRIC}, intervals over seeds only: a"]
    differences, notes = stats.paired_differences(runs, items[items.arm == "b"], METRIC, [("b", "a")])
    assert list(differences["method"]) == ["seeds"] and differences["seeds"].tolist() == [3]
    assert notes == [f"no per-item results for {METRIC}, differences paired by seed only: every pair"]
    _, notes = stats.arm_intervals(runs, items, "reward/mean")  # not a per-item metric
    assert notes == ["no per-item results for reward/mean, intervals over seeds only: every arm"]


def test_pairs_share_seeds_or_are_left_out():
    runs, items = synthetic({"a": 0.0, "b": 0.1}, items=20)
    runs.loc[runs.arm == "b", "seed"] = runs.loc[runs.arm == "b", "seed"] + "0"
    differences, notes = stats.paired_differences(runs, items, METRIC, [("b", "a")])
    assert differences.empty and notes == ["no shared seed, no paired difference: b - a"]


def test_item_columns_and_pairs():
    assert (stats.RESAMPLES, stats.SEED) == (2000, 0)  # `gcpo compare --help` and the docs state them
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


def test_the_report_carries_intervals_and_differences(tmp_path):
    """A synthetic report through write_report and load_reports: items.csv, intervals.csv, differences.csv, the
    tables and the plots; the merged report draws the same intervals."""
    runs, items = synthetic({"a": 0.0, "b": 0.1}, items=100)
    runs = runs.assign(run_name="r", status="FINISHED", best=runs["final"], steps_to_target=math.nan,
                       format=1.0, reward=0.0, golden_share=0.0, step_s=1.0, length=10.0, entropy=1.0)
    items = items.assign(run_id=items["arm"] + "-" + items["seed"], step=4)
    curves = pd.DataFrame(columns=["run_id", "arm", "seed", "key", "step", "value"])
    cmp = Comparison("known", "", METRIC, "max", ["arm"], None, runs, summarize_arms(runs), curves, items=items)
    paths = write_report(cmp, tmp_path / "known", log_to_parent=False)
    differences = pd.read_csv(paths["differences"])
    assert differences[["arm", "baseline", "method"]].values.tolist() == [["a", "b", "seeds x items"]]
    assert differences["high"][0] < 0 < 0.1 + differences["high"][0]  # a - b: about -0.1
    table = paths["markdown"].read_text()
    assert "| a - b | -0." in table and "| seeds x items" not in table and "3 seeds x 100 items" in table
    assert "paired differences in final pass_at_1" in paths["table"].read_text()
    assert all(paths[k].stat().st_size > 0 for k in ("interval_plot", "difference_plot", "items"))
    merged = load_reports([tmp_path / "known"])
    pd.testing.assert_frame_equal(merged.statistics().intervals, cmp.statistics().intervals)
    merged.baseline = "a"
    assert merged.statistics().differences[["arm", "baseline"]].values.tolist() == [["b", "a"]]
