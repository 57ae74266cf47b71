"""`gcpo study plan/run/report` end to end on the tiny model (the smoke settings of benchmarks/paper_claims.py):
two arms x two seeds, stopped after the first seed's pieces and resumed, with nothing trained twice; a second
claim of the same two runs reuses them (`gcpo.studies.reuse`) and trains nothing."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from gcpo.commands import build_parser

ROOT = Path(__file__).resolve().parents[2]
STUDY = """
name: tiny_study
description: the tiny model, one step
steps: 1
eval_every: 1
seeds: [0, 1]
target_difference: 0.5
budget_hours: 1
claims:
  methods:
    reference: grpo
    arms:
      grpo: {preset: grpo}
      gcpo: {preset: gcpo}
  again:
    description: the same two runs under another claim (reused, never trained)
    arms:
      grpo: {preset: grpo}
      gcpo: {preset: gcpo}
"""


def paper_claims_smoke() -> list[str]:
    """The smoke settings of benchmarks/paper_claims.py: the tiny model, 1 step, 2 held-out items."""
    spec = importlib.util.spec_from_file_location("paper_claims", ROOT / "benchmarks" / "paper_claims.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.SMOKE)


def smoke_overrides() -> list[str]:
    return [o for o in paper_claims_smoke() if not o.startswith(("trainer.steps", "trainer.eval_every"))]


def study_command(*argv) -> int:
    from gcpo.commands import study_cmd

    return study_cmd.run(build_parser().parse_args(["study", *map(str, argv)]))


@pytest.mark.integration
def test_a_tiny_study_plans_runs_resumes_and_reports(tmp_path, ray_local, mlflow_server, capsys):
    from gcpo.studies.runner import load_state, pieces, run_pieces
    from gcpo.studies.study_file import load_study

    path = tmp_path / "tiny.yaml"
    path.write_text(STUDY)
    out, overrides = tmp_path / "study", [*smoke_overrides(), f"tracking.uri={mlflow_server}"]
    options = {"out": out, "overrides": overrides, "base": tmp_path, "tag": "", "keep_checkpoints": "none"}
    study = load_study(path)
    first = pieces(study)[:2]  # a study stopped after its first seed: every arm at seed 0
    assert [p["name"] for p in first] == ["grpo_s0", "gcpo_s0"]
    assert run_pieces(study, first, options, load_state(out)) == 0
    before = pd.read_csv(out / "pieces" / "methods" / "grpo_s0" / "runs.csv")
    capsys.readouterr()
    argv = [path, *overrides, "--out", out, "--base", tmp_path]
    assert study_command("run", *argv) == 0  # resumed: only seed 1 trains
    text = capsys.readouterr().out
    # seed 0 of `again` is reused before anything trains, seed 1 once `methods` has trained it
    assert "[study] again: gcpo, seed 0 reused from methods/gcpo_s0 (the same run config)" in text
    assert "4 of 8 pieces done; 4 to run" in text and "[study] 6/8 done (methods: gcpo, seed 1" in text
    assert "for 2 more (0 to train)" in text and "[study] again: grpo, seed 1 reused from methods/grpo_s1" in text
    assert "methods: 4 of 4 pieces done" in text and "again: 4 of 4 pieces done" in text
    assert len(list((tmp_path / "runs").rglob("gcpo_config.yaml"))) == 4  # one trial per run, none twice
    again = pd.read_csv(out / "again" / "runs.csv")
    assert sorted(again["run_id"]) == sorted(pd.read_csv(out / "methods" / "runs.csv")["run_id"])
    pd.testing.assert_frame_equal(pd.read_csv(out / "pieces" / "methods" / "grpo_s0" / "runs.csv"), before)
    runs = pd.read_csv(out / "methods" / "runs.csv")
    assert sorted(zip(runs["arm"], runs["seed"])) == [("gcpo", 0), ("gcpo", 1), ("grpo", 0), ("grpo", 1)]
    for name in ("report.md", "arms.csv", "comparisons.csv", "methods/learning_curves.png"):
        assert (out / name).stat().st_size > 0, name
    table = pd.read_csv(out / "comparisons.csv")
    assert list(table["comparison"]) == ["gcpo - grpo"] * 2 and table["seeds"].iloc[0] == 2
    assert table["estimate"].iloc[0] == table["estimate"].iloc[1]  # one pair of runs, two claims
    assert "4 pieces were not trained" in (out / "report.md").read_text()
    assert table["items"].iloc[0] == 2  # per-item results: the intervals are over seeds and items
    assert study_command("plan", path, *overrides, "--out", out) == 0
    plan = capsys.readouterr().out
    assert "methods: 1 comparisons, 2 seeds x 2 items (4 trials" in plan
    assert "total: 8 trials (4 reuse another trial's run: 4 to train)" in plan
    assert "its comparisons, from the claim's own arms" in plan and "the metric (grpo): sd seed" in plan
    assert load_state(out)["pieces"]["methods/gcpo_s1"]["wall_s"] > 0
    assert len(load_state(out)["version"]["gcpo_source"]) == 64  # recorded by the first `run`
    capsys.readouterr()
    assert study_command("run", *argv) == 0  # everything done: nothing trains
    assert "8 of 8 pieces done; 0 to run" in capsys.readouterr().out
    assert len(list((tmp_path / "runs").rglob("gcpo_config.yaml"))) == 4
