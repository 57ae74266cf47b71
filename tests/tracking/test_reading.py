"""gcpo.tracking.reading against a real local MLflow store."""

import pytest

from gcpo.tracking.reading import client, finished_run_names

pytestmark = pytest.mark.integration


def test_finished_run_names_lists_only_finished_runs_and_nothing_for_a_new_experiment(tmp_path):
    uri = f"sqlite:///{tmp_path}/store.db"
    assert finished_run_names(uri, "pilot") == set()
    mlflow = client(uri)
    experiment_id = mlflow.create_experiment("pilot", artifact_location=str(tmp_path / "artifacts"))
    done = mlflow.create_run(experiment_id, run_name="pilot-gcpo-s0")
    mlflow.set_terminated(done.info.run_id, "FINISHED")
    failed = mlflow.create_run(experiment_id, run_name="pilot-grpo-s0")
    mlflow.set_terminated(failed.info.run_id, "FAILED")
    mlflow.create_run(experiment_id, run_name="pilot-gcpo-s1")  # still running
    assert finished_run_names(uri, "pilot") == {"pilot-gcpo-s0"}
