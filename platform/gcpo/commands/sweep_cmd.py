"""`gcpo sweep SPACE.yaml [KEY=VALUE ...] [--name N] [--seeds S ...] [--arms A ...] [--resume] [--max-concurrent N]
[--target X] [--keep-checkpoints {best,all,none}]`.

Runs Ray Tune over the training trainable with the search space of SPACE.yaml (see `gcpo.sweeps.space` and
`search_spaces/`); KEY=VALUE overrides join the space's `base` (e.g. `trainer.steps=4 model.name=tiny`). Every
trial is an MLflow child run of one parent run named after the sweep; at the end the comparison table is
printed and the report (table, CSV, plots) written to `reports/<sweep>/` and logged to the parent run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gcpo.console import add_verbose_argument, mark_data_checked
from gcpo.sweeps.space import KEEP_CHECKPOINTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("space", metavar="SPACE.yaml", help="a search-space file, e.g. search_spaces/presets.yaml")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted run-config values for every trial, e.g. trainer.steps=4")
    parser.add_argument("--name", help="the sweep's name (default: the space's `name`, else the file's stem)")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="S",
                        help="run every arm once per seed S (replaces the space's `seeds:` list)")
    parser.add_argument("--arms", nargs="+", metavar="A",
                        help="run only these of the space's named arms (`arms:`), e.g. --arms gcpo ga_sft")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted sweep of this name: finished trials are kept")
    parser.add_argument("--max-concurrent", type=int, metavar="N",
                        help="trials at once (default: as many as the cluster's CPUs fit)")
    parser.add_argument("--target", type=float, metavar="X",
                        help="report steps to reach this value of the metric (default: none)")
    parser.add_argument("--keep-checkpoints", choices=KEEP_CHECKPOINTS,
                        help="which finished trials keep their checkpoints when the sweep ends (default: the "
                             "space's `keep_checkpoints`, else best: the best trial's by the metric)")
    parser.add_argument("--address", metavar="ADDR", help="a Ray cluster to run on (default: a local Ray)")
    add_verbose_argument(parser)


def sweep_configs(args: argparse.Namespace) -> list:
    """The run config of each of the sweep's grid points (arms x grid values; sampled keys at their base value)."""
    from gcpo.sweeps.runner import select_arms
    from gcpo.sweeps.space import load_space, trial_config

    space = load_space(args.space, args.overrides)
    if args.arms:
        select_arms(space, args.arms)
    return [trial_config(space, point) for point in space.grid_arms()]


def check_data(configs: list) -> None:
    """Before Ray starts: each distinct data setting among the sweep's grid points against its data and model
    (`gcpo.preflight.check_runs`)."""
    from gcpo.preflight import check_runs
    from gcpo.standalone.warmstart import ensure_builtin_warm_start

    for model in {cfg.model.name: cfg.model for cfg in configs}.values():
        ensure_builtin_warm_start(model)
    check_runs(configs)
    mark_data_checked()


def check_placements(configs: list) -> None:
    """On a cluster, once joined: each distinct placement among the grid points (weight transport, placement
    resources, the paths a training worker opens) against the cluster's nodes (`gcpo.cluster.placement`), as
    `gcpo train` does, so a sweep that cannot run there stops in seconds, before its first trial."""
    from gcpo.cluster.placement import check_placement, host_local_paths
    from gcpo.training.fit import absolutize

    seen = set()
    for cfg in (absolutize(c, Path.cwd()) for c in configs):
        key = (cfg.rollout.weight_transport, cfg.trainer.placement_resource, cfg.rollout.placement_resource,
               cfg.model.name, tuple(host_local_paths(cfg)))
        if key not in seen:
            seen.add(key)
            check_placement(cfg)


def run(args: argparse.Namespace) -> int:
    from gcpo.cluster.runtime import init_ray
    from gcpo.sweeps.compare import REPORT_FILES, format_table, load_comparison, write_report
    from gcpo.sweeps.runner import SweepInterrupted, run_sweep
    from gcpo.tracking.training_run import ui_command

    configs = sweep_configs(args)
    if not args.resume:  # a resumed sweep runs the data it started with
        check_data(configs)
    init_ray(args.address)
    check_placements(configs)
    try:
        outcome = run_sweep(args.space, args.overrides, name=args.name, resume=args.resume,
                            max_concurrent=args.max_concurrent, seeds=args.seeds, arms=args.arms,
                            keep_checkpoints=args.keep_checkpoints)
    except SweepInterrupted as e:
        print(f"gcpo sweep: {e}", file=sys.stderr)
        return 130
    failed = [t for t in outcome.trials if t["status"] != "ok"]  # error, or interrupted (trial_status)
    print(f"\nsweep '{outcome.name}': {len(outcome.trials)} trials, {len(failed)} failed or interrupted; "
          f"MLflow experiment '{outcome.experiment}', parent run {outcome.parent_run_id}")
    kept = [t["checkpoint"] for t in outcome.trials if t["checkpoint"] not in (None, "removed")]
    freed = outcome.removed_checkpoint_bytes
    print(f"checkpoints kept: {len(kept)}" + (f" ({freed / 2**30:.2f} GiB of others removed)" if freed else ""))
    for path in kept:
        print(f"  {path}")
    cmp = load_comparison(outcome.experiment, outcome.tracking_uri, parent_run_id=outcome.parent_run_id,
                          target=args.target)
    paths = write_report(cmp, Path("reports") / outcome.name)
    print(format_table(cmp))
    print(f"\nreport: {paths['table'].parent}/ ({REPORT_FILES})")
    print(f"look at it:  {ui_command(outcome.tracking_uri)}")
    return 1 if failed else 0
