"""Sweeps end to end on the tiny model: real Ray Tune (grid, Optuna, ASHA), real Ray Train + DeepSpeed trials,
a real MLflow tracking server on 127.0.0.1, and the comparison report read back from it."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from gcpo.sweeps.runner import run_sweep

pytestmark = pytest.mark.integration

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"
TINY = [
    "model.name=tiny", "rollout.backend=transformers", "rollout.prompts_per_step=2", "rollout.group_size=2",
    "rollout.max_new_tokens=6", "task.train_size=12", "task.eval_size=2", "trainer.eval_k=1",
    "trainer.steps=2", "trainer.eval_every=1", "trainer.checkpoint_every=1", "trainer.lr=1e-3",
    "tracking.log_rollouts_every=0",
]
SWITCHES = ("algorithm.golden_answers", "algorithm.kl_coef", "algorithm.ratio_level")


def children(uri: str, outcome) -> list:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(outcome.experiment)
    return client.search_runs([exp.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{outcome.parent_run_id}'")


def steps_logged(uri: str, run_id: str, key: str = "time/step_s") -> list[int]:
    return sorted(m.step for m in MlflowClient(tracking_uri=uri).get_metric_history(run_id, key))


@pytest.fixture(scope="module")
def ablation(tmp_path_factory, ray_local, mlflow_server):
    base = tmp_path_factory.mktemp("ablation")
    outcome = run_sweep(SPACES / "ablation_ga_kl_is.yaml", TINY + [f"tracking.uri={mlflow_server}"],
                        name="ablation-tiny", base=base)
    yield base, outcome
    shutil.rmtree(base)  # module-scoped: pytest would keep it to the session's end


def test_ablation_grid_logs_eight_arms_under_one_parent(ablation, mlflow_server):
    base, outcome = ablation
    assert [t["status"] for t in outcome.trials] == ["ok"] * 8
    runs = children(mlflow_server, outcome)
    assert len(runs) == 8
    arms = set()
    for run in runs:
        params, tags = run.data.params, run.data.tags
        arm = tuple(params[k] for k in SWITCHES)
        for key in SWITCHES:  # the param the trial really ran with is the value its arm tag names
            assert tags[f"gcpo.swept.{key}"] == params[key]
        arms.add(arm)
        assert steps_logged(mlflow_server, run.info.run_id) == [1, 2]
        assert steps_logged(mlflow_server, run.info.run_id, "eval/basic_arithmetic/pass_at_1") == [0, 1, 2]
        assert run.info.status == "FINISHED"
    assert arms == {(ga, kl, lvl) for ga in ("True", "False") for kl in ("0.0", "0.04")
                    for lvl in ("token", "sequence")}
    parent = MlflowClient(tracking_uri=mlflow_server).get_run(outcome.parent_run_id)
    assert parent.data.tags["gcpo.swept_keys"] == ",".join(SWITCHES)
    artifacts = [a.path for a in MlflowClient(tracking_uri=mlflow_server).list_artifacts(outcome.parent_run_id)]
    assert "ablation_ga_kl_is.yaml" in artifacts


def test_only_the_best_trial_keeps_a_checkpoint(ablation, mlflow_server):
    """keep_checkpoints: best (the default): each trial kept one checkpoint while it ran (trainer.keep_checkpoints:
    1 of its two); when the sweep ended, only the best trial's remained, and every child run names what it kept."""
    _, outcome = ablation
    trials_dir = outcome.sweep_dir / "trials"
    left = {p.name: sorted(c.name for c in p.glob("checkpoint_*") if c.is_dir())
            for p in trials_dir.iterdir() if p.is_dir()}
    assert len(left) == 8 and sorted(len(c) for c in left.values()) == [0] * 7 + [1], left
    best = max(outcome.trials, key=lambda t: t["metric"])  # max over the first of ties, as the pruning chose
    kept = [t for t in outcome.trials if t["checkpoint"] != "removed"]
    assert kept == [best] and Path(best["checkpoint"]).parent.name == f"{outcome.name}-{best['trial']}"
    assert Path(best["checkpoint"]).name in left[Path(best["checkpoint"]).parent.name]
    assert outcome.removed_checkpoint_bytes > 0
    tags = {r.info.run_id: r.data.tags.get("gcpo.checkpoint") for r in children(mlflow_server, outcome)}
    assert tags == {t["run_id"]: t["checkpoint"] for t in outcome.trials}


def test_gcpo_compare_shows_every_arm(ablation, mlflow_server, tmp_path):
    _, outcome = ablation
    out = subprocess.run([sys.executable, "-m", "gcpo.cli", "compare", "--experiment", outcome.experiment,
                          "--tracking-uri", mlflow_server, "--out", str(tmp_path / "report")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    labels = {f"golden_answers={ga}, kl_coef={kl}, ratio_level={lvl}" for ga in ("True", "False")
              for kl in ("0", "0.04") for lvl in ("token", "sequence")}
    for label in labels:
        assert label in out.stdout, (label, out.stdout)
    for name in ("table.txt", "arms.csv", "runs.csv", "learning_curves.png", "effects.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    logged = MlflowClient(tracking_uri=mlflow_server).list_artifacts(outcome.parent_run_id, "comparison")
    assert {Path(a.path).name for a in logged} >= {"arms.csv", "effects.png", "learning_curves.png"}


def test_notebook_runs_headless_against_the_sweep(ablation, mlflow_server, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    _, outcome = ablation
    path = Path(__file__).resolve().parents[2] / "notebooks" / "ablation_report.ipynb"
    nb = nbformat.read(path, as_version=4)
    os.environ.update(GCPO_EXPERIMENT=outcome.experiment, MLFLOW_TRACKING_URI=mlflow_server)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "golden_answers=True" in text
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2


def test_failed_trial_is_retried_and_others_unaffected(tmp_path, ray_local, mlflow_server, kill_train_worker):
    """A trial's training worker is killed after its first checkpoint: Tune retries the trial (max_failures: 1),
    its Train run resumes from that checkpoint into the same MLflow child run, and the other trial finishes."""
    space = tmp_path / "two.yaml"
    space.write_text("name: fault-tiny\nbase: {preset: gcpo, trainer.steps: 3, trainer.eval_every: 0}\n"
                     "space:\n  algorithm.ratio_level: {grid: [token, sequence]}\nmetric: reward/mean\n"
                     "max_failures: 1\n")
    overrides = [o for o in TINY if not o.startswith(("trainer.steps", "trainer.eval_every"))]
    killed = kill_train_worker(lambda: (tmp_path / "runs" / "sweeps" / "fault-tiny" / "trials").glob("*"))
    outcome = run_sweep(space, overrides + [f"tracking.uri={mlflow_server}"], base=tmp_path, max_concurrent=1)
    assert killed, "no worker was killed"
    assert [t["status"] for t in outcome.trials] == ["ok", "ok"]
    runs = children(mlflow_server, outcome)
    assert len(runs) == 2  # the retry continued its child run; none was added
    for run in runs:
        assert steps_logged(mlflow_server, run.info.run_id) == [1, 2, 3]  # none twice, none missing
        assert run.info.status == "FINISHED"
    resumed = [r for r in runs if int(r.data.tags.get("gcpo.resume_count", "0")) >= 1]
    assert len(resumed) == 1 and resumed[0].info.run_name == killed["run"]


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(tmp_path, mlflow_server):
    """Ctrl-C after the first of two trials: exit code 130 naming --resume, which runs only the second."""
    space = tmp_path / "two.yaml"
    space.write_text("name: resume-tiny\nbase: {preset: grpo, algorithm.kl_coef: 0.0, trainer.eval_every: 0}\n"
                     "space:\n  trainer.lr: {grid: [1.0e-3, 1.0e-5]}\nmetric: reward/mean\n")
    overrides = [o for o in TINY if not o.startswith("trainer.eval_every")] + [f"tracking.uri={mlflow_server}"]
    gcpo = [sys.executable, "-m", "gcpo.cli", "sweep", str(space), *overrides, "--max-concurrent", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(gcpo, cwd=tmp_path, env=env, start_new_session=True,
                            stdout=open(tmp_path / "first.log", "w"), stderr=subprocess.STDOUT)
    client = MlflowClient(tracking_uri=mlflow_server)
    try:
        deadline = time.time() + 600
        while time.time() < deadline:  # until one trial has finished
            exp = client.get_experiment_by_name("resume-tiny")
            if exp and client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'"):
                break
            time.sleep(1)
        else:
            raise TimeoutError((tmp_path / "first.log").read_text()[-3000:])
        proc.send_signal(signal.SIGINT)  # Ctrl-C: Tune saves its state and the sweep says how to resume
        assert proc.wait(timeout=300) == 130, (tmp_path / "first.log").read_text()[-3000:]
        assert "was interrupted with 1 of 2 trials unfinished" in (tmp_path / "first.log").read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):  # nothing left of the first driver's group: fine
            os.killpg(proc.pid, signal.SIGKILL)  # what is left of the first driver's local Ray
        proc.wait(timeout=60)
    exp = client.get_experiment_by_name("resume-tiny")
    finished = {r.info.run_id: steps_logged(mlflow_server, r.info.run_id)
                for r in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'")
                if r.data.tags.get("gcpo.sweep_parent") != "true"}
    done = subprocess.run(gcpo + ["--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("gcpo.sweep_parent") != "true"]
    assert len(runs) == 2  # one child run per trial: the finished trial was not run again
    for run_id, steps in finished.items():
        assert steps_logged(mlflow_server, run_id) == steps == [1, 2]
    assert all(steps_logged(mlflow_server, r.info.run_id) == [1, 2] for r in runs)
    assert "lr=0.001" in done.stdout and "lr=1e-05" in done.stdout
    assert "checkpoints kept: 1 (" in done.stdout and "GiB of others removed" in done.stdout, done.stdout
