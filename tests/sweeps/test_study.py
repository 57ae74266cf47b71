"""The evidence study (`benchmarks/paper_claims.py`, a wrapper of `gcpo study` on `studies/paper_claims.yaml`) in
its smoke form on the tiny model, so the study that produces docs/results.md cannot rot: every method arm trains,
reaches MLflow on a real server, and the report (tables, CSVs, plots, study.json) is written."""

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
ALL_ARMS = {"grpo", "dapo", "gpg", "gcpo", "gcpo_no_golden", "ga_sft"}
# The smoke run trains the two arms whose golden answers reach the update in different ways (injected, imitated);
# an arm with none is the same code path with other values (tests/studies/test_study_end_to_end.py trains grpo),
# and the narrowing test covers that every arm is in the study. Each piece is a whole run (about 45 s here).
ARMS = {"gcpo", "ga_sft"}


def load_study():
    spec = importlib.util.spec_from_file_location("paper_claims", ROOT / "benchmarks" / "paper_claims.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_driver_narrows_the_study_file():
    study = load_study()
    from gcpo.studies.study_file import load_study as load

    full = study.select(load(study.STUDY), study.arguments([]))
    assert set(full.claims) == {"methods", "ablation"} and set(full.claims["methods"].arms) == ALL_ARMS
    assert full.claims["methods"].seeds == [0, 1, 2] and full.claims["ablation"].seeds == [0]
    smoke = study.select(load(study.STUDY), study.arguments(["--smoke", "--skip-ablation", "--arms", "ga_sft",
                                                              "gcpo", "grpo"]))
    assert list(smoke.claims) == ["methods"] and smoke.claims["methods"].arms == ["grpo", "gcpo", "ga_sft"]
    assert smoke.claims["methods"].seeds == [0] and smoke.claims["methods"].reference == "grpo"
    without = study.select(load(study.STUDY), study.arguments(["--smoke", "--arms", *sorted(ARMS)]))
    assert without.claims["methods"].reference == "gcpo"  # the reference not run: the first arm run instead"


@pytest.mark.integration
def test_smoke_study_writes_the_report(tmp_path, ray_local, mlflow_server, capsys):
    study = load_study()
    out = tmp_path / "results"
    argv = ["--smoke", "--skip-ablation", "--arms", *sorted(ARMS), "--out", str(out), "--base", str(tmp_path),
            f"tracking.uri={mlflow_server}"]
    assert study.main(argv) == 0
    report = out / "methods"
    assert sorted(p.name for p in (out / "pieces" / "methods").iterdir()) == sorted(f"{a}_s0" for a in ARMS)
    for name in ("table.txt", "table.md", "arms.csv", "runs.csv", "curves.csv", "learning_curves.png",
                 "effects.png"):
        assert (report / name).stat().st_size > 0, name
    runs = pd.read_csv(report / "runs.csv")
    assert set(runs["arm"]) == ARMS and len(runs) == len(ARMS)
    assert (runs["status"] == "FINISHED").all() and runs["final"].notna().all()
    assert runs["length"].notna().all() and runs["entropy"].notna().all()
    # golden answers reach the update only in gcpo (injected) and ga_sft (imitated); the tiny model is all wrong
    share = runs.set_index("arm")["golden_share"]
    assert share["gcpo"] == 1.0 and share["ga_sft"] == 1.0
    table = (report / "table.md").read_text()
    assert all(f"| {a} |" in table for a in ARMS)
    curves = pd.read_csv(report / "curves.csv")  # every arm's held-out curve has the evals at steps 0 and 1
    held_out = curves[curves["key"] == "eval/basic_arithmetic/pass_at_1"]
    assert {arm: sorted(g["step"]) for arm, g in held_out.groupby("arm")} == {a: [0, 1] for a in ARMS}
    summary = json.loads((out / "study.json").read_text())
    assert len(summary["pieces"]) == len(ARMS) and summary["machine"]["cpus"] >= 1
    assert all(p["failed"] == 0 and p["wall_s"] > 0 for p in summary["pieces"].values())
    # the study keeps metrics, not checkpoints (Ray Train's checkpoint_manager_snapshot.json files stay)
    assert not [p for p in (tmp_path / "runs").rglob("checkpoint_*") if p.is_dir()]
    assert len(list((tmp_path / "runs").rglob("gcpo_config.yaml"))) == len(ARMS)  # (its runs were there)
    # run again: every piece's report exists, so nothing trains and the merged report is rebuilt unchanged
    capsys.readouterr()
    assert study.main(argv) == 0
    assert f"{len(ARMS)} of {len(ARMS)} pieces done; 0 to run" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(report / "runs.csv"), runs)
