"""`gcpo.studies.analysis` on synthetic comparisons: the verdicts follow the truth, factorial effects are the
contrasts of the arms, the pilot's components feed the plan."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from gcpo.studies import analysis, method
from gcpo.studies.study_file import Claim, Study

METRIC = "eval/basic_arithmetic/pass_at_1"


def comparison(truth: dict[str, float], seeds: int, items: int = 200, seed: int = 0, per_item: bool = True):
    """Runs and per-item results of arms with true pass rates `truth` (Bernoulli per seed and item)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 1.0, items)
    runs, rows = [], []
    for arm, rate in truth.items():
        logit = math.log(rate / (1 - rate))
        for s in range(seeds):
            p = 1 / (1 + np.exp(-(logit + difficulty + rng.normal(0, 0.1))))
            correct = (rng.random(items) < p).astype(float)
            runs.append({"arm": arm, "seed": str(s), "final": correct.mean()})
            rows += [{"arm": arm, "seed": str(s), "task": "basic_arithmetic", "item_id": str(i), "correct": c}
                     for i, c in enumerate(correct)]
    items_df = pd.DataFrame(rows) if per_item else pd.DataFrame(columns=["arm", "seed", "task", "item_id"])
    return SimpleNamespace(runs=pd.DataFrame(runs), items=items_df, metric=METRIC)


def claim(name, arms, factors=None, points=None, target=0.05):
    points = points or {a: {"arm": a} for a in arms}
    return Claim(name, arms, points, arms[0], [0, 1, 2], METRIC, target, {}, factors or {})


def test_verdicts_follow_the_truth():
    c = claim("methods", ["ref", "same", "better"])
    study = Study("s", None, {"methods": c}, [0, 1, 2])
    cmp = comparison({"ref": 0.5, "same": 0.5, "better": 0.75}, seeds=6, items=400)
    table = analysis.study_comparisons(study, {"methods": cmp}).set_index("comparison")
    assert table.loc["better - ref", "verdict"] == method.BEATS
    assert table.loc["better - ref", "words"].startswith("better beats ref by 0.")
    assert table.loc["same - ref", "verdict"] in (method.NO_DIFFERENCE, method.TOO_WIDE)
    assert (table["alpha"] <= 0.05).all() and (table["low"] <= table["low95"]).all()  # adjusted: wider
    arms = analysis.study_arms(study, {"methods": cmp})
    assert list(arms["arm"]) == ["ref", "same", "better"] and (arms["low"] < arms["estimate"]).all()


def test_a_minimised_metric_turns_the_words():
    c = claim("methods", ["ref", "lower"])
    study = Study("s", None, {"methods": c}, [0, 1, 2], mode="min")
    cmp = comparison({"ref": 0.6, "lower": 0.3}, seeds=4)
    words = analysis.study_comparisons(study, {"methods": cmp})["words"].iloc[0]
    assert words.startswith("lower beats ref by 0.")


def test_factorial_effects_are_the_contrasts_of_the_arms():
    factors = {"algorithm.golden_answers": [True, False], "algorithm.kl_coef": [0.0, 0.04]}
    points = {f"ga={a}, kl={k}": {"algorithm.golden_answers": a, "algorithm.kl_coef": k}
              for a in (True, False) for k in (0.0, 0.04)}
    arms = list(points)
    c = claim("grid", arms, factors, points)
    study = Study("s", None, {"grid": c}, [0, 1, 2])
    truth = dict(zip(arms, [0.5, 0.5, 0.8, 0.8]))  # golden_answers False is better by 0.3; KL does nothing
    cmp = comparison(truth, seeds=4, items=300)
    table = analysis.study_comparisons(study, {"grid": cmp}).set_index("comparison")
    assert list(table.index) == ["effect of golden_answers", "effect of kl_coef",
                                 "interaction golden_answers x kl_coef"]
    finals = cmp.runs.groupby("arm")["final"].mean()
    expected = (finals[arms[2]] + finals[arms[3]] - finals[arms[0]] - finals[arms[1]]) / 2
    assert table.loc["effect of golden_answers", "estimate"] == pytest.approx(expected)
    assert table.loc["effect of golden_answers", "words"].startswith("golden_answers=False beats golden_answers=True")
    assert table.loc["effect of kl_coef", "verdict"] != method.BEATS


def test_seeds_only_comparisons_and_the_pilot_components():
    c = claim("methods", ["ref", "other"])
    cmp = comparison({"ref": 0.5, "other": 0.55}, seeds=5, per_item=False)
    study = Study("s", None, {"methods": c}, [0, 1, 2])
    row = analysis.study_comparisons(study, {"methods": cmp}).iloc[0]
    assert row["method"] == "seeds" and row["items"] == 0 and not math.isnan(row["low"])
    parts, source = analysis.pilot_components(c, cmp.runs, cmp.items, METRIC)
    assert source == "the claim's own arms" and parts.item == 0 and parts.seed > 0
    grid = claim("grid", ["a", "b", "c", "d"])  # not in the pilot: the pilot's pairs, scaled
    pilot = comparison({"x": 0.5, "y": 0.5}, seeds=3)
    parts, source = analysis.pilot_components(grid, pilot.runs, pilot.items, METRIC)
    assert source.startswith("paired differences of the pilot's arms (x, y)") and parts.resid > 0


def test_an_interaction_whose_seeds_tie_has_no_verdict_and_p_one():
    factors = {"algorithm.golden_answers": [True, False], "algorithm.kl_coef": [0.0, 0.04]}
    points = {f"ga={a}, kl={k}": {"algorithm.golden_answers": a, "algorithm.kl_coef": k}
              for a in (True, False) for k in (0.0, 0.04)}
    arms = list(points)
    # three arms constant; the fourth's seeds tie in mean (0.75) with no item share: the interaction's matrix
    # (the fourth arm / 2 + a constant) has a zero-width interval, the main effects are the same matrix too
    per_arm = {arm: np.full((2, 4), 0.5) for arm in arms[:3]}
    per_arm[arms[3]] = np.array([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
    runs = [{"arm": a, "seed": str(s), "final": v[s].mean()} for a, v in per_arm.items() for s in range(2)]
    rows = [{"arm": a, "seed": str(s), "task": "basic_arithmetic", "item_id": str(i), "correct": v[s, i]}
            for a, v in per_arm.items() for s in range(2) for i in range(4)]
    cmp = SimpleNamespace(runs=pd.DataFrame(runs), items=pd.DataFrame(rows), metric=METRIC)
    study = Study("s", None, {"grid": claim("grid", arms, factors, points)}, [0, 1])
    table = analysis.study_comparisons(study, {"grid": cmp}).set_index("comparison")
    row = table.loc["interaction golden_answers x kl_coef"]
    assert row["estimate"] == pytest.approx(0.125) and row["p"] == 1.0 and row["verdict"] == method.NO_VERDICT
    assert "nothing varied" in row["words"]
    assert (table["p"] == 1.0).all() and (table["alpha"] == 0.05 / 3).all()  # nothing rejected: one level


def test_each_comparison_says_the_seeds_its_target_would_need_at_the_noise_measured():
    c = claim("methods", ["ref", "same", "better"], target=0.05)
    study = Study("s", None, {"methods": c}, [0, 1, 2])
    table = analysis.study_comparisons(study, {"methods": comparison({"ref": 0.5, "same": 0.5, "better": 0.55},
                                                                     seeds=3, items=300)}).set_index("comparison")
    frames = analysis.arm_frames(*(comparison({"ref": 0.5, "same": 0.5, "better": 0.55}, seeds=3, items=300)
                                   .__dict__[k] for k in ("runs", "items", "metric")), c.arms)
    for arm in ("same", "better"):
        row = table.loc[f"{arm} - ref"]
        parts = method.variance_components(analysis.contrast_matrix(frames, {arm: 1.0, "ref": -1.0})[0])
        needed = int(row["seeds_needed"])  # the fewest seeds whose MDD at this level reaches the target
        assert method.planned_mdd(parts, needed, 300, alpha=row["alpha"]) <= 0.05
        assert needed == 2 or method.planned_mdd(parts, needed - 1, 300, alpha=row["alpha"]) > 0.05
        assert row["mdd"] == pytest.approx(method.planned_mdd(parts, 3, 300, alpha=row["alpha"]))
    one_seed = analysis.study_comparisons(study, {"methods": comparison({"ref": 0.5, "same": 0.5}, seeds=1)})
    assert one_seed["seeds_needed"].isna().all()
