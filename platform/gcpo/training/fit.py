"""One training run as a Ray Train `TorchTrainer` whose workers run `gcpo.training.loop.train_loop_per_worker`.

`fit(cfg)` runs one training run and returns a `TrainOutcome`; `--resume` re-runs the same Ray Train run name
and storage path, which Ray Train V2 restores from its latest committed checkpoint. `gcpo train` calls it
directly; a sweep's Tune trial (`gcpo.sweeps.runner`) calls it with Tune's report callback.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

from gcpo.config import RunConfig, TrainerConfig, from_dict, load_config, to_dict
from gcpo.eval_cache import EVAL_CACHE_ENV
from gcpo.models import absolute_model_name, resolve_model
from gcpo.run_folder import RUN_CONFIG, create_run_folder, find_run_folder
from gcpo.tasks.loading import absolute_paths
from gcpo.tracking.training_run import absolute_tracking_uri


@dataclass
class TrainOutcome:
    run_name: str
    run_dir: Path
    metrics: dict
    mlflow_run_id: str
    tracking_uri: str


def absolutize(cfg: RunConfig, base: Path) -> RunConfig:
    """Resolve paths (files, local model folders) that Ray workers (whose cwd differs) must see the same way as
    the driver."""
    tracking = dataclasses.replace(cfg.tracking, uri=absolute_tracking_uri(cfg.tracking.uri, base))
    eval_cache = cfg.trainer.eval_cache_dir or os.environ.get(EVAL_CACHE_ENV, "")  # the driver's env, for the workers
    trainer = dataclasses.replace(cfg.trainer, output_dir=str((base / cfg.trainer.output_dir).resolve()),
                                  eval_cache_dir=eval_cache and str((base / Path(eval_cache).expanduser()).resolve()))
    model = dataclasses.replace(cfg.model, name=absolute_model_name(cfg.model.name, base))
    task = dataclasses.replace(absolute_paths(cfg.task, base),
                               golden_model=absolute_model_name(cfg.task.golden_model, base))
    return dataclasses.replace(cfg, tracking=tracking, trainer=trainer, model=model, task=task)


def worker_resources(t: TrainerConfig) -> dict[str, float]:
    """What each training worker asks Ray for: its CPUs, one GPU on cuda, one unit of `placement_resource`."""
    return ({"CPU": t.cpus_per_worker} | ({"GPU": 1} if t.device == "cuda" else {})
            | ({t.placement_resource: 1} if t.placement_resource else {}))


def build_trainer(cfg: RunConfig, run_name: str, *, parent_run_id: str | None = None,
                  mlflow_run_id: str | None = None, max_failures: int = 1, callbacks: list | None = None):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig as RayRunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from gcpo.training.loop import train_loop_per_worker

    gpu = cfg.trainer.device == "cuda"
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"run": to_dict(cfg), "run_name": run_name, "parent_run_id": parent_run_id,
                           "mlflow_run_id": mlflow_run_id},
        scaling_config=ScalingConfig(num_workers=cfg.trainer.num_workers, use_gpu=gpu,
                                     resources_per_worker=worker_resources(cfg.trainer)),
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        run_config=RayRunConfig(
            name=run_name, storage_path=cfg.trainer.output_dir,
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.trainer.keep_checkpoints),
            callbacks=callbacks,
        ),
    )


def fit(cfg: RunConfig, *, run_name: str | None = None, base: Path | None = None,
        parent_run_id: str | None = None, mlflow_run_id: str | None = None, max_failures: int = 1,
        callbacks: list | None = None) -> TrainOutcome:
    """Run (or, when `<trainer.output_dir>/<run_name>` already holds a checkpointed run, resume) one training run
    (the run folder's layout: `gcpo.run_folder`).

    `mlflow_run_id`: log into this existing run (a sweep's child run) instead of creating one; `callbacks`: Ray
    Train user callbacks (a sweep passes Tune's report callback); `max_failures`: worker-group restarts.
    """
    cfg = absolutize(cfg, base or Path.cwd())
    run_name = run_name or cfg.tracking.run_name or f"{cfg.preset or 'custom'}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = create_run_folder(cfg, run_name)
    resolve_model(cfg.model)  # convert/build the model once, before workers race for it
    result = build_trainer(cfg, run_name, parent_run_id=parent_run_id, mlflow_run_id=mlflow_run_id,
                           max_failures=max_failures, callbacks=callbacks).fit()
    metrics = dict(result.metrics or {})
    return TrainOutcome(run_name, run_dir, metrics, str(metrics.get("mlflow_run_id", "")), cfg.tracking.uri)


def load_run_config(run: str | Path, base: Path) -> tuple[RunConfig, str]:
    """For `--resume`: a run folder or a run name (`gcpo.run_folder.find_run_folder`) -> its saved config and run
    name."""
    folder, looked = find_run_folder(run, base)
    if folder is None:
        from gcpo.config import ConfigError

        raise ConfigError(f"--resume: no run at {run!r} (looked for {RUN_CONFIG} in "
                          f"{', '.join(str(p) for p in looked)})")
    cfg = load_config(folder / RUN_CONFIG)
    return from_dict(to_dict(cfg)), folder.name
