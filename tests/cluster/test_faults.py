"""Faults injected into real components: the MLflow server stopped and restarted on the same port and store
(metrics buffered and flushed, none lost or doubled, training does not crash). Elsewhere: a generator killed
mid-rollout in tests/rollout/test_vllm_pool.py, a killed training worker in tests/training/test_resume.py."""

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from gcpo.config import load_config
from gcpo.network import reachable

pytestmark = pytest.mark.integration


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1:`port` over one sqlite store, that can be stopped and started again."""

    def __init__(self, root: Path, port: int):
        self.root, self.port, self.proc = root, port, None
        self.uri = f"http://127.0.0.1:{port}"

    def start(self, timeout_s: float = 120) -> None:
        mlflow = Path(sys.executable).parent / "mlflow"
        self.proc = subprocess.Popen(
            [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.root}/mlflow.db", "--default-artifact-root",
             str(self.root / "artifacts")],
            stdout=open(self.root / "server.log", "a"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout_s
        while not reachable(self.uri, timeout_s=1):
            assert self.proc.poll() is None and time.time() < deadline, (self.root / "server.log").read_text()[-2000:]
            time.sleep(0.3)

    def stop(self) -> None:
        import os
        import signal

        os.killpg(self.proc.pid, signal.SIGKILL)  # the server and its uvicorn workers: an abrupt outage
        self.proc.wait(timeout=30)
        deadline = time.time() + 30  # its workers may outlive it by a moment on a busy machine
        while reachable(self.uri, timeout_s=1):
            assert time.time() < deadline, f"{self.uri} still answers after the server was killed"
            time.sleep(0.2)


@pytest.fixture
def mlflow_restartable(tmp_path, free_port):
    server = MlflowServer(tmp_path, free_port)
    server.start()
    yield server
    if server.proc.poll() is None:
        server.stop()


def steps_per_key(uri: str, run_id: str) -> dict[str, list[int]]:
    client = MlflowClient(tracking_uri=uri)
    keys = client.get_run(run_id).data.metrics
    return {k: sorted(m.step for m in client.get_metric_history(run_id, k)) for k in keys}


def test_logger_buffers_while_the_server_is_down_and_flushes_when_it_is_back(mlflow_restartable):
    from gcpo.tracking.training_run import TrainingRunLogger

    server = mlflow_restartable
    logger = TrainingRunLogger(server.uri, "outage", run_name="outage", params={"a": 1})
    logger.log_metrics({"loss": 1.0, "reward": 0.1}, step=1)
    assert logger.pending == 0
    server.stop()
    for step in (2, 3):
        start = time.time()
        assert logger.log_metrics({"loss": 1.0 / step, "reward": 0.1 * step}, step=step)
        assert time.time() - start < 5  # a step is not held up by the outage
    logger.log_text("during the outage", "notes/outage.txt")
    logger.log_table({"step": [3], "response": ["4"]}, "rollouts/step_00003.json")  # the driver's rollout table
    assert logger.pending == 6
    server.start()
    logger.log_metrics({"loss": 0.25, "reward": 0.4}, step=4)
    assert logger.pending == 0
    logger.finish()
    client = MlflowClient(tracking_uri=server.uri)
    assert steps_per_key(server.uri, logger.run_id) == {"loss": [1, 2, 3, 4], "reward": [1, 2, 3, 4]}
    assert [m.value for m in sorted(client.get_metric_history(logger.run_id, "loss"), key=lambda m: m.step)] == \
        [1.0, 0.5, pytest.approx(1 / 3), 0.25]
    assert client.get_run(logger.run_id).info.status == "FINISHED"
    assert "notes/outage.txt" in [f.path for f in client.list_artifacts(logger.run_id, "notes")]
    assert "rollouts/step_00003.json" in [f.path for f in client.list_artifacts(logger.run_id, "rollouts")]


def test_training_survives_an_mlflow_outage(tmp_path, mlflow_restartable, ray_local):
    from gcpo.training.fit import fit

    server = mlflow_restartable
    steps = 16  # enough steps after the first checkpoint that some run while the server is down (~0.5 s each)
    cfg = load_config(preset="gcpo", overrides=[
        "model.name=tiny", "rollout.backend=transformers", "rollout.prompts_per_step=2", "rollout.group_size=2",
        "rollout.max_new_tokens=6", "task.train_size=12", "task.eval_size=2", "trainer.eval_every=0",
        f"trainer.steps={steps}", "trainer.checkpoint_every=2", "tracking.log_rollouts_every=0",
        f"tracking.uri={server.uri}"])
    window = {}

    def outage_after_first_checkpoint():
        snapshot = tmp_path / "runs" / "outage" / "checkpoint_manager_snapshot.json"
        deadline = time.time() + 600
        while "latest_checkpoint_result" not in (snapshot.read_text() if snapshot.exists() else ""):
            assert time.time() < deadline
            time.sleep(0.1)
        window["down"] = time.time() * 1000
        server.stop()
        time.sleep(8)  # several training steps run while the server is away
        window["up"] = time.time() * 1000
        server.start()

    thread = threading.Thread(target=outage_after_first_checkpoint, daemon=True)
    thread.start()
    outcome = fit(cfg, run_name="outage", base=tmp_path)
    thread.join(timeout=180)
    assert outcome.metrics["step"] == steps and "up" in window
    client = MlflowClient(tracking_uri=server.uri)
    assert client.get_run(outcome.mlflow_run_id).info.status == "FINISHED"
    history = client.get_metric_history(outcome.mlflow_run_id, "time/step_s")
    assert sorted(m.step for m in history) == list(range(1, steps + 1))  # none lost, none twice
    during = [m.step for m in history if window["down"] <= m.timestamp <= window["up"]]
    assert during, "no step was logged while the server was down: the outage missed the run"
