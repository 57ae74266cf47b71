"""What `gcpo` prints: quiet by default, everything with `--verbose`.

Quiet (the default) shows our own lines only: the progress bar and other `[gcpo] ...` lines the workers write,
our warnings (`[gcpo] warning: ...`), Ray's autoscaler and raylet notices (e.g. a resource request no node can
fill), the final tables, and an error as one line (`gcpo train: error: MESSAGE`). Ray's, vLLM's, DeepSpeed's,
transformers' and MLflow's logs, progress bars and Python warnings are not shown, on the driver or from the
workers; `--verbose` (or `GCPO_VERBOSE=1`) shows all of them, worker lines with Ray's `(pid=...)` prefix, and an
error's full traceback. Every Ray worker's own log files under Ray's session folder keep whatever it wrote.

How:
- `configure(verbose)`: the `gcpo` command calls it first, before any heavy import (tqdm and transformers read
  their settings from the environment when imported). It records the choice in `GCPO_VERBOSE`, sets the quiet
  environment (`QUIET_ENV`) for this process and sets up logging (`setup_logging`); `configured(verbose)` does the
  same for a block and then restores all of it (the CLI's `main` runs in one, so tests can call it in-process).
- `worker_runtime_env()`: what `gcpo.cluster.runtime.init_ray` adds to the job's runtime_env, so every Ray worker
  process (Train workers, vLLM generators, Tune trials) gets the same environment and runs `setup_worker` at
  start (`worker_process_setup_hook`): our loggers write `[gcpo] ...` lines, third-party loggers errors only.
- `filter_worker_output()`: after `ray.init`, on the driver, quiet mode passes on only the workers' `[gcpo]` lines
  (without Ray's prefix) and Ray's own autoscaler / raylet notices; everything else stays in the workers' log
  files. It wraps Ray's log dispatcher (a private API): if that changes, output is simply not filtered.
- `mark_data_checked()` / `reported_on_driver()`: the driver checked the data before Ray started and said what it
  skipped (`gcpo.preflight`); a worker loading the same data again need not say it twice.
- `root_cause(exc)` and `error_line(command, exc)`: an error raised in a Ray worker reaches the driver wrapped
  (`ray.train.WorkerGroupError`, `RayTaskError`, ...); the CLI prints the worker's own message once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from typing import Any, Iterator

VERBOSE_ENV = "GCPO_VERBOSE"
DATA_CHECKED_ENV = "GCPO_DATA_CHECKED"  # "1": the driver checked the data (gcpo.preflight) and said what it found
PREFIX = "[gcpo]"

# The environment of a quiet run (driver and workers): no progress bars, third-party logs at errors only.
QUIET_ENV = {
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "VLLM_LOGGING_LEVEL": "ERROR",
    "MLFLOW_LOGGING_LEVEL": "ERROR",
    "PYTHONWARNINGS": "ignore",
}

# Loggers set to ERROR in quiet mode. A logger's children follow its level unless they set their own (a logger's
# filter, which survives a library resetting the level on import, applies to its own records only).
NOISY_LOGGERS = ("ray", "mlflow", "alembic", "transformers", "vllm", "DeepSpeed", "deepspeed", "torch", "urllib3",
                 "filelock", "httpx", "datasets", "numexpr", "py.warnings", "optuna", "matplotlib")


def say(line: str) -> None:
    """Print one of our lines now (flushed: a long step follows)."""
    print(line, flush=True)


def add_verbose_argument(parser: Any) -> None:
    """`--verbose / -v` on a command's argparse parser (`gcpo.cli.main` reads `args.verbose`)."""
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="show everything: Ray's, vLLM's, DeepSpeed's and transformers' logs, and an error's "
                             "full traceback (default: our progress and warnings, an error in one line; also "
                             "GCPO_VERBOSE=1)")


def is_verbose() -> bool:
    """Whether this run shows everything (`--verbose` on the command line, or `GCPO_VERBOSE=1`)."""
    return os.environ.get(VERBOSE_ENV, "0").strip().lower() in ("1", "true", "yes")


class _GcpoFormatter(logging.Formatter):
    """`[gcpo] message` for info, `[gcpo] warning: message` (error, ...) above it."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{PREFIX} {record.levelname.lower()}: {message}"
        return f"{PREFIX} {message}"


class _BelowError(logging.Filter):
    """Drops records under ERROR (for loggers that reset their own level when imported, e.g. DeepSpeed's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


_HANDLER_NAME = "gcpo-console"
_QUIET_FILTER = _BelowError()


def setup_logging(verbose: bool | None = None) -> None:
    """Our loggers (`gcpo.*`) write `[gcpo] ...` lines to stderr: warnings and above when quiet, info and above
    with verbose. Quiet: the third-party loggers of `NOISY_LOGGERS` show errors only and Python warnings are
    ignored. Idempotent."""
    verbose = is_verbose() if verbose is None else verbose
    ours = logging.getLogger("gcpo")
    for handler in [h for h in ours.handlers if h.get_name() == _HANDLER_NAME]:
        ours.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(_GcpoFormatter("%(message)s"))
    ours.addHandler(handler)
    ours.setLevel(logging.INFO if verbose else logging.WARNING)
    ours.propagate = False
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if verbose:
            logger.removeFilter(_QUIET_FILTER)
        else:
            logger.setLevel(logging.ERROR)
            logger.addFilter(_QUIET_FILTER)  # survives a library resetting its level on import
    if not verbose:
        warnings.simplefilter("ignore")


def configure(verbose: bool) -> None:
    """The `gcpo` command's output mode, for this process and (through `worker_runtime_env`) its Ray workers."""
    if verbose or is_verbose():
        os.environ[VERBOSE_ENV] = "1"
        setup_logging(True)
        return
    os.environ[VERBOSE_ENV] = "0"
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    setup_logging(False)


@contextlib.contextmanager
def configured(verbose: bool) -> Iterator[None]:
    """`configure(verbose)` for the duration of a block, then the environment, the loggers and the warning filters
    as they were (the `gcpo` command's `main` runs inside one, so calling it in-process leaves no trace)."""
    keys = (VERBOSE_ENV, DATA_CHECKED_ENV, *QUIET_ENV)
    saved_env = {key: os.environ.get(key) for key in keys}
    names = ("gcpo", *NOISY_LOGGERS)
    saved_loggers = {name: (lg.level, list(lg.handlers), list(lg.filters), lg.propagate)
                     for name, lg in ((n, logging.getLogger(n)) for n in names)}
    with warnings.catch_warnings():
        try:
            configure(verbose)
            yield
        finally:
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            for name, (level, handlers, filters, propagate) in saved_loggers.items():
                logger = logging.getLogger(name)
                logger.setLevel(level)
                logger.handlers[:] = handlers
                logger.filters[:] = filters
                logger.propagate = propagate


def worker_env() -> dict[str, str]:
    """Environment variables every Ray worker of this run gets (the output mode, the quiet settings, and whether
    the driver checked the data)."""
    checked = {DATA_CHECKED_ENV: "1"} if os.environ.get(DATA_CHECKED_ENV) == "1" else {}
    if is_verbose():
        return {VERBOSE_ENV: "1", **checked}
    return {VERBOSE_ENV: "0", **{k: os.environ.get(k, v) for k, v in QUIET_ENV.items()}, **checked}


def mark_data_checked() -> None:
    """The driver checked the data and reported what it found (`gcpo.preflight`); call before `init_ray`, so
    the workers know (`reported_on_driver`)."""
    os.environ[DATA_CHECKED_ENV] = "1"


@contextlib.contextmanager
def reported_on_driver(logger_name: str = "gcpo.tasks") -> Iterator[None]:
    """In a worker whose driver already checked and reported the data (`mark_data_checked`), quiet mode: the
    warnings of `logger_name` (skipped rows, ...) are not said a second time inside this block; errors still are."""
    logger = logging.getLogger(logger_name)
    if os.environ.get(DATA_CHECKED_ENV) != "1" or is_verbose():
        yield
        return
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def worker_runtime_env() -> dict:
    """The part of a Ray runtime_env that carries the output mode to every worker process."""
    return {"env_vars": worker_env(), "worker_process_setup_hook": "gcpo.console.setup_worker"}


def setup_worker() -> None:
    """Ray's `worker_process_setup_hook`: runs once in every worker process of the job, before its tasks."""
    setup_logging(is_verbose())


def keep_worker_line(line: str) -> bool:
    """In quiet mode, the lines of a worker's output that reach the terminal: ours."""
    return line.lstrip().startswith(PREFIX)


RAY_SYSTEM_SOURCES = ("autoscaler", "raylet")


def filter_worker_output() -> bool:
    """Quiet mode, on the driver after `ray.init(log_to_driver=True)`: show only `keep_worker_line` lines of the
    workers (without Ray's `(Actor pid=...)` prefix) and Ray's autoscaler / raylet notices. Returns whether the
    filter is installed (not in verbose mode, nor when Ray's private log dispatcher is not where it was)."""
    if is_verbose():
        return False
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:  # pragma: no cover - a Ray without this private API: output is not filtered
        return False
    original = next((h for name, h in getattr(dispatcher, "handlers", ()) if name == "ray_print_logs"), None)
    if original is None or getattr(original, "_gcpo_filter", False):
        return original is not None

    def handler(data: dict) -> None:
        if data.get("pid") in RAY_SYSTEM_SOURCES:
            original(data)
            return
        lines = [line for line in data.get("lines", ()) if keep_worker_line(line)]
        if lines:  # as they come: Ray's de-duplication would hold back one trial's line that looks like another's
            sink = sys.stderr if data.get("is_err") else sys.stdout
            sink.write("".join(line.rstrip("\n") + "\n" for line in lines))
            sink.flush()

    handler._gcpo_filter = True  # type: ignore[attr-defined]
    dispatcher.remove_handler("ray_print_logs")
    dispatcher.add_handler("ray_print_logs", handler)
    return True


def _children(exc: BaseException) -> list[BaseException]:
    """The exceptions a Ray / Ray Train / Tune wrapper carries (duck-typed: Ray need not be imported)."""
    failures = getattr(exc, "worker_failures", None)  # ray.train.WorkerGroupError: rank -> exception
    if isinstance(failures, dict) and failures:
        return [failures[rank] for rank in sorted(failures)]
    for attr in ("controller_failure", "cause"):  # ray.train.ControllerError; RayTaskError / RayActorError
        inner = getattr(exc, attr, None)
        if isinstance(inner, BaseException) and inner is not exc:
            return [inner]
    return []


def _is_wrapper(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module.startswith("ray.") or module == "ray" or type(exc).__name__.startswith("RayTaskError")


def root_cause(exc: BaseException) -> BaseException:
    """The error a user should read: through Ray's wrappers (a Train worker group's first failing rank, a task's
    or actor's cause, an explicit `raise ... from` chain a Ray wrapper left) to the exception the code raised."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        children = _children(exc)
        if children:
            exc = children[0]
            continue
        if _is_wrapper(exc) and exc.__cause__ is not None:
            exc = exc.__cause__
            continue
        break
    return exc


def one_line(text: str, limit: int = 2000) -> str:
    """`text` on one line: its non-blank lines joined by ' | ', cut at `limit` characters."""
    flat = " | ".join(line.strip() for line in str(text).splitlines() if line.strip())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _ours(exc: BaseException) -> bool:
    return (type(exc).__module__ or "").startswith("gcpo.")


def error_message(exc: BaseException) -> str:
    """The root cause as one line: its message, preceded by its type unless it is one of ours (`gcpo.*`), whose
    messages say what went wrong on their own."""
    cause = root_cause(exc)
    message = one_line(str(cause)) or type(cause).__name__
    return message if _ours(cause) else f"{type(cause).__name__}: {message}"


def error_line(command: str, exc: BaseException) -> str:
    """What `gcpo COMMAND` prints for an error: `gcpo COMMAND: error: MESSAGE`, plus a pointer to `--verbose` for
    an error that is not one of ours (a bug, or a library's failure, whose traceback tells more)."""
    hint = "" if is_verbose() or _ours(root_cause(exc)) else " (--verbose shows the traceback)"
    return f"gcpo {command}: error: {error_message(exc)}{hint}"
