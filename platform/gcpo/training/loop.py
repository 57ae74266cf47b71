"""The Ray Train worker function: one GCPO (or any preset) training run, DESIGN.md section 3.

Every worker holds the policy in a DeepSpeed engine (and a frozen reference model only when
`algorithm.kl_coef > 0`). Rank 0 also owns the generator pool, the tasks, the verifier and the MLflow run; it
builds each step's batch and broadcasts it. After each update the full weights go to the pool with the step
number as their version.

Checkpoints (every `trainer.checkpoint_every` steps and at the end) go through `ray.train.report`: DeepSpeed's
engine state (weights, optimizer, LR schedule) per rank, plus `client_state` holding the step, the sampler
position, RNG states and the MLflow run id. A restarted worker group (Ray Train's FailureConfig) or a
re-launched run (`gcpo train --resume`) continues from the last one: same next prompts (the sampler position),
same samples (per-step sampling seeds), same MLflow run, and the logger skips steps already logged.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from gcpo.config import RunConfig, dump_yaml, from_dict, to_flat_dict
from gcpo.training.policy import build_policy, gather_state_dict, world
from gcpo.training.sampler import PromptSampler
from gcpo.training.update import StepBatch, update_policy

CKPT_TAG = "policy"


def say(line: str) -> None:
    """One line to the worker's real stdout (Ray forwards it to the driver once; `print` is patched by Ray Train
    to go to its logger as well, which would show every line twice)."""
    sys.__stdout__.write(line + "\n")
    sys.__stdout__.flush()


def _broadcast(obj, src: int = 0):
    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])


def _progress_line(step: int, steps: int, m: dict, elapsed: float, first_step: int) -> str:
    done, width = step + 1, 20
    filled = int(width * done / steps)
    eta = elapsed / max(done - first_step, 1) * (steps - done)
    return (f"[gcpo] step {done}/{steps} |{'#' * filled}{'.' * (width - filled)}| "
            f"reward {m.get('reward/mean', 0):.3f} acc {m.get('reward/accuracy', 0):.3f} "
            f"ga {m.get('ga/injected_frac', 0):.2f} step {m.get('time/step_s', 0):.1f}s "
            f"ETA {int(eta // 60)}m{int(eta % 60):02d}s")


def _floats(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, float)}


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point. `config`: {"run": RunConfig as a dict, "run_name": str, "parent_run_id": str|None,
    "mlflow_run_id": str|None (an MLflow run created beforehand, e.g. a sweep's child run)}."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gcpo.models import resolve_model

    cfg: RunConfig = from_dict(config["run"])
    t = cfg.trainer
    rank, world_size = world()
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # not a line per report with every metric
    # Ray pins OMP_NUM_THREADS to the worker's logical CPUs (often 1); the phases of a step run one after
    # another, so each worker may use its share of the machine's cores.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    torch.manual_seed(t.seed + rank)
    random.seed(t.seed + rank)
    model_dir = resolve_model(cfg.model)
    dtype = torch.float32 if cfg.model.dtype == "float32" else torch.bfloat16
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ref_model = None
    if cfg.algorithm.kl_coef > 0:
        ref_model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval().requires_grad_(False)
    engine = build_policy(AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype), t, cfg.model.dtype)
    if ref_model is not None:
        ref_model.to(engine.device)
    start_step, sampler_position, run_id = _restore(engine, rank)

    pool = None
    try:
        if rank == 0:
            from gcpo.rollout import build_engine

            pool = build_engine(cfg.rollout, model_dir, dtype=cfg.model.dtype)
        _train(cfg, config, engine, pool, tokenizer, pad_id, ref_model, start_step, sampler_position, run_id)
    finally:
        if pool is not None:
            pool.shutdown()


def _restore(engine, rank: int) -> tuple[int, int, str | None]:
    """Load the latest committed checkpoint if Ray Train has one: (step, sampler position, MLflow run id)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0, 0, None
    with checkpoint.as_directory() as ckpt_dir:
        _, client = engine.load_checkpoint(ckpt_dir, tag=CKPT_TAG)
    _set_rng_state(client["rng"][rank] if rank < len(client["rng"]) else client["rng"][0])
    return client["step"], client["sampler_position"], client["mlflow_run_id"]


def _train(cfg: RunConfig, config: dict, engine, pool, tokenizer, pad_id: int, ref_model, start_step: int,
           sampler_position: int, run_id: str | None) -> None:
    from gcpo.rollout import sampling_settings
    from gcpo.training.collect import collect_step_batch
    from gcpo.training.data import build_training_data, evaluate_policy

    t = cfg.trainer
    rank, _ = world()
    data = logger = None
    if rank == 0:
        from gcpo.tracking.training_run import TrainingRunLogger

        data = build_training_data(cfg, tokenizer)
        logger = TrainingRunLogger(
            cfg.tracking.uri, cfg.tracking.experiment, run_name=config["run_name"], params=to_flat_dict(cfg),
            run_id=run_id or config.get("mlflow_run_id"), parent_run_id=config.get("parent_run_id"),
            tags={"gcpo.preset": str(cfg.preset), "gcpo.run_name": config["run_name"]},
        )
        run_id = logger.run_id
        if start_step == 0:
            logger.log_text(dump_yaml(cfg), "config.yaml")
    state = gather_state_dict(engine) if start_step > 0 else None  # collective under ZeRO-3
    if rank == 0 and start_step > 0:  # generators start from the base weights: give them the checkpoint's
        logger.mark_resumed(start_step)
        say(f"[gcpo] resumed from the checkpoint of step {start_step}")
        pool.update_weights(state, version=start_step)
    sampler = PromptSampler(len(data.prompt_ids) if data else 1, seed=t.seed, position=sampler_position)
    settings = sampling_settings(cfg.rollout)

    def evaluate() -> dict:
        return evaluate_policy(pool, tokenizer, cfg) if rank == 0 else {}

    before = {}
    if start_step == 0 and t.eval_every > 0:
        before = evaluate()
        if rank == 0:
            logger.log_metrics(before, 0)
    started, final = time.time(), {}
    latest_eval = dict(before)  # every report carries the latest held-out metrics (a sweep's objective)
    for step in range(start_step, t.steps):
        t0 = time.time()
        batch, metrics, samples = (collect_step_batch(pool, data, sampler, cfg, settings, step=step)
                                   if rank == 0 else (None, {}, []))
        metrics["time/rollout_s"] = time.time() - t0
        batch: StepBatch = _broadcast(batch)
        t1 = time.time()
        if batch.num_groups > 0:
            metrics.update(update_policy(engine, batch, cfg, step=step, pad_id=pad_id, ref_model=ref_model))
        else:
            metrics["update/skipped"] = 1.0
        metrics["time/update_s"] = time.time() - t1
        state = gather_state_dict(engine)
        if rank == 0:
            metrics["time/sync_s"] = pool.update_weights(state, version=step + 1)
            metrics["time/step_s"] = time.time() - t0
            metrics["throughput/rollout_tokens_per_s"] = metrics["rollout/tokens"] / max(metrics["time/rollout_s"], 1e-9)
            if t.eval_every > 0 and (step + 1) % t.eval_every == 0 and step + 1 < t.steps:
                latest_eval = evaluate()
                metrics.update(latest_eval)
            logger.log_metrics(metrics, step + 1)
            if cfg.tracking.log_rollouts_every > 0 and (step + 1) % cfg.tracking.log_rollouts_every == 0:
                rows = [{**s, "prompt": data.questions[s["item"]]} for s in samples]
                logger.client.log_table(run_id, data=_columns(rows), artifact_file=f"rollouts/step_{step + 1:05d}.json")
            say(_progress_line(step, t.steps, metrics, time.time() - started, start_step))
        final = metrics
        if (step + 1) % t.checkpoint_every == 0 and step + 1 < t.steps:
            _report_with_checkpoint(engine, step + 1, sampler.position, run_id, _floats({**latest_eval, **metrics}))
    after = {}
    if rank == 0:
        if t.eval_every > 0:
            after = evaluate()
            logger.log_metrics(after, t.steps)
        logger.finish()
    summary = {f"before/{k}": v for k, v in before.items()} | {f"after/{k}": v for k, v in after.items()}
    # The last report carries the final checkpoint and the run's summary (Ray's Result.metrics shows it).
    _report_with_checkpoint(engine, t.steps, sampler.position, run_id, _floats({**final, **after, **summary}))


def _columns(rows: list[dict]) -> dict[str, list]:
    keys = ["step", "prompt", "response", "reward", "advantage", "golden"]
    return {k: [r[k] for r in rows] for k in keys}


def disk_full_error(error: Exception, folder: str, step: int, needed: int, free: int) -> OSError | None:
    """The error to raise when saving the checkpoint of `step` into `folder` failed with `free` bytes left there
    and about `needed` bytes needed (weights and Adam's two moments): None when the disk is not the cause."""
    if free >= needed:
        return None
    return OSError(f"the checkpoint of step {step} could not be written to {folder}: that disk has "
                   f"{free / 2**20:.0f} MiB free, a checkpoint needs about {needed / 2**20:.0f} MiB "
                   f"({type(error).__name__}: {error}). Free disk space or point TMPDIR at a larger disk; a run "
                   f"keeps `trainer.keep_checkpoints` checkpoints, a sweep keeps its `keep_checkpoints`")


def _report_with_checkpoint(engine, step: int, sampler_position: int, run_id: str | None, metrics: dict) -> None:
    """Every rank saves its DeepSpeed shard into a temp dir and reports it; Ray Train commits the checkpoint
    only once every rank has reported, so a crash mid-save never leaves a checkpoint that resume would use."""
    import ray.train
    from ray.train import Checkpoint

    rank, world_size = world()
    rng = [None] * world_size
    if world_size > 1:
        dist.all_gather_object(rng, _rng_state())
    else:
        rng = [_rng_state()]
    run_id, sampler_position = _broadcast((run_id, sampler_position))  # rank 0 owns both
    client = {"step": step, "sampler_position": sampler_position, "mlflow_run_id": run_id, "rng": rng}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            engine.save_checkpoint(tmp, tag=CKPT_TAG, client_state=client)
        except (RuntimeError, OSError) as e:  # torch's message on a full disk does not say so
            needed = 3 * sum(p.numel() * p.element_size() for p in engine.module.parameters())
            full = disk_full_error(e, tmp, step, needed, shutil.disk_usage(tmp).free)
            raise (full or e) from e
        Path(tmp, "gcpo_step.txt").write_text(str(step))
        ray.train.report({**metrics, "step": step, "mlflow_run_id": run_id or ""},
                         checkpoint=Checkpoint.from_directory(tmp))
