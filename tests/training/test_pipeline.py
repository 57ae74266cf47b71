"""Bounded staleness's schedule (`gcpo.training.pipeline`) with a stand-in collector whose batches record the
weight version they were sampled with: every batch exactly min(step, k) versions old, k = 0 the synchronous
loop in the caller's thread, a resume from the queued batches identical to the uninterrupted run, and a batch
older than k dropped and counted, never handed out."""

import threading
import time

import pytest
import torch

from gcpo.training.pipeline import Collected, RolloutPipeline, from_record, stale_groups, to_record
from gcpo.training.types import StepBatch

G = 2


def batch_at(version: int | None, groups: int = 2) -> StepBatch:
    rows = groups * G
    return StepBatch(prompts=[[1]] * rows, responses=[[2, 3]] * rows, gen_logprobs=[[-0.1, -0.2]] * rows,
                     rewards=torch.arange(rows, dtype=torch.float).reshape(groups, G),
                     correct=torch.zeros(groups, G, dtype=torch.bool), is_golden=torch.zeros(groups, G, dtype=torch.bool),
                     advantages=torch.arange(rows, dtype=torch.float), versions=[version] * rows, hint_tokens=[0] * rows)


class Generators:
    """Stands in for the rollout engine and rank 0's collection: a weight version, and a log of what sampled."""

    def __init__(self):
        self.version, self.log = 0, []

    def collect(self, step: int) -> Collected:
        time.sleep(0.01)  # a background collection really overlaps the caller's "update"
        self.log.append((step, self.version, threading.current_thread() is threading.main_thread()))
        return Collected(batch_at(self.version), {"reward/mean": float(step)}, [{"step": step}])


def run(k: int, steps: int, gens: Generators, pipeline: RolloutPipeline | None = None, start: int = 0,
        stop: int | None = None):
    """The training loop's use of the pipeline: take, "update", settle, push version step + 1."""
    pipeline = pipeline or RolloutPipeline(gens.collect, max_staleness=k, steps=steps)
    trained = []
    for step in range(start, steps if stop is None else stop):
        collected, metrics = pipeline.take(step)
        trained.append((step, collected.batch.versions[0], collected.metrics["reward/mean"], metrics))
        time.sleep(0.02)  # the update
        pipeline.settle()
        gens.version = step + 1
    return trained, pipeline


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_every_batch_is_exactly_min_step_k_versions_old(k):
    gens = Generators()
    trained, pipeline = run(k, 6, gens)
    assert [s for s, *_ in trained] == list(range(6))
    for step, version, reward, metrics in trained:
        assert version == max(0, step - k)
        assert reward == step  # the batch of this step, not another's
        assert metrics["batch/staleness_max"] == metrics["batch/staleness_mean"] == min(step, k)
        assert metrics["batch/dropped_stale"] == 0
    assert sorted(s for s, *_ in gens.log) == list(range(6))  # each batch sampled once, none past the run
    assert pipeline.queued() == {}
    if k == 0:  # the synchronous loop: sampled when the step begins, in the caller's thread
        assert all(main for *_, main in gens.log)
    else:
        assert not any(main for s, _, main in gens.log if s > 0)


def test_a_resume_from_the_queued_batches_trains_on_what_the_uninterrupted_run_did():
    steps, k = 7, 2
    uninterrupted, _ = run(k, steps, Generators())
    gens = Generators()
    first, pipeline = run(k, steps, gens, stop=3)
    stored = {s: to_record(c) for s, c in pipeline.queued().items()}  # what the checkpoint of step 3 holds
    assert sorted(stored) == [3, 4]
    pipeline.close()
    resumed_gens = Generators()
    resumed_gens.version = 3  # the resumed run's generators get the checkpoint's weights
    resumed = RolloutPipeline(resumed_gens.collect, max_staleness=k, steps=steps,
                              queued={s: from_record(r) for s, r in stored.items()})
    rest, _ = run(k, steps, resumed_gens, pipeline=resumed, start=3)
    strip = lambda rows: [(s, v, r, m["batch/staleness_max"]) for s, v, r, m in rows]  # noqa: E731
    assert strip(first + rest) == strip(uninterrupted)
    assert [s for s, *_ in resumed_gens.log] == [5, 6]  # nothing sampled twice


def test_a_batch_older_than_k_is_dropped_and_counted():
    batch = batch_at(5, groups=3)
    batch.versions[2] = 1  # group 1 holds a response sampled 4 versions before step 5
    assert stale_groups(batch, 5, max_staleness=1) == [False, True, False]
    assert stale_groups(batch, 5, max_staleness=4) == [False, False, False]
    stale = Collected(batch, {}, [])
    pipeline = RolloutPipeline(lambda step: stale, max_staleness=1, steps=10)
    collected, metrics = pipeline.take(5)
    pipeline.close()
    assert metrics["batch/dropped_stale"] == 1
    kept = collected.batch
    assert kept.num_groups == 2 and len(kept.responses) == 4 and kept.versions == [5] * 4
    assert kept.advantages.tolist() == [0.0, 1.0, 4.0, 5.0] and kept.rewards.tolist() == [[0, 1], [4, 5]]


def test_golden_rows_have_no_version_and_do_not_count_in_the_staleness():
    batch = batch_at(3)
    batch.versions[1] = None  # an injected golden answer
    pipeline = RolloutPipeline(lambda step: Collected(batch, {}, []), max_staleness=2, steps=5)
    _, metrics = pipeline.take(4)
    pipeline.close()
    assert metrics["batch/staleness_max"] == 1 and metrics["batch/staleness_mean"] == 1


def test_a_failed_background_collection_surfaces_in_the_training_loop():
    def collect(step):
        if step == 2:
            raise RuntimeError("generator lost")
        return Collected(batch_at(0), {}, [])

    pipeline = RolloutPipeline(collect, max_staleness=1, steps=4)
    pipeline.take(0)
    pipeline.settle()
    pipeline.take(1)  # starts the collection of step 2 in the background
    with pytest.raises(RuntimeError, match="generator lost"):
        pipeline.settle()
    pipeline.close()
