"""Bounded staleness: rank 0's step batches, sampled up to `rollout.max_staleness` steps ahead of the update.

With `max_staleness` = k = 0 this is the synchronous loop: the batch of step s is sampled (with the weights of
version s, the state after s updates) when step s begins, then trained on. With k > 0, while the trainer updates
step s the generators sample the batch of step s + k with the weights of version s, in a background thread of
rank 0 (the rollout engine's calls are remote or release the GIL); the trainer waits for that collection to end
before it pushes version s + 1, so weights never change under a batch being sampled.

The schedule is a fixed lag, a choice: the batch of step t is sampled with the weights of version max(0, t - k)
(its first k batches with the start weights), so every batch is exactly min(t, k) versions old. Opportunistic
pipelines (sample whenever a generator is free, at most k behind) overlap a little more when phase times vary,
but their batches' versions then depend on timing; a fixed lag makes a run reproducible and a resume exact: a
checkpoint (taken after the collection of the step in flight has ended) stores the k batches already sampled
for the next steps, and a resumed run trains on them instead of sampling again with weights it no longer has.

A batch holding a sampled response more than k versions old (only a defect could do that: e.g. a generator that
lost its weights) has those groups dropped and counted (`batch/dropped_stale`), never trained on.

Per step metrics: `batch/staleness_mean`, `batch/staleness_max` (over the sampled responses; golden answers have
no version), `batch/dropped_stale`, `time/rollout_wait_s` (seconds the trainer waited for rollouts: for the
batch at the step's start, and for the collection in flight before the weight push) and, when k > 0,
`rollout/overlap_frac` (the share of the background collection's seconds hidden behind the update).
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from gcpo.training.types import StepBatch


@dataclass
class Collected:
    """One step's batch as rank 0 collected it: the batch, its rollout metrics and its sample rows."""

    batch: StepBatch
    metrics: dict
    samples: list


def staleness_metrics(batch: StepBatch, step: int) -> dict[str, float]:
    """How many weight versions old the batch's sampled responses are when step `step` trains on them."""
    ages = [step - v for v in batch.versions if v is not None]
    return {"batch/staleness_mean": sum(ages) / len(ages) if ages else 0.0,
            "batch/staleness_max": float(max(ages, default=0))}


def stale_groups(batch: StepBatch, step: int, max_staleness: int) -> list[bool]:
    """Per group: whether any of its sampled responses is more than `max_staleness` versions older than `step`."""
    g = batch.group_size
    return [any(v is not None and step - v > max_staleness for v in batch.versions[k * g : (k + 1) * g])
            for k in range(batch.num_groups)]


class RolloutPipeline:
    """`take(step)` hands out step batches in order; `settle()` waits for the collection in flight (call it before
    pushing new weights to the generators); `queued()` is what a checkpoint stores.

    `collect(step)` builds the batch of `step` with the generators' current weights (rank 0's
    `collect_step_batch`); `steps` is the run's length (nothing is sampled past it); `queued`: batches a checkpoint
    stored (step -> `Collected`)."""

    def __init__(self, collect: Callable[[int], Collected], *, max_staleness: int, steps: int,
                 queued: dict[int, Collected] | None = None):
        self.collect, self.max_staleness, self.steps = collect, max_staleness, steps
        self.ready: dict[int, Collected] = dict(queued or {})
        self.in_flight: dict[int, Future] = {}
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="gcpo-rollouts") if max_staleness > 0 else None
        self.background_s = 0.0  # seconds of background collection since the last settle()

    def take(self, step: int) -> tuple[Collected, dict[str, float]]:
        """The batch of `step` (sampled now if nothing sampled it ahead), then the collections of the steps up to
        step + k start in the background. Returns it and its staleness metrics; stale groups are dropped."""
        started = time.perf_counter()
        if step in self.in_flight:
            self.ready[step] = self.in_flight.pop(step).result()
        collected = self.ready.pop(step) if step in self.ready else self.collect(step)
        waited = time.perf_counter() - started
        for ahead in range(step + 1, min(step + self.max_staleness, self.steps - 1) + 1):
            if ahead not in self.ready and ahead not in self.in_flight:
                self.in_flight[ahead] = self.executor.submit(self._timed, ahead)
        stale = stale_groups(collected.batch, step, self.max_staleness)
        if any(stale):
            collected.batch = collected.batch.keep_groups([not s for s in stale])
        metrics = staleness_metrics(collected.batch, step) | {"batch/dropped_stale": float(sum(stale)),
                                                               "time/rollout_wait_s": waited}
        return collected, metrics

    def _timed(self, step: int) -> Collected:
        started = time.perf_counter()
        try:
            return self.collect(step)
        finally:
            self.background_s += time.perf_counter() - started

    def settle(self) -> dict[str, float]:
        """Wait for every collection in flight; returns the seconds waited and, when something ran in the
        background, the share of its seconds the update hid (`rollout/overlap_frac`)."""
        started = time.perf_counter()
        for step in sorted(self.in_flight):
            self.ready[step] = self.in_flight.pop(step).result()
        waited = time.perf_counter() - started
        metrics = {"time/rollout_settle_s": waited}
        if self.background_s > 0:
            metrics["rollout/overlap_frac"] = max(0.0, 1.0 - waited / self.background_s)
        self.background_s = 0.0
        return metrics

    def queued(self) -> dict[int, Collected]:
        """The batches sampled ahead and not yet trained on (after `settle`: none in flight)."""
        assert not self.in_flight, "settle() before a checkpoint: a collection is still in flight"
        return dict(self.ready)

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)


def to_record(collected: Collected) -> dict:
    """A queued batch as plain values (a checkpoint's client state holds no project classes)."""
    return {"batch": {f.name: getattr(collected.batch, f.name) for f in dataclasses.fields(StepBatch)},
            "metrics": dict(collected.metrics), "samples": list(collected.samples)}


def from_record(record: dict) -> Collected:
    return Collected(StepBatch(**record["batch"]), dict(record["metrics"]), list(record["samples"]))
