"""The README's study blocks (`gcpo.studies.summary`, `gcpo study report --readme`): rendered from the report's
CSVs, written only between their markers, and the committed README's blocks equal to the committed report's."""

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from gcpo.studies.study_file import load_study
from gcpo.studies.summary import arm_measures, claim_block, read_blocks, study_blocks, update_blocks

from .test_runner import run_command

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
OLD = RESULTS / "paper_claims"

ARMS = pd.DataFrame([
    {"claim": "c", "arm": "grpo", "estimate": 0.37666, "low": 0.3216, "high": 0.4318, "seeds": 3, "items": 300},
    {"claim": "c", "arm": "gcpo", "estimate": 0.4, "low": math.nan, "high": math.nan, "seeds": 1, "items": 300}])
COMPARISONS = pd.DataFrame([
    {"claim": "c", "comparison": "gcpo - grpo", "estimate": 0.02333, "low": -0.0412, "high": 0.0876,
     "words": "too wide to tell gcpo from grpo", "seeds_needed": 23.0},
    {"claim": "c", "comparison": "gcpo_sft - grpo", "estimate": 0.01, "low": math.nan, "high": math.nan,
     "words": "no verdict", "seeds_needed": math.nan},
    {"claim": "c", "comparison": "ga_sft - grpo", "estimate": 0.01, "low": -0.2, "high": 0.2,
     "words": "too wide to tell ga_sft from grpo", "seeds_needed": math.inf}])


def test_a_claim_block_is_the_reports_rows_in_two_tables():
    assert claim_block(ARMS, COMPARISONS, "grpo") == "\n".join([
        "| arm | mean | 95% interval | seeds x items |", "|---|---|---|---|",
        "| grpo (reference) | 0.377 | [0.322, 0.432] | 3 x 300 |",
        "| gcpo | 0.400 | - | 1 x 300 |",
        "",
        "| comparison | difference | Holm-adjusted interval | verdict | seeds for the target |", "|---|---|---|---|---|",
        "| gcpo - grpo | +0.023 | [-0.041, 0.088] | too wide to tell gcpo from grpo | 23 |",
        "| gcpo_sft - grpo | +0.010 | - | no verdict | - |",
        "| ga_sft - grpo | +0.010 | [-0.200, 0.200] | too wide to tell ga_sft from grpo | more items |"])
    runs = pd.DataFrame({"arm": ["grpo", "grpo", "gcpo"], "length": [20.0, 22.0, 30.5], "entropy": [0.1, 0.2, 0.05]})
    runs["run_id"] = ["a", "b", "c"]
    curves = pd.DataFrame({"run_id": ["a", "a", "b", "b", "c", "c", "c"], "arm": ["grpo"] * 4 + ["gcpo"] * 3,
                           "key": ["batch/samples"] * 3 + ["time/step_s"] + ["batch/samples"] * 3,
                           "value": [32.0, 32.0, 40.0, 9.0, 32.0, 32.0, 64.0]})
    with_measures = claim_block(ARMS, COMPARISONS, "grpo", arm_measures(runs, curves)).split("\n")
    assert with_measures[:4] == [
        "| arm | mean | 95% interval | seeds x items | samples drawn | response length | entropy |",
        "|---|---|---|---|---|---|---|",  # samples: each run's sum over its steps, then the mean over the arm's runs
        "| grpo (reference) | 0.377 | [0.322, 0.432] | 3 x 300 | 52 | 21.0 | 0.150 |",
        "| gcpo | 0.400 | - | 1 x 300 | 128 | 30.5 | 0.050 |"]
    assert list(arm_measures(runs).columns) == ["length", "entropy"]  # no curves: no samples column
    blocks = study_blocks(ARMS, COMPARISONS, {"c": "grpo", "later": "grpo"})
    assert blocks["later"] == "No finished piece yet." and blocks["c"] == claim_block(ARMS, COMPARISONS, "grpo")
    assert study_blocks(ARMS.iloc[:0], COMPARISONS.iloc[:0], {"c": "grpo"}) == {"c": "No finished piece yet."}


def test_only_the_marked_blocks_of_the_study_are_rewritten():
    text = "\n".join(["intro", "<!-- study s/c -->", "old numbers", "<!-- /study -->", "between",
                      "<!-- study other/c -->", "theirs", "<!-- /study -->", "end"])
    new, written = update_blocks(text, "s", {"c": "new\nnumbers"})
    assert written == ["c"]
    assert new == "\n".join(["intro", "<!-- study s/c -->", "new", "numbers", "<!-- /study -->", "between",
                             "<!-- study other/c -->", "theirs", "<!-- /study -->", "end"])
    assert update_blocks(new, "s", {"c": "new\nnumbers"}) == (new, ["c"])  # idempotent
    assert update_blocks("no markers", "s", {"c": "x"}) == ("no markers", [])
    with pytest.raises(ValueError, match=r"line 2: .*claim 'c' has no <!-- /study --> line"):
        update_blocks("intro\n<!-- study s/c -->\nold", "s", {"c": "x"})
    with pytest.raises(ValueError, match=r"line 1: study s has no claim 'd' \(its claims: c\)"):
        update_blocks("<!-- study s/d -->\n<!-- /study -->", "s", {"c": "x"})


def test_report_readme_rewrites_a_documents_blocks(tmp_path, capsys):
    out = tmp_path / "study"
    shutil.copytree(OLD / "pieces", out / "pieces")
    shutil.copy(OLD / "study.json", out / "study.json")
    readme = tmp_path / "README.md"
    readme.write_text("# Results\n\n<!-- study paper_claims/methods -->\nstale\n<!-- /study -->\n\nmore prose\n")
    assert run_command("report", ROOT / "studies" / "paper_claims.yaml", "--out", out, "--readme", readme) == 0
    assert f"{readme}: the blocks of methods rewritten from the report" in capsys.readouterr().out
    text = readme.read_text()
    assert "stale" not in text and text.endswith("<!-- /study -->\n\nmore prose\n")
    assert "| grpo (reference) | " in text and "| gcpo - grpo | " in text
    gcpo = pd.read_csv(out / "arms.csv").set_index(["claim", "arm"]).loc[("methods", "gcpo")]
    length = pd.read_csv(out / "methods" / "runs.csv").groupby("arm")["length"].mean()["gcpo"]
    assert f"| gcpo | {gcpo['estimate']:.3f} | [{gcpo['low']:.3f}, {gcpo['high']:.3f}] | {gcpo['seeds']} x " \
           f"{gcpo['items']} | {length:.1f} | " in text
    # a FILE that cannot be written is refused before anything runs, naming it and why
    before = (out / "report.md").stat().st_mtime
    readme.write_text("nothing marked\n")
    for action, expected in (("report", "it marks no block <!-- study paper_claims/CLAIM -->"),
                             ("run", "it marks no block"), ("status", "--readme applies to run and report")):
        assert run_command(action, ROOT / "studies" / "paper_claims.yaml", "--out", out, "--readme", readme) == 2
        assert expected in capsys.readouterr().out
    readme.write_text("<!-- study paper_claims/methods -->\nno end\n")
    assert run_command("run", ROOT / "studies" / "paper_claims.yaml", "--out", out, "--readme", readme) == 2
    assert "line 1: the block of study paper_claims, claim 'methods' has no <!-- /study --> line" in \
        capsys.readouterr().out
    assert run_command("report", ROOT / "studies" / "paper_claims.yaml", "--out", out, "--readme",
                       tmp_path / "missing.md") == 2
    assert "missing.md: [Errno 2] No such file or directory" in capsys.readouterr().out
    assert (out / "report.md").stat().st_mtime == before  # nothing was written


@pytest.mark.parametrize("name", ["warm_claims", "warm_golden_uses"])
def test_the_readme_quotes_the_committed_study_report(name):
    """Every block the README marks for the study is what its committed arms.csv and comparisons.csv give (rerun
    `gcpo study report studies/NAME.yaml --out benchmarks/results/NAME --readme README.md`), and it marks every
    claim of the study."""
    study = load_study(ROOT / "studies" / f"{name}.yaml")
    blocks = read_blocks(RESULTS / name, {claim: c.reference for claim, c in study.claims.items()})
    readme = (ROOT / "README.md").read_text()
    assert update_blocks(readme, study.name, blocks) == (readme, list(study.claims))
