"""Ray Jobs API: `gcpo submit` and `gcpo jobs list | logs | stop`.

Contracts:
- The address is the cluster's dashboard (Jobs API) URL, `http://HOST:PORT` or `HOST:PORT`. Without one:
  `RAY_API_SERVER_ADDRESS`, then `RAY_ADDRESS`, then the local cluster `gcpo cluster up` recorded.
- `connect` opens a TCP connection first and asks `/api/version` with a timeout, so an unreachable or wrong
  address fails within seconds with a `ClusterError` naming it, never a hang.
- A submitted job runs `python -m gcpo.cli <command>` with the project shipped as its working folder (minus
  virtualenvs, MLflow stores, run and checkpoint folders, caches and VCS data) and `gcpo` / `trainables`
  shipped as modules, so the job runs the submitter's code. `tracking.uri` and `trainer.output_dir` are
  appended to config-taking commands unless given; the tracking URI is also `MLFLOW_TRACKING_URI` in the job.
- Token authentication: when a token is available (`~/.ray/auth_token`, `RAY_AUTH_TOKEN[_PATH]`) requests carry
  it (`RAY_AUTH_MODE=token`); the token is never printed or sent to the job.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import shlex
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from gcpo.cluster.record import load_record
from gcpo.cluster.runtime import ClusterError, use_token_if_available
from gcpo.run_folder import RUNS
from gcpo.network import host_port, is_loopback, reachable

WORKING_DIR_EXCLUDES = [".venv", "venv", ".git", "mlruns", "mlartifacts", "mlflow.db", "*.db", "runs/", "checkpoints",
                        "reports/", ".cache", "__pycache__", ".pytest_cache", "*.egg-info", "build/", "*.pyc"]
CONFIG_COMMANDS = {"train", "sweep", "eval", "config"}  # take dotted KEY=VALUE run-config overrides
SUBMITTABLE = CONFIG_COMMANDS | {"compare"}
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")


def resolve_address(address: str | None) -> str:
    """The Jobs API URL to use: `address`, else the environment's, else the local cluster's (see module doc)."""
    for candidate in (address, *(os.environ.get(k) for k in ADDRESS_ENV)):
        if candidate:
            return normalize_address(candidate)
    record = load_record()
    if record is None:
        raise ClusterError("no cluster address: pass --address http://HOST:DASHBOARD_PORT, or start a local "
                           "cluster with `gcpo cluster up`")
    return record.dashboard_url


def normalize_address(address: str) -> str:
    """`HOST:PORT` -> `http://HOST:PORT`; a Ray Client (`ray://`) address is refused, naming it."""
    address = address.strip().rstrip("/")
    if address.startswith("ray://"):
        raise ClusterError(f"{address!r} is a Ray Client address; jobs go to the dashboard URL, "
                           f"http://HOST:DASHBOARD_PORT")
    if "://" not in address:
        address = f"http://{address}"
    try:
        host_port(address)
    except ValueError:
        raise ClusterError(f"address {address!r} has no port; expected http://HOST:DASHBOARD_PORT") from None
    return address


@contextmanager
def _address_env_cleared() -> Iterator[None]:
    """Ray's client lets RAY_ADDRESS override the address it is given; the caller's address must win."""
    saved = {k: os.environ.pop(k) for k in ADDRESS_ENV if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _probe_http(url: str, timeout_s: float) -> None:
    """Raise ClusterError unless `url` answers HTTP like a Ray dashboard (200, or 401 without a token)."""
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=timeout_s) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except (OSError, ValueError, http.client.HTTPException) as e:  # timeouts, resets, a non-HTTP server
        raise ClusterError(f"{url} answers, but not as a Ray dashboard ({type(e).__name__}); is this the "
                           f"dashboard port?") from None
    if status not in (200, 401):
        raise ClusterError(f"{url} answers HTTP {status} to /api/version: not a Ray dashboard / Jobs API")


def connect(address: str, *, timeout_s: float = 5.0):
    """A `JobSubmissionClient` for `address`, checked to answer within `timeout_s` (see module doc)."""
    from ray.job_submission import JobSubmissionClient

    url = normalize_address(address)
    if not reachable(url, timeout_s):
        raise ClusterError(f"the Ray Jobs API at {url} is unreachable (no connection within {timeout_s:.0f} s); "
                           f"check the address and that the cluster is up (`gcpo cluster status`)")
    _probe_http(url, timeout_s)
    use_token_if_available()
    try:
        with _address_env_cleared():
            return JobSubmissionClient(url)
    except Exception as e:  # ConnectionError, AuthenticationError, RuntimeError (version)...
        raise ClusterError(f"could not use the Ray Jobs API at {url}: {e}") from e


def entrypoint(command: Sequence[str], parser: argparse.ArgumentParser, *, tracking_uri: str | None,
               output_dir: str | None) -> str:
    """The job's shell command for `gcpo <command...>`, checked by `parser` (the command line's own,
    `gcpo.commands.build_parser()`, passed in by the caller: a typo fails before anything is sent), with
    `tracking.uri` / `trainer.output_dir` inserted beside its overrides unless given."""
    args = list(command)
    if args[:1] == ["gcpo"]:
        args = args[1:]
    if not args or args[0] not in SUBMITTABLE:
        raise ClusterError(f"submit runs a gcpo command ({', '.join(sorted(SUBMITTABLE))}), e.g. "
                           f"`gcpo submit -- gcpo train trainer.steps=4`; got {shlex.join(command) or 'nothing'}")
    if args[0] in CONFIG_COMMANDS:
        parsed = _parse_gcpo(parser, args)
        given = {o.split("=", 1)[0] for o in parsed.overrides}
        extra = {"tracking.uri": tracking_uri, "trainer.output_dir": output_dir}
        at = _overrides_end(args, parsed)
        args[at:at] = [f"{k}={v}" for k, v in extra.items() if v and k not in given]
    return shlex.join(["python", "-m", "gcpo.cli", *args])


def _parse_gcpo(parser: argparse.ArgumentParser, args: list[str]):
    try:
        return parser.parse_args(args)
    except SystemExit:  # argparse has printed the usage and the error
        raise ClusterError(f"not a valid gcpo command: gcpo {shlex.join(args)}") from None


def _overrides_end(args: list[str], parsed) -> int:
    """Where more KEY=VALUE overrides can go: after the command's last override, else after its other positional
    (a sweep's space file), else right after the subcommand (argparse needs positionals in one run)."""
    if parsed.overrides:
        return max(i for i, a in enumerate(args) if a == parsed.overrides[-1]) + 1
    space = getattr(parsed, "space", None)
    return args.index(space) + 1 if space in args[1:] else 1


def runtime_env(project: Path, tracking_uri: str | None) -> dict:
    """Ship `project` (minus `WORKING_DIR_EXCLUDES`) and its code; unbuffered output; the tracking URI."""
    env_vars = {"PYTHONUNBUFFERED": "1"}  # no key `init_ray` sets too: Ray refuses to merge a conflict
    if tracking_uri:
        env_vars["MLFLOW_TRACKING_URI"] = tracking_uri
    modules = [str(p) for p in (project / "platform" / "gcpo", project / "trainables") if p.is_dir()]
    return {"working_dir": str(project), "excludes": WORKING_DIR_EXCLUDES, "py_modules": modules,
            "env_vars": env_vars}


def default_locations(url: str, project: Path, tracking_uri: str | None,
                      output_dir: str | None) -> tuple[str, str | None]:
    """(tracking URI, output dir) for a job on `url`: the project's own store and `runs/` when the cluster is on
    this machine; a remote cluster needs a tracking URI it can reach (ClusterError otherwise)."""
    from gcpo.tracking.training_run import absolute_tracking_uri

    local = is_loopback(host_port(url)[0])
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri is None and not local:
        raise ClusterError(f"{url} is a remote cluster: pass --tracking-uri http://MLFLOW_HOST:PORT (a tracking "
                           f"server its nodes reach), or the runs would be logged inside the job's temp folder")
    uri = absolute_tracking_uri(uri or "sqlite:///mlflow.db", project)
    if output_dir is None and local:
        output_dir = str(project / RUNS)
    return uri, output_dir


def submit(client, entry: str, *, command: Sequence[str], project: Path, tracking_uri: str | None) -> str:
    """Submit the job whose shell command is `entry` (from `entrypoint`, for `gcpo <command...>`); returns its
    submission id."""
    try:
        return client.submit_job(entrypoint=entry, runtime_env=runtime_env(project, tracking_uri),
                                 metadata={"gcpo_command": shlex.join(command)[:512]})
    except Exception as e:
        raise ClusterError(f"the cluster refused the job: {e}") from e


def status(client, job_id: str) -> str:
    """The job's status name (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED); ClusterError if there is none."""
    try:
        return client.get_job_status(job_id).value
    except RuntimeError as e:
        raise ClusterError(f"no job {job_id!r}: {e}") from e


def follow(client, job_id: str, out=sys.stdout) -> str:
    """Print the job's logs as they come until it ends; returns its final status."""
    status(client, job_id)

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    asyncio.run(tail())
    return wait(client, job_id, timeout_s=30)


def wait(client, job_id: str, *, timeout_s: float) -> str:
    """Poll until the job ends or `timeout_s` passes; returns its last status."""
    deadline = time.time() + timeout_s
    while (state := status(client, job_id)) not in TERMINAL and time.time() < deadline:
        time.sleep(0.5)
    return state
