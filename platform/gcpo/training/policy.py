"""The DeepSpeed policy on one Ray Train worker: engine construction, the update, and weight gathering.

Data-parallel contract: every rank calls the same collectives in the same order. Each rank holds a shard of
the step's groups; every forward/backward pass count is equalised across ranks with dummy zero-weight passes
(ZeRO-3 gathers parameters in every forward; ZeRO-2 reduces gradients in backward hooks), and every loss
divides by the all-reduced global normaliser, times the world size because DeepSpeed averages gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.distributed as dist

from gcpo.config import TrainerConfig


def deepspeed_config(t: TrainerConfig, dtype: str) -> dict:
    """We micro-batch ourselves: GAS=1 with the accumulation boundary set by hand on the last micro-batch."""
    cfg = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": t.grad_clip,
        "zero_optimization": {"stage": t.zero_stage},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
    }
    if dtype == "bfloat16":
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
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    updates_per_step = t.epochs * t.mini_batches
    base = lr_lambda(t)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: base(k // updates_per_step))
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(t, dtype),
        dist_init_required=False,
    )
    return engine


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce(value: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """A reduced float copy of `value` on its own device (NCCL reduces on the worker's GPU, gloo in place)."""
    value = value.detach().clone().float()
    if world()[1] > 1:
        if dist.get_backend() == "nccl":
            on_gpu = value.to(torch.device("cuda", torch.cuda.current_device()))
            dist.all_reduce(on_gpu, op=op)
            return on_gpu.to(value.device)
        dist.all_reduce(value, op=op)
    return value


def equal_chunks(count: int, size: int) -> int:
    """The number of micro-batches every rank runs: the max over ranks of ceil(count / size)."""
    local = torch.tensor(float(math.ceil(count / size)))
    return int(all_reduce(local, dist.ReduceOp.MAX).item())


@dataclass
class Micro:
    """A micro-batch of responses (whole groups), or empty for a dummy pass."""

    prompts: list[list[int]]
    responses: list[list[int]]
    index: list[int]  # positions in the shard


def micro_batches(group_rows: Sequence[Sequence[int]], prompts, responses, groups_per_micro: int, count: int):
    """Split the shard's groups into exactly `count` micro-batches (trailing ones empty when short)."""
    out = []
    for k in range(count):
        rows = [r for g in group_rows[k * groups_per_micro : (k + 1) * groups_per_micro] for r in g]
        out.append(Micro([prompts[r] for r in rows], [responses[r] for r in rows], rows))
    return out


DUMMY_PROMPT, DUMMY_RESPONSE = [0], [0]


def forward_logprobs(module, micro: Micro, pad_id: int, micro_batch_size: int, with_entropy: bool = False):
    """Response log-probs for a micro-batch; an empty one runs a 1-token dummy pass (weight 0) for the collectives."""
    from gcpo.training.logprobs import response_logprobs

    if not micro.index:
        logp, mask, ent = response_logprobs(module, [DUMMY_PROMPT], [DUMMY_RESPONSE], pad_token_id=pad_id,
                                            micro_batch_size=1, with_entropy=with_entropy)
        return logp, mask * 0, ent
    return response_logprobs(module, micro.prompts, micro.responses, pad_token_id=pad_id,
                             micro_batch_size=max(micro_batch_size, len(micro.index)), with_entropy=with_entropy)


def gather_state_dict(engine) -> dict[str, torch.Tensor] | None:
    """Full fp32 weights on rank 0 (None elsewhere); under ZeRO-3 every rank must call this."""
    import deepspeed

    rank, _ = world()
    module = engine.module
    if engine.zero_optimization_stage() == 3:
        state = {}
        for name, param in module.named_parameters():
            with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                if rank == 0:
                    state[name] = param.data.detach().float().cpu().clone()
        return state if rank == 0 else None
    if rank != 0:
        return None
    return {k: v.detach().float().cpu().clone() for k, v in module.state_dict().items()}


def step_with_grad_norm(engine) -> float:
    """`engine.step()`, returning the global pre-clip gradient norm.

    ZeRO stages 1-3 report it themselves; at stage 0 (fp32) DeepSpeed clips without keeping the norm, so we
    compute it from the (already all-reduced) gradients before stepping.
    """
    if engine.zero_optimization_stage() == 0:
        grads = [p.grad.detach().float() for p in engine.module.parameters() if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item() if grads else 0.0
        engine.step()
        return norm
    engine.step()
    norm = engine.get_global_grad_norm()
    return float(norm) if norm is not None else float("nan")
