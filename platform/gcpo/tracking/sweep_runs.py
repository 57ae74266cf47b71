"""A sweep's runs in MLflow: its parent run, each trial's child run, and their closing tags.

`gcpo.sweeps.runner` drives Tune; what it writes to or reads from the store goes through these functions (the
tags are named in `gcpo.tracking.tags`). A trial's metrics are logged by its training run's own
`TrainingRunLogger`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from gcpo.tracking import tags as tag
from gcpo.tracking.training_run import TrainingRunLogger, client_for, experiment_id


@dataclass(frozen=True)
class ChildRun:
    run_id: str
    status: str  # MLflow's run status: RUNNING, FINISHED, FAILED, KILLED


def create_parent_run(uri: str, experiment: str, *, name: str, swept_keys: list[str], metric: str, mode: str,
                      description: str, space_file: str, params: Mapping[str, Any]) -> str:
    """The sweep's parent run (tagged, the space file attached, each of `params` a JSON param); returns its id."""
    client = client_for(uri)
    parent = client.create_run(experiment_id(client, experiment, uri), run_name=name, tags={
        tag.SWEEP: name, tag.SWEEP_PARENT: "true", tag.SWEPT_KEYS: ",".join(swept_keys), tag.METRIC: metric,
        tag.MODE: mode, tag.NOTE: description})
    client.log_artifact(parent.info.run_id, space_file)
    for key, value in params.items():
        client.log_param(parent.info.run_id, key, json.dumps(value))
    return parent.info.run_id


def trial_run(uri: str, experiment: str, *, parent_run_id: str, sweep: str, trial_key: str, arm: str, seed: int,
              preset: str, swept: Mapping[str, str], params: Mapping[str, Any], run_name: str) -> str:
    """The trial's child run: found by its trial key (a retried trial), else created with `params` and the
    trial's tags (`swept`: each swept key's value as it ran)."""
    client = client_for(uri)
    found = client.search_runs([experiment_id(client, experiment, uri)],
                               filter_string=f"tags.`{tag.TRIAL_KEY}` = '{trial_key}'", max_results=1)
    if found:
        return found[0].info.run_id
    tags = {tag.PARENT_RUN: parent_run_id, tag.SWEEP: sweep, tag.TRIAL_KEY: trial_key, tag.ARM: arm,
            tag.SEED: str(seed), tag.PRESET: preset} | {tag.swept(k): v for k, v in swept.items()}
    return TrainingRunLogger(uri, experiment, run_name=run_name, params=params, tags=tags).run_id


def child_runs(uri: str, experiment: str, parent_run_id: str) -> dict[str, ChildRun]:
    """The parent's child runs by trial key."""
    client = client_for(uri)
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id], filter_string=f"tags.`{tag.PARENT_RUN}` = '{parent_run_id}'",
                               max_results=10000)
    return {r.data.tags.get(tag.TRIAL_KEY): ChildRun(r.info.run_id, r.info.status) for r in found}


def end_stopped_trial(uri: str, run_id: str, *, stopped_early: bool) -> None:
    """A child run Tune left RUNNING: KILLED and tagged when a scheduler stopped it, else FAILED."""
    client = client_for(uri)
    client.set_tag(run_id, tag.STOPPED_EARLY, str(stopped_early).lower())
    client.set_terminated(run_id, "KILLED" if stopped_early else "FAILED")


def close_sweep(uri: str, parent_run_id: str, checkpoints: Mapping[str, str]) -> None:
    """Tag each child run (by run id) with its kept checkpoint (or `removed`) and end the parent run."""
    client = client_for(uri)
    for run_id, checkpoint in checkpoints.items():
        client.set_tag(run_id, tag.CHECKPOINT, checkpoint)
    client.set_terminated(parent_run_id, "FINISHED")
