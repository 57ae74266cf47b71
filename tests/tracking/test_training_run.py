"""gcpo.tracking.training_run on a local sqlite store: the experiment's kind, the rollout table through the outage
buffer, the before/after values, the `mlflow ui` command. (The real server stopped mid-run:
tests/cluster/test_faults.py.)"""

import sys
from pathlib import Path

from gcpo.tracking import tags
from gcpo.tracking.training_run import TrainingRunLogger, client_for, first_and_last, ui_command


def logger_at(tmp_path, experiment="exp"):
    return TrainingRunLogger(f"sqlite:///{tmp_path}/mlflow.db", experiment, run_name="r", params={"a": 1})


def test_the_experiment_is_tagged_as_a_training_experiment(tmp_path):
    logger = logger_at(tmp_path)
    exp = logger.client.get_experiment_by_name("exp")
    assert exp.tags[tags.EXPERIMENT_KIND] == "custom_model_development"  # MLflow 3's "training runs" kind
    client = client_for(logger.uri)  # an experiment made elsewhere, without a kind, gets it when a run joins it
    client.create_experiment("older", artifact_location=str(tmp_path / "older"))
    logger_at(tmp_path, "older")
    assert client.get_experiment_by_name("older").tags[tags.EXPERIMENT_KIND] == tags.TRAINING_EXPERIMENT


def test_the_rollout_table_is_buffered_during_an_outage(tmp_path, monkeypatch):
    logger = logger_at(tmp_path)
    send = logger.client.log_table

    def refused(*args, **kwargs):
        raise ConnectionError("the store is away")
    monkeypatch.setattr(logger.client, "log_table", refused)
    logger.log_table({"step": [1], "response": ["2"]}, "rollouts/step_00001.json")
    assert logger.pending == 1  # kept, and training goes on
    logger.log_metrics({"loss": 1.0}, step=1)  # metrics are not held up by a table still waiting
    assert logger.pending == 1
    monkeypatch.setattr(logger.client, "log_table", send)
    assert logger.flush() and logger.pending == 0
    assert [f.path for f in logger.client.list_artifacts(logger.run_id, "rollouts")] == ["rollouts/step_00001.json"]
    assert [m.step for m in logger.client.get_metric_history(logger.run_id, "loss")] == [1]


def test_first_and_last_values_and_the_ui_command(tmp_path):
    logger = logger_at(tmp_path)
    for step, value in ((0, 0.1), (5, 0.3), (9, 0.6)):
        logger.log_metrics({"eval/acc": value, "loss": value}, step=step)
    assert first_and_last(logger.uri, logger.run_id, "eval/") == {"eval/acc": (0.1, 0.6)}
    command = ui_command(logger.uri)
    mlflow = Path(command.split()[0])
    assert mlflow.is_absolute() and mlflow == Path(sys.executable).absolute().parent / "mlflow"
    assert f"--backend-store-uri {logger.uri}" in command
