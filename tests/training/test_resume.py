"""Kill and resume: a run killed after a checkpoint (a training worker, then separately the whole driver) ends
with the same step count and the same metrics history as an uninterrupted run of the same seed; with bounded
staleness too, where the checkpoint holds a batch sampled ahead for the next step."""

import os
import shutil
import signal
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from gcpo.config import load_config

pytestmark = pytest.mark.integration

STEPS = 8
OVERRIDES = [
    "model.name=tiny", "rollout.backend=transformers", "rollout.prompts_per_step=2", "rollout.group_size=2",
    "rollout.max_new_tokens=6", "task.train_size=12", "task.eval_size=2", "trainer.eval_every=0",
    f"trainer.steps={STEPS}", "trainer.checkpoint_every=2", "trainer.lr=1e-3", "tracking.log_rollouts_every=0",
]
COMPARED = ["reward/mean", "ga/injected_frac", "response/length_mean", "loss/policy", "policy/entropy",
            "grad/norm", "sync/logprob_abs_diff"]
# max_staleness 1: from step 2 on every batch was sampled one version back, so the generator gap is the
# off-policy one (the sync check covers step 1 only)
STALE = ["rollout.max_staleness=1"]
COMPARED_STALE = [*COMPARED[:-1], "offpolicy/logprob_abs_diff", "batch/staleness_mean"]


def history(uri: str, run_id: str, keys=COMPARED) -> dict[str, list[tuple[int, float]]]:
    client = MlflowClient(tracking_uri=uri)
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in keys}


def assert_no_step_twice(uri: str, run_id: str) -> None:
    """Every metric of the run (not only the compared ones: eval, timing, throughput too) has each step once."""
    client = MlflowClient(tracking_uri=uri)
    for key in client.get_run(run_id).data.metrics:
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert len(steps) == len(set(steps)), (key, sorted(steps))


def assert_same_history(a: dict, b: dict) -> None:
    for key in b:
        steps_a, steps_b = [s for s, _ in a[key]], [s for s, _ in b[key]]
        first = 2 if key == "offpolicy/logprob_abs_diff" else 1
        assert steps_a == list(range(first, STEPS + 1)), (key, steps_a)  # every step once: none twice, none missing
        assert steps_a == steps_b, key
        for (_, x), (_, y) in zip(a[key], b[key]):
            assert x == pytest.approx(y, rel=1e-3, abs=1e-4), key


def uninterrupted(base, extra: list[str], keys: list[str]):
    from gcpo.training.fit import fit

    cfg = load_config(preset="gcpo", overrides=OVERRIDES + extra + [f"tracking.uri=sqlite:///{base}/mlflow.db"])
    outcome = fit(cfg, run_name="reference", base=base)
    return outcome, history(outcome.tracking_uri, outcome.mlflow_run_id, keys)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, ray_local):
    base = tmp_path_factory.mktemp("reference")
    yield uninterrupted(base, [], COMPARED)
    shutil.rmtree(base)  # module-scoped: pytest would keep it to the session's end


@pytest.fixture(scope="module")
def stale_reference_run(tmp_path_factory, ray_local):
    base = tmp_path_factory.mktemp("stale-reference")
    yield uninterrupted(base, STALE, COMPARED_STALE)
    shutil.rmtree(base)


def kill_worker_and_compare(tmp_path, kill_train_worker, extra: list[str], reference: dict):
    from gcpo.training.fit import fit

    cfg = load_config(preset="gcpo", overrides=OVERRIDES + extra + [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"])
    killed = kill_train_worker(lambda: [tmp_path / "runs" / "killed-worker"])
    outcome = fit(cfg, run_name="killed-worker", base=tmp_path, max_failures=2)
    assert killed, "the worker was never killed"
    tags = MlflowClient(tracking_uri=outcome.tracking_uri).get_run(outcome.mlflow_run_id).data.tags
    assert int(tags["gcpo.resume_count"]) >= 1
    assert outcome.metrics["step"] == STEPS
    assert len([c for c in outcome.run_dir.glob("checkpoint_*") if c.is_dir()]) == 1  # keep_checkpoints: 1 of 4
    assert_same_history(history(outcome.tracking_uri, outcome.mlflow_run_id, list(reference)), reference)
    assert_no_step_twice(outcome.tracking_uri, outcome.mlflow_run_id)


def test_killed_worker_restarts_from_checkpoint(tmp_path, reference_run, ray_local, kill_train_worker):
    kill_worker_and_compare(tmp_path, kill_train_worker, [], reference_run[1])


def test_killed_worker_with_a_batch_sampled_ahead_resumes_exactly(tmp_path, stale_reference_run, ray_local,
                                                                  kill_train_worker):
    """max_staleness 1: each checkpoint holds the batch already sampled (with older weights) for the next step;
    the resumed run trains on it, so its history is the uninterrupted run's, every batch one version old."""
    reference = stale_reference_run[1]
    assert [v for _, v in reference["batch/staleness_mean"]] == [0.0] + [1.0] * (STEPS - 1)
    kill_worker_and_compare(tmp_path, kill_train_worker, STALE, reference)


def test_killed_driver_resumes_with_gcpo_train_resume(tmp_path, reference_run, wait_for_checkpoint):
    gcpo = [sys.executable, "-m", "gcpo.cli"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["train", "--preset", "gcpo", "--name", "killed-driver", *OVERRIDES, f"tracking.uri={uri}",
            "cluster.num_cpus=4"]
    proc = subprocess.Popen(gcpo + args, cwd=tmp_path, env=env, start_new_session=True,
                            stdout=open(tmp_path / "first.log", "w"), stderr=subprocess.STDOUT)
    try:
        wait_for_checkpoint(tmp_path / "runs" / "killed-driver")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started, without `ray stop`
        proc.wait(timeout=60)
    done = subprocess.run(gcpo + ["train", "--resume", "killed-driver"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resumed from the checkpoint of step" in done.stdout + done.stderr
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("gcpo").experiment_id])
    assert len(runs) == 1  # the same MLflow run continued
    assert_same_history(history(uri, runs[0].info.run_id), reference_run[1])
    assert_no_step_twice(uri, runs[0].info.run_id)
