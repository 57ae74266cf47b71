"""A local Ray cluster for development: `gcpo cluster up | down | status`.

Contracts:
- The head binds its dashboard and Jobs API to `host` (127.0.0.1 by default) on non-default ports (GCS 26379,
  dashboard 28265, client 20001; Ray's are 6379, 8265, 10001). Ray's dashboard and Jobs API run whatever code
  they are sent, so a non-loopback `host` is refused unless `allow_remote` is set. Token authentication stays
  on (`RAY_AUTH_MODE=token`; the token is `~/.ray/auth_token`). Ray binds its GCS, raylet and agents to every
  interface whatever `host` is: firewall the ports on a shared network.
- Each node (the head, then `workers` extra local nodes) is one `ray start` in a session of its own with its own
  temp folder (`/tmp/gcpo-ray-<port>[-w<i>]`), so the cluster never touches `/tmp/ray`: a plain `ray.init()`
  elsewhere on the machine still starts its own runtime. `down` ends exactly those sessions' processes (and
  their children), never other Ray processes on the machine (no `ray stop`).
- `isolated` (`--isolate-workers`): each worker node a "host" of its own on this machine, with a private /tmp,
  /dev/shm and cache folder and its own loopback address, and `shared_dir` for the storage every node sees
  (`gcpo.cluster.hosts`). The shared folder is kept by `down` (it holds the runs).
- `kill_node` SIGKILLs one recorded node's processes (its raylet, agents and workers) at once: a host going down,
  for the fault tests (tests/cluster/test_hosts.py).
- The record (`gcpo.cluster.record`: `cluster.json` in `$GCPO_CLUSTER_DIR`, default `$GCPO_CACHE/cluster`) lets
  `submit`, `jobs` and `status` find the cluster without an address.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from gcpo.cluster.hosts import (check_isolation, check_shared_dir, default_shared_dir, host_env, isolated_command,
                                worker_ip)
from gcpo.cluster.record import ClusterRecord, ClusterSpec, load_record, record_path, save_record
from gcpo.cluster.runtime import ClusterError, local_num_cpus
from gcpo.network import free_port, is_loopback, reachable

RAY_WORKER_PORTS = range(10002, 20000)  # Ray's default worker port range: a head port inside it is refused
START_TIMEOUT_S = 240.0
STOP_GRACE_S = 10.0


def check_spec(spec: ClusterSpec, *, allow_remote: bool) -> None:
    """Refuse a non-loopback bind without `allow_remote`, and bad, clashing or busy ports; errors name the field."""
    if not is_loopback(spec.host) and not allow_remote:
        raise ClusterError(
            f"refusing to bind the Ray dashboard and Jobs API to {spec.host!r}: they run whatever code they are "
            f"sent, so anyone who reaches {spec.host}:{spec.dashboard_port} could run code on this machine. Keep "
            f"the default 127.0.0.1 and use an SSH tunnel (ssh -L {spec.dashboard_port}:127.0.0.1:"
            f"{spec.dashboard_port} HOST), or pass --allow-remote on a private, firewalled network")
    ports = {"port": spec.port, "dashboard_port": spec.dashboard_port, "client_port": spec.client_port}
    for name, port in ports.items():
        if not 1024 <= port <= 65535:
            raise ClusterError(f"{name} {port} must lie in 1024-65535")
        if port in RAY_WORKER_PORTS:
            raise ClusterError(f"{name} {port} lies in Ray's worker port range 10002-19999; pick another")
        if reachable(f"127.0.0.1:{port}", timeout_s=0.5):
            raise ClusterError(f"{name} {port} is already in use on this machine")
    if len(set(ports.values())) < len(ports):
        raise ClusterError(f"port, dashboard_port and client_port must differ: {ports}")
    if spec.workers < 0 or spec.worker_cpus < 1 or (spec.num_cpus is not None and spec.num_cpus < 1):
        raise ClusterError("workers must be >= 0, worker_cpus and num_cpus >= 1")


def _ray_start(args: list[str], temp_dir: str, *, isolated: bool = False) -> int:
    """Run `ray start ARGS` in a new session (`isolated`: in a mount namespace of its own, `gcpo.cluster.hosts`);
    returns the session id (its daemons stay in it). Its output goes to `temp_dir`/gcpo-ray-start.log on the
    machine (an isolated node's `temp_dir` itself lies in its private /tmp)."""
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", *args, f"--temp-dir={temp_dir}",
           f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats"]
    if isolated:
        cmd, env = isolated_command(cmd, temp_dir), host_env(env)
    Path(temp_dir).mkdir(parents=True, exist_ok=True)
    log = Path(temp_dir) / "gcpo-ray-start.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            code = proc.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _end_sessions([proc.pid])
            raise ClusterError(f"`ray start` did not finish within {START_TIMEOUT_S:.0f} s; see {log}") from None
    if code != 0:
        _end_sessions([proc.pid])
        raise ClusterError(f"`ray start` failed (exit {code}): {log.read_text()[-1500:]}")
    return proc.pid


def _resources(name: str) -> list[str]:
    """`ray start`'s argument declaring 100 units of the custom resource `name` (none when empty)."""
    return [f"--resources={json.dumps({name: 100})}"] if name else []


def start_cluster(spec: ClusterSpec, *, allow_remote: bool = False) -> ClusterRecord:
    """Start the head (and `spec.workers` local worker nodes); record and return the cluster."""
    existing = load_record()
    if existing is not None and reachable(existing.gcs_address, timeout_s=1.0):
        raise ClusterError(f"a local cluster is already up (dashboard {existing.dashboard_url}); "
                           f"run `gcpo cluster down` first")
    if existing is not None:
        stop_cluster(existing)  # a stale record: its head no longer answers
    check_spec(spec, allow_remote=allow_remote)
    if spec.isolated:
        check_isolation(spec.workers, spec.host)
        spec.shared_dir = str(check_shared_dir(spec.shared_dir or default_shared_dir(spec.port)))
    head_dir = str(Path(tempfile.gettempdir()) / f"gcpo-ray-{spec.port}")
    cpus = spec.num_cpus or local_num_cpus()
    head = _ray_start(["--head", f"--node-ip-address={spec.host}", f"--port={spec.port}",
                       f"--dashboard-host={spec.host}", f"--dashboard-port={spec.dashboard_port}",
                       f"--ray-client-server-port={spec.client_port}", f"--num-cpus={cpus}",
                       *_resources(spec.head_resource)], head_dir)
    record = ClusterRecord(spec, [head_dir], [head])
    save_record(record)  # before the workers: a failed worker start leaves a record `down` can clean up
    for i in range(spec.workers):
        # an isolated node's temp folder lies in its own private /tmp (whatever TMPDIR says here)
        worker_dir = f"/tmp/gcpo-ray-{spec.port}-w{i}" if spec.isolated else f"{head_dir}-w{i}"
        ip = worker_ip(i) if spec.isolated else spec.host
        record.session_ids.append(_ray_start([f"--address=127.0.0.1:{spec.port}", f"--node-ip-address={ip}",
                                              f"--num-cpus={spec.worker_cpus}", *_resources(spec.worker_resource)],
                                             worker_dir, isolated=spec.isolated))
        record.temp_dirs.append(worker_dir)
        save_record(record)
    return record


def _session_processes(session_ids: list[int]):
    """Every live process in these sessions, and every descendant of one (Ray workers start sessions of their
    own under their raylet)."""
    import psutil

    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) in session_ids:
                found[proc.pid] = proc
                found.update({c.pid: c for c in proc.children(recursive=True)})
        except (psutil.Error, OSError):
            continue
    return list(found.values())


def node_processes(record: ClusterRecord, index: int) -> list:
    """The live processes of recorded node `index` (0 the head, i + 1 worker node i): its raylet, agents and
    Ray workers (psutil.Process objects)."""
    return _session_processes([record.session_ids[index]])


def _signal_all(procs: list, sig: int) -> None:
    import psutil

    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass


def kill_node(record: ClusterRecord, index: int) -> list[int]:
    """SIGKILL every process of recorded node `index` at once, as when its host goes down (no grace, no
    `ray stop`); returns their pids. The rest of the cluster learns of it by Ray's own health checks."""
    import psutil

    procs = node_processes(record, index)
    _signal_all(procs, signal.SIGKILL)
    psutil.wait_procs(procs, timeout=10)
    return [proc.pid for proc in procs]


def _end_sessions(session_ids: list[int]) -> None:
    """SIGTERM every process of these sessions, SIGKILL what is left after `STOP_GRACE_S`."""
    import psutil

    procs = _session_processes(session_ids)
    _signal_all(procs, signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=STOP_GRACE_S)
    _signal_all(alive, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=5)


def stop_cluster(record: ClusterRecord) -> None:
    """End every process of the recorded nodes, remove their temp folders and the record."""
    _end_sessions(record.session_ids)
    for folder in record.temp_dirs:
        shutil.rmtree(folder, ignore_errors=True)
    record_path().unlink(missing_ok=True)


def _custom_resources(total: dict) -> dict[str, float]:
    """A node's declared custom resources (`--head-resource`, `--worker-resource`), without Ray's own."""
    return {k: v for k, v in total.items()
            if k not in ("CPU", "GPU", "memory", "object_store_memory") and not k.startswith("node:")}


def describe(record: ClusterRecord, *, timeout_s: float = 5.0) -> dict:
    """The cluster's addresses, and (when its head answers) its nodes and jobs by status."""
    info: dict = {"dashboard": record.dashboard_url, "gcs_address": record.gcs_address,
                  "client_address": f"ray://127.0.0.1:{record.spec.client_port}",
                  "shared_dir": record.spec.shared_dir or None,
                  "temp_dirs": record.temp_dirs, "up": reachable(record.gcs_address, timeout_s=1.0)}
    if not info["up"]:
        return info
    from ray.util.state import list_nodes

    from gcpo.cluster.jobs import connect

    client = connect(record.dashboard_url, timeout_s=timeout_s)  # also turns token authentication on
    nodes = list_nodes(address=record.dashboard_url, timeout=timeout_s, raise_on_missing_output=False)
    info["nodes"] = [{"node_id": n.node_id[:12], "ip": n.node_ip, "head": n.is_head_node, "state": n.state,
                      "cpus": n.resources_total.get("CPU", 0), "custom": _custom_resources(n.resources_total)}
                     for n in nodes]
    jobs = client.list_jobs()
    statuses = [j.status.value for j in jobs]
    info["jobs"] = {s: statuses.count(s) for s in sorted(set(statuses))}
    return info
