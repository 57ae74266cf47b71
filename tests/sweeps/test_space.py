"""Search-space files: the shipped ones load, malformed ones fail naming the file, line and key."""

import dataclasses
from pathlib import Path

import pytest

from gcpo.sweeps import SpaceError, load_space, trial_config

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_shipped_spaces_load():
    names = {p.stem for p in SPACES.glob("*.yaml")}
    assert {"ablation_ga_kl_is", "presets", "hpo_lr_clip", "golden_uses", "offpolicy"} <= names
    for path in SPACES.glob("*.yaml"):
        load_space(path)
    # the off-policy keys are ordinary axes of a grid
    offpolicy = load_space(SPACES / "offpolicy.yaml")
    assert set(offpolicy.space) == {"rollout.max_staleness", "algorithm.rollout_correction"}
    assert set(load_space(SPACES / "golden_uses.yaml").arms) == {"replace", "hint", "hint_fixed", "imitate", "imitate_matched",
                                                                  "none"}


def test_ablation_grid_is_the_full_2x2x2():
    space = load_space(SPACES / "ablation_ga_kl_is.yaml")
    arms = space.grid_arms()
    assert len(arms) == 8 and space.total_trials == 8 * len(space.seeds)
    assert {tuple(sorted(a.items())) for a in arms} == {
        (("algorithm.golden_answers", ga), ("algorithm.kl_coef", kl), ("algorithm.ratio_level", lvl))
        for ga in (True, False) for kl in (0.0, 0.04) for lvl in ("token", "sequence")}
    cfg = trial_config(space, arms[-1] | {"trainer.seed": 3})
    assert (cfg.algorithm.golden_answers, cfg.algorithm.kl_coef, cfg.algorithm.ratio_level) == (False, 0.04, "sequence")
    assert cfg.trainer.seed == 3 and cfg.preset == "gcpo" and cfg.trainer.steps == 8
    # each ratio level has its own clip range: DAPO's for the token arms, the calibrated one for the sequence arms
    from gcpo.training.objectives import clip_range

    ranges = {arm["algorithm.ratio_level"]: clip_range(trial_config(space, arm).algorithm) for arm in arms}
    assert ranges == {"token": (0.2, 0.28), "sequence": (0.044, 0.0586)}  # calibrated (configs/study.yaml)


def test_hpo_space_is_optuna_with_asha():
    space = load_space(SPACES / "hpo_lr_clip.yaml")
    assert space.search == "optuna" and space.scheduler["type"] == "asha" and space.total_trials == space.trials


def test_paper_claims_arms_are_named_configs():
    space = load_space(SPACES / "paper_claims.yaml")
    assert space.swept_keys == ["arm"] and space.total_trials == 6 * len(space.seeds) and len(space.seeds) >= 2
    configs = {arm["arm"]: trial_config(space, arm) for arm in space.grid_arms()}
    assert set(configs) == {"grpo", "dapo", "gpg", "gcpo", "gcpo_no_golden", "ga_sft"}
    assert configs["gcpo"].algorithm.golden_answers and not configs["gcpo_no_golden"].algorithm.golden_answers
    # gcpo without golden answers differs from gcpo in that switch only
    assert configs["gcpo_no_golden"].algorithm == dataclasses.replace(configs["gcpo"].algorithm, golden_answers=False)
    assert configs["ga_sft"].algorithm.loss == "sft" and configs["grpo"].algorithm.kl_coef > 0
    assert len({(c.trainer.steps, c.trainer.eval_every, c.task.eval_size) for c in configs.values()}) == 1
    assert space.keep_checkpoints == "none" and load_space(SPACES / "presets.yaml").keep_checkpoints == "best"


def test_arm_values_sit_between_base_and_trial_values(tmp_path):
    path = write(tmp_path, "base: {trainer.steps: 3, algorithm.kl_coef: 0.5}\n"
                           "arms:\n  a: {preset: grpo, algorithm.kl_coef: 0.0}\n  b: {preset: dapo}\n"
                           "space:\n  trainer.lr: {grid: [0.1, 0.2]}\n")
    space = load_space(path, ["trainer.steps=2"])
    assert space.swept_keys == ["arm", "trainer.lr"] and space.total_trials == 4
    a = trial_config(space, {"arm": "a", "trainer.lr": 0.2})
    assert (a.preset, a.algorithm.kl_coef, a.trainer.lr, a.trainer.steps) == ("grpo", 0.0, 0.2, 2)
    b = trial_config(space, {"arm": "b", "trainer.lr": 0.1})
    assert (b.preset, b.algorithm.kl_coef) == ("dapo", 0.5)  # the base's value where the arm is silent


def test_overrides_join_the_base(tmp_path):
    space = load_space(SPACES / "presets.yaml", ["trainer.steps=2", "model.name=tiny"])
    cfg = trial_config(space, {"preset": "dapo"})
    assert cfg.trainer.steps == 2 and cfg.model.name == "tiny" and cfg.preset == "dapo"


@pytest.mark.parametrize("text, needle", [
    ("space:\n  trainer.lr: {grid: [0.1]}\nsedes: [1]\n", ":3: sedes: unknown key; did you mean 'seeds'?"),
    ("space:\n  trainer.lrr: {grid: [0.1]}\n", ":2: space.trainer.lrr: unknown config key; did you mean 'trainer.lr'?"),
    ("space:\n  trainer.lr: {gird: [0.1]}\n", "space.trainer.lr.gird: unknown spec; did you mean 'grid'?"),
    ("space:\n  trainer.lr: {uniform: [0.1, 0.01]}\n", ":2: space.trainer.lr.uniform: must be [low, high] with low < high"),
    ("space:\n  trainer.lr: {loguniform: [0, 0.01]}\n", "loguniform needs low > 0"),
    ("space:\n  algorithm.ratio_level: {grid: [token, seq]}\n", ":2: space.algorithm.ratio_level: algorithm.ratio_level"),
    ("base:\n  trainer.steps: zero\nspace:\n  trainer.lr: {grid: [0.1]}\n", ":1: base: trainer.steps"),
    ("space:\n  trainer.lr: {grid: [0.1]}\nsearch: optuna\n", "space.trainer.lr: optuna samples, it does not enumerate"),
    ("space:\n  trainer.lr: {choice: [0.1]}\nsearch: optuna\nseeds: [0, 1]\n", ":4: seeds: an optuna search runs one seed"),
    ("space:\n  trainer.lr: {grid: [0.1]}\nscheduler: {type: asha, grace: 2}\n", "scheduler.grace: unknown key"),
    ("space: {}\n", "space: must map at least one dotted config key"),
    ("space:\n  trainer.seed: {grid: [1, 2]}\n", "use the top-level `seeds:` list"),
    ("space:\n  trainer.lr: {grid: [0.1]}\nmode: maximum\n", ":3: mode: must be max or min"),
    ("space:\n  trainer.lr: {grid: [0.1]}\nkeep_checkpoints: last\n", ":3: keep_checkpoints: must be one of best, all, none"),
    ("arms:\n  a: {preset: gcpo}\n  b: {algorithm.golden_answer: false}\n",
     ":3: arms.b.algorithm.golden_answer: unknown config key; did you mean 'algorithm.golden_answers'?"),
    ("arms:\n  a: {preset: gpcо}\n", ":2: arms.a: preset: unknown preset"),
    ("arms:\n  a: gcpo\n", ":2: arms.a: must be a mapping of run-config values"),
    ("arms: [gcpo]\n", ":1: arms: must map arm names to run-config values"),
    ("arms:\n  a: {preset: gcpo}\nspace:\n  arm: {grid: [a]}\n", ":4: space.arm: `arm` is the grid over the names"),
    ("arms:\n  a: {preset: gcpo}\nsearch: optuna\n", ":1: arms: optuna samples, it does not enumerate named arms"),
    ("base:\n  trainer.eval_intermediate: greedy\narms:\n  a: {preset: gcpo}\nmetric: eval/basic_arithmetic/mean_at_4\n",
     "metric: eval/basic_arithmetic/mean_at_4 is not logged by the greedy-only intermediate evaluations"),
])
def test_malformed_space_names_line_and_key(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(SpaceError) as err:
        load_space(path)
    assert str(path) in str(err.value) and needle in str(err.value), str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SpaceError, match="no such search-space file"):
        load_space(tmp_path / "nope.yaml")


def test_select_arms_keeps_the_named_arms_only():
    from gcpo.sweeps.runner import select_arms

    space = load_space(SPACES / "paper_claims.yaml")
    select_arms(space, ["ga_sft", "gcpo"])
    assert space.grid_arms() == [{"arm": "ga_sft"}, {"arm": "gcpo"}] and space.total_trials == 2 * len(space.seeds)
    with pytest.raises(ValueError, match="--arms: gpcо not among the arms of .*paper_claims.yaml: ga_sft, gcpo"):
        select_arms(space, ["gpcо"])
    with pytest.raises(ValueError, match=r"\(it names none\)"):
        select_arms(load_space(SPACES / "golden_answers.yaml"), ["gcpo"])


def test_select_grid_keeps_only_the_given_grid_values():
    from gcpo.sweeps.runner import select_grid

    space = load_space(SPACES / "ablation_ga_kl_is.yaml")
    assert space.total_trials == 8 * len(space.seeds)
    select_grid(space, {"algorithm.golden_answers": [False], "algorithm.kl_coef": [0.04]})
    assert space.grid_arms() == [
        {"algorithm.golden_answers": False, "algorithm.kl_coef": 0.04, "algorithm.ratio_level": "token"},
        {"algorithm.golden_answers": False, "algorithm.kl_coef": 0.04, "algorithm.ratio_level": "sequence"}]
    assert space.swept_keys == ["algorithm.golden_answers", "algorithm.kl_coef", "algorithm.ratio_level"]
    with pytest.raises(ValueError, match=r"algorithm.kl_coef: \[0.5\] not among its grid values \[0.04\]"):
        select_grid(space, {"algorithm.kl_coef": [0.5]})
    with pytest.raises(ValueError, match="'trainer.lr' is not a grid key of .*ablation_ga_kl_is.yaml"):
        select_grid(space, {"trainer.lr": [1e-5]})
    methods = load_space(SPACES / "paper_claims.yaml")
    select_grid(methods, {"arm": ["gcpo"]})
    assert methods.grid_arms() == [{"arm": "gcpo"}] and list(methods.arms) == ["gcpo"]


def test_base_config_is_shared_and_base_overrides_it(tmp_path):
    """`base_config:` names a run-config YAML (relative to the space file) whose values come first; the space's
    `base` and the command line override them; a missing file is named."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "regime.yaml").write_text("trainer:\n  mini_batches: 2\n  lr: 3.0e-5\ntask:\n  eval_size: 100\n")
    path = write(tmp_path, "base_config: configs/regime.yaml\nbase:\n  trainer.lr: 1.0e-5\n"
                           "space:\n  algorithm.kl_coef: {grid: [0.0, 0.04]}\n")
    space = load_space(path, ["task.eval_size=60"])
    assert space.base == {"trainer.mini_batches": 2, "trainer.lr": 1.0e-5, "task.eval_size": 60}
    missing = write(tmp_path, "base_config: nowhere.yaml\nspace:\n  algorithm.kl_coef: {grid: [0.0]}\n")
    with pytest.raises(SpaceError, match=r"base_config: no such file"):
        load_space(missing)
    study = load_space(SPACES / "ablation_ga_kl_is.yaml")  # the shipped study regime
    assert study.base["model.name"] == "smollm2-warmstart" and study.base["trainer.mini_batches"] == 2
    assert load_space(SPACES / "golden_answers.yaml").base.get("model.name") is None  # the cold-start demo
