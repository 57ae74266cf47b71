"""The record of the local cluster `gcpo cluster up` started: its spec, temp folders and sessions, kept in
`cluster.json` under `$GCPO_CLUSTER_DIR` (default `$GCPO_CACHE/cluster`).

`gcpo.cluster.local` writes it; `gcpo.cluster.jobs` reads it to find the cluster when no address is given. It
lives apart from both so that neither imports the other for it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ClusterSpec:
    host: str = "127.0.0.1"
    port: int = 26379  # GCS
    dashboard_port: int = 28265  # dashboard and Jobs API
    client_port: int = 20001  # Ray Client server
    num_cpus: int | None = None  # the head's logical CPUs (default max(4, cores))
    workers: int = 0  # extra local worker nodes
    worker_cpus: int = 1
    # A custom Ray resource the head / each worker node declares (100 units), so `trainer.placement_resource` and
    # `rollout.placement_resource` can put training workers and generators on different nodes. "" = none.
    head_resource: str = ""
    worker_resource: str = ""
    # Each worker node a "host" of its own (`gcpo.cluster.hosts`): its own mount namespace (private /dev/shm, /tmp
    # and cache folder) and loopback address (127.0.0.2, ...); `shared_dir` stands for the cluster's shared storage.
    isolated: bool = False
    shared_dir: str = ""


@dataclass
class ClusterRecord:
    spec: ClusterSpec
    temp_dirs: list[str]  # head first, then each worker node
    session_ids: list[int]  # the session (process group) of each node's `ray start`
    started_at: float = field(default_factory=time.time)

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.spec.host}:{self.spec.dashboard_port}"

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.spec.port}"


def cluster_dir() -> Path:
    from gcpo.models import cache_dir

    return Path(os.environ.get("GCPO_CLUSTER_DIR", cache_dir() / "cluster"))


def record_path() -> Path:
    return cluster_dir() / "cluster.json"


def load_record() -> ClusterRecord | None:
    """The recorded local cluster, or None when none was started (or its record is unreadable)."""
    try:
        raw = json.loads(record_path().read_text())
        return ClusterRecord(ClusterSpec(**raw["spec"]), raw["temp_dirs"], raw["session_ids"], raw["started_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_record(record: ClusterRecord) -> None:
    """Write `record` to `record_path()` (creating its folder)."""
    record_path().parent.mkdir(parents=True, exist_ok=True)
    record_path().write_text(json.dumps(dataclasses.asdict(record), indent=2))
