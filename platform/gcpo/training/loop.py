"""The Ray Train worker function: one GCPO (or any preset) training run, DESIGN.md section 3.

Every worker holds the policy in a DeepSpeed engine (and a frozen reference model only when
`algorithm.kl_coef > 0`). Rank 0 also owns the generator pool, the tasks, the verifier and the MLflow run; it
builds each step's batch and broadcasts it. After each update the full weights go to the pool with the step
number as their version.

Checkpoints (every `trainer.checkpoint_every` steps and at the end) go through `ray.train.report`: DeepSpeed's
engine state (weights, optimizer, LR schedule) per rank, plus `client_state` holding the step, the sampler
position, RNG states and the MLflow run id. A restarted worker group (Ray Train's FailureConfig) or a
re-launched run (`gcpo train --resume`) continues from the last one: same next prompts, same MLflow run, and
the logger skips steps already logged.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from gcpo.config import RunConfig, from_dict, to_flat_dict
from gcpo.training.policy import build_policy, gather_state_dict, world
from gcpo.training.sampler import PromptSampler
from gcpo.training.update import StepBatch, update_policy

CKPT_TAG = "policy"


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


def _progress_line(step: int, steps: int, m: dict, elapsed: float, started_step: int) -> str:
    done = step + 1
    width = 20
    filled = int(width * done / steps)
    per_step = elapsed / max(done - started_step, 1)
    eta = per_step * (steps - done)
    return (f"[gcpo] step {done}/{steps} |{'#' * filled}{'.' * (width - filled)}| "
            f"reward {m.get('reward/mean', 0):.3f} acc {m.get('reward/accuracy', 0):.3f} "
            f"ga {m.get('ga/injected_frac', 0):.2f} step {m.get('time/step_s', 0):.1f}s "
            f"ETA {int(eta // 60)}m{int(eta % 60):02d}s")


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point. `config`: {"run": RunConfig as a dict, "run_name": str, "parent_run_id": str|None}."""
    import ray.train
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gcpo.models import resolve_model
    from gcpo.rollout import build_engine, sampling_settings
    from gcpo.training.collect import collect_step_batch
    from gcpo.training.data import build_training_data, evaluate_policy

    cfg: RunConfig = from_dict(config["run"])
    t = cfg.trainer
    rank, world_size = world()
    torch.manual_seed(t.seed + rank)
    random.seed(t.seed + rank)
    model_dir = resolve_model(cfg.model)
    dtype = torch.float32 if cfg.model.dtype == "float32" else torch.bfloat16
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    ref_model = None
    if cfg.algorithm.kl_coef > 0:
        ref_model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval().requires_grad_(False)
    engine = build_policy(model, t, cfg.model.dtype)

    start_step, sampler_position, run_id = 0, 0, None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt_dir:
            _, client = engine.load_checkpoint(ckpt_dir, tag=CKPT_TAG)
        start_step, sampler_position, run_id = client["step"], client["sampler_position"], client["mlflow_run_id"]
        _set_rng_state(client["rng"][rank] if rank < len(client["rng"]) else client["rng"][0])

    pool = data = logger = None
    before = {}
    if rank == 0:
        from gcpo.tracking.training_run import TrainingRunLogger

        data = build_training_data(cfg, tokenizer)
        pool = build_engine(cfg.rollout, model_dir, dtype=cfg.model.dtype)
        logger = TrainingRunLogger(
            cfg.tracking.uri, cfg.tracking.experiment, run_name=config["run_name"], params=to_flat_dict(cfg),
            run_id=run_id, parent_run_id=config.get("parent_run_id"),
            tags={"gcpo.preset": str(cfg.preset), "gcpo.run_name": config["run_name"]},
        )
        run_id = logger.run_id
        if start_step == 0:
            from gcpo.config import dump_yaml

            logger.log_text(dump_yaml(cfg), "config.yaml")
        if start_step > 0:  # generators start from the base weights: give them the checkpoint's
            pool.update_weights(gather_state_dict(engine), version=start_step)
    elif engine.zero_optimization_stage() == 3 and start_step > 0:
        gather_state_dict(engine)
    sampler = PromptSampler(len(data.prompt_ids) if data else 1, seed=t.seed, position=sampler_position)
    settings = sampling_settings(cfg.rollout)

    def evaluate(step: int) -> dict:
        metrics = evaluate_policy(pool, tokenizer, cfg) if rank == 0 else {}
        if rank == 0:
            logger.log_metrics(metrics, step)
        return metrics

    if start_step == 0 and t.eval_every > 0:
        before = evaluate(0)
    started = time.time()
    final = {}
    for step in range(start_step, t.steps):
        t0 = time.time()
        if rank == 0:
            batch, metrics, samples = collect_step_batch(pool, data, sampler, cfg, settings, step=step)
            metrics["time/rollout_s"] = time.time() - t0
        else:
            batch, metrics, samples = None, {}, []
        batch: StepBatch = _broadcast(batch)
        t1 = time.time()
        if batch.num_groups > 0:
            metrics.update(update_policy(engine, batch, cfg, step=step, pad_id=pad_id, ref_model=ref_model))
        else:
            metrics["update/skipped"] = 1.0
        t2 = time.time()
        state = gather_state_dict(engine)
        if rank == 0:
            metrics["time/sync_s"] = pool.update_weights(state, version=step + 1)
        metrics["time/update_s"] = t2 - t1
        metrics["time/step_s"] = time.time() - t0
        if rank == 0:
            metrics["throughput/rollout_tokens_per_s"] = metrics["rollout/tokens"] / max(metrics["time/rollout_s"], 1e-9)
            is_last = step + 1 == t.steps
            if t.eval_every > 0 and ((step + 1) % t.eval_every == 0 or is_last):
                metrics.update(evaluate(step + 1) if not is_last else {})
            logger.log_metrics(metrics, step + 1)
            if cfg.tracking.log_rollouts_every > 0 and (step + 1) % cfg.tracking.log_rollouts_every == 0:
                for s in samples:
                    s["prompt"] = data.questions[s["item"]]
                logger.client.log_table(run_id, data=_columns(samples), artifact_file=f"rollouts/step_{step + 1:05d}.json")
            print(_progress_line(step, t.steps, metrics, time.time() - started, start_step), flush=True)
        final = metrics
        if (step + 1) % t.checkpoint_every == 0 or step + 1 == t.steps:
            _report_with_checkpoint(engine, step + 1, sampler.position, run_id, metrics if rank == 0 else {})
    after = {}
    if rank == 0:
        if t.eval_every > 0:
            after = evaluate(t.steps)
        logger.finish()
        pool.shutdown()
    summary = {f"before/{k}": v for k, v in before.items()} | {f"after/{k}": v for k, v in after.items()}
    ray.train.report({**{k: v for k, v in final.items() if isinstance(v, float)}, **summary,
                      "step": t.steps, "mlflow_run_id": run_id or ""})


def _columns(rows: list[dict]) -> dict[str, list]:
    keys = ["step", "prompt", "response", "reward", "advantage", "golden"]
    return {k: [r[k] for r in rows] for k in keys}


def _report_with_checkpoint(engine, step: int, sampler_position: int, run_id: str | None, metrics: dict) -> None:
    """Every rank saves its DeepSpeed shard into one temp dir and reports it; Ray Train commits the checkpoint
    only once every rank has reported, so a crash mid-save never leaves a checkpoint that resume would use."""
    import ray.train
    from ray.train import Checkpoint

    rank, world_size = world()
    rng = [None] * world_size
    if world_size > 1:
        dist.all_gather_object(rng, _rng_state())
    else:
        rng = [_rng_state()]
    client = {"step": step, "sampler_position": sampler_position, "mlflow_run_id": _broadcast(run_id), "rng": rng}
    with tempfile.TemporaryDirectory() as tmp:
        engine.save_checkpoint(tmp, tag=CKPT_TAG, client_state=client)
        Path(tmp, "gcpo_step.txt").write_text(str(step))
        ray.train.report({"step": step, **{k: v for k, v in metrics.items() if isinstance(v, float)}},
                         checkpoint=Checkpoint.from_directory(tmp))
