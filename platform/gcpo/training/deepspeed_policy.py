"""The policy in a DeepSpeed engine: its config, the LR schedule, building it, stepping it, gathering its weights.

`build_policy` wraps a transformers model in a DeepSpeed engine (called `policy_engine` by its users, to tell it
from the rollout engine). We micro-batch ourselves: DeepSpeed's gradient accumulation is 1 and the accumulation
boundary is set by hand on a mini-batch's last micro-batch (see `gcpo.training.update`).
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch

from gcpo.config import TrainerConfig
from gcpo.hardware import concrete_dtype
from gcpo.training.distributed import world
from gcpo.training.lora import ADAPTER, is_lora, merged_weights, sync_names


def deepspeed_config(t: TrainerConfig, dtype: str) -> dict:
    """We micro-batch ourselves: GAS=1 with the accumulation boundary set by hand on the last micro-batch.

    bf16 (`dtype` bfloat16, or auto resolved to it): the model's weights, activations and gradients are bf16 and
    the optimiser steps fp32 master copies, then rounds them into the model (checked in DeepSpeed 0.19: ZeRO 0
    wraps the optimiser in `FP16_UnfusedOptimizer`, ZeRO 1-3 keep fp32 partitions; tested,
    tests/training/test_bf16_master_weights.py). At ZeRO 0 the gradients of a step's micro-batches are summed in
    the parameters' bf16 `.grad` (DeepSpeed 0.19 refuses an fp32 gradient-accumulation dtype without ZeRO). The
    bf16 wrapper (as ZeRO's optimisers) steps the optimiser once on zero gradients when it is built: Adam's step
    count starts at 1, its bias correction one step ahead of the fp32 ZeRO-0 path's plain AdamW."""
    cfg = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": t.grad_clip,
        "zero_optimization": {"stage": t.zero_stage},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
    }
    if concrete_dtype(dtype) == "bfloat16":
        cfg["bf16"] = {"enabled": True}
    return cfg


def lr_lambda(t: TrainerConfig) -> Callable[[int], float]:
    """Multiplier of trainer.lr at optimiser step s: linear warmup, then constant, cosine or linear decay to 0."""

    def fn(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / (t.warmup_steps + 1)
        if t.lr_schedule == "constant":
            return 1.0
        span = max(1, t.steps - t.warmup_steps)
        frac = min(1.0, (step - t.warmup_steps) / span)
        return 0.5 * (1 + math.cos(math.pi * frac)) if t.lr_schedule == "cosine" else 1.0 - frac

    return fn


def skip_inference_shm_op() -> None:
    """Keep DeepSpeed from JIT-compiling its CPU shared-memory op (`deepspeed_shm_comm`) when it creates its comm
    backend. The op serves only `inference_all_reduce`; training's collectives go through torch.distributed. The
    build costs about a minute of both cores on this 2-core machine, on every fresh machine, and again each time a
    process's compile command differs from the cached one's (seen 2-3 times per test-suite run)."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # the probed table, cached and edited in place


def build_policy(model: torch.nn.Module, t: TrainerConfig, dtype: str):
    """Wrap `model` in a DeepSpeed engine with AdamW and the LR schedule (the schedule steps once per update)."""
    import deepspeed

    skip_inference_shm_op()
    trainable = [p for p in model.parameters() if p.requires_grad]  # LoRA: the adapters only
    optimizer = torch.optim.AdamW(trainable, lr=t.lr, weight_decay=t.weight_decay)
    updates_per_step = t.epochs * t.mini_batches
    base = lr_lambda(t)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: base(k // updates_per_step))
    policy_engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(t, dtype),
        dist_init_required=False,
    )
    return policy_engine


def current_lr(policy_engine, default: float) -> float:
    """The learning rate of the last optimiser step (`default` when the engine has no scheduler)."""
    return policy_engine.lr_scheduler.get_last_lr()[0] if policy_engine.lr_scheduler else default


def gather_state_dict(policy_engine, keep: Callable[[str], bool] | None = None) -> dict[str, torch.Tensor] | None:
    """Full fp32 weights on rank 0 (None elsewhere), only the names `keep` accepts when given; under ZeRO-3
    every rank must call this."""
    import deepspeed

    rank, _ = world()
    module = policy_engine.module
    if policy_engine.zero_optimization_stage() == 3:
        state = {}
        for name, param in module.named_parameters():
            if keep is not None and not keep(name):
                continue
            with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                if rank == 0:
                    state[name] = param.data.detach().float().cpu().clone()
        return state if rank == 0 else None
    if rank != 0:
        return None
    return {k: v.detach().float().cpu().clone() for k, v in module.state_dict().items() if keep is None or keep(k)}


def generator_weights(policy_engine) -> dict[str, torch.Tensor] | None:
    """What the generators need after an update (rank 0; None elsewhere; collective under ZeRO-3): the full
    weights, or under LoRA only the adapted layers' merged weights (`gcpo.training.lora`)."""
    if not is_lora(policy_engine.module):
        return gather_state_dict(policy_engine)
    peft_config = policy_engine.module.peft_config[ADAPTER]
    state = gather_state_dict(policy_engine, keep=sync_names)
    return None if state is None else merged_weights(state, peft_config.lora_alpha / peft_config.r)


def full_parameter_bytes(policy_engine, trainable_only: bool = False) -> int:
    """The bytes of the full (unpartitioned) parameters (only those that train, with `trainable_only`): under
    ZeRO-3 a rank holds only a partition, whose `numel()` is near zero, so the full shape comes from `ds_numel`."""
    total = 0
    for p in policy_engine.module.parameters():
        if p.requires_grad or not trainable_only:
            total += getattr(p, "ds_numel", p.numel()) * p.element_size()
    return total


def step_with_grad_norm(policy_engine, lr_scale: float = 1.0) -> float:
    """`policy_engine.step()` at `lr_scale` x the scheduled learning rate, returning the global pre-clip gradient
    norm.

    `lr_scale` is GPG's alpha = B / (B - M) (`algorithm.gpg_alpha`; arXiv 2504.02546, eq. 7-8). The paper
    multiplies the loss by alpha, which under SGD multiplies the step by alpha; here every update is clipped to
    `trainer.grad_clip` and then normalised by Adam (m / sqrt(v): invariant to a constant gradient scale, exactly
    so on Adam's first step), so a loss scale changes nothing measurable (tested). Scaling this step's learning
    rate gives the step length alpha x the usual one, which is what the paper's unbiased-gradient argument asks
    of the update. Only this step: the schedule's value is back in place afterwards.

    ZeRO stages 1-3 report the norm themselves; at stage 0 (fp32) DeepSpeed clips without keeping the norm, so we
    compute it from the (already all-reduced) gradients before stepping.
    """
    norm = None
    if policy_engine.zero_optimization_stage() == 0:
        grads = [p.grad.detach().float() for p in policy_engine.module.parameters() if p.grad is not None]
        norms = [torch.linalg.vector_norm(g) for g in grads]
        norm = torch.linalg.vector_norm(torch.stack(norms)).item() if grads else 0.0
    with _scaled_lr(policy_engine, lr_scale):
        policy_engine.step()
    if norm is None:
        norm = policy_engine.get_global_grad_norm()
    return float(norm) if norm is not None else float("nan")


@contextlib.contextmanager
def _scaled_lr(policy_engine, scale: float):
    """The optimiser's learning rates x `scale` for the step taken inside; then the schedule's own values (the
    scheduler steps with the optimiser and recomputes them; without one, the values from before)."""
    scheduler = policy_engine.lr_scheduler
    groups = (scheduler.optimizer if scheduler is not None else policy_engine.optimizer).param_groups
    before = [g["lr"] for g in groups]
    if scale != 1.0:
        for g, lr in zip(groups, before):
            g["lr"] = lr * scale
    try:
        yield
    finally:
        if scale != 1.0:
            restored = scheduler.get_last_lr() if scheduler is not None else before
            for g, lr in zip(groups, restored):
                g["lr"] = lr
