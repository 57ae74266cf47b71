"""Checkpoints through Ray Train: every rank saves its DeepSpeed shard, Ray Train commits once all have reported.

A checkpoint holds DeepSpeed's engine state (weights, optimizer, LR schedule) per rank, plus `client_state`: the
step, the sampler position, every rank's RNG states, the MLflow run id, and rank 0's rollout state: the batches
sampled ahead under bounded staleness (`rollout.max_staleness`; as plain values) and the prefix-hint fraction. A restarted worker group (Ray Train's
FailureConfig) or a re-launched run (`gcpo train --resume`) continues from the last committed one: same next
prompts (the sampler position), same samples (per-step sampling seeds), same MLflow run.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gcpo.config import ModelConfig
from gcpo.training.deepspeed_policy import full_parameter_bytes
from gcpo.training.distributed import all_gather_object, broadcast_object, world
from gcpo.training.lora import adapters_only, check_lora_file, write_lora_file

CKPT_TAG = "policy"
STEP_FILE = "gcpo_step.txt"  # in every checkpoint folder: the step it was taken after


@dataclass(frozen=True)
class Restored:
    """Where a run starts: step 0 of a fresh run, or the state of its last committed checkpoint."""

    step: int = 0
    sampler_position: int = 0
    mlflow_run_id: str | None = None
    removed_uncommitted: tuple[str, ...] = ()  # checkpoint folders a killed attempt left half-written
    queued: dict = field(default_factory=dict)  # step -> a batch sampled ahead (gcpo.training.pipeline.to_record)
    hint_fraction: float | None = None  # the adaptive prefix-hint fraction, when hints are on


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])


def restore_checkpoint(policy_engine, model: ModelConfig) -> Restored:
    """Load the latest committed checkpoint if Ray Train has one (weights, optimizer, schedule, this rank's RNG).
    Under LoRA the checkpoint holds the adapters only: the base weights are the model's as loaded."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return Restored()
    rank, _ = world()
    with checkpoint.as_directory() as ckpt_dir:
        check_lora_file(ckpt_dir, model.name, model.lora)
        _, client = policy_engine.load_checkpoint(ckpt_dir, tag=CKPT_TAG, load_module_strict=model.lora.rank == 0)
    set_rng_state(client["rng"][rank] if rank < len(client["rng"]) else client["rng"][0])
    removed = remove_uncommitted(Path(checkpoint.path)) if rank == 0 else ()
    rollout = client.get("rollout", {})
    return Restored(client["step"], client["sampler_position"], client["mlflow_run_id"], removed,
                    rollout.get("queued", {}), rollout.get("hint_fraction"))


def remove_uncommitted(restored: Path) -> tuple[str, ...]:
    """Delete the checkpoint folders beside `restored` that are newer than it, and return their names.

    Ray Train resumes from its latest committed checkpoint, so a newer folder is one a killed attempt was still
    writing (or had written but not every rank had reported): Ray never registered it, so `keep_checkpoints`
    would never delete it and it would hold its disk for good. Folder names are `checkpoint_<timestamp>`, so
    newer sorts later. Only a local run folder is tidied (remote storage is left alone)."""
    if not restored.is_dir():
        return ()
    newer = sorted(d for d in restored.parent.glob("checkpoint_*") if d.is_dir() and d.name > restored.name)
    for folder in newer:
        shutil.rmtree(folder, ignore_errors=True)
    return tuple(d.name for d in newer)


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
    """About what a checkpoint needs: the trained weights (all of them, or LoRA's adapters) and Adam's two
    moments (full, not this rank's partition)."""
    return 3 * full_parameter_bytes(policy_engine, trainable_only=True)


def report_with_checkpoint(policy_engine, step: int, rollout_state: dict, run_id: str | None,
                           metrics: dict, model: ModelConfig) -> None:
    """Every rank saves its DeepSpeed shard into a temp dir and reports it; Ray Train commits the checkpoint
    only once every rank has reported, so a crash mid-save never leaves a checkpoint that resume would use.
    Under LoRA only the adapters (and their Adam state) are saved, with `lora.json` naming the base.
    `rollout_state`: rank 0's `sampler_position`, `queued` batches and `hint_fraction` (other ranks pass {})."""
    import ray.train
    from ray.train import Checkpoint

    rng = all_gather_object(rng_state())
    run_id, rollout_state = broadcast_object((run_id, rollout_state))  # rank 0 owns both
    client = {"step": step, "sampler_position": rollout_state.get("sampler_position", 0), "mlflow_run_id": run_id,
              "rng": rng, "rollout": {k: v for k, v in rollout_state.items() if k != "sampler_position"}}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with adapters_only(policy_engine.module):  # and no frozen fragments (ZeRO 2/3)
                policy_engine.save_checkpoint(tmp, tag=CKPT_TAG, client_state=client,
                                              exclude_frozen_parameters=model.lora.rank > 0)
        except (RuntimeError, OSError) as e:  # torch's message on a full disk does not say so
            full = disk_full_error(e, tmp, step, checkpoint_bytes(policy_engine), shutil.disk_usage(tmp).free)
            raise (full or e) from e
        Path(tmp, STEP_FILE).write_text(str(step))
        if model.lora.rank > 0:
            write_lora_file(tmp, model.name, model.lora)
        ray.train.report({**metrics, "step": step, "mlflow_run_id": run_id or ""},
                         checkpoint=Checkpoint.from_directory(tmp))
