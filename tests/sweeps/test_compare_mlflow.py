"""`gcpo compare` against a real MLflow tracking server on 127.0.0.1 (the session's `mlflow_server`): runs logged
by hand as a training run logs them (per-step metrics, and the per-item results of each held-out evaluation as
`eval/items_step_<N>.json`; in one batch per run, for speed), read back: curves.csv holds every logged key, items.csv the
final evaluation's items, the intervals are over seeds and items, and a run from before items were recorded
falls back to seeds. No training: seconds, not minutes."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gcpo.eval_items import ItemResult, items_artifact, items_json
from gcpo.sweeps.compare import load_comparison

pytestmark = pytest.mark.integration

EXPERIMENT = "compare-by-hand"
METRIC = "eval/basic_arithmetic/pass_at_1"
STEP_KEYS = ["reward/mean", "kl/mean", "policy/clip_frac", "policy/ratio_mean", "grad/norm", "loss/policy",
             "batch/gpg_alpha", "groups/all_wrong_frac", "ga/injected_frac", "policy/entropy",
             "response/length_mean", "time/step_s", "correction/weight_mean"]
ITEMS, STEPS = 20, 4


def log_run(uri: str, arm: str, seed: int, success: float, *, with_items: bool = True) -> str:
    """A finished run of `STEPS` steps with held-out evaluations at steps 0 and `STEPS` (pass@1 `success` at the
    last, drawn per item)."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT) or client.get_experiment(
        client.create_experiment(EXPERIMENT))
    run_id = client.create_run(experiment.experiment_id, run_name=f"{arm}-s{seed}").info.run_id
    rng = np.random.default_rng(seed)
    metrics = [Metric(key, float(rng.uniform()) + step, 0, step) for step in range(1, STEPS + 1) for key in STEP_KEYS]
    for step, p in ((0, 0.0), (STEPS, success)):
        correct = (rng.uniform(size=ITEMS) < p).astype(float)
        metrics += [Metric(METRIC, correct.mean(), 0, step), Metric("eval/basic_arithmetic/format_rate", 1.0, 0, step)]
        if with_items:
            client.log_text(run_id, items_json([ItemResult("basic_arithmetic", i, f"basic_arithmetic/held_out/0/{i}",
                                                           c, c, 1.0) for i, c in enumerate(correct)]),
                            items_artifact(step))
    params = [Param("algorithm.golden_answers", arm), Param("trainer.seed", str(seed))]
    client.log_batch(run_id, metrics=metrics, params=params)
    client.set_terminated(run_id)
    return run_id


@pytest.fixture(scope="module")
def logged(mlflow_server):
    """Arm True: 3 seeds with items; arm False: seeds 0 and 1 with items, seed 2 without (an older run)."""
    for seed in range(3):
        log_run(mlflow_server, "True", seed, 0.6)
        log_run(mlflow_server, "False", seed, 0.1, with_items=seed < 2)
    return mlflow_server


def test_curves_hold_every_logged_key_and_items_the_final_evaluation(logged):
    cmp = load_comparison(EXPERIMENT, logged)
    assert cmp.keys == ["algorithm.golden_answers"] and cmp.metric == METRIC
    assert set(cmp.curves["key"]) == {*STEP_KEYS, METRIC, "eval/basic_arithmetic/format_rate"}
    points = cmp.curves.groupby(["run_id", "key"]).size()
    assert len(points) == 6 * (len(STEP_KEYS) + 2)
    assert (points.xs("kl/mean", level="key") == STEPS).all() and (points.xs(METRIC, level="key") == 2).all()
    assert len(cmp.items) == 5 * ITEMS and set(cmp.items["step"]) == {STEPS}  # the final evaluation's, not step 0's
    by_run = cmp.items.groupby("run_id")["correct"].mean()
    finals = cmp.runs.set_index("run_id")["final"]
    assert by_run.to_dict() == pytest.approx(finals[by_run.index].to_dict())  # the items make up the metric
    intervals = cmp.statistics().intervals.set_index("arm")
    assert intervals.loc["golden_answers=True", "method"] == "seeds x items"
    assert intervals.loc["golden_answers=False", "method"] == "seeds"  # one of its runs has no items
    assert any("intervals over seeds only" in n and n.endswith(": golden_answers=False")
               for n in cmp.statistics().notes)


def test_gcpo_compare_writes_the_statistics(logged, tmp_path, capsys):
    from gcpo.cli import main

    out = tmp_path / "report"
    assert main(["compare", "--experiment", EXPERIMENT, "--tracking-uri", logged, "--out", str(out), "--no-log",
                 "--curves", "kl/mean,grad/norm,nothing/logged", "--baseline", "golden_answers=False",
                 "--aa", "golden_answers=True"]) == 0
    printed = capsys.readouterr().out
    assert "no run logged nothing/logged; learning_curves.png leaves it out" in printed
    assert "paired differences in final pass_at_1" in printed and "Student t over seeds" in printed
    assert "golden_answers=True: " in printed and "halves of 1 seed x 20 items (items only)" in printed
    differences = pd.read_csv(out / "differences.csv")
    assert differences[["arm", "baseline"]].values.tolist() == [["golden_answers=True", "golden_answers=False"]]
    assert differences["low"][0] > 0  # 0.6 vs 0.1 over 3 seeds (seeds only: one of False's runs has no items)
    assert differences["reading"][0] == "above 0" and "significant" not in printed
    statistics = json.loads((out / "comparison.json").read_text())["statistics"]
    assert (statistics["baseline"], statistics["aa"]) == ("golden_answers=False", ["golden_answers=True"])
    assert len(pd.read_csv(out / "aa.csv")) == 2  # 3 seeds: halves 0|1 and 0|2
    for name in ("curves.csv", "items.csv", "intervals.csv", "aa.csv", "learning_curves.png", "intervals.png",
                 "differences.png"):
        assert (out / name).stat().st_size > 0, name
    assert main(["compare", "--experiment", EXPERIMENT, "--tracking-uri", logged, "--out", str(out), "--no-log",
                 "--baseline", "nobody"]) == 2
    assert "no arm 'nobody' to compare against" in capsys.readouterr().out
    assert main(["compare", "--experiment", EXPERIMENT, "--tracking-uri", logged, "--out", str(out), "--no-log",
                 "--aa", "nobody"]) == 2
    assert "no arm 'nobody' for the A/A check" in capsys.readouterr().out


def test_notebook_plots_intervals_and_differences_from_the_report(logged, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(Path(__file__).resolve().parents[2] / "notebooks" / "ablation_report.ipynb", as_version=4)
    os.environ.update(GCPO_EXPERIMENT=EXPERIMENT, MLFLOW_TRACKING_URI=logged)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) == 4  # learning curves, effects, intervals, differences
    assert (tmp_path / "report" / "differences.csv").exists()
