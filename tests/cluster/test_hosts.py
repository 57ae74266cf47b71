"""Several hosts on one machine (`gcpo cluster up --isolate-workers`, `gcpo.cluster.hosts`): each worker node has
its own /tmp, /dev/shm and cache folder and its own loopback address, and one shared folder stands for shared
storage. On it: a three-step vLLM run with the generator on another host (weights by broadcast, the model shipped,
the sync check at fp32 tolerance), `file` across hosts refused at start, a path only the head sees refused naming
it; then faults, killed for real (every process of a node at once): the generator's node mid-run (the pool
re-creates it on another node, the history equals the undisturbed run's), the training worker's node mid-run
(Ray Train resumes from the shared checkpoint on another node, nothing counted twice), with metrics and
artifacts logged from the worker nodes to an MLflow server on the head whose artifacts lie on shared storage.
Plus the pure parts (the namespace command, the checks' decisions)."""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest

from gcpo.cluster.hosts import check_shared_dir, isolated_command, private_paths, worker_index, worker_ip
from gcpo.cluster.placement import MARKER, candidate_nodes, host_local_paths, path_view, transport_error
from gcpo.cluster.runtime import ClusterError
from gcpo.config import ConfigError, load_config

# pytest puts tests/ on the path (its packages `cluster`, `training`, ... have no parent package): the kill-and-
# resume helpers and the restartable MLflow server are those of the single-host fault tests
from training.test_resume import OVERRIDES as RESUME_OVERRIDES
from training.test_resume import assert_no_step_twice, assert_same_history, history

from .local_cli import PROJECT, free_ports, gcpo
from .test_faults import MlflowServer

# --- pure ---------------------------------------------------------------------------------------------------


def test_the_node_command_mounts_private_folders_inside_its_own_namespace_only():
    cmd = isolated_command(["ray", "start"], "/tmp/gcpo-ray-1-w0")
    assert cmd[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    script = cmd[7]
    for path in ("/dev/shm", "/tmp", str(Path.home() / ".cache")):
        assert f"mount -t tmpfs gcpo-private {path}" in script
    assert script.endswith('exec "$@"') and cmd[-2:] == ["ray", "start"]
    assert worker_ip(0) == "127.0.0.2" and worker_ip(3) == "127.0.0.5"
    assert worker_index("127.0.0.5") == 3
    for other in ("127.0.0.1", "10.0.0.2", "127.0.0.x"):
        with pytest.raises(ValueError, match="no isolated worker node"):
            worker_index(other)


def test_a_shared_folder_under_a_private_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("GCPO_CACHE", "/opt/gcpo-cache")
    assert "/opt/gcpo-cache" in private_paths()
    with pytest.raises(ClusterError, match=r"--shared-dir /tmp/x lies under /tmp.*private"):
        check_shared_dir("/tmp/x")
    shared = check_shared_dir(str(Path("/var/tmp") / f"gcpo-test-{uuid.uuid4().hex[:8]}"))
    assert shared.is_dir()
    shared.rmdir()


def test_explicit_file_transport_is_refused_when_the_groups_share_no_node():
    cfg = load_config(overrides=["rollout.weight_transport=file", "trainer.placement_resource=t",
                                 "rollout.placement_resource=g"])
    nodes = [{"NodeID": "head", "Alive": True, "Resources": {"CPU": 4, "t": 100}},
             {"NodeID": "w0", "Alive": True, "Resources": {"CPU": 2, "g": 100}},
             {"NodeID": "dead", "Alive": False, "Resources": {"t": 100}}]
    trainers, generators = candidate_nodes(nodes, "t"), candidate_nodes(nodes, "g")
    assert [n["NodeID"] for n in trainers] == ["head"] and len(candidate_nodes(nodes, "")) == 2
    error = transport_error(cfg, ["head"], [n["NodeID"] for n in generators])
    assert error.startswith("rollout.weight_transport: 'file'") and "collective" in error
    assert transport_error(cfg, ["head", "w0"], ["w0"]) is None  # may share a node: the pool decides once placed
    auto = load_config(overrides=["trainer.placement_resource=t", "rollout.placement_resource=g"])
    assert transport_error(auto, ["head"], ["w0"]) is None


def test_the_paths_a_training_worker_opens_and_what_a_node_sees_there(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"question": "1+1", "answer": "2"}\n')
    cfg = load_config(overrides=["task.name=jsonl", f"task.path={data}", f"trainer.output_dir={tmp_path}/runs",
                                 f"tracking.uri=sqlite:///{tmp_path}/db/mlflow.db", "model.name=tiny"])
    paths = host_local_paths(cfg)
    assert paths == [("task.path", str(data), "file"), ("trainer.output_dir", f"{tmp_path}/runs", "folder"),
                     ("tracking.uri", f"{tmp_path}/db", "folder")]
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / MARKER).write_text("token")
    seen = path_view(paths)
    assert seen[0] is not None and seen[1] == "token" and seen[2] is None
    data.write_text("changed\n")
    assert path_view(paths)[0] != seen[0]


# --- on the cluster -------------------------------------------------------------------------------------------

WORKERS = 3  # isolated worker nodes, each declaring `gen_node`: after one is killed, two are left for the trainer's


@contextlib.contextmanager
def _cluster_dir(env: dict):
    """This module's cluster record folder as `GCPO_CLUSTER_DIR` here (where `gcpo.cluster.record` looks)."""
    previous = os.environ.get("GCPO_CLUSTER_DIR")
    os.environ["GCPO_CLUSTER_DIR"] = env["GCPO_CLUSTER_DIR"]
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("GCPO_CLUSTER_DIR")
        else:
            os.environ["GCPO_CLUSTER_DIR"] = previous


def cluster_record(hosts: dict):
    """The record `gcpo cluster up` wrote: each node's session, by which its processes are found."""
    from gcpo.cluster.record import load_record

    with _cluster_dir(hosts["env"]):
        return load_record()


def _stop_recorded_cluster(env: dict) -> None:
    """`gcpo cluster down`; if it fails, the recorded sessions are ended from here (also after a failed test)."""
    down = gcpo("cluster", "down", env=env, timeout=180)
    if down.returncode != 0:
        from gcpo.cluster.local import stop_cluster
        from gcpo.cluster.record import load_record

        with _cluster_dir(env):
            record = load_record()
            if record is not None:
                stop_cluster(record)
    assert down.returncode == 0, down.stderr


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
    """A head (`trainer_node`, 127.0.0.1) and `WORKERS` isolated worker nodes (`gen_node`, 127.0.0.2 and up),
    shared storage in /var/tmp; every process of every node ended afterwards, whatever the tests did."""
    if os.geteuid() != 0:
        pytest.skip("isolated worker nodes need root (mount namespaces)")
    state = tmp_path_factory.mktemp("hosts-state")
    shared = Path(tempfile.mkdtemp(prefix="gcpo-test-shared-", dir="/var/tmp"))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env["GCPO_CLUSTER_DIR"] = str(state)
    gcs, dashboard, client = free_ports(3)
    try:
        up = gcpo("cluster", "up", "--port", str(gcs), "--dashboard-port", str(dashboard), "--client-port",
                  str(client), "--workers", str(WORKERS), "--num-cpus", "4", "--worker-cpus", "2", "--head-resource",
                  "trainer_node", "--worker-resource", "gen_node", "--isolate-workers", "--shared-dir", str(shared),
                  env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        yield {"env": env, "address": f"127.0.0.1:{gcs}", "shared": shared}
    finally:
        _stop_recorded_cluster(env)
        shutil.rmtree(shared, ignore_errors=True)


LOOK = """
import json, os, sys, ray
from gcpo.cluster.runtime import init_ray
init_ray(sys.argv[1])

@ray.remote(num_cpus=0, resources={"gen_node": 1})
def look(paths):
    open("/tmp/gcpo-written-on-the-worker-node", "w").write("x")
    return {"ip": ray.util.get_node_ip_address(), "seen": [os.path.exists(p) for p in paths]}

print(json.dumps(ray.get(look.remote(sys.argv[2:]))))
"""

TINY_VLLM = ["train", "--preset", "gcpo", "model.name=tiny", "rollout.backend=vllm", "rollout.prompts_per_step=2",
             "rollout.group_size=2", "rollout.max_new_tokens=8", "rollout.kv_cache_gib=0.25", "task.train_size=12",
             "task.eval_size=2", "trainer.eval_every=0", "trainer.checkpoint_every=2", "tracking.log_rollouts_every=0",
             "trainer.placement_resource=trainer_node", "rollout.placement_resource=gen_node"]
# The training worker on a worker node (the driver and Ray Train's controller stay on the head): the transformers
# rollout engine of tests/training/test_resume.py, 8 steps, a checkpoint every 2, evaluated before and after;
# --verbose keeps Ray's `(RayTrainWorker pid=..., ip=...)` prefix on the worker's lines (where it ran).
TRAINER_ON_WORKERS = ["train", "--verbose", "--preset", "gcpo", *RESUME_OVERRIDES, "trainer.eval_every=8",
                      "trainer.placement_resource=gen_node"]
VLLM_STEPS = ("trainer.steps=3", "trainer.checkpoint_every=3")
WORKER_IP = r"127\.0\.0\.(?!1\b)\d+"  # a worker node's address, not the head's


def _train_args(hosts: dict, overrides: tuple[str, ...], name: str, base: list[str]) -> tuple[list[str], dict]:
    env = {k: v for k, v in hosts["env"].items() if not k.startswith("RAY_AUTH")}
    shared = hosts["shared"]
    return [*base, f"cluster.address={hosts['address']}", f"trainer.output_dir={shared}/runs",
            f"tracking.uri=sqlite:///{shared}/mlflow.db", *overrides, "--name", name], env


def train(hosts: dict, *overrides: str, name: str, base: list[str] = TINY_VLLM,
          timeout: float = 900) -> subprocess.CompletedProcess:
    """`gcpo train` joining the cluster (no RAY_AUTH_MODE: the token is found), storage on the shared folder
    unless an override says otherwise."""
    args, env = _train_args(hosts, overrides, name, base)
    return gcpo(*args, env=env, timeout=timeout)


def start_train(hosts: dict, *overrides: str, name: str, log_dir: Path,
                base: list[str] = TINY_VLLM) -> tuple[subprocess.Popen, Path]:
    """`train` in the background (a session of its own), its output going to `<log_dir>/<name>.log` (a test's
    tmp_path: kept when the test fails)."""
    args, env = _train_args(hosts, overrides, name, base)
    log = log_dir / f"{name}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gcpo.cli", *args], cwd=PROJECT, stdout=out,
                                stderr=subprocess.STDOUT, env={**env, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    return proc, log


def wait_for(log: Path, pattern: str, proc: subprocess.Popen, timeout: float = 600) -> re.Match:
    """The first match of `pattern` in the background run's output, once it is there."""
    deadline = time.time() + timeout
    while (found := re.search(pattern, log.read_text())) is None:
        assert proc.poll() is None, f"ended (exit {proc.returncode}) before {pattern!r}:\n{log.read_text()[-5000:]}"
        assert time.time() < deadline, f"no {pattern!r} within {timeout:.0f} s:\n{log.read_text()[-5000:]}"
        time.sleep(0.2)
    return found


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)


@contextlib.contextmanager
def ended_on_failure(proc: subprocess.Popen):
    """The background run killed (with its session) when the block fails."""
    try:
        yield
    except BaseException:
        _end(proc)
        raise


def finished(proc: subprocess.Popen, log: Path, timeout: float = 900) -> str:
    """The background run's output once it ended with exit 0 (it is killed, with its session, if it does not)."""
    try:
        proc.wait(timeout=timeout)
    finally:
        _end(proc)
    out = log.read_text()
    assert proc.returncode == 0, out[-6000:]
    return out


def run_id(uri: str, name: str) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("gcpo").experiment_id],
                                filter_string=f"attributes.run_name = '{name}'")
    return run.info.run_id


@pytest.fixture(scope="module")
def vllm_run(two_hosts):
    """The undisturbed three-step vLLM run with the generator on a worker node: (its output, tracking URI, run
    id). The generator fault's reference too (three steps: that fault strikes after step 1, and two more steps
    leave no doubt that it lands before the run's last weight push)."""
    done = train(two_hosts, *VLLM_STEPS, name="two-hosts")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    uri = f"sqlite:///{two_hosts['shared']}/mlflow.db"
    return done, uri, run_id(uri, "two-hosts")


@pytest.mark.integration
def test_the_worker_node_is_a_host_of_its_own(two_hosts, tmp_path):
    from gcpo.models import tiny_dir

    marker = uuid.uuid4().hex
    here = [Path("/tmp") / marker, Path("/dev/shm") / marker, two_hosts["shared"] / marker]
    for path in here:
        path.write_text("head")
    try:
        done = subprocess.run([sys.executable, "-c", LOOK, two_hosts["address"], *map(str, here), str(tiny_dir())],
                              cwd=PROJECT, env=two_hosts["env"], capture_output=True, text=True, timeout=300)
    finally:
        for path in here:
            path.unlink()
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["ip"] in [worker_ip(i) for i in range(WORKERS)]
    assert seen["seen"] == [False, False, True, False]  # /tmp, /dev/shm, the cache: its own; the shared folder: ours
    assert not Path("/tmp/gcpo-written-on-the-worker-node").exists()


@pytest.mark.integration
def test_file_transport_across_hosts_is_refused_at_start(two_hosts):
    start = time.time()
    done = train(two_hosts, "rollout.weight_transport=file", "trainer.steps=2", name="file-across", timeout=300)
    elapsed = time.time() - start
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]  # a config error
    assert "rollout.weight_transport: 'file'" in done.stderr and "collective" in done.stderr
    assert elapsed < 90, elapsed  # interpreter, data check and join included; no engine or trainer started
    assert not (two_hosts["shared"] / "runs" / "file-across").exists()


@pytest.mark.integration
def test_a_sweep_joins_without_the_token_variable_and_is_refused_at_start_like_a_run(two_hosts, tmp_path):
    """`gcpo sweep --address` on the token-authenticated cluster, no RAY_AUTH_MODE in its environment: it joins
    (the token is found) and checks each grid point's placement before its first trial."""
    space = tmp_path / "space.yaml"
    space.write_text("arms:\n  gcpo: {preset: gcpo}\n  grpo: {preset: grpo}\n")
    env = {k: v for k, v in two_hosts["env"].items() if not k.startswith("RAY_AUTH")}
    shared = two_hosts["shared"]
    start = time.time()
    done = gcpo("sweep", str(space), *(o for o in TINY_VLLM if "=" in o), "rollout.weight_transport=file",
                "trainer.steps=1", f"trainer.output_dir={shared}/runs", f"tracking.uri=sqlite:///{shared}/mlflow.db",
                "--address", two_hosts["address"], "--name", "sweep-file-across", env=env, timeout=300)
    elapsed = time.time() - start
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]  # a config error, not a failed trial
    assert "rollout.weight_transport: 'file'" in done.stderr and "collective" in done.stderr
    assert elapsed < 120, elapsed
    assert not (shared / "runs" / "sweeps" / "sweep-file-across").exists()


@pytest.mark.integration
def test_a_task_file_only_the_head_sees_is_refused_naming_it(two_hosts, tmp_path):
    data = tmp_path / "head-only.jsonl"  # under /tmp: each worker node has a /tmp of its own
    data.write_text("".join(json.dumps({"question": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n"
                            for i in range(12)))
    done = train(two_hosts, "task.name=jsonl", f"task.path={data}", "task.eval_size=2",
                 "trainer.placement_resource=gen_node", "trainer.steps=1", name="head-only", timeout=300)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]  # a config error
    assert f"task.path: {data} is not seen" in done.stderr
    assert re.search(rf"on node {WORKER_IP} ", done.stderr), done.stderr[-3000:]


@pytest.mark.integration
def test_a_run_with_the_generator_on_another_host(vllm_run):
    from mlflow.tracking import MlflowClient

    done, uri, run = vllm_run
    assert re.search(rf"generators: 1 of 1 on another node than the trainer's \({WORKER_IP}\); weight transport "
                     rf"collective; model folder shipped to {WORKER_IP}\n", done.stdout), done.stdout[-3000:]
    history = MlflowClient(tracking_uri=uri).get_metric_history(run, "sync/logprob_abs_diff")
    assert sorted(m.step for m in history) == [1, 2, 3]
    assert all(m.value < 1e-3 for m in history), history  # fp32 weights broadcast to the other host


# --- faults on the cluster: every process of a node killed at once (`kill_node`) -------------------------------


@pytest.mark.integration
def test_the_generators_node_killed_mid_run(two_hosts, vllm_run, tmp_path):
    """Once step 1 is logged (its weights pushed), the generator's node dies: the next call to it (step 2's
    sampling, or a weight push: two steps remain, however late the kill lands) finds the actor dead, the pool
    re-creates it on another worker node (the model shipped there, the broadcast group rebuilt, the latest
    weights pushed, the chunk retried), and the history is the undisturbed run's."""
    from gcpo.cluster.local import kill_node

    _, uri, reference = vllm_run
    proc, log = start_train(two_hosts, *VLLM_STEPS, name="generator-killed", log_dir=tmp_path)
    with ended_on_failure(proc):
        placed = wait_for(log, rf"generators: 1 of 1 on another node than the trainer's \(({WORKER_IP})\)", proc)
        wait_for(log, r"\[gcpo\] step 1/3 ", proc)
        dead = placed.group(1)
        assert kill_node(cluster_record(two_hosts), 1 + worker_index(dead))
    out = finished(proc, log)
    moved = re.search(rf"generator 0 re-created on ({WORKER_IP}) \(its actor on {re.escape(dead)} died\)", out)
    assert moved and moved.group(1) != dead, out[-6000:]
    killed = run_id(uri, "generator-killed")
    assert history(uri, killed) == history(uri, reference)  # per-request seeds: the same samples, exactly
    assert_no_step_twice(uri, killed)


def _train_worker_node(record) -> int:
    """The recorded node whose processes include Ray Train's worker."""
    from gcpo.cluster.local import node_processes

    for index in range(1, len(record.session_ids)):
        for proc in node_processes(record, index):
            try:
                if any("RayTrainWorker" in part for part in proc.cmdline()):
                    return index
            except psutil.Error:
                continue
    raise AssertionError("no node runs a RayTrainWorker")


@pytest.mark.integration
def test_the_trainers_node_killed_mid_run_resumes_on_another(two_hosts, free_port, wait_for_checkpoint, tmp_path):
    """The training worker on a worker node, logging to an MLflow server on the head (127.0.0.1, reached from
    every node: one network namespace) whose artifacts lie on shared storage. An undisturbed run's metrics and
    evaluation items land there; a second run's node is killed after a committed checkpoint: Ray Train restarts
    the worker group on the other worker node, which resumes from the checkpoint on shared storage, and the
    history is the undisturbed run's, every step once."""
    from mlflow.tracking import MlflowClient

    from gcpo.cluster.local import kill_node
    from gcpo.eval_items import items_artifact

    root = two_hosts["shared"] / "mlflow-server"
    root.mkdir()
    server = MlflowServer(root, free_port)
    server.start()
    try:
        extra = (f"tracking.uri={server.uri}", f"trainer.eval_cache_dir={two_hosts['shared']}/eval-cache")
        done = train(two_hosts, *extra, name="trainer-reference", base=TRAINER_ON_WORKERS)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert re.search(rf"\(RayTrainWorker pid=\d+, ip={WORKER_IP}\)", done.stdout), done.stdout[-3000:]
        reference, client = run_id(server.uri, "trainer-reference"), MlflowClient(tracking_uri=server.uri)
        artifacts = Path(client.get_run(reference).info.artifact_uri)
        assert artifacts.is_relative_to(root / "artifacts")
        for item in (items_artifact(0), items_artifact(8)):  # written by the training worker, on its node
            assert (artifacts / item).is_file() and json.loads((artifacts / item).read_text())
        assert "config.yaml" in [f.path for f in client.list_artifacts(reference)]

        proc, log = start_train(two_hosts, *extra, name="trainer-killed", log_dir=tmp_path,
                                base=TRAINER_ON_WORKERS)
        with ended_on_failure(proc):
            wait_for_checkpoint(two_hosts["shared"] / "runs" / "trainer-killed", timeout=400)
            record = cluster_record(two_hosts)
            node = _train_worker_node(record)
            assert kill_node(record, node)
        out = finished(proc, log)
        dead = worker_ip(node - 1)
        assert "resumed from the checkpoint of step" in out, out[-6000:]
        ips = re.findall(rf"\(RayTrainWorker pid=\d+, ip=({WORKER_IP})\)", out)
        assert ips[-1] != dead, ips
        killed = run_id(server.uri, "trainer-killed")
        assert int(client.get_run(killed).data.tags["gcpo.resume_count"]) >= 1
        assert_same_history(history(server.uri, killed), history(server.uri, reference))
        assert_no_step_twice(server.uri, killed)
    finally:
        server.stop()
