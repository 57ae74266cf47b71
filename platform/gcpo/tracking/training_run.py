"""MLflow logging for a training run (rank 0 only): params, per-step metrics, artifacts, exact resume.

- Every config leaf is a param under its dotted name.
- `run_id` given (a resumed run): the same MLflow run continues, and steps already logged are not logged again
  (`skip_until` = the last step of `time/step_s` found in the store), so a resumed run has no duplicate and no
  missing step.
- Relative `sqlite:` / `file:` URIs are resolved against the project folder by `absolute_tracking_uri` before
  the config reaches Ray workers (whose working directory is elsewhere).
- A tracking server that stops answering mid-run never stops training: metrics, text artifacts and tables (the
  rollout samples, `log_table`) are kept in order in a buffer and sent with the next call that finds the server
  back (`finish` retries for up to `flush_timeout_s`). While the server's port refuses connections a call
  returns at once (a socket probe first, so MLflow's own retries do not stall a step). Creating or resuming the
  run still needs the server.
- An experiment it creates (or finds without a kind) is tagged as a model-training experiment
  (`mlflow.experimentKind`), so MLflow's UI opens it on its training runs and their metric charts.

`gcpo.tracking` is the only package that talks to MLflow: it makes the clients, names the tags (`tags.py`) and
writes to the store (this logger; a sweep's runs: `sweep_runs.py`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from gcpo.console import PREFIX
from gcpo.tracking import tags as tag

STEP_KEY = "time/step_s"
FLUSH_TIMEOUT_S = 300.0


def absolute_tracking_uri(uri: str, base: Path) -> str:
    """`sqlite:///mlflow.db` -> `sqlite:////abs/base/mlflow.db`; `file:` and bare paths likewise; servers unchanged."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str((base / uri[len("sqlite:///"):]).resolve())
    if uri.startswith("file:") and not uri.startswith("file:///"):
        return "file://" + str((base / uri[len("file:"):]).resolve())
    if "://" not in uri:
        return str((base / uri).resolve())
    return uri


def ui_command(uri: str) -> str:
    """The command that shows the store at `uri` in MLflow's UI, with the absolute path of this environment's
    `mlflow` executable (right from any folder)."""
    import shutil

    beside = Path(sys.executable).absolute().parent / "mlflow"
    mlflow = str(beside) if beside.exists() else (shutil.which("mlflow") or "mlflow")
    return f"{mlflow} ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"


def artifact_root(uri: str) -> str | None:
    """For a local sqlite store, artifacts go beside the database (never a cwd-relative ./mlruns)."""
    if uri.startswith("sqlite:////"):
        return "file://" + str(Path(uri[len("sqlite:///"):]).parent / "mlartifacts")
    return None


def client_for(uri: str):
    """An MLflow client of the store at `uri` (the one place `gcpo` makes one)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(client, name: str, uri: str) -> str:
    """The id of experiment `name`, created (artifacts beside a local store) when missing; tagged as a training
    experiment either way."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=_experiment_artifacts(uri, name),
                                            tags={tag.EXPERIMENT_KIND: tag.TRAINING_EXPERIMENT})
        except Exception:  # created concurrently by another trial
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if tag.EXPERIMENT_KIND not in exp.tags:
        client.set_experiment_tag(exp.experiment_id, tag.EXPERIMENT_KIND, tag.TRAINING_EXPERIMENT)
    return exp.experiment_id


def first_and_last(uri: str, run_id: str, prefix: str) -> dict[str, tuple[float, float]]:
    """Every metric of the run whose key starts with `prefix`: its value at the first and at the last logged step."""
    client = client_for(uri)
    keys = sorted(k for k in client.get_run(run_id).data.metrics if k.startswith(prefix))
    out = {}
    for key in keys:
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        out[key] = (history[0].value, history[-1].value)
    return out


def _experiment_artifacts(uri: str, name: str) -> str | None:
    root = artifact_root(uri)
    return f"{root}/{name}" if root else None


class TrainingRunLogger:
    def __init__(self, uri: str, experiment: str, *, run_name: str, params: Mapping[str, Any],
                 run_id: str | None = None, tags: Mapping[str, str] | None = None,
                 parent_run_id: str | None = None, flush_timeout_s: float = FLUSH_TIMEOUT_S):
        self.client = client_for(uri)
        self.uri, self.flush_timeout_s = uri, flush_timeout_s
        self.skip_until = -1
        self._pending_metrics: list = []  # mlflow Metric entities, in logging order
        self._pending_artifacts: list[tuple[str, Any, str]] = []  # ("text" or "table", content, file)
        self._outage_reported = False
        if run_id is not None:
            self.run_id = run_id
            history = self.client.get_metric_history(run_id, STEP_KEY)
            self.skip_until = max((m.step for m in history), default=-1)
            self.client.update_run(run_id, status="RUNNING")
            return
        tags = dict(tags or {})
        if parent_run_id:
            tags[tag.PARENT_RUN] = parent_run_id
        run = self.client.create_run(experiment_id(self.client, experiment, uri), run_name=run_name, tags=tags)
        self.run_id = run.info.run_id
        self.log_params(params)

    def mark_resumed(self, from_step: int) -> None:
        """Record on the run that it continued from the checkpoint of `from_step` (tags, visible in the UI)."""
        run = self.client.get_run(self.run_id)
        count = int(run.data.tags.get(tag.RESUME_COUNT, "0")) + 1
        self.client.set_tag(self.run_id, tag.RESUME_COUNT, str(count))
        self.client.set_tag(self.run_id, tag.resumed_from_step(count), str(from_step))

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow's per-batch limit
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> bool:
        """Log one step's metrics; returns False (and logs nothing) for a step already in the store."""
        from mlflow.entities import Metric

        if step <= self.skip_until:
            return False
        now = int(time.time() * 1000)
        self._pending_metrics += [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.flush()
        return True

    def log_text(self, text: str, artifact_file: str) -> None:
        self._pending_artifacts.append(("text", text, artifact_file))
        self.flush()

    def log_table(self, columns: Mapping[str, list], artifact_file: str) -> None:
        """A table (column name -> values) as a JSON artifact MLflow's UI shows; buffered like the metrics."""
        self._pending_artifacts.append(("table", dict(columns), artifact_file))
        self.flush()

    @property
    def pending(self) -> int:
        """Metrics and texts logged but not yet accepted by the store."""
        return len(self._pending_metrics) + len(self._pending_artifacts)

    def _server_down(self) -> bool:
        from gcpo.network import reachable

        return self.uri.startswith(("http://", "https://")) and not reachable(self.uri, timeout_s=1.0)

    def flush(self) -> bool:
        """Send what is buffered, oldest first; True when nothing is left. A failure keeps the rest buffered."""
        try:
            if self.pending and self._server_down():
                raise ConnectionError(f"no connection to {self.uri}")
            while self._pending_metrics:
                self.client.log_batch(self.run_id, metrics=self._pending_metrics[:500])
                del self._pending_metrics[:500]
            while self._pending_artifacts:
                kind, content, artifact_file = self._pending_artifacts[0]
                if kind == "table":
                    self.client.log_table(self.run_id, data=content, artifact_file=artifact_file)
                else:
                    self.client.log_text(self.run_id, content, artifact_file)
                del self._pending_artifacts[0]
        except Exception as e:  # any transport or server error: keep the data, training goes on
            if not self._outage_reported:
                print(f"{PREFIX} MLflow at {self.uri} unavailable ({type(e).__name__}); buffering {self.pending} "
                      f"items until it is back", file=sys.stderr, flush=True)
            self._outage_reported = True
            return False
        if self._outage_reported:
            print(f"{PREFIX} MLflow at {self.uri} is back; buffered metrics flushed", file=sys.stderr, flush=True)
        self._outage_reported = False
        return True

    def finish(self, status: str = "FINISHED") -> None:
        """Flush (retrying up to `flush_timeout_s`), then mark the run ended; warns, never raises, if the
        server stays away."""
        deadline = time.time() + self.flush_timeout_s
        while not self.flush() and time.time() < deadline:
            time.sleep(2.0)
        try:
            self.client.set_terminated(self.run_id, status=status)
        except Exception as e:
            print(f"{PREFIX} MLflow at {self.uri}: could not end run {self.run_id} ({e}); {self.pending} items "
                  f"were never sent", file=sys.stderr, flush=True)


