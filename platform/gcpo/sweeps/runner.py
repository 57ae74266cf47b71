"""`run_sweep`: Ray Tune over the training trainable (the Train-in-Tune pattern of Ray 2.60), every trial an
MLflow child run of one parent run per sweep.

- Each Tune trial is a small driver function that builds the trial's `RunConfig` (space base + the trial's
  values + its seed), creates (or, on a retry, finds) its MLflow child run, and fits a `TorchTrainer` whose
  reports reach Tune through `TuneReportCallback`. Every report carries the latest held-out metrics, so the
  sweep's metric is in each result and ASHA can stop a trial at any checkpoint.
- Concurrency is capped by the resources a trial needs: floor(cluster CPUs / (training workers x CPUs per
  worker + generators x CPUs per generator (vLLM backend) + the trial driver's share)).
- Failures: a trial's training run does not retry on its own (Train `max_failures=0`); Tune retries the trial
  `max_failures` times, and the retried trial's Train run resumes from its last checkpoint into the same child
  run (steps already logged are not logged again).
- `--resume` restores the Tune experiment: finished trials are kept, unfinished and errored ones continue.
- A trial is `ok` only when it ended without an error *and*, where no scheduler stops trials early, at its last
  step (`trial_status`). Tune can end a trial that an interrupt (SIGINT) stopped as if it had finished: seen once
  in a study, 40 s into a trial, after its step-0 evaluation, with that evaluation as its "final" value. Such a
  trial is `interrupted`; `--resume` does not run it again (Tune keeps it as ended), so `gcpo study run` starts
  its piece afresh.
- Checkpoints: every trial's run keeps `trainer.keep_checkpoints` (default 1) while the sweep runs; when every
  trial has ended, the space's `keep_checkpoints` decides what stays: `best` (default) the best finished trial's
  by the sweep's metric (all of them when no trial reported it), `all`, or `none`. A failed trial keeps its
  checkpoints (`--resume` retries it from them). Each child run is tagged `gcpo.checkpoint` (the kept path or
  `removed`).
- Layout: `<trainer.output_dir>/sweeps/<name>/` holds `sweep.json` (parent run id, experiment, space file,
  overrides), the Tune experiment (`tune/`) and every trial's training run (`trials/`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gcpo.config import RunConfig, loggable, redact, to_flat_dict
from gcpo.console import is_verbose
from gcpo.sweeps.space import KEEP_CHECKPOINTS, SearchSpace, Spec, load_space, trial_config

TRIAL_DRIVER_CPUS = 0.5  # the Tune trial actor only drives its Train run
SWEEP_FILE = "sweep.json"


@dataclass(frozen=True)
class SweepContext:
    """What every trial needs, shipped once to the trial actors (tune.with_parameters)."""

    space: SearchSpace
    name: str
    experiment: str
    tracking_uri: str
    parent_run_id: str
    trials_dir: str
    base_dir: str


class SweepInterrupted(RuntimeError):
    """Tune was stopped (SIGINT/SIGUSR1) before every trial ended; the sweep's state is saved for `--resume`."""


@dataclass
class SweepOutcome:
    name: str
    sweep_dir: Path
    experiment: str
    tracking_uri: str
    parent_run_id: str
    trials: list[dict]  # one row per trial: params, status, the metric's last value, child run id, checkpoint
    removed_checkpoint_bytes: int = 0  # what `keep_checkpoints` freed when the sweep ended


def sweep_dir(base_cfg: RunConfig, name: str, base: Path) -> Path:
    from gcpo.run_folder import sweep_folder

    return sweep_folder(base_cfg.trainer.output_dir, name, base)


def arm_label(params: dict[str, Any], keys: list[str]) -> str:
    """`golden_answers=True, kl_coef=0.0` — the swept values of an arm, short key names, in space order; a named
    arm (`arms:`) and a preset are their bare names: `gcpo_no_golden, lr=0.001`, `grpo`."""
    return ", ".join(str(params[k]) if k in ("arm", "preset") else f"{k.rsplit('.', 1)[-1]}={_short(params[k])}"
                     for k in keys if k in params)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def trial_resources(cfg: RunConfig) -> float:
    generators = cfg.rollout.num_generators * cfg.rollout.cpus_per_generator if cfg.rollout.backend == "vllm" else 0.0
    return cfg.trainer.num_workers * cfg.trainer.cpus_per_worker + generators + TRIAL_DRIVER_CPUS


def max_concurrent_trials(cfg: RunConfig, cluster_cpus: float) -> int:
    return max(1, math.floor(cluster_cpus / trial_resources(cfg)))


def param_space(space: SearchSpace) -> dict[str, Any]:
    """The Tune search space: grid -> grid_search, choice -> choice, distributions as named; seeds as a grid."""
    from ray import tune

    make = {"grid": lambda v: tune.grid_search(list(v)), "choice": lambda v: tune.choice(list(v)),
            "uniform": lambda v: tune.uniform(*v), "loguniform": lambda v: tune.loguniform(*v),
            "randint": lambda v: tune.randint(*v)}
    out = {key: make[spec.kind](spec.values) for key, spec in space.space.items()}
    if space.search == "grid":
        out["trainer.seed"] = tune.grid_search(list(space.seeds))
    return out


def _child_run(ctx: SweepContext, cfg: RunConfig, params: dict, trial_id: str) -> str:
    """The trial's MLflow child run: found by its trial key on a retry, else created with params and arm tags."""
    from gcpo.tracking.sweep_runs import trial_run

    flat = to_flat_dict(loggable(cfg))  # a swept key's tag is the param it ran with, as MLflow stores it
    return trial_run(ctx.tracking_uri, ctx.experiment, parent_run_id=ctx.parent_run_id, sweep=ctx.name,
                     trial_key=f"{ctx.name}/{trial_id}", arm=arm_label(params, ctx.space.swept_keys) or "base",
                     seed=cfg.trainer.seed, preset=str(cfg.preset),
                     swept={k: str(flat.get(k, params[k])) for k in ctx.space.swept_keys if k in params},
                     params=flat, run_name=f"{ctx.name}-{trial_id}")


def _trial(params: dict, ctx: SweepContext) -> None:
    """One Tune trial: a full training run of this arm and seed (reports reach Tune through the callback)."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from gcpo.training.fit import fit

    params = dict(params)
    params.setdefault("trainer.seed", ctx.space.seeds[0])
    cfg = trial_config(ctx.space, params)
    cfg = dataclasses.replace(
        cfg, tracking=dataclasses.replace(cfg.tracking, uri=ctx.tracking_uri, experiment=ctx.experiment),
        trainer=dataclasses.replace(cfg.trainer, output_dir=ctx.trials_dir))
    trial_id = tune.get_context().get_trial_id()
    run_id = _child_run(ctx, cfg, params, trial_id)
    fit(cfg, run_name=f"{ctx.name}-{trial_id}", base=Path(ctx.base_dir), parent_run_id=ctx.parent_run_id,
        mlflow_run_id=run_id, max_failures=0, callbacks=[TuneReportCallback()])


def _tune_config(space: SearchSpace, steps_reports: int, concurrent: int):
    from ray import tune

    search_alg = scheduler = None
    if space.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(metric=space.metric, mode=space.mode, seed=space.seeds[0])
    if space.scheduler is not None:
        from ray.tune.schedulers import ASHAScheduler

        s = space.scheduler
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=s["max_t"] or steps_reports,
                                  grace_period=s["grace_period"], reduction_factor=s["reduction_factor"])
    return tune.TuneConfig(metric=space.metric, mode=space.mode, search_alg=search_alg, scheduler=scheduler,
                           num_samples=space.trials, max_concurrent_trials=concurrent)


def _reports_per_run(cfg: RunConfig) -> int:
    t = cfg.trainer
    return len([s for s in range(1, t.steps) if s % t.checkpoint_every == 0]) + 1


def select_arms(space: SearchSpace, names: list[str]) -> None:
    """Keep only the named arms `names` of `space` (in the order given); unknown names fail, listing the arms."""
    unknown = [n for n in names if n not in space.arms]
    if unknown:
        raise ValueError(f"--arms: {', '.join(unknown)} not among the arms of {space.path}: "
                         f"{', '.join(space.arms) or '(it names none)'}")
    select_grid(space, {"arm": names})


def select_grid(space: SearchSpace, only: dict[str, list]) -> None:
    """Keep only these values of grid keys (`arm` for named arms): `{"algorithm.kl_coef": [0.0]}` runs the grid
    points with KL off. A key that is not a grid of `space`, or a value not in its grid, fails naming both."""
    for key, values in only.items():
        spec = space.space.get(key)
        if spec is None or spec.kind != "grid":
            grids = [k for k, s in space.space.items() if s.kind == "grid"]
            raise ValueError(f"{key!r} is not a grid key of {space.path} (its grid keys: {', '.join(grids) or '-'})")
        missing = [v for v in values if v not in spec.values]
        if missing:
            raise ValueError(f"{key}: {missing} not among its grid values {list(spec.values)} in {space.path}")
        space.space[key] = Spec("grid", tuple(values))
        if key == "arm":
            space.arms = {n: space.arms[n] for n in values}


def _narrowed_space(space_path: str | Path, overrides, seeds: list[int] | None, arms: list[str] | None,
                    only: dict[str, list] | None) -> SearchSpace:
    """The space file under `overrides`, with `seeds` replacing its seeds and only `arms` / `only` kept."""
    space = load_space(space_path, overrides)
    if seeds:
        space.seeds = list(seeds)
    if arms:
        select_arms(space, arms)
    if only:
        select_grid(space, only)
    return space


def _start_sweep(space: SearchSpace, cfg: RunConfig, name: str, state: dict, base: Path) -> dict:
    """A new sweep's parent run in MLflow; returns `state` (what `--resume` needs) with its MLflow fields."""
    from gcpo.tracking.sweep_runs import create_parent_run
    from gcpo.tracking.training_run import absolute_tracking_uri

    experiment = cfg.tracking.experiment if "tracking.experiment" in space.base else name
    uri = absolute_tracking_uri(cfg.tracking.uri, base)
    params = {"search": space.search, "trials": space.trials, "seeds": space.seeds,
              "total_trials": space.total_trials, "overrides": [redact(o) for o in state["overrides"]]}
    parent = create_parent_run(uri, experiment, name=name, swept_keys=space.swept_keys, metric=space.metric,
                               mode=space.mode, description=space.description, space_file=str(space.path),
                               params=params)
    return state | {"experiment": experiment, "tracking_uri": uri, "parent_run_id": parent,
                    "created": time.strftime("%Y-%m-%d %H:%M:%S")}


def _tuner(ctx: SweepContext, cfg: RunConfig, root: Path, resume: bool, max_concurrent: int | None):
    """A new Tune experiment under `root/tune`, or the interrupted one restored (`resume`)."""
    import ray
    from ray import tune

    concurrent = max_concurrent or max_concurrent_trials(cfg, ray.cluster_resources().get("CPU", 1))
    trainable = tune.with_resources(tune.with_parameters(_trial, ctx=ctx), {"CPU": TRIAL_DRIVER_CPUS})
    tune_dir = root / "tune"
    if resume and tune.Tuner.can_restore(str(tune_dir)):
        return tune.Tuner.restore(str(tune_dir), trainable=trainable, resume_unfinished=True, resume_errored=True)
    return tune.Tuner(
        trainable, param_space=param_space(ctx.space),
        tune_config=_tune_config(ctx.space, _reports_per_run(cfg), concurrent),
        run_config=tune.RunConfig(name="tune", storage_path=str(root),
                                  failure_config=tune.FailureConfig(max_failures=ctx.space.max_failures),
                                  verbose=1 if is_verbose() else 0),  # Tune's status tables
    )


def run_sweep(space_path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, name: str | None = None,
              resume: bool = False, base: Path | None = None, max_concurrent: int | None = None,
              seeds: list[int] | None = None, arms: list[str] | None = None,
              only: dict[str, list] | None = None, keep_checkpoints: str | None = None) -> SweepOutcome:
    """Run (or resume) a sweep; returns its trials. Ray must already be initialised (`init_ray`).

    `seeds` replaces the space's `seeds:` list; `arms` keeps only these of its named arms and `only` only these
    values of its grid keys (a resumed sweep keeps the seeds, arms and grid values it started with);
    `keep_checkpoints` (best, all, none) replaces the space's."""
    from gcpo.tracking.sweep_runs import close_sweep
    from gcpo.training.fit import absolutize

    if keep_checkpoints is not None and keep_checkpoints not in KEEP_CHECKPOINTS:  # before hours of trials
        raise ValueError(f"keep_checkpoints must be one of {', '.join(KEEP_CHECKPOINTS)}, got {keep_checkpoints!r}")
    base = (base or Path.cwd()).resolve()
    # A trial resumed after its training had already ended (the driver died between the last report and Tune
    # recording it) reports only its step: Tune must not fail it for lacking the metric.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    space = _narrowed_space(space_path, overrides, seeds, arms, only)
    name = name or space.name
    cfg = absolutize(trial_config(space, {}), base)
    root = sweep_dir(cfg, name, base)
    state_file = root / SWEEP_FILE
    if resume:
        if not state_file.exists():
            raise FileNotFoundError(f"--resume: no sweep named {name!r} at {root} (no {SWEEP_FILE})")
        state = json.loads(state_file.read_text())
        space = _narrowed_space(state["space_file"], state["overrides"], state.get("seeds", space.seeds),
                                state.get("arms"), state.get("only"))
        cfg = absolutize(trial_config(space, {}), base)
    elif state_file.exists():
        raise FileExistsError(f"a sweep named {name!r} already exists at {root}; pass --resume to continue it "
                              f"or --name to start another")
    else:
        state = _start_sweep(space, cfg, name, {
            "name": name, "space_file": str(Path(space_path).resolve()), "overrides": list(overrides),
            "seeds": space.seeds, "arms": list(arms or []), "only": only or {}}, base)
        root.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(state, indent=2))

    ctx = SweepContext(space=space, name=name, experiment=state["experiment"], tracking_uri=state["tracking_uri"],
                       parent_run_id=state["parent_run_id"], trials_dir=str(root / "trials"), base_dir=str(base))
    grid = _tuner(ctx, cfg, root, resume, max_concurrent).fit()
    ended = grid.num_terminated + grid.num_errors  # Tune returns normally when interrupted
    if ended < ctx.space.total_trials:  # (trials it had not yet created are not in the grid)
        raise SweepInterrupted(f"sweep '{name}' was interrupted with {ctx.space.total_trials - ended} of "
                               f"{ctx.space.total_trials} trials unfinished; continue it with --resume (name '{name}')")
    trials = _close_children(ctx, grid)
    removed = prune_checkpoints(trials, Path(ctx.trials_dir), name, keep_checkpoints or space.keep_checkpoints,
                                space.mode)
    close_sweep(ctx.tracking_uri, ctx.parent_run_id,
                {row["run_id"]: row["checkpoint"] for row in trials if row["run_id"] and row["checkpoint"]})
    return SweepOutcome(name, root, ctx.experiment, ctx.tracking_uri, ctx.parent_run_id, trials, removed)


def prune_checkpoints(trials: list[dict], trials_dir: Path, name: str, keep: str, mode: str) -> int:
    """Delete the checkpoints `keep` does not keep (best: all but the best finished trial's by `metric`; none: all
    finished trials'; all: nothing); failed trials keep theirs. Sets each row's `checkpoint` (the latest kept
    checkpoint's path, `removed`, or None when the trial had none) and returns the bytes freed."""
    scored = [t for t in trials if t["status"] == "ok" and t["metric"] is not None]
    pick = max if mode == "max" else min
    best = pick(scored, key=lambda t: t["metric"])["trial"] if keep == "best" and scored else None
    freed = 0
    for row in trials:
        folders = sorted(f for f in (trials_dir / f"{name}-{row['trial']}").glob("checkpoint_*") if f.is_dir())
        drop = row["status"] == "ok" and (keep == "none" or (best is not None and row["trial"] != best))
        if drop and folders:
            for folder in folders:
                freed += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
                shutil.rmtree(folder)
            row["checkpoint"] = "removed"
        else:
            row["checkpoint"] = str(folders[-1]) if folders else None
    return freed


def trial_status(error: bool, last_step: Any, steps: int, early_stopping: bool) -> str:
    """`error` (Tune saw it fail), `interrupted` (it ended without an error short of its last `steps`, and no
    scheduler stops trials early: an interrupt Tune took for an end) or `ok`. A trial that never reported a step
    is interrupted too."""
    if error:
        return "error"
    if not early_stopping and not (isinstance(last_step, (int, float)) and last_step >= steps):
        return "interrupted"
    return "ok"


def _close_children(ctx: SweepContext, grid) -> list[dict]:
    """One row per trial; child runs a scheduler stopped (left RUNNING) become KILLED, tagged stopped_early."""
    from gcpo.tracking.sweep_runs import child_runs, end_stopped_trial

    children = child_runs(ctx.tracking_uri, ctx.experiment, ctx.parent_run_id)
    rows = []
    for result in grid:
        trial_id = str((result.metrics or {}).get("trial_id", ""))
        params = dict(result.config or {})
        child = children.get(f"{ctx.name}/{trial_id}")
        status = trial_status(result.error is not None, (result.metrics or {}).get("step"),
                              trial_config(ctx.space, params).trainer.steps, ctx.space.scheduler is not None)
        if child is not None and child.status == "RUNNING":
            end_stopped_trial(ctx.tracking_uri, child.run_id, stopped_early=status == "ok")
        rows.append({"trial": trial_id, "arm": arm_label(params, ctx.space.swept_keys),
                     "seed": params.get("trainer.seed", ctx.space.seeds[0]), "status": status,
                     "metric": (result.metrics or {}).get(ctx.space.metric),
                     "iterations": (result.metrics or {}).get("training_iteration", 0),
                     "run_id": child.run_id if child else None, "checkpoint": None})
    return rows
