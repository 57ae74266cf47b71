"""Reading finished runs back from MLflow (for `gcpo compare`): the client, the runs of an experiment, their
metric histories and final per-item results, and logging a report's files to a sweep's parent run.

Everything here talks to MLflow and returns plain Python (lists, dicts, pandas frames); `gcpo.sweeps.compare`
turns it into arms and statistics. From a tracking server (`http://`, `https://`) the runs are read
`READ_THREADS` at a time; a local store reads faster in one thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from gcpo.tracking import tags

READ_THREADS = 8  # runs read at once from a tracking server


@dataclass(frozen=True)
class RunRead:
    """One training run read back: the MLflow run, every metric's full history ((step, value) sorted by step) and
    its final evaluation's per-item results (None when it logged none)."""

    run: object
    histories: dict[str, list[tuple[int, float]]]
    items: pd.DataFrame | None


def client(tracking_uri: str):
    """The MLflow client of `tracking_uri` (a local store or a tracking server)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def finished_run_names(tracking_uri: str, experiment: str) -> set[str]:
    """The run names of `experiment`'s finished runs (none when the experiment does not exist yet): what a
    resumable driver (benchmarks/pilot.py) skips."""
    mlflow = client(tracking_uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return set()
    runs = mlflow.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'", max_results=10000)
    return {run.info.run_name for run in runs}


def select_runs(mlflow, experiment: str, tracking_uri: str, parent_run_id: str | None) -> tuple[list, list]:
    """The training runs of `experiment` (or the children of `parent_run_id`) and the sweep parents above them.
    ValueError naming what was found when the experiment or its runs are missing."""
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in mlflow.search_experiments()]
        raise ValueError(f"no MLflow experiment named {experiment!r} at {tracking_uri}; found: {', '.join(names)}")
    every = mlflow.search_runs([exp.experiment_id], max_results=10000)
    parents = [r for r in every if r.data.tags.get(tags.SWEEP_PARENT) == "true"]
    if parent_run_id:
        parents = [r for r in parents if r.info.run_id == parent_run_id]
        runs = [r for r in every if r.data.tags.get(tags.PARENT_RUN) == parent_run_id]
    else:
        runs = [r for r in every if r.data.tags.get(tags.SWEEP_PARENT) != "true"]
    if not runs:
        raise ValueError(f"experiment {experiment!r} has no training runs"
                         + (f" under parent run {parent_run_id}" if parent_run_id else ""))
    return runs, parents


def _history(mlflow, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in mlflow.get_metric_history(run_id, key))


def _final_items(mlflow, run_id: str, histories: dict[str, list]) -> pd.DataFrame | None:
    """The per-item results of the run's last held-out evaluation (the artifact `eval/items_step_<N>.json` at the
    last step of its `eval/*` metrics), None when it logged none (a run from before they were recorded)."""
    from gcpo.eval_items import items_artifact

    steps = [history[-1][0] for key, history in histories.items() if key.startswith("eval/") and history]
    if not steps:
        return None
    path = items_artifact(max(steps))
    if path not in {a.path for a in mlflow.list_artifacts(run_id, "eval")}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        table = json.loads(Path(mlflow.download_artifacts(run_id, path, tmp)).read_text())
    return pd.DataFrame(table["data"], columns=table["columns"]).assign(step=max(steps))


@contextlib.contextmanager
def _no_progress_bars():
    """MLflow draws a progress bar for every artifact it downloads: none for the items' small files."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _read_run(mlflow, run) -> RunRead:
    histories = {key: _history(mlflow, run.info.run_id, key) for key in sorted(run.data.metrics)}
    return RunRead(run, histories, _final_items(mlflow, run.info.run_id, histories))


def read_runs(mlflow, runs: list, tracking_uri: str) -> list[RunRead]:
    """Every metric's full history and the final per-item results of each of `runs`, in order."""
    threads = READ_THREADS if tracking_uri.startswith(("http://", "https://")) else 1
    with _no_progress_bars(), ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda run: _read_run(mlflow, run), runs))


def swept_value(run, key: str) -> str | None:
    """The run's value of a swept key: its param, else its `gcpo.swept.<key>` tag (a named arm)."""
    return run.data.params.get(key, run.data.tags.get(f"{tags.SWEPT_PREFIX}{key}"))


def log_report(tracking_uri: str, parent_run_id: str, paths: list[Path]) -> None:
    """Log a report's files to the parent run, under `comparison/`."""
    mlflow = client(tracking_uri)
    for path in paths:
        mlflow.log_artifact(parent_run_id, str(path), "comparison")
