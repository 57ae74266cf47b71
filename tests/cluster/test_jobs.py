"""`gcpo cluster`, `gcpo submit` and `gcpo jobs` against a real local Ray cluster (a head and one worker node on
free loopback ports, started and stopped through the CLI), plus the pure parts: the loopback guard, the job's
entrypoint, and addresses that do not answer (which must fail within seconds, naming the address)."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from gcpo.cluster.jobs import entrypoint, normalize_address
from gcpo.cluster.local import ClusterSpec, check_spec
from gcpo.cluster.runtime import ClusterError
from gcpo.network import reachable
from gcpo.commands import build_parser
from .local_cli import PROJECT, free_ports, gcpo

PARSER = build_parser()  # the command line's own parser checks a submitted command
TINY_TRAIN = ["gcpo", "train", "--preset", "gcpo", "model.name=tiny", "rollout.backend=transformers",
              "rollout.prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=6", "task.train_size=12",
              "task.eval_size=2", "trainer.eval_every=0", "trainer.checkpoint_every=1", "tracking.log_rollouts_every=0"]


# Canary secrets in the environment of the cluster and of `gcpo submit`: none may reach MLflow.
SECRETS = {"AWS_SECRET_ACCESS_KEY": "canary-aws-7f3e9b", "HF_TOKEN": "canary-hf-51c2d0",
           "MLFLOW_TRACKING_PASSWORD": "canary-mlflow-a94be1"}


def assert_no_secret_logged(client: MlflowClient, run) -> None:
    """No canary value in the run's params, tags or any text artifact (downloaded and read back)."""
    import tempfile

    shown = [*run.data.params.items(), *run.data.tags.items()]
    assert shown, "the run logged no params"
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(client.download_artifacts(run.info.run_id, "", tmp))
        files = [p for p in local.rglob("*") if p.is_file()]
        assert any(p.name == "config.yaml" for p in files)
        texts = [p.read_bytes().decode("utf-8", "replace") for p in files]
    for secret in SECRETS.values():
        assert not any(secret in f"{k}={v}" for k, v in shown), secret
        assert not any(secret in text for text in texts), secret


# --- pure ---------------------------------------------------------------------------------------------------


def test_non_loopback_bind_is_refused_without_allow_remote():
    with pytest.raises(ClusterError, match=r"'0\.0\.0\.0'.*run whatever code.*--allow-remote"):
        check_spec(ClusterSpec(host="0.0.0.0", port=1, dashboard_port=2, client_port=3), allow_remote=False)
    with pytest.raises(ClusterError, match="port 1 must lie in 1024-65535"):  # allowed past the guard, then checked
        check_spec(ClusterSpec(host="0.0.0.0", port=1), allow_remote=True)
    with pytest.raises(ClusterError, match="dashboard_port 12000 lies in Ray's worker port range"):
        check_spec(ClusterSpec(dashboard_port=12000), allow_remote=False)


def test_entrypoint_appends_tracking_and_output_unless_given():
    cmd = entrypoint(["gcpo", "train", "trainer.steps=2"], PARSER, tracking_uri="http://m:5000",
                     output_dir="/shared/ck")
    assert cmd == "python -m gcpo.cli train trainer.steps=2 tracking.uri=http://m:5000 trainer.output_dir=/shared/ck"
    mine = entrypoint(["gcpo", "sweep", "s.yaml", "tracking.uri=sqlite:///x.db"], PARSER, tracking_uri="http://m:5000",
                      output_dir=None)
    assert mine == "python -m gcpo.cli sweep s.yaml tracking.uri=sqlite:///x.db"
    assert entrypoint(["gcpo", "compare", "--experiment", "e"], PARSER, tracking_uri="u", output_dir="o") == \
        "python -m gcpo.cli compare --experiment e"
    # beside the command's own positionals, wherever its options stand (argparse takes positionals in one run)
    assert entrypoint(["gcpo", "train", "a.b=1", "--name", "n"], PARSER, tracking_uri="u", output_dir=None) == \
        "python -m gcpo.cli train a.b=1 tracking.uri=u --name n"
    assert entrypoint(["gcpo", "train", "--name", "n"], PARSER, tracking_uri="u", output_dir=None) == \
        "python -m gcpo.cli train tracking.uri=u --name n"
    assert entrypoint(["gcpo", "sweep", "s.yaml", "--resume"], PARSER, tracking_uri="u", output_dir=None) == \
        "python -m gcpo.cli sweep s.yaml tracking.uri=u --resume"
    for bad in (["python", "x.py"], ["gcpo", "cluster", "up"], []):
        with pytest.raises(ClusterError, match="submit runs a gcpo command"):
            entrypoint(bad, PARSER, tracking_uri=None, output_dir=None)
    with pytest.raises(ClusterError, match="not a valid gcpo command"):
        entrypoint(["gcpo", "train", "--nmae", "n"], PARSER, tracking_uri=None, output_dir=None)


def test_addresses_are_normalised_and_client_addresses_refused():
    assert normalize_address("127.0.0.1:28265/") == "http://127.0.0.1:28265"
    assert normalize_address("https://ray.example:443") == "https://ray.example:443"
    with pytest.raises(ClusterError, match="Ray Client address"):
        normalize_address("ray://127.0.0.1:10001")
    with pytest.raises(ClusterError, match="has no port"):
        normalize_address("http://head")


def test_unreachable_address_fails_within_seconds_naming_it(tmp_path):
    (port,) = free_ports(1)  # nothing listens there
    env = {**os.environ, "GCPO_CLUSTER_DIR": str(tmp_path)}
    for args in (["submit", "--address", f"127.0.0.1:{port}", "--", "gcpo", "config"],
                 ["jobs", "list", "--address", f"http://127.0.0.1:{port}", "--timeout", "2"]):
        start = time.time()
        done = gcpo(*args, env=env, timeout=60)
        assert time.time() - start < 20  # interpreter start-up included; the probe itself is bounded by --timeout
        assert done.returncode == 1
        assert f"http://127.0.0.1:{port} is unreachable" in done.stderr


def test_no_address_and_no_local_cluster_says_what_to_do(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    done = gcpo("jobs", "list", env={**env, "GCPO_CLUSTER_DIR": str(tmp_path)}, timeout=60)
    assert done.returncode == 1 and "gcpo cluster up" in done.stderr


# --- a real local cluster -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`gcpo cluster up` (head + 1 worker node, free loopback ports); `gcpo cluster down` afterwards, checked."""
    state = tmp_path_factory.mktemp("cluster-state")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env["GCPO_CLUSTER_DIR"] = str(state)
    env.update(SECRETS)  # the cluster's processes (and so the job's driver and workers) see them
    gcs, dashboard, client = free_ports(3)
    up = gcpo("cluster", "up", "--port", str(gcs), "--dashboard-port", str(dashboard), "--client-port", str(client),
              "--workers", "1", "--num-cpus", "4", "--head-resource", "trainer", "--worker-resource", "generator",
              env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    record = json.loads((state / "cluster.json").read_text())
    work = tmp_path_factory.mktemp("jobs")
    yield {"env": env, "url": f"http://127.0.0.1:{dashboard}", "gcs": gcs, "record": record, "work": work}
    shutil.rmtree(work)  # module-scoped: pytest would keep it to the session's end
    down = gcpo("cluster", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert not reachable(f"127.0.0.1:{gcs}", timeout_s=1) and not reachable(f"127.0.0.1:{dashboard}", timeout_s=1)
    assert not (state / "cluster.json").exists()
    assert all(not Path(d).exists() for d in record["temp_dirs"])


@pytest.mark.integration
def test_status_shows_head_and_worker_and_a_second_up_is_refused(cluster):
    done = gcpo("cluster", "status", "--json", env=cluster["env"], timeout=120)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["up"] and info["dashboard"] == cluster["url"]
    assert sorted(n["head"] for n in info["nodes"]) == [False, True]
    # each node declares its custom resource: trainer.placement_resource / rollout.placement_resource pick them
    assert {n["head"]: n["custom"] for n in info["nodes"]} == {True: {"trainer": 100}, False: {"generator": 100}}
    assert all(n["state"] == "ALIVE" for n in info["nodes"])
    again = gcpo("cluster", "up", env=cluster["env"], timeout=120)
    assert again.returncode == 1 and "already up" in again.stderr
    # Ray's own processes live in the cluster's temp folders: /tmp/ray (where a plain ray.init() looks) is untouched
    assert all(Path(d).name.startswith("gcpo-ray-") for d in cluster["record"]["temp_dirs"])


@pytest.mark.integration
def test_jobs_api_refuses_a_request_without_the_token(cluster):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{cluster['url']}/api/jobs/", timeout=10)
    assert refused.value.code == 401


JOIN = ("import ray, sys\nfrom gcpo.cluster.runtime import init_ray\ninit_ray(sys.argv[1])\n"
        "print(int(ray.cluster_resources()['CPU']))\nray.shutdown()\n")


@pytest.mark.integration
def test_joining_the_token_cluster_sends_the_token(cluster, tmp_path):
    """`gcpo train` / `gcpo sweep` join with `init_ray(cluster.address)`: without RAY_AUTH_MODE in the environment
    the token `gcpo cluster up` wrote is sent, as `gcpo submit` sends it; with no token to be found the error says
    where to put it, in one line."""
    env = {k: v for k, v in cluster["env"].items() if not k.startswith("RAY_AUTH")}
    address = f"127.0.0.1:{cluster['gcs']}"
    joined = subprocess.run([sys.executable, "-c", JOIN, address], cwd=PROJECT, env=env, capture_output=True,
                            text=True, timeout=180)
    assert joined.returncode == 0, joined.stderr[-3000:]
    assert int(joined.stdout.strip().splitlines()[-1]) >= 4  # the head's and the worker's CPUs
    (tmp_path / "home").mkdir()
    refused = subprocess.run([sys.executable, "-c", JOIN, address], cwd=PROJECT, env={**env, "HOME": str(
        tmp_path / "home")}, capture_output=True, text=True, timeout=180)
    assert refused.returncode != 0
    assert "no Ray authentication token was found" in refused.stderr and "~/.ray/auth_token" in refused.stderr


@pytest.mark.integration
def test_wrong_port_of_a_live_cluster_fails_within_seconds(cluster):
    start = time.time()
    done = gcpo("jobs", "list", "--address", f"127.0.0.1:{cluster['gcs']}", "--timeout", "3",
                env=cluster["env"], timeout=60)
    assert time.time() - start < 25
    assert done.returncode == 1 and f"http://127.0.0.1:{cluster['gcs']}" in done.stderr


@pytest.mark.integration
def test_submit_a_tiny_train_job_follow_it_and_find_its_mlflow_run(cluster):
    work = cluster["work"]
    uri = f"sqlite:///{work}/mlflow.db"
    done = gcpo("submit", "--wait", "--tracking-uri", uri, "--output-dir", str(work / "runs"), "--",
                *TINY_TRAIN, "trainer.steps=2", "--name", "submitted", env=cluster["env"], timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    job_id = done.stdout.split("submitted job ", 1)[1].split()[0]
    assert f"gcpo jobs logs {job_id} --follow" in done.stdout
    assert "[gcpo] step 2/2" in done.stdout and f"job {job_id}: SUCCEEDED" in done.stdout
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("gcpo").experiment_id])
    assert run.info.run_name == "submitted" and run.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "time/step_s")) == [1, 2]
    assert_no_secret_logged(client, run)
    listed = gcpo("jobs", "list", env=cluster["env"], timeout=120)
    assert any(job_id in line and "SUCCEEDED" in line for line in listed.stdout.splitlines())
    logs = gcpo("jobs", "logs", job_id, env=cluster["env"], timeout=120)
    assert logs.returncode == 0 and "[gcpo] step 2/2" in logs.stdout


@pytest.mark.integration
def test_stop_a_train_job_midway_leaves_committed_checkpoints_intact(cluster):
    work = cluster["work"]
    done = gcpo("submit", "--tracking-uri", f"sqlite:///{work}/stopped.db", "--output-dir", str(work / "runs"),
                "--", *TINY_TRAIN, "trainer.steps=200", "--name", "stopped", env=cluster["env"], timeout=300)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.split("submitted job ", 1)[1].split()[0]
    snapshot = work / "runs" / "stopped" / "checkpoint_manager_snapshot.json"
    deadline = time.time() + 600
    while "latest_checkpoint_result" not in (snapshot.read_text() if snapshot.exists() else ""):
        assert time.time() < deadline, "no checkpoint committed"
        time.sleep(0.5)
    stop = gcpo("jobs", "stop", job_id, env=cluster["env"], timeout=180)
    assert stop.returncode == 0 and f"job {job_id}: STOPPED" in stop.stdout, stop.stdout + stop.stderr
    committed = json.loads(snapshot.read_text())
    for result in committed["checkpoint_results"]:
        ckpt = snapshot.parent / result["checkpoint_dir_name"]
        tag = (ckpt / "latest").read_text().strip()  # DeepSpeed's pointer to the tag it finished writing
        assert (ckpt / tag / "mp_rank_00_model_states.pt").stat().st_size > 0
        assert int((ckpt / "gcpo_step.txt").read_text()) == result["metrics"]["step"]
