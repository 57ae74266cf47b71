"""`gcpo compare --experiment NAME [--parent RUN_ID] [--tracking-uri URI] [--metric KEY] [--target X] [--out DIR]`.

Reads the experiment's runs from MLflow (a local store or a tracking server), groups them into arms by the swept
keys, prints the table (final and best held-out metric per arm, mean ± std over seeds, steps to reach the
target, format rate, golden-answer share, seconds per step) and writes table.txt, table.md, arms.csv, runs.csv,
curves.csv, learning_curves.png and effects.png to DIR (default `reports/<experiment>/`), logging them to the sweep's parent
run when there is one.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gcpo.config import TrackingConfig

    parser.add_argument("--experiment", "-e", required=True, help="the MLflow experiment (a sweep's name)")
    parser.add_argument("--parent", metavar="RUN_ID", help="only the children of this sweep parent run")
    parser.add_argument("--tracking-uri", default=TrackingConfig.uri,
                        help=f"the MLflow store or server (default: {TrackingConfig.uri}, relative to here)")
    parser.add_argument("--metric", help="the metric to compare (default: the sweep's, else eval/<task>/pass_at_1)")
    parser.add_argument("--target", type=float, metavar="X", help="report the first step reaching this value")
    parser.add_argument("--out", metavar="DIR", help="where the report goes (default: reports/<experiment>)")
    parser.add_argument("--no-log", action="store_true", help="do not log the report to the parent run")


def run(args: argparse.Namespace) -> int:
    from gcpo.sweeps.compare import format_table, load_comparison, write_report
    from gcpo.tracking.training_run import absolute_tracking_uri

    uri = absolute_tracking_uri(args.tracking_uri, Path.cwd())
    try:
        cmp = load_comparison(args.experiment, uri, parent_run_id=args.parent, metric=args.metric,
                              target=args.target)
    except ValueError as e:
        print(f"gcpo compare: {e}")
        return 2
    paths = write_report(cmp, Path(args.out or Path("reports") / args.experiment), log_to_parent=not args.no_log)
    print(format_table(cmp))
    print(f"\nreport: {paths['table'].parent}/ (table.txt, table.md, arms.csv, runs.csv, curves.csv, "
          "learning_curves.png, effects.png)")
    return 0
