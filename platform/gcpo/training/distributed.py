"""Distributed helpers of the training workers: rank and world size, reductions, rank 0's broadcasts.

Data-parallel contract: every rank calls the same collectives in the same order (see `gcpo.training.update`).
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist

from gcpo.network import free_port


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
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


def max_over_ranks(count: int) -> int:
    """The largest of every rank's `count` (e.g. the number of micro-batches every rank runs)."""
    return int(all_reduce(torch.tensor(float(count)), dist.ReduceOp.MAX).item())


def broadcast_object(obj, src: int = 0):
    """Rank `src`'s `obj` on every rank (pickled; a no-op in a single process)."""
    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj) -> list:
    """Every rank's `obj`, in rank order."""
    _, world_size = world()
    if world_size == 1:
        return [obj]
    out = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def shard_groups(num_groups: int, rank: int, world_size: int) -> list[int]:
    """The groups rank `rank` trains on: g with g % world_size == rank (whole groups stay on one rank)."""
    return list(range(rank, num_groups, world_size))


@contextlib.contextmanager
def single_process_group():
    """A one-rank gloo process group on loopback for a DeepSpeed engine outside Ray Train (`gcpo probe`); nothing
    when this process already has one."""
    if dist.is_initialized():
        yield
        return
    port = free_port()
    for key, value in (("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(port)), ("RANK", "0"), ("LOCAL_RANK", "0"),
                       ("WORLD_SIZE", "1")):
        os.environ[key] = value
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()
