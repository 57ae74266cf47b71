"""Checkpoints through Ray Train: every rank saves its DeepSpeed shard, Ray Train commits once all have reported.

A checkpoint holds DeepSpeed's engine state (weights, optimizer, LR schedule) per rank, plus `client_state`: the
step, the sampler position, every rank's RNG states and the MLflow run id. A restarted worker group (Ray Train's
FailureConfig) or a re-launched run (`gcpo train --resume`) continues from the last committed one: same next
prompts (the sampler position), same samples (per-step sampling seeds), same MLflow run.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from gcpo.training.deepspeed_policy import full_parameter_bytes
from gcpo.training.distributed import all_gather_object, broadcast_object, world

CKPT_TAG = "policy"


@dataclass(frozen=True)
class Restored:
    """Where a run starts: step 0 of a fresh run, or the state of its last committed checkpoint."""

    step: int = 0
    sampler_position: int = 0
    mlflow_run_id: str | None = None


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])


def restore_checkpoint(policy_engine) -> Restored:
    """Load the latest committed checkpoint if Ray Train has one (weights, optimizer, schedule, this rank's RNG)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return Restored()
    rank, _ = world()
    with checkpoint.as_directory() as ckpt_dir:
        _, client = policy_engine.load_checkpoint(ckpt_dir, tag=CKPT_TAG)
    set_rng_state(client["rng"][rank] if rank < len(client["rng"]) else client["rng"][0])
    return Restored(client["step"], client["sampler_position"], client["mlflow_run_id"])


def disk_full_error(error: Exception, folder: str, step: int, needed: int, free: int) -> OSError | None:
    """The error to raise when saving the checkpoint of `step` into `folder` failed with `free` bytes left there
    and about `needed` bytes needed (weights and Adam's two moments): None when the disk is not the cause."""
    if free >= needed:
        return None
    return OSError(f"the checkpoint of step {step} could not be written to {folder}: that disk has "
                   f"{free / 2**20:.0f} MiB free, a checkpoint needs about {needed / 2**20:.0f} MiB "
                   f"({type(error).__name__}: {error}). Free disk space or point TMPDIR at a larger disk; a run "
                   f"keeps `trainer.keep_checkpoints` checkpoints, a sweep keeps its `keep_checkpoints`")


def checkpoint_bytes(policy_engine) -> int:
    """About what a checkpoint needs: the full weights and Adam's two moments (full, not this rank's partition)."""
    return 3 * full_parameter_bytes(policy_engine)


def report_with_checkpoint(policy_engine, step: int, sampler_position: int, run_id: str | None,
                           metrics: dict) -> None:
    """Every rank saves its DeepSpeed shard into a temp dir and reports it; Ray Train commits the checkpoint
    only once every rank has reported, so a crash mid-save never leaves a checkpoint that resume would use."""
    import ray.train
    from ray.train import Checkpoint

    rng = all_gather_object(rng_state())
    run_id, sampler_position = broadcast_object((run_id, sampler_position))  # rank 0 owns both
    client = {"step": step, "sampler_position": sampler_position, "mlflow_run_id": run_id, "rng": rng}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            policy_engine.save_checkpoint(tmp, tag=CKPT_TAG, client_state=client)
        except (RuntimeError, OSError) as e:  # torch's message on a full disk does not say so
            full = disk_full_error(e, tmp, step, checkpoint_bytes(policy_engine), shutil.disk_usage(tmp).free)
            raise (full or e) from e
        Path(tmp, "gcpo_step.txt").write_text(str(step))
        ray.train.report({**metrics, "step": step, "mlflow_run_id": run_id or ""},
                         checkpoint=Checkpoint.from_directory(tmp))
