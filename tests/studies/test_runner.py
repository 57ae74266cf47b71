"""The study's pieces (balanced order, looks), its progress line, and plan / report / status on the committed
pieces of the evidence study (benchmarks/results/paper_claims: seeds-only results, no training)."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from gcpo.commands import build_parser
from gcpo.studies.report import cost_lines
from gcpo.studies.runner import StudyVersionError, check_version, code_version, pieces, progress_line
from gcpo.studies.study_file import load_study

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "studies" / "paper_claims.yaml"
OLD = ROOT / "benchmarks" / "results" / "paper_claims"


def test_pieces_go_seed_by_seed_across_every_claims_arms():
    study = load_study(STUDY)
    todo = pieces(study)
    assert len(todo) == 6 * 3 + 8 * 1
    first = [(p["claim"], p["seed"]) for p in todo[:14]]
    assert first == [("methods", 0)] * 6 + [("ablation", 0)] * 8  # every arm at seed 0 before seed 1
    assert [p["seed"] for p in todo[14:]] == [1] * 6 + [2] * 6
    assert todo[0] == {"claim": "methods", "arm": "grpo", "seed": 0, "name": "grpo_s0", "only": {"arm": ["grpo"]}}
    grid = todo[6]
    assert grid["name"] == "golden_answers=True_kl_coef=0_ratio_level=token_s0"  # the old driver's piece names
    assert grid["only"] == {"algorithm.golden_answers": [True], "algorithm.kl_coef": [0.0],
                            "algorithm.ratio_level": ["token"]}
    later = pieces(study, 1)  # the second look: 2 more seeds for every claim
    assert later[:len(todo)] != todo and {p["seed"] for p in later if p["claim"] == "ablation"} == {0, 1, 2}
    assert len(later) == 6 * 5 + 8 * 3


def test_the_progress_line_carries_the_eta():
    piece = {"claim": "methods", "arm": "gcpo", "seed": 1}
    assert progress_line(5, 20, piece, 31.2, 31.0) == \
        "[study] 5/20 done (methods: gcpo, seed 1, 31s); ETA 7m45s for 15 more"
    assert progress_line(1, 2, piece, 3, None).endswith("ETA unknown for 1 more")


def run_command(*argv) -> int:
    args = build_parser().parse_args(["study", *map(str, argv)])
    from gcpo.commands import study_cmd

    return study_cmd.run(args)


def test_plan_report_and_status_read_the_finished_pieces(tmp_path, capsys):
    out = tmp_path / "study"
    shutil.copytree(OLD / "pieces", out / "pieces")
    shutil.copy(OLD / "study.json", out / "study.json")
    assert run_command("plan", STUDY, "--out", out) == 0
    text = capsys.readouterr().out
    # the planned items are the regime's task.eval_size (configs/study.yaml: 300)
    assert "methods: 5 comparisons, 3 seeds x 300 items (18 trials" in text
    assert "detectable difference at the planned seeds: 0." in text and "for the target 0.050: " in text
    plan = pd.read_csv(out / "plan.csv").set_index("claim")
    assert plan.loc["methods", "seeds_needed"] > 3 and plan.loc["methods", "hours"] > 0
    # the pessimistic line: the pilot's seed share at its 80% upper bound detects less (a larger difference)
    assert plan.loc["methods", "mdd_seed_upper"] > plan.loc["methods", "mdd"]
    assert plan.loc["methods", "sd_seed_upper"] > plan.loc["methods", "sd_seed"]
    assert "if the seeds disagree more than the pilot's (its sd seed at the 80% upper bound, 0." in text
    assert run_command("report", STUDY, "--out", out) == 0
    assert "methods: 14 of 18 pieces done" in capsys.readouterr().out
    for name in ("report.md", "arms.csv", "comparisons.csv", "comparisons.png", "methods/learning_curves.png",
                 "methods/comparisons.png", "ablation/comparisons.png"):
        assert (out / name).stat().st_size > 0, name
    table = pd.read_csv(out / "comparisons.csv")
    assert len(table) == 5 + 7 and set(table["claim"]) == {"methods", "ablation"}
    report = (out / "report.md").read_text()
    assert "too wide to tell gcpo from grpo" in report
    assert "## Version and cost" in report and "| methods/grpo_s0 |" in report  # the old study.json's pieces
    shutil.rmtree(out / "spaces")  # written by plan
    assert run_command("status", STUDY, "--out", out) == 0
    text = capsys.readouterr().out
    assert "ablation: 4 of 8 pieces done" in text
    # 8 pieces left; the study's median piece x the runs they need (the evidence study: 2 of its 26 are reused)
    assert "\n8 planned pieces to run" in text and " h\n" in text
    assert not (out / "spaces").exists()  # status writes nothing


def test_every_piece_runs_with_one_code_version_and_dtype(tmp_path, capsys):
    """The first piece records the version; another source hash, library or dtype is refused before Ray starts,
    naming what differs and the commit to go on with."""
    state = {"pieces": {}}
    current = code_version("auto")
    assert current["dtype"] in ("float32", "bfloat16") and len(current["gcpo_source"]) == 64
    check_version(state, current)
    assert state["version"] == current
    check_version(state, dict(current, commit="another"))  # the commit is recorded, the source hash compared
    for key, value in (("gcpo_source", "0" * 64), ("dtype", "bfloat16" if current["dtype"] == "float32" else
                                                   "float32"), ("torch", "1.0")):
        with pytest.raises(StudyVersionError, match=f"{key}: the study's .*, now {value}"):
            check_version({"pieces": {}, "version": current}, dict(current, **{key: value}))
    out = tmp_path / "study"
    out.mkdir()
    old = dict(current, gcpo_source="0" * 64, commit="abc123")
    (out / "study.json").write_text(json.dumps({"pieces": {"methods/grpo_s0": {"wall_s": 60}}, "version": old}))
    assert run_command("run", STUDY, "--out", out) == 2
    text = capsys.readouterr().out
    assert "gcpo_source: the study's 000000000000" in text and "check out commit abc123" in text
    assert not (out / "pieces").exists()


def test_the_cost_table_names_each_pieces_time_and_machine():
    state = {"version": {"gcpo_source": "ab" * 32, "commit": "c0ffee", "torch": "2", "transformers": "5",
                         "vllm": "0", "dtype": "float32"},
             "pieces": {"methods/grpo_s0": {"wall_s": 690.0, "finished": "2026-12-07 13:00",
                                            "machine": {"cpus": 2, "processor": "AMD EPYC", "cpu_flags": "avx2"}},
                        "methods/gcpo_s0": {"wall_s": 30.0, "failed": 1}}}
    text = cost_lines(state)
    assert "gcpo source `abababababab` (commit `c0ffee`)" in text and "dtype float32" in text
    assert "| methods/grpo_s0 | 11.5 min | 2026-12-07 13:00 | 2 cores, AMD EPYC | avx2 |" in text
    assert "| methods/gcpo_s0 (failed) | 0.5 min | - |" in text and "Total: 0.20 h over 2 pieces." in text


def test_a_malformed_study_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("claims: {a: {arms: {x: {preset: grpo}, y: {preset: gcpo}}, refrence: x}}\n")
    assert run_command("status", bad, "--out", tmp_path) == 2
    assert "claims.a.refrence: unknown key; did you mean 'reference'?" in capsys.readouterr().out


@pytest.mark.integration
def test_the_notebook_renders_the_study_report(tmp_path):
    """notebooks/study_report.ipynb executed headless (a real Jupyter kernel) against the report `gcpo study report`
    writes from the committed pieces: the verdicts, the tables, the adjusted-interval figure, the curves."""
    import os

    import nbformat
    from nbclient import NotebookClient

    out = tmp_path / "study"
    shutil.copytree(OLD / "pieces", out / "pieces")
    shutil.copy(OLD / "study.json", out / "study.json")
    assert run_command("report", STUDY, "--out", out) == 0
    again = tmp_path / "again"  # a second study folder: the notebook renders every folder it is given
    shutil.copytree(out, again)
    nb = nbformat.read(ROOT / "notebooks" / "study_report.ipynb", as_version=4)
    os.environ["GCPO_STUDY_REPORT"] = os.pathsep.join([str(out), str(again), str(tmp_path / "not_run")])
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        del os.environ["GCPO_STUDY_REPORT"]
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    assert f"{out}: 2 claims" in text and f"{again}: 2 claims" in text and "not_run" not in text
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "no verdict on dapo vs grpo" in markdown and "**again: methods**" in markdown
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "entropy_mean" in html and "length_mean" in html  # each claim's length and entropy by arm
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2 * (1 + 2)  # per study, the adjusted intervals and each claim's learning curves


def test_an_interrupted_pieces_sweep_is_set_aside_so_the_next_run_starts_it_afresh(tmp_path, capsys):
    from gcpo.studies.runner import set_aside

    sweep = tmp_path / "sweeps" / "warm_claims-ablation_x_s2"
    (sweep / "tune").mkdir(parents=True)
    (sweep / "sweep.json").write_text("{}")
    aside = set_aside(sweep)
    assert not sweep.exists() and (aside / "sweep.json").exists() and aside.parent == sweep.parent
    assert aside.name.startswith("warm_claims-ablation_x_s2.interrupted-")
    assert "starts afresh" in capsys.readouterr().out


def test_report_and_status_name_a_piece_whose_run_did_not_finish(tmp_path, capsys):
    out = tmp_path / "study"
    shutil.copytree(OLD / "pieces", out / "pieces")
    shutil.copy(OLD / "study.json", out / "study.json")
    runs = out / "pieces" / "methods" / "grpo_s0" / "runs.csv"
    table = pd.read_csv(runs)
    table["status"] = "KILLED"  # what an interrupted trial taken for a finished one left (warm_claims, 2026-12-07)
    table.to_csv(runs, index=False)
    from gcpo.studies.report import suspect_pieces

    assert suspect_pieces(out) == {"methods/grpo_s0": ["KILLED"]}
    for action in ("report", "status"):
        assert run_command(action, STUDY, "--out", out) == 0
        text = capsys.readouterr().out
        assert ("suspect piece methods/grpo_s0: its run ended KILLED, not FINISHED (an interrupted trial?); "
                "delete pieces/methods/grpo_s0 to train it again") in text
    assert (out / "report.md").read_text().startswith("**suspect piece methods/grpo_s0")
