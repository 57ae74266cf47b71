"""The study issue's study, `studies/warm_claims.yaml`, on the tiny model, so that it cannot rot: its regime
(configs/study.yaml) with the tiny model's sizes, four of its pieces at seed 0 through real Ray, Ray Train,
DeepSpeed and a real MLflow server. Two train (rivals' gcpo, imitation's ga_sft); two are runs of rivals' gcpo
(imitation's reference and the ablation cell at the sequence ratio without KL) and are reused, never trained.
The report and the README's blocks are written from them as for the real study."""

import json
from pathlib import Path

import pandas as pd
import pytest

from .test_study_end_to_end import paper_claims_smoke, study_command

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "studies" / "warm_claims.yaml"
CELL = "golden_answers=True_kl_coef=0_ratio_level=sequence_s0"


@pytest.mark.integration
def test_the_warm_claims_study_runs_on_the_tiny_model(tmp_path, ray_local, mlflow_server, capsys):
    from gcpo.studies.runner import load_state, pieces, run_pieces
    from gcpo.studies.study_file import load_study

    study = load_study(STUDY)
    chosen = [p for p in pieces(study) if p["seed"] == 0 and (
        (p["claim"], p["arm"]) in {("rivals", "gcpo"), ("imitation", "gcpo"), ("imitation", "ga_sft")}
        or (p["claim"] == "ablation" and p["name"] == CELL))]
    assert len(chosen) == 4
    out, overrides = tmp_path / "study", [*paper_claims_smoke(), f"tracking.uri={mlflow_server}"]
    options = {"out": out, "overrides": overrides, "base": tmp_path, "tag": "", "keep_checkpoints": "none"}
    assert run_pieces(study, chosen, options, load_state(out)) == 0
    text = capsys.readouterr().out
    assert "[study] imitation: gcpo, seed 0 reused from rivals/gcpo_s0 (the same run config)" in text
    assert "[study] ablation: golden_answers=True, kl_coef=0, ratio_level=sequence, seed 0 reused from " \
           "rivals/gcpo_s0" in text
    assert len(list((tmp_path / "runs").rglob("gcpo_config.yaml"))) == 2  # only two runs trained
    assert not [p for p in (tmp_path / "runs").rglob("checkpoint_*") if p.is_dir()]  # a study keeps metrics
    state = load_state(out)
    assert set(state["pieces"]) == {"rivals/gcpo_s0", "imitation/ga_sft_s0"}  # the trained ones, timed
    assert all(piece["wall_s"] > 0 and piece["failed"] == 0 for piece in state["pieces"].values())
    pieces_dir = out / "pieces"
    reused = json.loads((pieces_dir / "ablation" / CELL / "reused.json").read_text())
    assert reused["from"] == "rivals/gcpo_s0"
    source = pd.read_csv(pieces_dir / "rivals" / "gcpo_s0" / "runs.csv")
    assert list(pd.read_csv(pieces_dir / "imitation" / "gcpo_s0" / "runs.csv")["run_id"]) == list(source["run_id"])
    # the tiny model is all wrong: golden answers reach every group of gcpo (injected) and ga_sft (imitated)
    imitation = pd.read_csv(out / "imitation" / "runs.csv").set_index("arm")
    assert imitation.loc["gcpo", "golden_share"] == 1.0 and imitation.loc["ga_sft", "golden_share"] == 1.0
    assert imitation["length"].notna().all() and imitation["entropy"].notna().all()
    readme = tmp_path / "README.md"
    readme.write_text("".join(f"<!-- study warm_claims/{c} -->\n<!-- /study -->\n" for c in study.claims))
    capsys.readouterr()
    assert study_command("report", STUDY, *overrides, "--out", out, "--readme", readme) == 0
    assert "4 of 45 planned pieces done" in (out / "report.md").read_text()
    blocks = readme.read_text()
    assert "| gcpo (reference) | " in blocks and "| ga_sft - gcpo | " in blocks and "| gcpo | " in blocks
    assert "| golden_answers=True, kl_coef=0, ratio_level=sequence | " in blocks
    for name in ("arms.csv", "comparisons.csv", "rivals/learning_curves.png", "imitation/learning_curves.png"):
        assert (out / name).stat().st_size > 0, name
