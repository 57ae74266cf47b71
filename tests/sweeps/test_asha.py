"""Optuna + ASHA on the tiny model, in a Ray runtime of its own with room to spare: trials ASHA stops were seen
to leave CPUs reserved (a later trial waited for them; docs/sweeps.md, "How a sweep runs"), so this runtime has
16 logical CPUs while trials still run one at a time."""

import pytest

from gcpo.sweeps.runner import run_sweep
from sweeps.test_sweep import TINY, children, steps_logged

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ray_roomy():
    import ray

    from gcpo.cluster.runtime import init_ray

    init_ray(None, num_cpus=16)
    yield
    ray.shutdown()


def test_optuna_with_asha_stops_a_trial_early(tmp_path, ray_roomy, mlflow_server):
    """Optuna (seeded TPE) samples 4 learning rates; the objective is the logged `lr` itself, so which trials
    ASHA stops is deterministic (one at a time): every trial whose lr trails the first trial's at a rung."""
    space = tmp_path / "hpo.yaml"
    space.write_text(
        "name: hpo-tiny\nbase: {preset: grpo, algorithm.kl_coef: 0.0, trainer.steps: 3}\n"
        "space:\n  trainer.lr: {loguniform: [1.0e-5, 1.0e-2]}\n"
        "seeds: [0]\nmetric: lr\nmode: max\nsearch: optuna\ntrials: 4\n"
        "scheduler: {type: asha, grace_period: 1, reduction_factor: 2}\n")
    overrides = [o for o in TINY if not o.startswith(("trainer.steps", "trainer.lr"))]
    outcome = run_sweep(space, overrides + [f"tracking.uri={mlflow_server}"], base=tmp_path, max_concurrent=1)
    runs = children(mlflow_server, outcome)
    assert len(runs) == 4 and len(outcome.trials) == 4
    lrs = [float(r.data.params["trainer.lr"]) for r in runs]
    assert len(set(lrs)) == 4  # Optuna really sampled
    stopped = [r for r in runs if r.data.tags.get("gcpo.stopped_early") == "true"]
    assert stopped, [(t["iterations"], t["run_id"]) for t in outcome.trials]
    for run in stopped:
        assert run.info.status == "KILLED"
        assert len(steps_logged(mlflow_server, run.info.run_id)) < 3
    assert any(steps_logged(mlflow_server, r.info.run_id) == [1, 2, 3] for r in runs)
