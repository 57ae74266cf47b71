"""The Ray Train worker function: one training run of any preset (docs/architecture.md, "One training step").

Every worker holds the policy in a DeepSpeed engine (`policy_engine`; a frozen reference model too, only when
`algorithm.kl_coef > 0`). Rank 0 also holds a `Rank0Driver` (the rollout engine, the verifier pool, the data, the
held-out tasks and the MLflow run); it builds each step's batch and broadcasts it, every rank updates on its shard,
and the gathered weights go to the generators with the step number as their version. Checkpoints (every
`trainer.checkpoint_every` steps and at the end) and resuming are `gcpo.training.checkpoint`'s.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time

import torch

from gcpo.config import RunConfig, from_dict
from gcpo.console import PREFIX
from gcpo.hardware import dtype_line, resolve_dtype
from gcpo.training.checkpoint import Restored, report_with_checkpoint, restore_checkpoint
from gcpo.training.deepspeed_policy import build_policy, generator_weights
from gcpo.training.distributed import broadcast_object, world
from gcpo.training.driver import FollowerDriver, Rank0Driver, say
from gcpo.training.lora import apply_lora
from gcpo.training.update import update_policy


def _floats(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, float)}


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point. `config`: {"run": RunConfig as a dict, "run_name": str, "parent_run_id": str|None,
    "mlflow_run_id": str|None (an MLflow run created beforehand, e.g. a sweep's child run)}."""
    from transformers import AutoTokenizer

    from gcpo.models import load_causal_lm, pad_token_id, resolve_model

    cfg: RunConfig = from_dict(config["run"])
    t = cfg.trainer
    rank, world_size = world()
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # not a line per report with every metric
    # Ray pins OMP_NUM_THREADS to the worker's logical CPUs (often 1); the phases of a step run one after
    # another, so each worker may use its share of the cores this process may run on (its CPU affinity: a node
    # pinned to some cores, e.g. benchmarks/staleness.py's, gets threads for those alone).
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // world_size))
    torch.manual_seed(t.seed + rank)
    random.seed(t.seed + rank)
    cfg = with_concrete_dtype(cfg, rank)
    model_dir = resolve_model(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pad_id = pad_token_id(tokenizer)
    early = EarlyEngine.start(cfg, model_dir) if rank == 0 else None
    driver = FollowerDriver()
    try:
        ref_model = None
        if cfg.algorithm.kl_coef > 0:
            ref_model = load_causal_lm(model_dir, cfg.model.dtype).eval().requires_grad_(False)
        policy_model = apply_lora(load_causal_lm(model_dir, cfg.model.dtype), cfg.model.lora)
        policy_engine = build_policy(policy_model, t, cfg.model.dtype)
        if ref_model is not None:
            ref_model.to(policy_engine.device)
        restored = restore_checkpoint(policy_engine, cfg.model)
        if rank == 0:
            driver = Rank0Driver(cfg, config, model_dir, tokenizer, restored,
                                 rollout_engine=early.take() if early is not None else None)
        train(cfg, policy_engine, driver, restored, pad_id=pad_id, ref_model=ref_model)
    finally:
        driver.close()
        if early is not None:
            early.close()  # only when the driver never took it (a failed policy build)


class EarlyEngine:
    """The vLLM generator pool started before the policy is built (`trainer.overlap_startup`): its engines load in
    their own processes while this one loads the policy and builds DeepSpeed; the pool's constructor, which mostly
    waits on them, runs in a thread. Only the vLLM backend (the transformers engine loads in this process and would
    draw from its random stream). `take()` waits for the pool (raising what its start raised); `close()` shuts it
    down if nobody took it."""

    def __init__(self, future):
        self.future, self.taken = future, False

    @classmethod
    def start(cls, cfg: RunConfig, model_dir) -> "EarlyEngine | None":
        from concurrent.futures import ThreadPoolExecutor

        from gcpo.rollout import build_engine

        if not cfg.trainer.overlap_startup or cfg.rollout.backend != "vllm":
            return None
        executor = ThreadPoolExecutor(1, thread_name_prefix="gcpo-generators")
        future = executor.submit(build_engine, cfg.rollout, model_dir, model_dtype=cfg.model.dtype)
        executor.shutdown(wait=False)
        return cls(future)

    def take(self):
        self.taken = True
        return self.future.result()

    def close(self) -> None:
        if self.taken:
            return
        self.taken = True
        try:
            self.future.result().shutdown()
        except Exception:  # its start failed: nothing to stop (the error that matters is the one raised above)
            pass


def with_concrete_dtype(cfg: RunConfig, rank: int) -> RunConfig:
    """`cfg` with `model.dtype` float32 or bfloat16: `auto` resolved on rank 0's machine (`gcpo.hardware`), said in
    one line, and the same on every rank (one DeepSpeed configuration). The MLflow run keeps the requested value
    as `model.dtype` and the resolved one as `model.dtype_resolved` (`Rank0Driver`)."""
    if cfg.model.dtype != "auto":
        return cfg
    choice = broadcast_object(resolve_dtype(cfg.model.dtype) if rank == 0 else None)
    if rank == 0:
        say(f"{PREFIX} {dtype_line(cfg.model.dtype, choice)}")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dtype=choice.dtype))


def train(cfg: RunConfig, policy_engine, driver: FollowerDriver, restored: Restored, *, pad_id: int,
          ref_model=None) -> None:
    """The step loop, the same on every rank: collect (rank 0) and broadcast, update, gather and sync, checkpoint."""
    t = cfg.trainer
    state = generator_weights(policy_engine) if restored.step > 0 else None  # collective under ZeRO-3
    if restored.step > 0:
        driver.resume(state, restored)
    before = driver.evaluate_before() if restored.step == 0 else {}
    latest_eval, final = dict(before), {}  # every report carries the latest held-out metrics (a sweep's objective)
    for step in range(restored.step, t.steps):
        t0 = time.time()
        batch, metrics, samples = driver.collect(step)
        metrics["time/rollout_s"] = time.time() - t0
        batch = broadcast_object(batch)
        t1 = time.time()
        if batch.num_groups > 0:
            metrics.update(update_policy(policy_engine, batch, cfg, step=step, pad_id=pad_id, ref_model=ref_model))
        else:
            metrics["update/skipped"] = 1.0
        metrics["time/update_s"] = time.time() - t1
        held_out = driver.finish_step(step, generator_weights(policy_engine), metrics, samples, t0)
        latest_eval = held_out if held_out is not None else latest_eval
        final = metrics
        if (step + 1) % t.checkpoint_every == 0 and step + 1 < t.steps:
            report_with_checkpoint(policy_engine, step + 1, driver.rollout_state(), driver.run_id,
                                   _floats({**latest_eval, **metrics}), cfg.model)
    after = driver.finish()
    summary = {f"before/{k}": v for k, v in before.items()} | {f"after/{k}": v for k, v in after.items()}
    # The last report carries the final checkpoint and the run's summary (Ray's Result.metrics shows it).
    report_with_checkpoint(policy_engine, t.steps, driver.rollout_state(), driver.run_id,
                           _floats({**final, **after, **summary}), cfg.model)
