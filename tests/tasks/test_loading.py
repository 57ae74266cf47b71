"""Task paths as the driver and the Ray workers (whose working folder differs) must both read them."""

from pathlib import Path

from gcpo.config import load_config
from gcpo.tasks.loading import absolute_paths
from gcpo.training.fit import absolutize


def test_task_paths_are_resolved_against_the_base_for_the_workers(tmp_path):
    cfg = load_config(overrides=["task.name=jsonl", "task.path=data/train.jsonl", "task.eval_path=held.jsonl"])
    task = absolute_paths(cfg.task, tmp_path)
    assert (task.path, task.eval_path) == (str(tmp_path / "data" / "train.jsonl"), str(tmp_path / "held.jsonl"))
    run = absolutize(cfg, tmp_path)  # what a training run ships to its workers: both files, not only the first
    assert (run.task.path, run.task.eval_path) == (task.path, task.eval_path)
    assert Path(run.trainer.output_dir) == tmp_path / "runs"
    assert absolute_paths(load_config().task, tmp_path).path is None  # a built-in task has no file
