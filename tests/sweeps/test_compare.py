"""Merging comparison reports (`load_reports`): a study run in pieces reads back as one comparison, its arms'
mean and std recomputed here by hand. Pure: no MLflow, the reports are written from hand-built comparisons."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from gcpo.sweeps.compare import REPORT_META, Comparison, load_reports, summarize_arms, write_report

METRIC = "eval/basic_arithmetic/pass_at_1"
OLD_PIECES = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "paper_claims" / "pieces" / "methods"


def report(tmp_path, name, rows, metric=METRIC, items=0, keys=()):
    """A report of `rows` (arm, seed, final, format); with `items`, each run's per-item results (its first
    round(final * items) items correct), and curve points of `keys` besides the metric."""
    runs = pd.DataFrame([{"arm": arm, "seed": seed, "run_id": f"{arm}-{seed}", "run_name": "r", "status": "FINISHED",
                          "arm_key": arm, "final": final, "best": final, "steps_to_target": math.nan,
                          "format": fmt, "reward": 0.0, "golden_share": 0.0, "step_s": 10.0, "length": 20.0,
                          "entropy": 1.0} for arm, seed, final, fmt in rows])
    curves = pd.DataFrame([{"run_id": f"{arm}-{seed}", "arm": arm, "seed": seed, "key": key, "step": step,
                            "value": final * step / 4} for arm, seed, final, _ in rows for key in (metric, *keys)
                           for step in (0, 2, 4)])
    per_item = pd.DataFrame([{"run_id": f"{arm}-{seed}", "arm": arm, "seed": seed, "step": 4,
                              "task": "basic_arithmetic", "index": i, "item_id": f"basic_arithmetic/{i}",
                              "correct": float(i < round(final * items)), "mean_at_k": 0.5, "format": fmt}
                             for arm, seed, final, fmt in rows for i in range(items)])
    cmp = Comparison(name, "", metric, "max", ["arm"], None, runs, summarize_arms(runs), curves, items=per_item)
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


def test_old_reports_merge_with_new_ones(tmp_path):
    """Reports written before curves.csv held every logged key and before items.csv (the evidence study's
    pieces, kept in the repository) merge with a new one: curve keys united, the old arms' intervals over seeds
    only (said in the notes), the new arm's over seeds and items."""
    old = sorted(OLD_PIECES.glob("gcpo_s*"))
    assert len(old) == 3 and not any((p / "items.csv").exists() for p in old)
    new = report(tmp_path, "new", [("fresh", "0", 0.5, 1.0), ("fresh", "1", 0.25, 1.0)], items=4,
                 keys=("kl/mean", "grad/norm"))
    merged = load_reports([*old, new], name="both")
    assert set(merged.curves["key"]) == {METRIC, "reward/mean", "kl/mean", "grad/norm"}
    assert len(merged.items) == 8 and set(merged.items["arm"]) == {"fresh"}
    intervals = merged.statistics().intervals.set_index("arm")
    assert intervals.loc["gcpo", "method"] == "seeds" and intervals.loc["fresh", "method"] == "seeds x items"
    assert intervals.loc["fresh", "estimate"] == pytest.approx(0.375)
    assert any(n.startswith(f"no per-item results for {METRIC}, intervals over seeds only") and n.endswith(": gcpo")
               for n in merged.statistics().notes)
    (difference,) = merged.statistics().differences.to_dict("records")  # against the best arm, on seeds 0, 1
    assert (difference["arm"], difference["baseline"], difference["method"], difference["seeds"]) == \
        ("gcpo", "fresh", "seeds", 2)
    written = write_report(merged, tmp_path / "both", log_to_parent=False)
    assert "note: merged from 4 reports" in written["table"].read_text()
