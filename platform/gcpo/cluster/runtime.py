"""Start or join a Ray runtime with loopback defaults and readable errors.

- `address=None`: start a local Ray in this process, bound to 127.0.0.1, its dashboard on 127.0.0.1 only (it
  executes whatever job it is sent; Ray Train's state queries need it), `num_cpus` logical CPUs (default `local_num_cpus()`: max(4, cores)).
- `address=None` with `RAY_ADDRESS` set (a job's driver: the Jobs API sets it): join that cluster.
- `address="ray://..."` / `"host:port"`: join an existing cluster. An unreachable address fails within
  `timeout_s` with a `ClusterError` that names it, never a hang. A token-authenticated cluster (`gcpo cluster up`
  starts one) is joined with the token found in `RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH` or `~/.ray/auth_token`,
  as `gcpo submit` and `gcpo jobs` do (`use_token_if_available`); when none is found and the join fails, the error
  says where to put it.
- A head killed without `ray stop` leaves Ray's `ray_current_cluster` file behind, and the next local start
  fails with "When connecting to an existing cluster, num_cpus and num_gpus must not be provided". We detect the
  stale file (its address answers no connection), remove it and start fresh.
- Output (`gcpo.console`): every worker process gets the run's output mode through the job's runtime_env
  (`GCPO_VERBOSE`, the quiet environment, a setup hook for its loggers); in quiet mode Ray's own driver logs show
  errors only and the workers' output is filtered down to our `[gcpo]` lines (`--verbose` shows everything).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gcpo.network import reachable


class ClusterError(RuntimeError):
    """Ray could not be started or reached; the message names the address."""


def _stale_cluster_file() -> Path | None:
    """Ray's record of the last local head, if the head it names no longer answers."""
    tmp = Path(os.environ.get("RAY_TMPDIR", tempfile.gettempdir())) / "ray" / "ray_current_cluster"
    if not tmp.exists():
        return None
    address = tmp.read_text().strip()
    return tmp if not reachable(address) else None


def local_num_cpus() -> int:
    """A local Ray's logical CPUs by default: max(4, cores) (a 2-core machine runs a trainer and a generator side
    by side; phases alternate, so oversubscription is fine). `gcpo cluster up`'s head uses the same."""
    return max(4, os.cpu_count() or 1)


_TOKEN_MODE = {"ours": False}  # True while RAY_AUTH_MODE=token is set by use_token_if_available, not by the user


def use_token_if_available() -> bool:
    """Turn Ray's token authentication on for this process when a token is at hand (`RAY_AUTH_TOKEN`,
    `RAY_AUTH_TOKEN_PATH`, or `~/.ray/auth_token`, which a `gcpo cluster up` head writes); True when the mode is
    on. A `RAY_AUTH_MODE` already set is left as it is. The token itself is never printed. The mode lasts until
    `forget_token_mode` (a local runtime started later by this process calls it)."""
    if "RAY_AUTH_MODE" in os.environ:
        return os.environ["RAY_AUTH_MODE"] == "token"
    token_file = Path.home() / ".ray" / "auth_token"
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or token_file.exists()):
        return False
    os.environ["RAY_AUTH_MODE"] = "token"
    _TOKEN_MODE["ours"] = True
    _reload_ray_config()
    return True


def forget_token_mode() -> None:
    """Undo what `use_token_if_available` turned on (a mode the user set is left alone): a local runtime started
    by a process that joined a token cluster before is a plain local runtime, and so are the processes it starts
    (they inherit the environment)."""
    if _TOKEN_MODE["ours"]:
        os.environ.pop("RAY_AUTH_MODE", None)
        _TOKEN_MODE["ours"] = False
        _reload_ray_config()


def _reload_ray_config() -> None:
    from ray._raylet import Config

    Config.initialize("")  # Ray reads the mode once into its config; re-read it (as Ray's own setup does)


def _join_error(address: str, e: Exception, token: bool) -> ClusterError:
    """Why joining failed; without a token, what to do if the cluster asks for one (Ray's own error then only
    says it failed to connect)."""
    hint = ("" if token else "; no Ray authentication token was found: if the cluster uses one (a `gcpo cluster up` "
            "head does), copy the head's ~/.ray/auth_token to ~/.ray/auth_token here, or set RAY_AUTH_TOKEN")
    return ClusterError(f"could not connect to the Ray cluster at {address!r}: {e}{hint}")


def init_ray(address: str | None = None, *, num_cpus: int | None = None, timeout_s: float = 10.0) -> None:
    """Start (address None) or join a Ray runtime; a no-op if this process is already connected."""
    import ray

    if ray.is_initialized():
        return
    if address is None and os.environ.get("RAY_ADDRESS"):  # a Ray job's driver (or the user's choice): join it
        address = os.environ["RAY_ADDRESS"]
    from gcpo import console

    output = console.worker_runtime_env()
    env = {**output, "env_vars": {"TOKENIZERS_PARALLELISM": "false", **output["env_vars"]}}
    level = "WARNING" if console.is_verbose() else "ERROR"
    if address is None:
        forget_token_mode()  # a token cluster joined earlier by this process does not make this runtime one
        _reload_ray_config()  # the driver's mode as the environment says, which the GCS it starts inherits
        stale = _stale_cluster_file()
        if stale is not None:
            stale.unlink(missing_ok=True)
        cpus = num_cpus or local_num_cpus()
        try:
            ray.init(num_cpus=cpus, include_dashboard=True, dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1",
                     runtime_env=env, log_to_driver=True, logging_level=level)
        except ValueError as e:
            raise ClusterError(f"could not start a local Ray runtime: {e}. If a Ray head is running here "
                               f"(`ray status`), stop it with `ray stop` or pass cluster.address") from e
        console.filter_worker_output()
        return
    probe = address.removeprefix("ray://")
    if probe not in ("auto",) and not reachable(probe, timeout_s):
        raise ClusterError(f"cluster.address {address!r} is unreachable (no answer within {timeout_s:.0f} s); "
                           f"check the address and that the head is running")
    if num_cpus is not None:
        raise ClusterError("cluster.num_cpus applies only to a local runtime; a cluster's CPUs are its own")
    token = use_token_if_available()  # a token cluster (`gcpo cluster up`) is joined with its token, as jobs are
    try:
        ray.init(address=address, runtime_env=env, logging_level=level)
    except Exception as e:  # Ray raises several types here (ConnectionError, RuntimeError, auth errors)
        raise _join_error(address, e, token) from e
    console.filter_worker_output()
