"""Batch verification in worker processes, each verification under a real timeout.

`VerifierPool(workers, timeout_s, format_weight)` keeps `workers` worker processes (fresh interpreters, so safe
next to threads, torch and Ray, and they never re-run the caller's `__main__`). `verify(responses, items)` reads
each response's answer and format in the caller (linear-time string work), sends the answers to idle workers,
and waits on all of them at once. A job still running `timeout_s` after it was handed to a worker scores 0 and
is counted as a timeout; its worker is killed (SIGKILL: a verification stuck inside a C call, e.g. a huge
integer power, ignores signals) and a fresh one is started (about 2 s, while the other workers go on), so a
hung verification never blocks the rest of the batch and never leaks a process. A worker that crashes mid-job
counts as an error (score 0) and is replaced the same way.

Reward of a response: `accuracy + format_weight * format`, accuracy and format each in {0, 1}:
- accuracy: the verifier accepts the text inside the last `<answer></answer>` (a response with no such text
  scores 0 without being sent to a worker);
- format: the response is well formed (`gcpo.tasks.answers.is_well_formed`);
- a timed-out verification scores a reward of 0 (its format is still reported); a verifier that raises scores
  accuracy 0 and is counted as an error.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing.connection
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Sequence

from gcpo.tasks import verifiers
from gcpo.tasks.answers import extract_answer, is_well_formed
from gcpo.tasks.types import TaskItem

log = logging.getLogger(__name__)

_READY = "ready"


@dataclass(frozen=True)
class Verdict:
    """The score of one response. `answer` is the extracted answer text (None if absent)."""

    accuracy: float
    format: float
    reward: float
    answer: str | None
    timed_out: bool = False
    error: str | None = None


@dataclass
class BatchVerdicts:
    """Per-response verdicts (in input order) plus the batch's counters."""

    verdicts: list[Verdict]
    timeouts: int
    errors: int
    seconds: float

    def metrics(self, prefix: str = "verify/") -> dict[str, float]:
        """Means over the batch and the counters, as metric names under `prefix`."""
        n = max(len(self.verdicts), 1)
        return {
            f"{prefix}accuracy": sum(v.accuracy for v in self.verdicts) / n,
            f"{prefix}format_rate": sum(v.format for v in self.verdicts) / n,
            f"{prefix}reward": sum(v.reward for v in self.verdicts) / n,
            f"{prefix}timeouts": float(self.timeouts),
            f"{prefix}errors": float(self.errors),
            f"{prefix}seconds": self.seconds,
        }


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this worker when its parent dies, even while a verification holds the GIL
    inside a C call (a hung worker must never outlive the pool). Elsewhere: the closed pipe ends the loop."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def worker_main(read_fd: int, write_fd: int) -> None:
    """Worker loop: warm up, say ready, then answer `(job, verifier, answer, reference)` with `(job, ok, error)`.
    Exits on `None` or when the parent's end of the pipe closes."""
    _die_with_parent()
    inbox = Connection(read_fd, writable=False)
    outbox = Connection(write_fd, readable=False)
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns that its own timeouts are off
    verifiers.warm_up()
    outbox.send(_READY)
    while True:
        try:
            msg = inbox.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job, name, answer, reference = msg
        try:
            ok, error = verifiers.score(name, answer, reference), None
        except Exception as e:  # a verifier bug scores 0 and is reported, it does not stop the batch
            ok, error = False, f"{type(e).__name__}: {e}"[:500]
        outbox.send((job, ok, error))


_WORKER_CODE = "import sys; from gcpo.tasks.pool import worker_main; worker_main(int(sys.argv[1]), int(sys.argv[2]))"


class _Worker:
    """One worker: a fresh interpreter (`python -c`), talking over two pipes passed as inherited descriptors.
    A plain subprocess (not multiprocessing) so nothing re-imports the caller's `__main__`: it works from any
    script, notebook, pytest or Ray actor."""

    def __init__(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = dict(os.environ)
        source_root = str(Path(__file__).resolve().parents[2])  # the folder holding the gcpo package
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_CODE, str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w), env=env, stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.outbox = Connection(to_child_w, readable=False)
        self.inbox = Connection(from_child_r, writable=False)
        self.started = time.monotonic()
        self.ready = False
        self.job: int | None = None
        self.deadline = float("inf")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.outbox.close()
        self.inbox.close()


class VerifierPool:
    """See the module docstring. One `verify` call at a time (calls from several threads are serialised).

    `startup_timeout_s` bounds how long a new worker may take to import and warm up before the pool gives up
    with RuntimeError (a broken environment, not a slow answer).
    """

    def __init__(self, workers: int = 2, timeout_s: float = 5.0, format_weight: float = 0.0,
                 startup_timeout_s: float = 120.0):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self.format_weight = format_weight
        self.startup_timeout_s = startup_timeout_s
        self.total_timeouts = 0
        self.workers_replaced = 0
        self._lock = threading.Lock()
        self._workers = [_Worker() for _ in range(workers)]

    @classmethod
    def from_config(cls, cfg: Any) -> "VerifierPool":
        """From a `TaskConfig`: `verify_workers`, `verify_timeout_s`, `format_reward`."""
        from gcpo.config import ConfigError

        if cfg.verify_workers < 1:
            raise ConfigError(f"task.verify_workers: must be >= 1, got {cfg.verify_workers}")
        return cls(workers=cfg.verify_workers, timeout_s=cfg.verify_timeout_s, format_weight=cfg.format_reward)

    def __enter__(self) -> "VerifierPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def verify(self, responses: Sequence[str], items: Sequence[TaskItem]) -> BatchVerdicts:
        """Score `responses[i]` against `items[i]` (repeat an item for each response of its group)."""
        if len(responses) != len(items):
            raise ValueError(f"{len(responses)} responses but {len(items)} items; they must pair up")
        start = time.monotonic()
        answers = [extract_answer(r) for r in responses]
        jobs = {i: (items[i].verifier, a, items[i].answer) for i, a in enumerate(answers) if a is not None}
        with self._lock:
            if not self._workers:
                raise RuntimeError("VerifierPool.verify called after close()")
            outcomes = self._run(jobs)
        verdicts = []
        for i, response in enumerate(responses):
            correct, timed_out, error = outcomes.get(i, (False, False, None))
            accuracy, fmt = float(correct), float(is_well_formed(response))
            reward = 0.0 if timed_out else accuracy + self.format_weight * fmt
            verdicts.append(Verdict(accuracy, fmt, reward, answers[i], timed_out, error))
        timeouts = sum(v.timed_out for v in verdicts)
        errors = sum(v.error is not None for v in verdicts)
        self.total_timeouts += timeouts
        if timeouts or errors:
            log.warning("verification: %d timeout(s) (limit %.1fs) and %d error(s) in a batch of %d",
                        timeouts, self.timeout_s, errors, len(responses))
        return BatchVerdicts(verdicts, timeouts, errors, time.monotonic() - start)

    def _replace(self, index: int) -> None:
        self._workers[index].kill()
        self._workers[index] = _Worker()
        self.workers_replaced += 1

    def _run(self, jobs: dict[int, tuple[str, str, str]]) -> dict[int, tuple[bool, bool, str | None]]:
        """Run every job; job id -> (correct, timed_out, error)."""
        pending = collections.deque(jobs)
        results: dict[int, tuple[bool, bool, str | None]] = {}
        while pending or any(w.job is not None for w in self._workers):
            now = time.monotonic()
            for index, w in enumerate(self._workers):
                if w.ready and w.job is None and pending:
                    job = pending.popleft()
                    try:
                        w.outbox.send((job, *jobs[job]))
                    except OSError:  # the idle worker died: retry the job on its replacement
                        pending.appendleft(job)
                        self._replace(index)
                        continue
                    w.job, w.deadline = job, now + self.timeout_s
            waiting = [w for w in self._workers if w.job is not None or not w.ready]
            deadlines = [w.deadline for w in waiting if w.job is not None]
            deadlines += [w.started + self.startup_timeout_s for w in waiting if not w.ready]
            timeout = max(0.0, min(deadlines) - now)
            for conn in multiprocessing.connection.wait([w.inbox for w in waiting], timeout=timeout):
                index = next(i for i, w in enumerate(self._workers) if w.inbox is conn)
                self._receive(index, results)
            now = time.monotonic()
            for index, w in enumerate(self._workers):
                if w.job is not None and now >= w.deadline:
                    results[w.job] = (False, True, None)
                    self._replace(index)
                elif not w.ready and now >= w.started + self.startup_timeout_s:
                    raise RuntimeError(f"a verifier worker did not start within {self.startup_timeout_s:.0f}s")
        return results

    def _receive(self, index: int, results: dict[int, tuple[bool, bool, str | None]]) -> None:
        w = self._workers[index]
        try:
            msg = w.inbox.recv()
        except (EOFError, OSError):
            code = w.proc.poll()
            if w.job is None and not w.ready:
                w.kill()
                raise RuntimeError(f"a verifier worker died while starting (exit code {code}); run "
                                   f"`python -c 'import gcpo.tasks.verifiers as v; v.warm_up()'` to see why")
            if w.job is not None:
                results[w.job] = (False, False, f"verifier worker died (exit code {code})")
            self._replace(index)
            return
        if msg == _READY:
            w.ready = True
            return
        job, ok, error = msg
        results[job] = (bool(ok), False, error)
        w.job, w.deadline = None, float("inf")

    def close(self) -> None:
        """Stop every worker (politely, then by force after 5 s). Idempotent."""
        workers, self._workers = self._workers, []
        for w in workers:
            try:
                w.outbox.send(None)
            except (OSError, ValueError):
                pass
        for w in workers:
            try:
                w.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            w.kill()

    def __del__(self) -> None:
        if getattr(self, "_workers", None):
            try:
                self.close()
            except Exception:  # interpreter shutdown; the workers exit anyway (closed pipe, parent-death signal)
                pass
