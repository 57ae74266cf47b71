"""The verifier pool: real worker processes, real math-verify, a real hanging verification."""

import os
import time

import pytest

from gcpo.config import ConfigError, TaskConfig
from gcpo.tasks import TaskItem, VerifierPool

pytestmark = pytest.mark.integration

HALF = TaskItem("m:1", "half?", "1/2", None, "math")
ARITH = TaskItem("a:1", "Calculate 3 + 45.", "48", None, "basic_arithmetic")
GSM = TaskItem("g:1", "How many?", "240", None, "gsm_symbolic")

# math-verify parses this instantly, then sympy evaluates 9**(9**9) (a 370-million-digit integer) while
# comparing it with the reference; with math-verify's own signal timeout off, it runs for minutes inside one
# C-level big-integer operation that no signal interrupts. Only killing the process stops it.
PATHOLOGICAL = "<answer>9**9**9</answer>"


def test_batch_scores_accuracy_and_format_in_order(pool):
    responses = ["so <answer>0.5</answer>", "<answer>\\frac{1}{2}</answer> trailing", "0.5", "<answer>48</answer>",
                 "<answer>47</answer>", "<answer>240</answer>"]
    batch = pool.verify(responses, [HALF, HALF, HALF, ARITH, ARITH, GSM])
    assert [v.accuracy for v in batch.verdicts] == [1, 1, 0, 1, 0, 1]
    assert [v.format for v in batch.verdicts] == [1, 0, 0, 1, 1, 1]
    assert [v.answer for v in batch.verdicts][:3] == ["0.5", "\\frac{1}{2}", None]
    assert (batch.timeouts, batch.errors) == (0, 0)
    assert batch.metrics()["verify/accuracy"] == pytest.approx(4 / 6)


def test_format_weight_is_added_to_accuracy():
    with VerifierPool(workers=1, format_weight=0.25) as p:
        batch = p.verify(["<answer>0.5</answer>", "<answer>2</answer>", "1/2"], [HALF] * 3)
    rewards = [v.reward for v in batch.verdicts]
    assert rewards == [1.25, 0.25, 0.0]


def test_hanging_verification_times_out_without_blocking_the_batch():
    with VerifierPool(workers=2, timeout_s=2.0) as p:
        p.verify(["<answer>1/2</answer>"] * 2, [HALF] * 2)  # both workers up and warm
        hung_pids = {w.proc.pid for w in p._workers}
        start = time.monotonic()
        batch = p.verify([PATHOLOGICAL] + ["<answer>1/2</answer>"] * 10, [HALF] * 11)
        elapsed = time.monotonic() - start
        first = batch.verdicts[0]
        assert first.timed_out and first.accuracy == 0 and first.reward == 0 and first.format == 1
        assert all(v.accuracy == 1 and not v.timed_out for v in batch.verdicts[1:])  # the other worker did them
        assert batch.timeouts == 1 and p.total_timeouts == 1 and p.workers_replaced == 1
        assert batch.metrics()["verify/timeouts"] == 1
        assert 2.0 <= elapsed < 8.0
        killed = hung_pids - {w.proc.pid for w in p._workers}
        assert len(killed) == 1
        with pytest.raises(ProcessLookupError):  # killed and reaped: no leaked or zombie process
            os.kill(killed.pop(), 0)
        assert p.verify(["<answer>0.5</answer>"] * 4, [HALF] * 4).verdicts[0].accuracy == 1  # replacement works


def test_verifier_errors_score_zero_and_are_counted(pool):
    broken = TaskItem("x:1", "q", "1", None, "no-such-verifier")
    batch = pool.verify(["<answer>1</answer>", "<answer>48</answer>"], [broken, ARITH])
    assert batch.errors == 1 and "unknown verifier" in batch.verdicts[0].error
    assert batch.verdicts[0].accuracy == 0 and batch.verdicts[1].accuracy == 1


def test_responses_and_items_must_pair_up(pool):
    with pytest.raises(ValueError, match="2 responses but 1 items"):
        pool.verify(["a", "b"], [HALF])


def test_close_stops_every_worker():
    p = VerifierPool.from_config(TaskConfig(verify_workers=2, verify_timeout_s=3.0))
    pids = [w.proc.pid for w in p._workers]
    p.close()
    p.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(RuntimeError, match="after close"):
        p.verify(["x"], [HALF])


def test_config_validation():
    with pytest.raises(ConfigError, match="task.verify_workers"):
        VerifierPool.from_config(TaskConfig(verify_workers=0))
