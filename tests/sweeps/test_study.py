"""The evidence study's driver (`benchmarks/paper_claims.py`, a wrapper of `gcpo study` on
`studies/paper_claims.yaml`): how its command line narrows the study. What it runs is `gcpo study`'s runner, which
tests/studies/test_study_end_to_end.py and tests/studies/test_warm_claims_tiny.py (the study issue's study on the
tiny model) run through real Ray, Ray Train, DeepSpeed and MLflow."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALL_ARMS = {"grpo", "dapo", "gpg", "gcpo", "gcpo_no_golden", "ga_sft"}
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
