"""Test layout: tests mirror the package (`tests/algorithms` <-> `gcpo.algorithms`, ...).

Fast pure tests are unmarked; tests that start real components (processes, Ray, vLLM, DeepSpeed, MLflow) are
marked `integration`. Run only the fast ones with `-m "not integration"`.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from gcpo import network


@pytest.fixture
def free_port() -> int:
    return network.free_port()


@pytest.fixture(scope="session")
def single_process_group():
    """A one-rank gloo process group, as a DeepSpeed engine built outside Ray Train needs (one per session:
    DeepSpeed keeps a handle to the first group it sees)."""
    import torch.distributed as dist

    port = 29000 + os.getpid() % 1000
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    dist.init_process_group("gloo", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray runtime (logical CPUs oversubscribed: a 2-core machine runs a trainer and a generator)."""
    import ray

    from gcpo.cluster.runtime import init_ray

    init_ray(None, num_cpus=4)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server on 127.0.0.1 with a sqlite backend; yields its URI."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = network.free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
         "--default-artifact-root", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=open(root / "server.log", "w"), stderr=subprocess.STDOUT,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield uri
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def checkpoint_committed(run_dir: Path) -> bool:
    """Ray Train has *committed* a checkpoint of the run in `run_dir` (recorded in its snapshot), not merely
    started writing one."""
    try:
        return bool(json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text()).get("latest_checkpoint_result"))
    except (OSError, ValueError):
        return False


@pytest.fixture
def wait_for_checkpoint():
    """`wait_for_checkpoint(run_dir)`: block until the run has a committed checkpoint (TimeoutError after 600 s)."""
    def wait(run_dir: Path, timeout: float = 600) -> None:
        deadline = time.time() + timeout
        while not checkpoint_committed(run_dir):
            if time.time() > deadline:
                raise TimeoutError(f"no committed checkpoint in {run_dir}")
            time.sleep(0.1)
    return wait


@pytest.fixture
def kill_train_worker():
    """`kill_train_worker(run_dirs)` starts a thread that, once a directory from `run_dirs()` holds a committed
    checkpoint, SIGKILLs this test's own Ray Train worker: a descendant of this process (its local Ray runtime),
    never another Ray's on the machine. Returns a dict that then holds the run directory's `run` name and the
    `pid`; the thread is joined at teardown."""
    import psutil

    threads = []

    def start(run_dirs) -> dict:
        killed: dict = {}

        def watch():
            deadline = time.time() + 600
            while time.time() < deadline:
                for run_dir in run_dirs():
                    if not checkpoint_committed(run_dir):
                        continue
                    # Ray titles worker processes `ray::RayTrainWorker...`
                    for proc in psutil.Process().children(recursive=True):
                        try:
                            if any("RayTrainWorker" in part for part in proc.cmdline()):
                                os.kill(proc.pid, signal.SIGKILL)
                                killed.update(run=run_dir.name, pid=proc.pid)
                                return
                        except psutil.Error:
                            continue
                time.sleep(0.2)

        threads.append(threading.Thread(target=watch, daemon=True))
        threads[-1].start()
        return killed

    yield start
    for thread in threads:
        thread.join(timeout=60)


@pytest.fixture
def two_gloo_ranks(free_port):
    """`run(target, *args)`: start `target(rank, port, *args, out)` in two spawned processes (a gloo group of two
    is theirs to make on `port`), return what rank 0 puts on `out`, and check both exit cleanly."""
    import queue

    import torch.multiprocessing as mp

    def run(target, *args):
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        procs = [ctx.Process(target=target, args=(rank, free_port, *args, out)) for rank in range(2)]
        for p in procs:
            p.start()
        try:
            result = out.get(timeout=300)
        except queue.Empty:
            for p in procs:
                p.kill()
            pytest.fail(f"no result from the gloo workers; exit codes {[p.exitcode for p in procs]} (see stderr)")
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
        return result

    return run


@pytest.fixture(autouse=True)
def own_eval_cache(tmp_path_factory, monkeypatch):
    """Each test its own step-0 evaluation cache (`trainer.eval_reuse` is on by default): no test reads an
    evaluation another test stored. A test that checks the reuse sets `trainer.eval_cache_dir` itself."""
    monkeypatch.setenv("GCPO_EVAL_CACHE", str(tmp_path_factory.mktemp("eval-cache")))
