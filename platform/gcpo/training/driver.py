"""The one rank-0 object of a run, and its stand-in on the other ranks.

`Rank0Driver` owns everything only rank 0 holds, built once per run: the rollout engine (the vLLM generator pool
or the transformers fallback), the verifier pool, the training data and its prompt sampler, the rollout pipeline
(`gcpo.training.pipeline`: batches sampled up to `rollout.max_staleness` steps ahead), the prefix-hint state, the
held-out tasks and the MLflow logger. It hands out each step's batch, syncs the gathered weights to the generators, evaluates, logs
and prints the progress line. `FollowerDriver` is what every other rank holds: the same calls, doing nothing, so
the training loop (`gcpo.training.loop`) reads the same on every rank.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from gcpo.config import RunConfig, dump_yaml, loggable, to_flat_dict
from gcpo.console import PREFIX
from gcpo.rollout.agreement import sync_warning
from gcpo.rollout.types import generator_dtype
from gcpo.training.checkpoint import Restored
from gcpo.training.data import build_training_data, held_out_tasks
from gcpo.training.pipeline import Collected, RolloutPipeline, from_record, to_record
from gcpo.training.rollouts import HintState
from gcpo.training.sampler import PromptSampler
from gcpo.training.types import StepBatch


def say(line: str) -> None:
    """One line to the worker's real stdout (Ray forwards it to the driver once; `print` is patched by Ray Train
    to go to its logger as well, which would show every line twice)."""
    sys.__stdout__.write(line + "\n")
    sys.__stdout__.flush()


def progress_line(step: int, steps: int, m: dict, elapsed: float, first_step: int, pending_s: float = 0.0) -> str:
    """`elapsed`: seconds of training steps so far (held-out evaluations excluded); `pending_s`: the expected
    seconds of the evaluations still to come (added to the ETA)."""
    done, width = step + 1, 20
    filled = int(width * done / steps)
    eta = elapsed / max(done - first_step, 1) * (steps - done) + pending_s
    return (f"{PREFIX} step {done}/{steps} |{'#' * filled}{'.' * (width - filled)}| "
            f"reward {m.get('reward/mean', 0):.3f} acc {m.get('reward/accuracy', 0):.3f} "
            f"ga {m.get('ga/injected_frac', 0):.2f} step {m.get('time/step_s', 0):.1f}s "
            f"ETA {int(eta // 60)}m{int(eta % 60):02d}s")


def evaluations_after(step: int, steps: int, every: int) -> int:
    """How many held-out evaluations a run still makes once (0-based) `step` has finished: one after every
    `every` steps before the last, and one after training (none when `every` is 0)."""
    if every <= 0:
        return 0
    return sum(1 for k in range(step + 2, steps) if k % every == 0) + 1


STEP0_REUSED = "eval_cache/step0_reused"  # logged at step 0: 1 when the evaluation before training was reused


def eval_cache_folder(configured: str) -> Path:
    """`trainer.eval_cache_dir`, or "" for $GCPO_EVAL_CACHE, else `eval/` under the gcpo cache folder ($GCPO_CACHE
    or ~/.cache/gcpo)."""
    import os

    from gcpo.eval_cache import EVAL_CACHE_ENV
    from gcpo.models import cache_dir

    if configured:
        return Path(configured).expanduser()
    return Path(os.environ[EVAL_CACHE_ENV]) if os.environ.get(EVAL_CACHE_ENV) else cache_dir() / "eval"


def step0_settings(cfg: RunConfig) -> dict:
    """Every setting that can change the result of the evaluation before training, as plain values: what it asks
    for (items, k, tokens, stop, the samples' seed, the verifier's timeout, the system prompt) and what generates
    (backend, dtypes, generators and their resources: batching and threads can move low bits)."""
    from gcpo.rollout.types import generator_dtype
    from gcpo.tasks.prompts import SYSTEM_PROMPT

    r = cfg.rollout
    return {"eval_size": cfg.task.eval_size, "eval_k": cfg.trainer.eval_k, "max_new_tokens": r.max_new_tokens,
            "stop": list(r.stop), "seed": r.seed, "verify_timeout_s": cfg.task.verify_timeout_s,
            "system_prompt": SYSTEM_PROMPT, "model_dtype": cfg.model.dtype,
            "generator_dtype": generator_dtype(r.dtype, cfg.model.dtype), "backend": r.backend,
            "num_generators": r.num_generators, "enforce_eager": r.enforce_eager, "kv_cache_gib": r.kv_cache_gib,
            "memory_fraction": r.memory_fraction, "cpus_per_generator": r.cpus_per_generator,
            "gpus_per_generator": r.gpus_per_generator}


def step0_cache_key(cfg: RunConfig, model_dir, held_out: list, memo_file: Path) -> tuple[str, dict]:
    """The cache key of this run's evaluation before training, and its inputs (readable, stored beside it)."""
    from gcpo.eval_cache import environment, held_out_items, model_content_hash, step0_key

    model_hash = model_content_hash(model_dir, memo_file)
    items, settings = held_out_items(held_out, cfg.task.eval_size), step0_settings(cfg)
    env = environment(gpu=cfg.rollout.gpus_per_generator > 0)
    key = step0_key(model_hash=model_hash, items=items, settings=settings, environment=env)
    inputs = {"model_dir": str(model_dir), "model_hash": model_hash, "items": sum(len(t["items"]) for t in items),
              "settings": settings, "environment": env}
    return key, inputs


class FollowerDriver:
    """Ranks > 0: no rollout engine, data, evaluation or logger; the batch arrives by broadcast."""

    run_id: str | None = None

    def rollout_state(self) -> dict:
        """What a checkpoint stores of rank 0's rollouts (rank 0's is broadcast; the others have none)."""
        return {}

    def resume(self, state, restored: Restored) -> None: ...

    def collect(self, step: int) -> tuple[StepBatch | None, dict, list]:
        return None, {}, []

    def evaluate_before(self) -> dict:
        return {}

    def finish_step(self, step: int, state, metrics: dict, samples: list, started: float) -> dict | None:
        return None

    def finish(self) -> dict:
        return {}

    def close(self) -> None: ...


class Rank0Driver(FollowerDriver):
    def __init__(self, cfg: RunConfig, run: dict, model_dir, tokenizer, restored: Restored, rollout_engine=None):
        """`run`: the worker config's run_name, parent_run_id and mlflow_run_id (see `gcpo.training.loop`);
        `rollout_engine`: one already started for this run (`EarlyEngine`), else it is built here. Either way the
        driver owns it from here (`close` shuts it down)."""
        from gcpo.rollout import build_engine, sampling_settings
        from gcpo.tasks.pool import VerifierPool

        self.cfg, self.tokenizer, self.model_dir = cfg, tokenizer, model_dir
        self.rollout_engine = rollout_engine or build_engine(cfg.rollout, model_dir, model_dtype=cfg.model.dtype)
        self.verifier_pool = None
        try:
            self.verifier_pool = VerifierPool.from_config(cfg.task)
            context = self.rollout_engine.max_model_len
            self.data = build_training_data(cfg, tokenizer, self.verifier_pool, max_model_len=context)
            self.held_out = held_out_tasks(cfg, tokenizer, context)
            self.logger = self._logger(run, restored)
        except BaseException:
            self.close()
            raise
        self.run_id = self.logger.run_id
        self.sampler = PromptSampler(len(self.data.prompt_ids), seed=cfg.trainer.seed,
                                     position=restored.sampler_position)
        self.settings = sampling_settings(cfg.rollout)
        self.hint = None
        if cfg.algorithm.golden_hint != "none":
            self.hint = HintState(cfg.algorithm.hint_fraction if restored.hint_fraction is None
                                  else restored.hint_fraction)
        self.pipeline = RolloutPipeline(self._collect, max_staleness=cfg.rollout.max_staleness,
                                        steps=cfg.trainer.steps,
                                        queued={k: from_record(v) for k, v in restored.queued.items()})
        self.first_step, self.started = restored.step, time.time()
        self.eval_s = 0.0  # the last held-out evaluation's seconds (the ETA's estimate of the next)
        self.sync_warned = False  # the sync check's warning is said once per run

    def _logger(self, run: dict, restored: Restored):
        from gcpo.tracking import tags
        from gcpo.tracking.training_run import TrainingRunLogger

        cfg = self.cfg
        requested = as_requested(cfg, run)
        logger = TrainingRunLogger(
            cfg.tracking.uri, cfg.tracking.experiment, run_name=run["run_name"],
            params=to_flat_dict(loggable(requested)),  # a password in a URI shows as ***
            run_id=restored.mlflow_run_id or run.get("mlflow_run_id"), parent_run_id=run.get("parent_run_id"),
            tags={tags.PRESET: str(cfg.preset), tags.RUN_NAME: run["run_name"]},
        )
        if restored.step == 0:
            logger.log_text(dump_yaml(loggable(requested)), "config.yaml")
            logger.log_params(resolved_dtype_params(cfg))  # also into a sweep trial's run, created beforehand
        return logger

    def rollout_state(self) -> dict:
        """The sampler position, the batches sampled ahead (none in flight: `finish_step` settled them) and the
        prefix-hint fraction: with them a resumed run trains on exactly what the uninterrupted one would."""
        return {"sampler_position": self.sampler.position,
                "queued": {k: to_record(v) for k, v in self.pipeline.queued().items()},
                "hint_fraction": self.hint.fraction if self.hint is not None else None}

    def resume(self, state, restored: Restored) -> None:
        """The generators start from the base weights: give them the checkpoint's."""
        step = restored.step
        self.logger.mark_resumed(step)
        say(f"{PREFIX} resumed from the checkpoint of step {step}")
        if restored.removed_uncommitted:
            say(f"{PREFIX} removed {len(restored.removed_uncommitted)} uncommitted checkpoint folder(s) the "
                f"interrupted attempt left: {', '.join(restored.removed_uncommitted)}")
        self.rollout_engine.update_weights(state, version=step)

    def _collect(self, step: int) -> Collected:
        """Sample, verify and assemble the batch of `step` with the generators' current weights."""
        from gcpo.training.rollouts import collect_step_batch

        return Collected(*collect_step_batch(self.rollout_engine, self.data, self.sampler, self.cfg, self.settings,
                                             step=step, hint=self.hint))

    def collect(self, step: int) -> tuple[StepBatch, dict, list]:
        """The batch of `step`: sampled now, or ahead of time under bounded staleness."""
        collected, metrics = self.pipeline.take(step)
        return collected.batch, {**collected.metrics, **metrics}, collected.samples

    def evaluate(self, when: str, step: int, *, intermediate: bool = False) -> dict:
        """Held-out metrics of the generators' current weights (the run's held-out tasks and verifier pool), with
        a line when it starts and one with its result when it ends (`when`: "before training", "at step 4"); the
        per-item results are logged as the artifact `eval/items_step_<step>.json`. `intermediate`: between the
        first and the last evaluation, greedy only when `trainer.eval_intermediate` is "greedy"."""
        greedy_only = intermediate and self.cfg.trainer.eval_intermediate == "greedy"
        return self._log_evaluation(self._evaluate(when, greedy_only=greedy_only), when, step)

    def _evaluate(self, when: str, *, greedy_only: bool = False):
        from gcpo.evaluation import evaluate_config

        items = sum(min(len(task.items), self.cfg.task.eval_size) for task in self.held_out)
        how = "greedy only" if greedy_only else f"greedy then {self.cfg.trainer.eval_k} samples each"
        say(f"{PREFIX} held-out evaluation {when}: {items} items, {how}")
        started = time.time()
        result = evaluate_config(self.rollout_engine, self.tokenizer, self.cfg, tasks=self.held_out,
                                 pool=self.verifier_pool, greedy_only=greedy_only)
        self.eval_s = time.time() - started
        return result

    def _log_evaluation(self, result, when: str, step: int, note: str | None = None) -> dict:
        """Log an evaluation's per-item artifact and say its result (`note` in place of its seconds); its
        metrics."""
        from gcpo.eval_items import items_artifact

        metrics = result.metrics()
        self.logger.log_text(result.items_json(), items_artifact(step))
        shown = [f"{k.split('/', 1)[1]} {v:.3f}" for k, v in metrics.items() if k.endswith(("pass_at_1", "format_rate"))]
        say(f"{PREFIX} held-out evaluation {when}: {', '.join(shown)} ({note or f'{self.eval_s:.0f}s'})")
        return metrics

    def _step0_evaluation(self):
        """The evaluation before training: the stored one of the same model content, items and settings when
        `trainer.eval_reuse` is on and one is stored (`gcpo.eval_cache`), else a fresh one (then stored). The
        generators hold the model folder's weights at step 0 (a LoRA run's too: its adapters start at zero and
        the generators load the base folder), so the result is the same computation in every such run.
        Returns (result, None), or (result, a note saying where it was stored) when reused."""
        cache, key, inputs = self._step0_cache()
        stored = cache.load(key) if key is not None else None
        if stored is not None:
            self.eval_s = sum(task.seconds for task in stored.tasks)  # the ETA's estimate of the next ones
            return stored, (f"reused: not evaluated again, stored for this model, items and settings in "
                            f"{cache.path(key)}")
        result = self._evaluate("before training")
        if key is not None:
            try:
                cache.store(key, result, inputs)
            except OSError as e:
                say(f"{PREFIX} could not store the step-0 evaluation in {cache.folder} ({e})")
        return result, None

    def _step0_cache(self):
        """(the step-0 cache, this run's key, its inputs); no key when `trainer.eval_reuse` is off or the key
        cannot be made (an unreadable model file or cache folder: the run evaluates as without the cache)."""
        from gcpo.eval_cache import EvalCache

        t = self.cfg.trainer
        if not t.eval_reuse:
            return None, None, None
        cache = EvalCache(eval_cache_folder(t.eval_cache_dir))
        try:
            return cache, *step0_cache_key(self.cfg, self.model_dir, self.held_out, cache.memo_file)
        except OSError as e:
            say(f"{PREFIX} step-0 evaluation cache unavailable ({e}); evaluating")
            return cache, None, None

    def pending_eval_s(self, step: int) -> float:
        """The expected seconds of the held-out evaluations after `step` (each as long as the last one)."""
        return self.eval_s * evaluations_after(step, self.cfg.trainer.steps, self.cfg.trainer.eval_every)

    def evaluate_before(self) -> dict:
        """The held-out metrics before training (logged at step 0), when evaluation is on."""
        before = {}
        if self.cfg.trainer.eval_every > 0:
            result, note = self._step0_evaluation()
            before = self._log_evaluation(result, "before training", 0, note=note)
            self.logger.log_metrics({**before, STEP0_REUSED: float(note is not None)}, 0)
        self.started = time.time()  # the progress line's ETA counts training steps only
        return before

    def finish_step(self, step: int, state, metrics: dict, samples: list, started: float) -> dict | None:
        """Sync the new weights (version step + 1), evaluate when due, log, print the progress line. Returns the
        held-out metrics when this step evaluated, else None."""
        t = self.cfg.trainer
        settled = self.pipeline.settle()  # weights never change under a batch being sampled
        metrics["time/rollout_wait_s"] += settled.pop("time/rollout_settle_s")
        metrics.update(settled)
        self.check_sync(step, metrics)
        metrics["time/sync_s"] = self.rollout_engine.update_weights(state, version=step + 1)
        metrics["time/step_s"] = time.time() - started
        metrics["throughput/rollout_tokens_per_s"] = metrics["rollout/tokens"] / max(metrics["time/rollout_s"], 1e-9)
        held_out = None
        if t.eval_every > 0 and (step + 1) % t.eval_every == 0 and step + 1 < t.steps:
            held_out = self.evaluate(f"at step {step + 1}", step + 1, intermediate=True)
            self.started += self.eval_s  # not a training step's time
            metrics.update(held_out)
        self.logger.log_metrics(metrics, step + 1)
        every = self.cfg.tracking.log_rollouts_every
        if every > 0 and (step + 1) % every == 0:
            rows = [{**s, "prompt": self.data.questions[s["item"]]} for s in samples]
            self.logger.log_table(_columns(rows), f"rollouts/step_{step + 1:05d}.json")
        say(progress_line(step, t.steps, metrics, time.time() - self.started, self.first_step,
                          self.pending_eval_s(step)))
        return held_out

    def check_sync(self, step: int, metrics: dict) -> None:
        """Warn (once per run) when a step's sync check exceeds the threshold of its dtype pair
        (`gcpo.rollout.agreement.SYNC_TOLERANCE`)."""
        diff = metrics.get("sync/logprob_abs_diff")
        if diff is None or self.sync_warned:
            return
        params = resolved_dtype_params(self.cfg)
        warning = sync_warning(diff, params["model.dtype_resolved"], params["rollout.dtype_resolved"])
        if warning is not None:
            say(f"{PREFIX} warning: step {step + 1}: {warning}")
            self.sync_warned = True

    def finish(self) -> dict:
        """The held-out metrics after training (logged at the last step), and the MLflow run closed."""
        after = {}
        if self.cfg.trainer.eval_every > 0:
            after = self.evaluate("after training", self.cfg.trainer.steps)
            self.logger.log_metrics(after, self.cfg.trainer.steps)
        self.logger.finish()
        return after

    def close(self) -> None:
        """Stop the generators and the verifier processes (the MLflow run is closed by `finish`, or resumed)."""
        if getattr(self, "pipeline", None) is not None:
            self.pipeline.close()
        if self.verifier_pool is not None:
            self.verifier_pool.close()
        self.rollout_engine.shutdown()


def as_requested(cfg: RunConfig, run: dict) -> RunConfig:
    """`cfg` with the `model.dtype` the run asked for (`run["run"]`, e.g. auto; `cfg`'s is the resolved one)."""
    requested = run.get("run", {}).get("model", {}).get("dtype", cfg.model.dtype)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dtype=requested))


def resolved_dtype_params(cfg: RunConfig) -> dict[str, str]:
    """The dtypes that ran (`cfg.model.dtype` already resolved): the trainer's and the generators'."""
    return {"model.dtype_resolved": cfg.model.dtype,
            "rollout.dtype_resolved": generator_dtype(cfg.rollout.dtype, cfg.model.dtype)}


def _columns(rows: list[dict]) -> dict[str, list]:
    keys = ["step", "prompt", "response", "reward", "advantage", "golden", "version", "hint_tokens"]
    return {k: [r[k] for r in rows] for k in keys}
