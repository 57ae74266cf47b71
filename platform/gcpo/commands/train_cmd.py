"""`gcpo train [--config YAML] [--preset NAME] [KEY=VALUE ...] [--resume RUN]`.

With no arguments: the embedded default (SmolLM2-135M-Instruct, gcpo preset, easy arithmetic, one training
worker, one generator, a local Ray runtime and a local MLflow store). Checks the config against the data and the
model before Ray starts (`gcpo.preflight`). Prints a progress line per step, a before/after table of held-out
metrics, and the `mlflow ui` command to look at the run; Ray's, vLLM's and DeepSpeed's logs only with `--verbose`
(`gcpo.console`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gcpo.commands.common import add_config_arguments, config_from_args
from gcpo.console import PREFIX, add_verbose_argument, mark_data_checked

DEFAULT_PRESET = "gcpo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--resume", metavar="RUN",
                        help="continue a run from its last checkpoint: a run directory or a run name under runs/")
    parser.add_argument("--name", help="the run's name (default: <preset>-<timestamp>)")
    add_verbose_argument(parser)


def before_after_table(uri: str, run_id: str, eval_every: int) -> str:
    """Held-out metrics at the first and last logged step of every `eval/*` key, as a text table; a line saying
    that no held-out evaluation ran when none did (`trainer.eval_every=0`)."""
    from gcpo.tracking.training_run import first_and_last

    rows = first_and_last(uri, run_id, "eval/")
    if not rows:
        return ("no held-out evaluation ran (trainer.eval_every=0), so there is no before/after table"
                if eval_every <= 0 else "no held-out metrics were logged")
    lines = [f"{'held-out metric':<40} {'before':>10} {'after':>10}"]
    lines += [f"{key:<40} {before:>10.3f} {after:>10.3f}" for key, (before, after) in rows.items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from gcpo.cluster.placement import check_placement
    from gcpo.cluster.runtime import init_ray
    from gcpo.preflight import check_run
    from gcpo.standalone.warmstart import ensure_builtin_warm_start
    from gcpo.tracking.training_run import ui_command
    from gcpo.training.fit import absolutize, fit, load_run_config

    base = Path.cwd()
    if args.resume:
        cfg, name = load_run_config(args.resume, base)
    else:
        if args.preset is None and not any(o.startswith("preset=") for o in args.overrides) and args.config is None:
            args.preset = DEFAULT_PRESET
        cfg, name = config_from_args(args), args.name
    ensure_builtin_warm_start(cfg.model)  # smollm2-warmstart: made on first use, said
    checked = check_run(cfg)  # config against data and model, before Ray starts (gcpo.preflight)
    print(f"{PREFIX} {checked.summary()}; starting Ray and the model", flush=True)
    mark_data_checked()
    init_ray(cfg.cluster.address, num_cpus=cfg.cluster.num_cpus)
    check_placement(absolutize(cfg, base))  # on a cluster: transport and paths against its nodes (seconds)
    outcome = fit(cfg, run_name=name, base=base)
    print()
    if outcome.mlflow_run_id:
        print(before_after_table(outcome.tracking_uri, outcome.mlflow_run_id, cfg.trainer.eval_every))
    print(f"\nrun '{outcome.run_name}': checkpoints in {outcome.run_dir}, MLflow run {outcome.mlflow_run_id}")
    print(f"look at it:  {ui_command(outcome.tracking_uri)}")
    return 0
