"""Two hosts on one machine (`gcpo cluster up --isolate-workers`, `gcpo.cluster.hosts`): the worker node has its
own /tmp, /dev/shm and cache folder and its own loopback address, and one shared folder stands for shared
storage. On it: a two-step vLLM run with the generator on the second host (weights by broadcast, the model
shipped, the sync check at fp32 tolerance), `file` across hosts refused at start, and a path only the head sees
refused naming it. Plus the pure parts (the namespace command, the checks' decisions)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from gcpo.cluster.hosts import check_shared_dir, isolated_command, private_paths, worker_ip
from gcpo.cluster.placement import MARKER, candidate_nodes, host_local_paths, path_view, transport_error
from gcpo.cluster.runtime import ClusterError
from gcpo.config import ConfigError, load_config

from .local_cli import PROJECT, free_ports, gcpo

# --- pure ---------------------------------------------------------------------------------------------------


def test_the_node_command_mounts_private_folders_inside_its_own_namespace_only():
    cmd = isolated_command(["ray", "start"], "/tmp/gcpo-ray-1-w0")
    assert cmd[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    script = cmd[7]
    for path in ("/dev/shm", "/tmp", str(Path.home() / ".cache")):
        assert f"mount -t tmpfs gcpo-private {path}" in script
    assert script.endswith('exec "$@"') and cmd[-2:] == ["ray", "start"]
    assert worker_ip(0) == "127.0.0.2" and worker_ip(3) == "127.0.0.5"


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


# --- two hosts ------------------------------------------------------------------------------------------------


def _stop_recorded_cluster(env: dict) -> None:
    """`gcpo cluster down`; if it fails, the recorded sessions are ended from here (also after a failed test)."""
    down = gcpo("cluster", "down", env=env, timeout=180)
    if down.returncode != 0:
        from gcpo.cluster.local import stop_cluster
        from gcpo.cluster.record import load_record

        os.environ["GCPO_CLUSTER_DIR"] = env["GCPO_CLUSTER_DIR"]
        try:
            record = load_record()
            if record is not None:
                stop_cluster(record)
        finally:
            os.environ.pop("GCPO_CLUSTER_DIR")
    assert down.returncode == 0, down.stderr


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
    """A head (`trainer_node`, 127.0.0.1) and one isolated worker node (`gen_node`, 127.0.0.2), shared storage in
    /var/tmp; every process of both ended afterwards, whatever the tests did."""
    if os.geteuid() != 0:
        pytest.skip("isolated worker nodes need root (mount namespaces)")
    state = tmp_path_factory.mktemp("hosts-state")
    shared = Path(tempfile.mkdtemp(prefix="gcpo-test-shared-", dir="/var/tmp"))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env["GCPO_CLUSTER_DIR"] = str(state)
    gcs, dashboard, client = free_ports(3)
    try:
        up = gcpo("cluster", "up", "--port", str(gcs), "--dashboard-port", str(dashboard), "--client-port",
                  str(client), "--workers", "1", "--num-cpus", "4", "--worker-cpus", "2", "--head-resource",
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


def train(hosts: dict, *overrides: str, name: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`gcpo train` joining the two-host cluster (no RAY_AUTH_MODE: the token is found), storage on the shared
    folder unless an override says otherwise."""
    env = {k: v for k, v in hosts["env"].items() if not k.startswith("RAY_AUTH")}
    shared = hosts["shared"]
    return gcpo(*TINY_VLLM, f"cluster.address={hosts['address']}", f"trainer.output_dir={shared}/runs",
                f"tracking.uri=sqlite:///{shared}/mlflow.db", *overrides, "--name", name, env=env, timeout=timeout)


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
    assert seen["ip"] == "127.0.0.2"
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
def test_a_task_file_only_the_head_sees_is_refused_naming_it(two_hosts, tmp_path):
    data = tmp_path / "head-only.jsonl"  # under /tmp: the worker node has a /tmp of its own
    data.write_text("".join(json.dumps({"question": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n"
                            for i in range(12)))
    done = train(two_hosts, "task.name=jsonl", f"task.path={data}", "task.eval_size=2",
                 "trainer.placement_resource=gen_node", "trainer.steps=1", name="head-only", timeout=300)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]  # a config error
    assert f"task.path: {data} is not seen" in done.stderr and "127.0.0.2" in done.stderr


@pytest.mark.integration
def test_two_steps_with_the_generator_on_the_second_host(two_hosts):
    from mlflow.tracking import MlflowClient

    done = train(two_hosts, "trainer.steps=2", name="two-hosts")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert ("generators: 1 of 1 on another node than the trainer's (127.0.0.2); weight transport collective; "
            "model folder shipped to 127.0.0.2") in done.stdout
    client = MlflowClient(tracking_uri=f"sqlite:///{two_hosts['shared']}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("gcpo").experiment_id],
                                filter_string="attributes.run_name = 'two-hosts'")
    history = client.get_metric_history(run.info.run_id, "sync/logprob_abs_diff")
    assert sorted(m.step for m in history) == [1, 2]
    assert all(m.value < 1e-3 for m in history), history  # fp32 weights broadcast to the other host
