"""Output modes (gcpo.console): the root cause of an error wrapped by Ray, said in one line; the quiet settings set
and restored; in quiet mode only our lines of a Ray worker's output reach the driver."""

import logging
import os
import subprocess
import sys
import textwrap

import pytest
from ray.exceptions import RayTaskError
from ray.train import ControllerError, WorkerGroupError

from gcpo import console
from gcpo.config import ConfigError
from gcpo.tasks import TaskDataError

DATA_ERROR = TaskDataError("/data/d.jsonl:7: the prompt has 6,062 tokens + rollout.max_new_tokens 8 = 6,070 > the "
                           "model's context of 2,048 tokens")


def in_task(exc):
    """`exc` as a Ray task or actor call raises it in the caller: a RayTaskError(<type>) carrying it as `cause`."""
    return RayTaskError("generate", f"Traceback (most recent call last):\n  ...\n{exc!r}", exc).as_instanceof_cause()


@pytest.mark.parametrize("wrap", [
    lambda e: e,
    lambda e: WorkerGroupError("[Rank 0 Error Snippet]:\nTraceback ...", {0: e}),
    lambda e: WorkerGroupError("snippet", {1: ValueError("rank 1"), 0: e}),  # the first rank's
    lambda e: ControllerError(e),
    lambda e: in_task(e),
    lambda e: WorkerGroupError("snippet", {0: in_task(e)}),  # raised by a generator actor inside a Train worker
], ids=["bare", "worker-group", "first-rank", "controller", "ray-task", "worker-group-of-ray-task"])
def test_root_cause_unwraps_ray(wrap):
    assert console.root_cause(wrap(DATA_ERROR)) is DATA_ERROR


def test_root_cause_keeps_our_own_chain():
    try:
        try:
            raise OSError("disk")
        except OSError as inner:
            raise ConfigError("trainer.output_dir: cannot write") from inner
    except ConfigError as e:
        assert console.root_cause(e) is e


def test_error_line_is_one_line_with_our_message():
    wrapped = WorkerGroupError("[Rank 0 Error Snippet]:\nTraceback (most recent call last):\n ...", {0: DATA_ERROR})
    assert console.error_line("train", wrapped) == f"gcpo train: error: {DATA_ERROR}"


def test_error_line_names_a_foreign_type_and_points_to_verbose(monkeypatch):
    monkeypatch.setenv(console.VERBOSE_ENV, "0")
    line = console.error_line("eval", in_task(KeyError("weight")))
    assert line == "gcpo eval: error: KeyError: 'weight' (--verbose shows the traceback)"
    assert console.error_line("eval", RuntimeError("first\n\n  second  ")) == (
        "gcpo eval: error: RuntimeError: first | second (--verbose shows the traceback)")
    monkeypatch.setenv(console.VERBOSE_ENV, "1")
    assert console.error_line("eval", RuntimeError("x")) == "gcpo eval: error: RuntimeError: x"


def test_only_our_lines_pass_the_quiet_filter():
    assert console.keep_worker_line("[gcpo] step 1/2 |####| reward 0.5")
    assert console.keep_worker_line("  [gcpo] warning: skipped 2 rows")
    assert not console.keep_worker_line("(MainProcess pid=8194) INFO 11-30 [core.py:133] Initializing a V1 LLM engine")
    assert not console.keep_worker_line("Traceback (most recent call last):")


def test_configured_sets_quiet_mode_then_restores_everything(monkeypatch):
    for key in (console.VERBOSE_ENV, *console.QUIET_ENV):
        monkeypatch.delenv(key, raising=False)
    ours, ray_logger = logging.getLogger("gcpo"), logging.getLogger("ray")
    before = (list(ours.handlers), ours.level, ours.propagate, ray_logger.level, list(ray_logger.filters))
    with console.configured(False):
        assert not console.is_verbose()
        assert os.environ["TQDM_DISABLE"] == "1" and os.environ["VLLM_LOGGING_LEVEL"] == "ERROR"
        assert ours.level == logging.WARNING and ray_logger.level == logging.ERROR
        env = console.worker_runtime_env()
        assert env["env_vars"][console.VERBOSE_ENV] == "0" and env["env_vars"]["TRANSFORMERS_VERBOSITY"] == "error"
        assert env["worker_process_setup_hook"] == "gcpo.console.setup_worker"
    assert console.VERBOSE_ENV not in os.environ and "TQDM_DISABLE" not in os.environ
    assert (list(ours.handlers), ours.level, ours.propagate, ray_logger.level, list(ray_logger.filters)) == before
    with console.configured(True):
        assert console.is_verbose() and ours.level == logging.INFO
        assert console.worker_env() == {console.VERBOSE_ENV: "1"} and "TQDM_DISABLE" not in os.environ


def test_our_warnings_are_prefixed(capfd):
    with console.configured(False):
        logging.getLogger("gcpo.tasks.loading").warning("dropped %d rows", 2)
        logging.getLogger("gcpo.tasks.loading").info("not shown when quiet")
    assert capfd.readouterr().err == "[gcpo] warning: dropped 2 rows\n"


def test_data_warnings_are_said_once(monkeypatch, caplog):
    monkeypatch.setenv(console.VERBOSE_ENV, "0")
    monkeypatch.delenv(console.DATA_CHECKED_ENV, raising=False)
    log = logging.getLogger("gcpo.tasks.lengths")
    with caplog.at_level(logging.WARNING, logger="gcpo.tasks"), console.reported_on_driver():
        log.warning("skipped 1 row")  # not checked on the driver: said here
    console.mark_data_checked()
    assert console.worker_env()[console.DATA_CHECKED_ENV] == "1"
    with caplog.at_level(logging.WARNING, logger="gcpo.tasks"):
        with console.reported_on_driver():
            log.warning("skipped 2 rows")  # the driver said it already
            log.error("an error is always said")
        assert logging.getLogger("gcpo.tasks").level == logging.WARNING  # restored
    assert [r.getMessage() for r in caplog.records] == ["skipped 1 row", "an error is always said"]


FILTER_SCRIPT = textwrap.dedent("""
    import time, ray
    from gcpo.cluster.runtime import init_ray

    init_ray(None, num_cpus=1)

    @ray.remote
    def work():
        import logging, sys
        print("[gcpo] step 1/1 kept", flush=True)
        print("vLLM engine noise", flush=True)
        logging.getLogger("gcpo.training").warning("a warning that matters")
        logging.getLogger("vllm").warning("library noise")
        print("Traceback (most recent call last): noise", file=sys.stderr, flush=True)
        return 1

    ray.get(work.remote())
    time.sleep(3)  # the driver prints worker output as it arrives
    ray.shutdown()
""")


@pytest.mark.integration
@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_worker_output_reaching_the_driver(tmp_path, verbose):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", console.VERBOSE_ENV)}
    env[console.VERBOSE_ENV] = "1" if verbose else "0"
    out = subprocess.run([sys.executable, "-c", FILTER_SCRIPT], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    if verbose:
        assert "(work pid=" in text and "vLLM engine noise" in text and "Traceback" in text
    else:
        lines = sorted(line for line in text.splitlines() if line.strip())  # stdout and stderr: order unknown
        assert lines == ["[gcpo] step 1/1 kept", "[gcpo] warning: a warning that matters"], text


def test_our_lines_are_prefixed_with_console_prefix():
    """The worker-output filter keeps lines starting with `console.PREFIX`: no module writes it by hand."""
    import ast
    from pathlib import Path

    package = Path(console.__file__).parent
    by_hand = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "console.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        by_hand += [f"{path.relative_to(package)}:{node.lineno}" for node in ast.walk(tree)
                    if isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and console.PREFIX in node.value and id(node) not in docstrings]
    assert not by_hand, f"write {console.PREFIX!r} as console.PREFIX: {by_hand}"
