"""Merging comparison reports (`load_reports`): a study run in pieces reads back as one comparison, its arms'
mean and std recomputed here by hand. Pure: no MLflow, the reports are written from hand-built comparisons."""

import json
import math

import pandas as pd
import pytest

from gcpo.sweeps.compare import REPORT_META, Comparison, load_reports, summarize_arms, write_report

METRIC = "eval/basic_arithmetic/pass_at_1"


def report(tmp_path, name, rows, metric=METRIC):
    runs = pd.DataFrame([{"arm": arm, "seed": seed, "run_id": f"{arm}-{seed}", "run_name": "r", "status": "FINISHED",
                          "arm_key": arm, "final": final, "best": final, "steps_to_target": math.nan,
                          "format": fmt, "reward": 0.0, "golden_share": 0.0, "step_s": 10.0, "length": 20.0,
                          "entropy": 1.0} for arm, seed, final, fmt in rows])
    curves = pd.DataFrame([{"run_id": f"{arm}-{seed}", "arm": arm, "seed": seed, "key": metric, "step": step,
                            "value": final * step / 4} for arm, seed, final, _ in rows for step in (0, 2, 4)])
    cmp = Comparison(name, "", metric, "max", ["arm"], None, runs, summarize_arms(runs), curves)
    write_report(cmp, tmp_path / name, log_to_parent=False)
    return tmp_path / name


def test_pieces_merge_into_one_comparison(tmp_path):
    dirs = [report(tmp_path, "a", [("gcpo", "0", 0.2, 0.5)]), report(tmp_path, "b", [("gcpo", "1", 0.4, 0.7)]),
            report(tmp_path, "c", [("grpo", "0", 0.0, 0.0), ("grpo", "1", 0.1, 0.2)])]
    assert json.loads((dirs[0] / REPORT_META).read_text())["metric"] == METRIC
    cmp = load_reports(dirs, name="methods")
    assert cmp.experiment == "methods" and cmp.metric == METRIC and cmp.keys == ["arm"]
    assert len(cmp.runs) == 4 and len(cmp.curves) == 12
    arms = cmp.arms.set_index("arm")
    assert list(cmp.arms["arm"]) == ["gcpo", "grpo"]  # best final mean first
    assert arms.loc["gcpo", "final_mean"] == pytest.approx(0.3)
    assert arms.loc["gcpo", "final_std"] == pytest.approx(math.sqrt(((0.2 - 0.3) ** 2 + (0.4 - 0.3) ** 2) / 1))
    assert arms.loc["grpo", "format_mean"] == pytest.approx(0.1) and arms.loc["grpo", "runs"] == 2
    merged = write_report(cmp, tmp_path / "merged", log_to_parent=False)
    assert "| gcpo | 2 | 0.300 ± 0.141 |" in merged["markdown"].read_text()
    assert merged["curves"].stat().st_size > 0


def test_merge_refuses_duplicates_other_metrics_and_missing_reports(tmp_path):
    a = report(tmp_path, "a", [("gcpo", "0", 0.2, 0.5)])
    again = report(tmp_path, "again", [("gcpo", "0", 0.3, 0.5)])
    with pytest.raises(ValueError, match="arm 'gcpo' seed 0 is in both .*a and .*again"):
        load_reports([a, again])
    other = report(tmp_path, "other", [("grpo", "0", 0.2, 0.5)], metric="reward/accuracy")
    with pytest.raises(ValueError, match="compares reward/accuracy"):
        load_reports([a, other])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=f"empty holds no report \\({REPORT_META} missing"):
        load_reports([tmp_path / "empty"])
    with pytest.raises(ValueError, match="no reports"):
        load_reports([])


def test_gcpo_compare_merges_report_folders(tmp_path, capsys):
    from gcpo.cli import main

    a = report(tmp_path, "a", [("gcpo", "0", 0.2, 0.5)])
    b = report(tmp_path, "b", [("grpo", "0", 0.0, 0.0)])
    assert main(["compare", "--reports", str(a), str(b), "--out", str(tmp_path / "both")]) == 0
    printed = capsys.readouterr().out
    assert "experiment 'both'" in printed and "gcpo" in printed and "grpo" in printed
    assert len(pd.read_csv(tmp_path / "both" / "runs.csv")) == 2
    assert main(["compare", "--reports", str(a), str(a), "--out", str(tmp_path / "twice")]) == 2
    assert "arm 'gcpo' seed 0 is in both" in capsys.readouterr().out
