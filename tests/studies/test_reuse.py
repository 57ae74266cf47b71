"""A study never pays twice for one run (`gcpo.studies.reuse`): which configs count as one run, and a piece equal
to a finished one written from its runs (on a committed piece of the evidence study; nothing trains)."""

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import yaml

from gcpo.config import load_config
from gcpo.studies.report import cost_lines
from gcpo.studies.reuse import (REUSED_FILE, Pool, piece_fingerprints, reuse_pending, reused_records,
                                run_fingerprint, runs_to_train)
from gcpo.studies.layout import is_done, piece_dir
from gcpo.studies.runner import pieces, run_pieces
from gcpo.studies.study_file import load_study
from gcpo.sweeps.compare import load_reports

from .test_runner import run_command

ROOT = Path(__file__).resolve().parents[2]
PIECE = ROOT / "benchmarks" / "results" / "paper_claims" / "pieces" / "methods" / "gcpo_s0"
SEQUENCE_CELL = "golden_answers=True, ratio_level=sequence"


def fingerprint(*overrides: str) -> str:
    pairs = (o.split("=", 1) for o in overrides)
    return run_fingerprint(load_config(overrides={key: yaml.safe_load(value) for key, value in pairs}))


def test_the_fingerprint_leaves_out_only_what_cannot_change_a_run():
    gcpo = fingerprint("preset=gcpo")  # the sequence ratio: its own clip range
    assert load_config(overrides={"preset": "gcpo"}).algorithm.ratio_level == "sequence"
    assert fingerprint("preset=gcpo", "algorithm.clip_high=0.28", "algorithm.clip_low=0.1") == gcpo
    assert fingerprint("preset=gcpo", "tracking.experiment=elsewhere") == gcpo
    for change in ("algorithm.clip_high_sequence=0.001", "trainer.seed=1", "trainer.lr=2e-5",
                   "algorithm.golden_answers=false", "algorithm.ratio_level=token"):
        assert fingerprint("preset=gcpo", change) != gcpo, change
    token = fingerprint("preset=grpo")
    assert fingerprint("preset=grpo", "algorithm.clip_high_sequence=0.001") == token
    assert fingerprint("preset=grpo", "algorithm.clip_high=0.28") != token


def test_nine_pieces_of_the_warm_claims_study_are_runs_of_others(tmp_path):
    """rivals' gcpo is imitation's reference and, at the sequence ratio without KL, an ablation cell; rivals'
    gcpo without golden answers is another: 9 of the 45 pieces train nothing."""
    study = load_study(ROOT / "studies" / "warm_claims.yaml")
    todo = pieces(study)
    prints = piece_fingerprints(study, todo, [])
    groups: dict[str, list[str]] = {}
    for key, value in prints.items():
        groups.setdefault(value, []).append(key)
    shared = sorted(sorted(g) for g in groups.values() if len(g) > 1)
    assert len(groups) == 36 and len(shared) == 6
    assert shared[0] == ["ablation/golden_answers=False_kl_coef=0_ratio_level=sequence_s0", "rivals/gcpo_no_golden_s0"]
    assert ["ablation/golden_answers=True_kl_coef=0_ratio_level=sequence_s2", "imitation/gcpo_s2",
            "rivals/gcpo_s2"] in shared


def two_claim_study(tmp_path: Path) -> Path:
    """Claim `a` (named arms) holds gcpo; claim `b` (a grid) holds gcpo's run as its sequence cell."""
    base = os.path.relpath(ROOT / "configs" / "study.yaml", tmp_path)
    path = tmp_path / "two.yaml"
    path.write_text(f"""name: two
base_config: {base}
steps: 20
eval_every: 10
seeds: [0]
claims:
  a:
    arms:
      grpo: {{preset: grpo}}
      gcpo: {{preset: gcpo}}
  b:
    base: {{preset: gcpo, algorithm.clip_low: 0.2, algorithm.clip_high: 0.28}}
    factors:
      algorithm.golden_answers: [true, false]
      algorithm.ratio_level: [token, sequence]
""")
    return path


def test_a_piece_equal_to_a_finished_one_is_written_from_its_runs(tmp_path, capsys):
    study = load_study(two_claim_study(tmp_path))
    out = tmp_path / "out"
    todo = pieces(study)
    source = next(p for p in todo if (p["claim"], p["arm"]) == ("a", "gcpo"))
    shutil.copytree(PIECE, piece_dir(out, source))  # a finished piece (the evidence study's gcpo, seed 0)
    prints = piece_fingerprints(study, todo, [])
    assert runs_to_train(todo, prints, out) == 4  # 6 pieces, 5 runs (b's sequence cell is a's gcpo), 1 done
    written = reuse_pending(study, [Pool(out, todo, prints)])
    assert runs_to_train(todo, prints, out) == 4
    assert [(p["claim"], p["arm"], s["arm"]) for p, s in written] == [("b", SEQUENCE_CELL, "gcpo")]
    line = "[study] b: golden_answers=True, ratio_level=sequence, seed 0 reused from a/gcpo_s0"
    assert line in capsys.readouterr().out
    target = piece_dir(out, written[0][0])
    old, new = pd.read_csv(PIECE / "runs.csv"), pd.read_csv(target / "runs.csv")
    assert list(new["arm"]) == [SEQUENCE_CELL] and list(new["run_id"]) == list(old["run_id"])
    assert list(new.columns[:7]) == ["arm", "seed", "run_id", "run_name", "status", "algorithm.golden_answers",
                                     "algorithm.ratio_level"]
    assert bool(new["algorithm.golden_answers"][0]) and new["algorithm.ratio_level"][0] == "sequence"
    assert new["final"][0] == old["final"][0]
    curves = pd.read_csv(target / "curves.csv")
    assert set(curves["arm"]) == {SEQUENCE_CELL} and len(curves) == len(pd.read_csv(PIECE / "curves.csv"))
    assert json.loads((target / "comparison.json").read_text())["keys"] == ["algorithm.golden_answers",
                                                                            "algorithm.ratio_level"]
    record = json.loads((target / REUSED_FILE).read_text())
    assert record["from"] == "a/gcpo_s0" and record["study"] is None and record["run_ids"] == list(old["run_id"])
    assert reused_records(out) == {f"b/{target.name}": record}
    assert load_reports([target]).arms["arm"].tolist() == [SEQUENCE_CELL]
    assert "| b/golden_answers=True_ratio_level=sequence_s0 | a/gcpo_s0 |" in cost_lines({"pieces": {}},
                                                                                            reused_records(out))
    assert not [p for p in todo if p is not written[0][0] and p is not source and is_done(out, p)]
    assert reuse_pending(study, [Pool(out, todo, prints)]) == []  # nothing more; a reused piece is never a source


def test_a_finished_piece_read_with_another_metric_is_not_reused(tmp_path):
    path = two_claim_study(tmp_path)
    path.write_text(path.read_text().replace("  b:\n", "  b:\n    metric: eval/basic_arithmetic/format_rate\n"))
    study = load_study(path)
    out, todo = tmp_path / "out", pieces(study)
    shutil.copytree(PIECE, piece_dir(out, todo[1]))  # a's gcpo, its report reading pass@1
    assert todo[1]["arm"] == "gcpo" and study.claims["b"].metric.endswith("format_rate")
    assert reuse_pending(study, [Pool(out, todo, piece_fingerprints(study, todo, []))]) == []


def test_running_the_study_reuses_instead_of_training(tmp_path, capsys):
    """run_pieces on the finished piece and its equal trains nothing (there is no Ray here to train with)."""
    study = load_study(two_claim_study(tmp_path))
    out = tmp_path / "out"
    todo = [p for p in pieces(study) if p["arm"] in ("gcpo", SEQUENCE_CELL)]
    shutil.copytree(PIECE, piece_dir(out, todo[0]))
    state = {"pieces": {}, "looks": []}
    options = {"out": out, "overrides": [], "base": tmp_path, "tag": "", "keep_checkpoints": "none"}
    assert run_pieces(study, todo, options, state) == 0
    text = capsys.readouterr().out
    assert "reused from a/gcpo_s0" in text and "2 of 2 pieces done; 0 to run" in text
    assert state["pieces"] == {} and (out / "b" / "runs.csv").exists()  # the claim's merged report


def test_runs_of_another_study_folder_are_reused_at_its_version_only(tmp_path, capsys):
    """`gcpo study reuse --reuse-from STUDY.yaml DIR`: a piece of this study equal to one finished in another
    study's folder is written from it, if that folder's runs are of this study's code version."""
    first = two_claim_study(tmp_path)
    done = tmp_path / "first"
    source = next(p for p in pieces(load_study(first)) if p["arm"] == "gcpo")
    shutil.copytree(PIECE, piece_dir(done, source))
    version = {"gcpo_source": "abc", "torch": "t", "transformers": "x", "vllm": "v", "dtype": "float32"}
    (done / "study.json").write_text(json.dumps({"pieces": {}, "version": version}))
    second = tmp_path / "second.yaml"
    second.write_text(first.read_text().replace("name: two", "name: second").replace(
        "  a:\n    arms:\n      grpo: {preset: grpo}\n      gcpo: {preset: gcpo}\n", "").replace("\n  b:", "\n  c:"))
    out = tmp_path / "out"
    assert run_command("status", second, "--out", out) == 0  # status counts the runs the other folder holds
    assert "\n4 planned pieces to run\n" in capsys.readouterr().out + "\n"
    assert run_command("status", second, "--out", out, "--reuse-from", first, done) == 0
    assert "4 planned pieces to run (3 runs to train, the others reuse them)" in capsys.readouterr().out
    assert run_command("reuse", second, "--out", out, "--reuse-from", first, done) == 0
    text = capsys.readouterr().out
    assert "[study] c: golden_answers=True, ratio_level=sequence, seed 0 reused from two: a/gcpo_s0" in text
    assert "1 piece(s) written" in text
    (record,) = reused_records(out).values()
    assert record["study"] == "two" and record["from"] == "a/gcpo_s0"
    assert "| two: a/gcpo_s0 |" in cost_lines({"pieces": {}}, reused_records(out))  # the other study named
    assert json.loads((out / "study.json").read_text())["version"] == version  # its runs' version is now its own
    # this study at another version: refused, naming what differs
    state = json.loads((out / "study.json").read_text())
    state["version"] = version | {"gcpo_source": "def"}
    (out / "study.json").write_text(json.dumps(state))
    assert run_command("reuse", second, "--out", out, "--reuse-from", first, done) == 2
    assert "its runs ran with another code version or dtype (gcpo_source: theirs abc, this study's def)" in \
        capsys.readouterr().out
