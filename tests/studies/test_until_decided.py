"""`gcpo study run --until-decided`'s loop: look after look until every comparison is decided, the budget would be
passed, or the looks run out. The pieces are stand-ins (a committed piece report with its arm, seed and final
value rewritten: seeds-only results), so the loop's decisions are tested without training; the merged reports'
plots are not drawn."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from gcpo.studies import runner
from gcpo.studies.study_file import load_study

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "benchmarks" / "results" / "paper_claims" / "pieces" / "methods" / "gcpo_s0"
STUDY = """
name: looks
seeds: [0, 1, 2]
target_difference: {target}
budget_hours: {budget}
until_decided: {{looks: 3, seeds_per_round: 2}}
claims:
  methods:
    reference: grpo
    arms:
      grpo: {{preset: grpo}}
      gcpo: {{preset: gcpo}}
"""


def fake_pieces(monkeypatch, truth: dict[str, float], wall_s: float = 60.0) -> list[str]:
    """Replace training: each piece's report is the template's with the arm's true value plus seed noise."""
    ran = []

    def run_piece(study, piece, overrides, out, base, tag, keep_checkpoints):
        folder = runner.piece_dir(out, piece)
        shutil.copytree(TEMPLATE, folder)
        noise = np.random.default_rng([piece["seed"], *map(ord, piece["arm"])]).normal(0, 0.02)
        for name in ("runs.csv", "curves.csv"):
            frame = pd.read_csv(folder / name).assign(arm=piece["arm"], seed=piece["seed"])
            if name == "runs.csv":
                frame = frame.assign(final=truth[piece["arm"]] + noise)
            frame.to_csv(folder / name, index=False)
        ran.append(piece["name"])
        return {"wall_s": wall_s, "failed": 0, "experiment": "x", "parent_run_id": "y"}

    monkeypatch.setattr(runner, "run_piece", run_piece)
    # the merged claim's report folder (plots) is `gcpo compare`'s, tested there; the loop needs its comparison
    monkeypatch.setattr("gcpo.sweeps.compare.write_report", lambda *args, **kwargs: {})
    return ran


def run(tmp_path, truth, monkeypatch, *, target=0.05, budget=10, wall_s=60.0):
    path = tmp_path / "looks.yaml"
    path.write_text(STUDY.format(target=target, budget=budget))
    ran = fake_pieces(monkeypatch, truth, wall_s)
    options = {"out": tmp_path / "out", "overrides": [], "base": tmp_path, "tag": "", "keep_checkpoints": "none",
               "until_decided": True}
    assert runner.run_study(load_study(path), options) == 0
    return ran, runner.load_state(tmp_path / "out")["looks"]


def test_a_clear_difference_stops_at_the_first_look(tmp_path, monkeypatch, capsys):
    ran, looks = run(tmp_path, {"grpo": 0.1, "gcpo": 0.6}, monkeypatch)
    assert sorted(ran) == sorted(f"{a}_s{s}" for a in ("grpo", "gcpo") for s in (0, 1, 2))
    assert looks == [{"look": 1, "pieces": 6, "decided": 1, "comparisons": 1}]
    assert "look 1: every comparison decided; stopping" in capsys.readouterr().out


def test_an_undecided_claim_gets_seeds_until_the_last_look(tmp_path, monkeypatch, capsys):
    ran, looks = run(tmp_path, {"grpo": 0.3, "gcpo": 0.3}, monkeypatch, target=0.001)
    assert [look["pieces"] for look in looks] == [6, 10, 14] and len(ran) == 14  # 3, 5, 7 seeds; none twice
    assert [p for p in ran[6:10]] == ["grpo_s3", "gcpo_s3", "grpo_s4", "gcpo_s4"]  # seed by seed
    assert "look 1 of 3: 1 comparisons undecided; adding seeds" in capsys.readouterr().out


def test_the_budget_stops_the_looks(tmp_path, monkeypatch, capsys):
    ran, looks = run(tmp_path, {"grpo": 0.3, "gcpo": 0.3}, monkeypatch, target=0.001, budget=0.2, wall_s=100.0)
    assert len(ran) == 6 and len(looks) == 1  # 600 s spent + 4 x 100 s > 0.2 h
    assert "the next look would pass the budget of 0.2 h" in capsys.readouterr().out


def test_status_after_the_looks(tmp_path, monkeypatch, capsys):
    run(tmp_path, {"grpo": 0.1, "gcpo": 0.6}, monkeypatch)
    from gcpo.commands import build_parser, study_cmd

    args = build_parser().parse_args(["study", "status", str(tmp_path / "looks.yaml"), "--out", str(tmp_path / "out")])
    assert study_cmd.run(args) == 0
    text = capsys.readouterr().out
    assert "methods: 6 of 6 pieces done" in text and "gcpo beats grpo by 0.5" in text
