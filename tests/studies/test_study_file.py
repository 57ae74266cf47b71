"""Study files: the committed ones load, every malformed key fails by name with the file and the claim."""

from pathlib import Path

import pytest

from gcpo.studies.study_file import StudyError, load_study, look_seeds, max_trials

ROOT = Path(__file__).resolve().parents[2]
GOOD = """
name: tiny
base_config: {config}
steps: 2
eval_every: 1
seeds: [0, 1]
until_decided: {looks: 3, seeds_per_round: 2}
claims:
  methods:
    reference: gcpo
    arms:
      grpo: {preset: grpo}
      gcpo: {preset: gcpo}
  grid:
    base: {preset: gcpo}
    factors:
      algorithm.golden_answers: [true, false]
      algorithm.kl_coef: [0.0, 0.04]
    seeds: [5]
    target_difference: 0.1
"""


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text.replace("{config}", str(ROOT / "configs" / "study.yaml")))
    return path


def test_the_committed_studies_load():
    for path in sorted((ROOT / "studies").glob("*.yaml")):
        study = load_study(path)
        assert study.claims and all(c.reference == c.arms[0] for c in study.claims.values()), path


def test_a_study_file_compiles_to_claims(tmp_path):
    study = load_study(write(tmp_path, GOOD))
    methods, grid = study.claims["methods"], study.claims["grid"]
    assert methods.arms == ["gcpo", "grpo"] and methods.points["grpo"] == {"arm": "grpo"}
    assert methods.seeds == [0, 1] and methods.target_difference == 0.05 and methods.comparisons == 1
    assert grid.factorial and grid.comparisons == 3 and grid.seeds == [5] and grid.target_difference == 0.1
    assert grid.arms[0] == "golden_answers=True, kl_coef=0" and len(grid.arms) == 4
    assert grid.points[grid.arms[-1]] == {"algorithm.golden_answers": False, "algorithm.kl_coef": 0.04}
    assert methods.space["base"]["trainer.steps"] == 2 and methods.space["base"]["trainer.checkpoint_every"] == 1
    assert Path(methods.space["base_config"]).is_absolute() and grid.space["base"]["preset"] == "gcpo"
    assert study.looks == 3 and study.comparisons == 4
    assert look_seeds(grid, study) == [[5], [5, 6, 7], [5, 6, 7, 8, 9]]
    assert max_trials(study) == 2 * 6 + 4 * 5


@pytest.mark.parametrize("change, message", [
    (("seeds: [0, 1]", "seedz: [0, 1]"), r"study.yaml:6: seedz: unknown key; did you mean 'seeds'\?"),
    (("    reference: gcpo", "    reference: gcpo\n    arm: {}"),
     r"claim 'methods': claims.methods.arm: unknown key; did you mean 'arms'\?"),
    (("    reference: gcpo", "    reference: gpco"), r"claim 'methods': claims.methods.reference: 'gpco' is no arm"),
    (("grpo: {preset: grpo}", "grpo: {preset: grpo, algorithm.kl_cof: 0.1}"),
     r"claim 'methods': claims.methods: arms.grpo.algorithm.kl_cof: unknown config key; did you mean "
     r"'algorithm.kl_coef'\?"),
    (("[0.0, 0.04]", "[0.0, 0.04, 0.1]"), r"claims.grid.factors.algorithm.kl_coef: a factor has exactly two"),
    (("    base: {preset: gcpo}\n    factors:", "    base: {preset: gcpo}\n    arms: {a: {}}\n    factors:"),
     r"claims.grid: give either `arms:` \(named arms\) or `factors:`"),
    (("looks: 3", "looks: 0"), r"until_decided.looks: must be a number > 0"),
    (("  grid:", "  pieces:"), r"claim 'pieces': claims.pieces: a claim's name is a folder name"),
    (("target_difference: 0.1", "target_difference: -1"), r"claims.grid.target_difference: must be a number"),
])
def test_malformed_study_files_fail_by_name(tmp_path, change, message):
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(StudyError, match=message):
        load_study(write(tmp_path, text))


def test_every_claim_runs_at_the_studys_budget(tmp_path):
    """The evidence study's method arms and ablation grid share steps, evaluation schedule and held-out items."""
    from gcpo.studies.runner import space_file
    from gcpo.sweeps.space import load_space, trial_config

    study = load_study(ROOT / "studies" / "paper_claims.yaml")
    configs = [trial_config(load_space(space_file(tmp_path, claim)), {}) for claim in study.claims.values()]
    budgets = {(c.trainer.steps, c.trainer.eval_every, c.trainer.checkpoint_every, c.task.eval_size) for c in configs}
    assert budgets == {(4, 2, 2, configs[0].task.eval_size)}


def test_the_warm_start_study_runs_every_claim_in_the_regime(tmp_path):
    """studies/warm_claims.yaml (the study issue's claims 1, 3 and 4): every arm of every claim is the study
    regime at its 20 steps, 300 held-out items and two mini-batches, and only the claim's switches differ."""
    from gcpo.studies.runner import pieces, space_file
    from gcpo.sweeps.space import load_space, trial_config

    study = load_study(ROOT / "studies" / "warm_claims.yaml")
    assert list(study.claims) == ["rivals", "ablation", "imitation"] and len(pieces(study)) == (4 + 8 + 3) * 3
    for claim in study.claims.values():
        space = load_space(space_file(tmp_path, claim))
        for point in claim.points.values():
            cfg = trial_config(space, point)
            assert (cfg.trainer.steps, cfg.trainer.eval_every, cfg.task.eval_size, cfg.trainer.mini_batches,
                    cfg.model.name, cfg.trainer.lr) == (20, 10, 300, 2, "smollm2-warmstart", 1e-5)
    ablation = study.claims["ablation"]
    cells = {tuple(sorted(p.items())) for p in ablation.points.values()}
    assert len(cells) == 8


def test_the_next_study_shares_twelve_runs_with_the_warm_start_study(tmp_path):
    """studies/warm_claims_next.yaml (claims 2, 5 and 6): the regime's every arm; grpo, gcpo, gcpo without golden
    answers and ga_sft are runs of studies/warm_claims.yaml, which `--reuse-from` takes (18 runs left to train)."""
    from gcpo.studies.reuse import piece_fingerprints
    from gcpo.studies.runner import pieces

    warm, more = (load_study(ROOT / "studies" / f"{name}.yaml") for name in ("warm_claims", "warm_claims_next"))
    assert list(more.claims) == ["gpg", "seed_methods", "golden_uses"] and more.comparisons == 2 + 2 + 4
    theirs = set(piece_fingerprints(warm, pieces(warm), []).values())
    ours = set(piece_fingerprints(more, pieces(more), []).values())
    assert (len(ours), len(ours & theirs), len(ours - theirs)) == (30, 12, 18)


def test_claim_six_within_the_budget_shares_nine_runs_with_the_warm_start_study():
    """studies/warm_golden_uses.yaml (claim 6, run after claims 1, 3 and 4): none, replace and imitate are runs of
    studies/warm_claims.yaml, so 6 runs train; its claim equals warm_claims_next's, which would reuse all 15."""
    from gcpo.studies.reuse import piece_fingerprints
    from gcpo.studies.runner import pieces

    warm, uses, more = (load_study(ROOT / "studies" / f"{name}.yaml")
                        for name in ("warm_claims", "warm_golden_uses", "warm_claims_next"))
    assert list(uses.claims) == ["golden_uses"] and uses.comparisons == 4 and uses.seeds == [0, 1, 2]
    fingerprints = {name: set(piece_fingerprints(s, pieces(s), []).values())
                    for name, s in (("warm", warm), ("uses", uses), ("more", more))}
    ours = fingerprints["uses"]
    assert (len(ours), len(ours & fingerprints["warm"]), len(ours - fingerprints["warm"])) == (15, 9, 6)
    assert ours <= fingerprints["more"]


def test_no_claims_and_no_file_fail(tmp_path):
    with pytest.raises(StudyError, match="no such study file"):
        load_study(tmp_path / "none.yaml")
    with pytest.raises(StudyError, match="claims: must name at least one claim"):
        load_study(write(tmp_path, "name: x\n"))
