"""What a finished sweep keeps on disk (`prune_checkpoints`), on hand-made trial folders."""

from pathlib import Path

import pytest

from gcpo.sweeps.runner import prune_checkpoints, trial_status


def trial_folders(root: Path, rows: list[dict], per_trial: int = 2) -> None:
    for row in rows:
        for n in range(per_trial):
            folder = root / f"sw-{row['trial']}" / f"checkpoint_2026-11-23_10-00-0{n}.000000"
            (folder / "policy").mkdir(parents=True)
            (folder / "policy" / "model_states.pt").write_bytes(b"x" * 1000)
        (root / f"sw-{row['trial']}" / "gcpo_config.yaml").write_text("trainer: {}\n")
        (root / f"sw-{row['trial']}" / "checkpoint_manager_snapshot.json").write_text("{}")  # Ray Train's


def rows() -> list[dict]:
    return [{"trial": "a", "status": "ok", "metric": 0.2}, {"trial": "b", "status": "ok", "metric": 0.5},
            {"trial": "c", "status": "error", "metric": 0.9}, {"trial": "d", "status": "ok", "metric": None}]


def left(root: Path) -> dict[str, int]:
    return {p.name: len([c for c in p.glob("checkpoint_*") if c.is_dir()]) for p in sorted(root.iterdir())}


@pytest.mark.parametrize("keep, mode, expected", [
    ("best", "max", {"sw-a": 0, "sw-b": 2, "sw-c": 2, "sw-d": 0}),   # b has the highest metric; c failed
    ("best", "min", {"sw-a": 2, "sw-b": 0, "sw-c": 2, "sw-d": 0}),   # a has the lowest
    ("none", "max", {"sw-a": 0, "sw-b": 0, "sw-c": 2, "sw-d": 0}),
    ("all", "max", {"sw-a": 2, "sw-b": 2, "sw-c": 2, "sw-d": 2}),
])
def test_keep_policy_decides_which_finished_trials_keep_checkpoints(tmp_path, keep, mode, expected):
    trials = rows()
    trial_folders(tmp_path, trials)
    freed = prune_checkpoints(trials, tmp_path, "sw", keep, mode)
    assert left(tmp_path) == expected
    removed = sum(2 - n for n in expected.values())
    assert freed == removed * 1000
    for row in trials:
        name = f"sw-{row['trial']}"
        for kept in ("gcpo_config.yaml", "checkpoint_manager_snapshot.json"):  # only checkpoint folders go
            assert (tmp_path / name / kept).exists()
        if expected[name]:
            assert row["checkpoint"] == str(tmp_path / name / "checkpoint_2026-11-23_10-00-01.000000")  # the latest
        else:
            assert row["checkpoint"] == "removed"


def test_best_keeps_everything_when_no_trial_reported_the_metric(tmp_path):
    trials = [{"trial": t, "status": "ok", "metric": None} for t in ("a", "b")]
    trial_folders(tmp_path, trials, per_trial=1)
    assert prune_checkpoints(trials, tmp_path, "sw", "best", "max") == 0
    assert left(tmp_path) == {"sw-a": 1, "sw-b": 1}


def test_a_trial_without_checkpoints_is_reported_as_none(tmp_path):
    trials = [{"trial": "a", "status": "ok", "metric": 0.1}]
    assert prune_checkpoints(trials, tmp_path, "sw", "none", "max") == 0
    assert trials[0]["checkpoint"] is None


def test_an_unknown_keep_policy_fails_before_any_trial(tmp_path):
    from gcpo.sweeps.runner import run_sweep

    with pytest.raises(ValueError, match=r"keep_checkpoints must be one of best, all, none, got 'last'"):
        run_sweep(tmp_path / "never-read.yaml", keep_checkpoints="last", base=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing was created


@pytest.mark.parametrize("error, last_step, steps, early_stopping, expected", [
    (False, 20, 20, False, "ok"),
    (False, 20.0, 20, False, "ok"),  # Tune's results may carry numbers as floats
    (True, 20, 20, False, "error"),
    (True, 3, 20, True, "error"),
    # a FIFO sweep's trial that Tune ended short of its last step: an interrupt taken for an end (seen in a study:
    # stopped 40 s in, after the step-0 evaluation, its "final" that evaluation)
    (False, 0, 20, False, "interrupted"),
    (False, None, 20, False, "interrupted"),  # never reported a step
    (False, 10, 20, True, "ok"),  # a scheduler (ASHA) stopped it early: ended, not interrupted
])
def test_a_trial_is_ok_only_when_it_reached_its_last_step_or_a_scheduler_stopped_it(
        error, last_step, steps, early_stopping, expected):
    assert trial_status(error, last_step, steps, early_stopping) == expected
