"""`gcpo compare --experiment NAME [--parent RUN_ID] [--tracking-uri URI] [--metric KEY] [--target X] [--out DIR]
[--curves KEY[,KEY]] [--baseline ARM|all] [--aa ARM [ARM ...]]` or `gcpo compare --reports DIR [DIR ...] --out DIR`
(with the same report options).

Reads the experiment's runs from MLflow (a local store or a tracking server), groups them into arms by the swept
keys, prints the table (final and best held-out metric per arm, mean ± std over seeds and a 95% interval over
seeds and held-out items, steps to reach the target, format rate, golden-answer share, seconds per step; then each
arm's paired difference from the baseline arm with its interval, reading, minimum detectable difference and
probability of improvement) and writes table.txt, table.md, arms.csv, runs.csv, curves.csv (every metric every
run logged), items.csv (each run's final per-item results), intervals.csv, differences.csv, learning_curves.png
(the `--curves` keys), effects.png, intervals.png and differences.png to DIR (default `reports/<experiment>/`),
logging them to the sweep's parent run when there is one, plus comparison.json. `--aa ARM` adds the A/A check
(the arm against itself, its seeds split in two halves: a negative control; aa.csv). `--reports` merges such
report folders instead of reading MLflow (a study run in pieces, on several machines or days): runs, curves and
items concatenated, arms summarized and intervals drawn again. The statistics are `gcpo.sweeps.stats`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gcpo.config import TrackingConfig

    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--experiment", "-e", help="the MLflow experiment (a sweep's name)")
    source.add_argument("--reports", nargs="+", metavar="DIR", help="merge these report folders (each written by "
                                                                     "gcpo compare) instead of reading MLflow")
    parser.add_argument("--parent", metavar="RUN_ID", help="only the children of this sweep parent run")
    parser.add_argument("--tracking-uri", default=TrackingConfig.uri,
                        help=f"the MLflow store or server (default: {TrackingConfig.uri}, relative to here)")
    parser.add_argument("--metric", help="the metric to compare (default: the sweep's, else eval/<task>/pass_at_1)")
    parser.add_argument("--target", type=float, metavar="X", help="report the first step reaching this value")
    parser.add_argument("--out", metavar="DIR", help="where the report goes (default: reports/<experiment>, "
                                                     "reports/merged with --reports)")
    parser.add_argument("--curves", metavar="KEY[,KEY]", help="the metrics learning_curves.png plots (default: "
                                                              "reward/mean and the compared metric)")
    parser.add_argument("--baseline", metavar="ARM", help="the arm the paired differences are taken from "
                                                          "(default: the table's first arm); 'all': every pair")
    parser.add_argument("--aa", nargs="+", metavar="ARM", default=[],
                        help="A/A check: each ARM against itself, its seeds split in two halves (a negative "
                             "control: about 5%% of the splits' intervals should exclude 0)")
    parser.add_argument("--no-log", action="store_true", help="do not log the report to the parent run")


def run(args: argparse.Namespace) -> int:
    from gcpo.sweeps.compare import REPORT_FILES, format_table, load_comparison, load_reports, write_report
    from gcpo.tracking.training_run import absolute_tracking_uri

    try:
        if args.reports:
            cmp = load_reports(args.reports, name=Path(args.out or "merged").name)
        else:
            cmp = load_comparison(args.experiment, absolute_tracking_uri(args.tracking_uri, Path.cwd()),
                                  parent_run_id=args.parent, metric=args.metric, target=args.target)
        cmp.baseline, cmp.aa = args.baseline, list(args.aa)
        cmp.statistics()  # an unknown --baseline or --aa arm fails here
    except ValueError as e:
        print(f"gcpo compare: {e}")
        return 2
    curves = [k.strip() for k in args.curves.split(",") if k.strip()] if args.curves else None
    missing = sorted(set(curves or []) - set(cmp.curves["key"]))
    if missing:
        print(f"gcpo compare: no run logged {', '.join(missing)}; learning_curves.png leaves it out")
    out = Path(args.out or Path("reports") / (args.experiment or "merged"))
    paths = write_report(cmp, out, log_to_parent=not args.no_log, curves=curves)
    print(format_table(cmp))
    print(f"\nreport: {paths['table'].parent}/ ({REPORT_FILES})")
    return 0
