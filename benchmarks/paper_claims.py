"""The evidence study: the papers' claims at laptop scale (docs/results.md), now the study file
`studies/paper_claims.yaml` run by `gcpo study` (docs/studies.md). This script keeps the old command line.

Two claims at one budget (the study file's `steps`, `eval_every` and regime), on the default model and task
unless overridden:

1. `methods`: grpo, dapo, gpg, gcpo, gcpo without golden answers, and ga_sft (imitation alone), every arm once
   per seed (the study's seeds, or `--seeds`), each against grpo.
2. `ablation`: the 2x2x2 grid golden answers x KL x ratio level, one seed (the first of the seeds) unless
   `--ablation-seeds` says otherwise.

Every trial is one piece (one arm, one seed), resumable, seed by seed across the arms (`gcpo.studies.runner`);
the pieces' reports are in `OUT/pieces/<claim>/<piece>/`, the merged ones in `OUT/methods/` and `OUT/ablation/`
(what `gcpo compare` writes), the study's report in `OUT/report.md` (Holm-adjusted differences and verdicts), and
`OUT/study.json` records the machine and each piece's wall-clock time. A finished piece's checkpoints are deleted
(`--keep-checkpoints all` keeps them).

    .venv/bin/python benchmarks/paper_claims.py                    # the full study (hours on a 2-core CPU)
    .venv/bin/python benchmarks/paper_claims.py --skip-ablation    # the method comparison only
    .venv/bin/python benchmarks/paper_claims.py --report-only      # merge the finished pieces, train nothing
    .venv/bin/python benchmarks/paper_claims.py --smoke --out DIR  # the tiny-model version the tests run

Extra KEY=VALUE arguments join every trial's config (e.g. `tracking.uri=http://127.0.0.1:5000`). The same study:
`gcpo study run studies/paper_claims.yaml --out benchmarks/results/paper_claims`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "paper_claims.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "paper_claims"
# The tiny randomly initialised model on the transformers backend: every arm runs in about half a minute.
SMOKE = [
    "model.name=tiny", "rollout.backend=transformers", "rollout.prompts_per_step=2", "rollout.group_size=2",
    "rollout.max_new_tokens=6", "task.train_size=12", "task.eval_size=2", "trainer.eval_k=1",
    "trainer.steps=1", "trainer.eval_every=1", "trainer.checkpoint_every=1", "trainer.lr=1e-3",
    "tracking.log_rollouts_every=0",
]


def select(study, args: argparse.Namespace):
    """The study narrowed by the command line: claims, the methods' arms, the seeds."""
    if args.skip_ablation:
        del study.claims["ablation"]
    methods = study.claims["methods"]
    if args.arms:
        methods.arms = [a for a in methods.arms if a in args.arms]
        methods.points = {a: methods.points[a] for a in methods.arms}
        if methods.reference not in methods.arms:
            methods.reference = methods.arms[0]
    seeds = args.seeds or ([0] if args.smoke else methods.seeds)
    methods.seeds = list(seeds)
    if "ablation" in study.claims:
        study.claims["ablation"].seeds = list(args.ablation_seeds or seeds[:1])
        if args.ablation_first:
            study.claims = {"ablation": study.claims["ablation"], "methods": methods}
    return study


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="run-config values for every trial")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds of the method comparison (default: the study's)")
    parser.add_argument("--arms", nargs="+", help="only these arms of the method comparison (default: all)")
    parser.add_argument("--ablation-seeds", type=int, nargs="+", help="seeds of the ablation grid (default: the "
                                                                       "first method-comparison seed)")
    parser.add_argument("--skip-ablation", action="store_true", help="run the method comparison only")
    parser.add_argument("--ablation-first", action="store_true", help="run the ablation's pieces before the methods'")
    parser.add_argument("--report-only", action="store_true", help="merge the finished pieces; train nothing")
    parser.add_argument("--smoke", action="store_true", help="the tiny model, 1 step, seed 0 (the test suite's run)")
    parser.add_argument("--tag", default="", help="suffix of the MLflow experiments (paper_claims-<claim><TAG>); "
                                                  "default none, `-smoke` with --smoke")
    parser.add_argument("--out", type=Path, help=f"report folder (default {RESULTS}; with --smoke, "
                                                 "reports/paper_claims-smoke)")
    parser.add_argument("--keep-checkpoints", choices=("none", "all"), default="none",
                        help="keep each finished piece's checkpoints (default none: the study needs only the "
                             "metrics, and a default-model checkpoint is ~1.5 GB)")
    parser.add_argument("--base", type=Path, default=ROOT, help="where runs/ and a relative MLflow store live")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from gcpo.studies.report import format_status, write_study_report
    from gcpo.studies.runner import done_counts, is_done, merged, pieces, run_study
    from gcpo.studies.study_file import load_study
    from gcpo.sweeps.runner import SweepInterrupted

    args = arguments(argv)
    out = args.out or (ROOT / "reports" / "paper_claims-smoke" if args.smoke else RESULTS)
    study = select(load_study(STUDY), args)
    options = {"out": out, "overrides": (SMOKE if args.smoke else []) + list(args.overrides), "base": args.base,
               "tag": args.tag or ("-smoke" if args.smoke else ""), "keep_checkpoints": args.keep_checkpoints}
    failed = 0
    if not args.report_only:
        if not all(is_done(out, p) for p in pieces(study)):
            from gcpo.cluster.runtime import init_ray

            init_ray(None)
        try:
            failed = run_study(study, options)
        except SweepInterrupted as e:
            print(f"[study] stopped: {e}; run the driver again to go on", flush=True)
            return 130
    done = done_counts(study, out)
    totals = (sum(d for d, _ in done.values()), sum(t for _, t in done.values()))
    _, table = write_study_report(study, out, merged(study, out), totals)
    print(format_status(study, table, done), flush=True)
    print(f"[study] report: {out}/ (report.md, {', '.join(study.claims)}/, pieces/, study.json)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
