"""A run against the cluster it joined, checked on the driver before Ray Train starts: nothing that only this
machine can see reaches another host by accident, and the weight transport fits where the groups can run.

`check_placement(cfg)` (`gcpo train`, after `init_ray`, with the run's absolute paths) raises `ConfigError`:
- `rollout.weight_transport=file` (explicit) when the nodes the training workers may run on
  (`trainer.placement_resource`) and those the vLLM generators may run on (`rollout.placement_resource`) have no
  node in common: the file in the trainer's /dev/shm cannot reach them. (A placement that only *may* split them
  is caught by the pool once the generators are placed, `gcpo.rollout.weight_sync.choose_transport`.)
- a path the training workers open, when a node they may run on, other than the driver's, does not see it as the
  driver does: `task.path`, `task.eval_path` (same bytes), a local `model.name` / `task.golden_model` folder
  (the same content: `gcpo.content_hash`, each node's file hashes memoised in its cache, so a node reads a model
  once per version of its files), `trainer.output_dir` and a `sqlite:` `tracking.uri`'s folder
  (the same folder: a marker file the driver writes there must be visible). The error names the key, the path
  and the node.
Each other node is asked by one small Ray task pinned to it (`NodeAffinitySchedulingStrategy`, no CPU). On one
node (a local runtime) nothing is asked. The model folder the generators open is shipped, not checked here
(`gcpo.cluster.shipping`); the built-in names (`tiny`, `smollm2-135m-instruct`) are made or converted on the
node that needs them, from installed packages.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from gcpo.config import ConfigError, RunConfig

PROBE_TIMEOUT_S = 120.0
MARKER = ".gcpo-shared-check"


def candidate_nodes(nodes: list[dict], resource: str) -> list[dict]:
    """The alive nodes (`ray.nodes()` rows) that declare `resource` (every alive node when it is "")."""
    return [n for n in nodes if n.get("Alive") and (not resource or n.get("Resources", {}).get(resource, 0) > 0)]


def transport_error(cfg: RunConfig, trainer_nodes: list[str], generator_nodes: list[str]) -> str | None:
    """Why an explicit `file` transport cannot work when no generator may share the trainer's node; else None."""
    if cfg.rollout.backend != "vllm" or cfg.rollout.weight_transport != "file":
        return None
    if not trainer_nodes or not generator_nodes or set(trainer_nodes) & set(generator_nodes):
        return None
    return (f"rollout.weight_transport: 'file' writes the weights to a file in the trainer's /dev/shm, but the "
            f"generators (rollout.placement_resource={cfg.rollout.placement_resource!r}) can only run on other "
            f"nodes than the training workers (trainer.placement_resource={cfg.trainer.placement_resource!r}), "
            f"which cannot see it: set rollout.weight_transport=collective (or auto)")


def host_local_paths(cfg: RunConfig) -> list[tuple[str, str, str]]:
    """(key, absolute path, kind) of every path the training workers open: kind "file" (same bytes), "model" (a
    model folder) or "folder" (written to: must be the same folder)."""
    from gcpo.models import DEFAULT_MODEL, WARMSTART_MODEL, warmstart_dir

    paths = []
    if cfg.task.name == "jsonl":
        paths += [(key, p, "file") for key, p in (("task.path", cfg.task.path), ("task.eval_path", cfg.task.eval_path))
                  if p]
    for key, name in (("model.name", cfg.model.name), ("task.golden_model", cfg.task.golden_model)):
        if name == WARMSTART_MODEL:
            paths.append((key, str(warmstart_dir()), "model"))
        elif name and name not in (DEFAULT_MODEL, "tiny"):
            paths.append((key, name, "model"))
    paths.append(("trainer.output_dir", cfg.trainer.output_dir, "folder"))
    if cfg.tracking.uri.startswith("sqlite:///"):
        paths.append(("tracking.uri", str(Path(cfg.tracking.uri.removeprefix("sqlite:///")).parent), "folder"))
    return paths


def path_view(paths: list[tuple[str, str, str]]) -> list[str | None]:
    """What this node sees at each path (None: nothing): a file's SHA-256, a model folder's content hash
    (`gcpo.content_hash`, memoised in this node's cache; None without a config.json), a written folder's marker
    contents. Runs on each node (a Ray task) and here."""
    from gcpo.content_hash import file_hash, folder_content_hash
    from gcpo.models import cache_dir

    views = []
    for _, path, kind in paths:
        p = Path(path)
        if kind == "file":
            views.append(file_hash(p) if p.is_file() else None)
        elif kind == "model":
            memo = cache_dir() / "file_hashes.json"
            views.append(folder_content_hash(p, memo) if (p / "config.json").is_file() else None)
        else:
            views.append((p / MARKER).read_text() if (p / MARKER).is_file() else None)
    return views


def _mark_folders(paths: list[tuple[str, str, str]]) -> list[Path]:
    """A fresh marker in every written folder (made if missing), so another node can tell it is the same one."""
    marks = []
    for _, path, kind in paths:
        if kind == "folder":
            Path(path).mkdir(parents=True, exist_ok=True)
            (Path(path) / MARKER).write_text(secrets.token_hex(16))
            marks.append(Path(path) / MARKER)
    return marks


def _views_on(nodes: list[dict], paths: list[tuple[str, str, str]]) -> list[list[str | None]]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(path_view)
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(paths)
            for n in nodes]
    return ray.get(refs, timeout=PROBE_TIMEOUT_S)


def _differs(key: str, path: str, kind: str, node: dict, resource: str) -> str:
    what = {"file": "with the same contents", "model": "with the same contents",
            "folder": "as the same folder (a marker written here is not there)"}[kind]
    return (f"{key}: {path} is not seen {what} on node {node['NodeManagerAddress']} ({node['NodeID'][:12]}), "
            f"where the training workers may run (trainer.placement_resource={resource!r}): put it on storage "
            f"every node sees, or copy it to the same path there")


def check_placement(cfg: RunConfig) -> None:
    """See the module docstring; a no-op on a one-node runtime."""
    import ray

    if not ray.is_initialized():
        return
    nodes = ray.nodes()
    trainers = candidate_nodes(nodes, cfg.trainer.placement_resource)
    generators = candidate_nodes(nodes, cfg.rollout.placement_resource)
    error = transport_error(cfg, [n["NodeID"] for n in trainers], [n["NodeID"] for n in generators])
    if error:
        raise ConfigError(error)
    here = ray.get_runtime_context().get_node_id()
    others = [n for n in trainers if n["NodeID"] != here]
    if not others:
        return
    paths = host_local_paths(cfg)
    marks = _mark_folders(paths)
    try:
        mine = path_view(paths)
        for node, views in zip(others, _views_on(others, paths)):
            for (key, path, kind), seen, theirs in zip(paths, mine, views):
                if seen is not None and seen != theirs:
                    raise ConfigError(_differs(key, path, kind, node, cfg.trainer.placement_resource))
    finally:
        for mark in marks:
            mark.unlink(missing_ok=True)
