"""Several "hosts" on one machine: `gcpo cluster up --isolate-workers` (and tests/cluster/test_hosts.py) start each
worker node the way it would run on a machine of its own, as far as files and addresses go.

Contracts:
- Each isolated worker node's `ray start` runs under `unshare --mount --propagation private` (root only: CI runs
  as root). Inside that mount namespace, and only there, a fresh tmpfs is mounted on every path of
  `private_paths()`: /dev/shm, /tmp and the home cache folder (`~/.cache`, and `$GCPO_CACHE` when it is set
  elsewhere). Nothing is ever mounted on the machine's own /tmp or /dev/shm: the mounts die with the node's last
  process. So the node has its own Ray session folder (its `--temp-dir` lies in its private /tmp), its own object
  store (/dev/shm), its own model cache; a file the head writes to any of them does not exist there.
- Each isolated worker node binds its own loopback address: worker i is 127.0.0.(2 + i) (`worker_ip`). Linux
  routes all of 127.0.0.0/8 to the loopback interface, so nothing leaves the machine.
- Everything else stays visible to every node, as on a real cluster where the software is installed on each
  host: the Python environment, the repository, `~/.ray/auth_token` (the head's token, which a real worker must
  be given). `shared_dir` (outside every private path, checked by `check_shared_dir`) stands for the cluster's
  shared storage: point `trainer.output_dir` and the MLflow store there.
- Not isolated: the process ids (a node's processes are visible and killable from the machine: `gcpo cluster
  down` ends them by session, `gcpo.cluster.local.kill_node` kills one node's at once, as a host going down),
  the network namespace (ports are one machine's: every node reaches a server the head binds to 127.0.0.1),
  CPUs and memory.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from gcpo.cluster.runtime import ClusterError

FIRST_WORKER_IP = 2  # worker i binds 127.0.0.(FIRST_WORKER_IP + i); the head keeps 127.0.0.1
MAX_ISOLATED_WORKERS = 250


def worker_ip(index: int) -> str:
    """The loopback address isolated worker node `index` binds."""
    return f"127.0.0.{FIRST_WORKER_IP + index}"


def worker_index(ip: str) -> int:
    """The isolated worker node that binds `ip` (the inverse of `worker_ip`); ValueError for any other address."""
    prefix, _, last = ip.rpartition(".")
    if prefix != "127.0.0" or not last.isdigit() or not 0 <= int(last) - FIRST_WORKER_IP < MAX_ISOLATED_WORKERS:
        raise ValueError(f"{ip} is no isolated worker node's address (127.0.0.{FIRST_WORKER_IP} and up)")
    return int(last) - FIRST_WORKER_IP


def private_paths() -> list[str]:
    """The folders each isolated worker node sees as a fresh tmpfs of its own."""
    cache = Path(os.environ.get("GCPO_CACHE", Path.home() / ".cache" / "gcpo")).expanduser()
    paths = ["/dev/shm", "/tmp", str(Path.home() / ".cache")]
    if not any(_under(cache, p) for p in paths):
        paths.append(str(cache))
    return paths


def _under(path: Path, folder: str) -> bool:
    return path.resolve().is_relative_to(Path(folder).resolve())


def check_shared_dir(shared_dir: str) -> Path:
    """`shared_dir` made absolute and created; refused when a private path hides it from the worker nodes."""
    path = Path(shared_dir).expanduser().resolve()
    for private in private_paths():
        if _under(path, private):
            raise ClusterError(f"--shared-dir {path} lies under {private}, which each isolated worker node sees as "
                               f"a private folder of its own: pick a folder elsewhere (e.g. /var/tmp/gcpo-shared)")
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_shared_dir(port: int) -> str:
    """The shared folder of an isolated cluster when none is given: outside /tmp, one per head port."""
    base = "/var/tmp" if Path("/var/tmp").is_dir() else str(Path.home())
    return str(Path(base) / f"gcpo-shared-{port}")


def check_isolation(workers: int, host: str) -> None:
    """Isolated worker nodes need root (mount namespaces), `unshare`, loopback addresses to spare."""
    import shutil

    if os.geteuid() != 0:
        raise ClusterError("--isolate-workers mounts a private /tmp and /dev/shm for each worker node in a mount "
                           "namespace of its own (unshare), which needs root")
    if shutil.which("unshare") is None:
        raise ClusterError("--isolate-workers needs the `unshare` command (util-linux)")
    if host != "127.0.0.1":
        raise ClusterError("--isolate-workers gives each worker node a loopback address of its own: keep "
                           "--host 127.0.0.1")
    if workers > MAX_ISOLATED_WORKERS:
        raise ClusterError(f"--isolate-workers: at most {MAX_ISOLATED_WORKERS} worker nodes (one loopback "
                           f"address each)")


def isolated_command(cmd: list[str], temp_dir: str) -> list[str]:
    """`cmd` run in a mount namespace of its own with a fresh tmpfs on every `private_paths()` folder (made
    there, never on the machine's own folders), and `temp_dir` created inside it."""
    mounts = " && ".join(f"mkdir -p {shlex.quote(p)} && mount -t tmpfs gcpo-private {shlex.quote(p)}"
                         for p in private_paths())
    script = f"set -e; {mounts}; mkdir -p {shlex.quote(temp_dir)}; exec \"$@\""
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "gcpo-node", *cmd]


def host_env(env: dict[str, str]) -> dict[str, str]:
    """An isolated node's environment: no temp folder setting that would point it back at the machine's."""
    return {k: v for k, v in env.items() if k not in ("TMPDIR", "RAY_TMPDIR", "TMP", "TEMP")}
