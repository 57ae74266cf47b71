"""The evidence study: the papers' claims at laptop scale (docs/results.md).

Two sweeps at one budget (the `base` of `search_spaces/paper_claims.yaml`: steps, evaluation interval, held-out
size), on the default model and task unless overridden:

1. `paper_claims.yaml`: grpo, dapo, gpg, gcpo, gcpo without golden answers, and ga_sft (imitation alone), every
   arm once per seed (the space's seeds, or `--seeds`).
2. `ablation_ga_kl_is.yaml`: the 2x2x2 grid golden answers x KL x ratio level, at the same budget, one seed
   (the first of the seeds) unless `--ablation-seeds` says otherwise.

The study runs in pieces of one trial each (one arm or grid point, one seed): each piece is a `run_sweep` of
that space narrowed to it (MLflow experiments `paper_claims<TAG>` and `ablation<TAG>`, one parent run per piece),
read back with `load_comparison` and written to `OUT/pieces/<piece>/`. A piece whose report exists is skipped;
a failed or interrupted (Ctrl-C) piece writes none, and the next run resumes its sweep. So the study goes on
where it stopped, on this machine or (the reports being small files under version control) on another. After every piece the finished pieces are merged (`load_reports`) into `OUT/methods/` and
`OUT/ablation/` (table.txt, table.md, arms.csv, runs.csv, curves.csv, items.csv, intervals.csv, differences.csv
and the plots: what `gcpo compare` writes), and
`OUT/study.json` records the budget, the seeds, the machine and each piece's wall-clock time. A finished piece's
checkpoints are deleted (`--keep-checkpoints all` keeps them): the study needs only the metrics.

    .venv/bin/python benchmarks/paper_claims.py                    # the full study (hours on a 2-core CPU)
    .venv/bin/python benchmarks/paper_claims.py --skip-ablation    # the method comparison only
    .venv/bin/python benchmarks/paper_claims.py --report-only      # merge the finished pieces, train nothing
    .venv/bin/python benchmarks/paper_claims.py --smoke --out DIR  # the tiny-model version the tests run

Extra KEY=VALUE arguments join both sweeps' `base` (e.g. `tracking.uri=http://127.0.0.1:5000`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "search_spaces"
RESULTS = ROOT / "benchmarks" / "results" / "paper_claims"
BUDGET_KEYS = ("trainer.steps", "trainer.eval_every", "trainer.checkpoint_every", "task.eval_size")
# The tiny randomly initialised model on the transformers backend: every arm runs in about half a minute.
SMOKE = [
    "model.name=tiny", "rollout.backend=transformers", "rollout.prompts_per_step=2", "rollout.group_size=2",
    "rollout.max_new_tokens=6", "task.train_size=12", "task.eval_size=2", "trainer.eval_k=1",
    "trainer.steps=1", "trainer.eval_every=1", "trainer.checkpoint_every=1", "trainer.lr=1e-3",
    "tracking.log_rollouts_every=0",
]
STUDIES = {"methods": "paper_claims.yaml", "ablation": "ablation_ga_kl_is.yaml"}


def budget_overrides() -> list[str]:
    """The study's shared budget (from paper_claims.yaml's base) as overrides for the ablation sweep."""
    from gcpo.sweeps.space import load_space

    base = load_space(SPACES / "paper_claims.yaml").base
    return [f"{key}={base[key]}" for key in BUDGET_KEYS if key in base]


def pieces(study: str, overrides: list[str], seeds: list[int], arms: list[str] | None) -> list[dict]:
    """The study's trials in run order (seed-major: every arm of a seed before the next seed), one piece each:
    its folder name and the grid values (`only`) that narrow the space to it."""
    from gcpo.sweeps.runner import arm_label
    from gcpo.sweeps.space import load_space

    space = load_space(SPACES / STUDIES[study], overrides)
    points = [{"arm": a} for a in arms] if arms else space.grid_arms()
    out = []
    for seed in seeds:
        for point in points:
            label = re.sub(r"[^A-Za-z0-9_.=-]+", "_", arm_label(point, list(point)).replace(", ", "_"))
            out.append({"study": study, "name": f"{label}_s{seed}", "seed": seed,
                        "only": {k: [v] for k, v in point.items()}})
    return out


def run_piece(piece: dict, overrides: list[str], tag: str, base: Path, out: Path, keep_checkpoints: str) -> dict:
    """Run (or resume) one piece's sweep and write its report to out/pieces/<study>/<name>/."""
    from gcpo.sweeps.compare import load_comparison, write_report
    from gcpo.sweeps.runner import SWEEP_FILE, run_sweep, sweep_dir
    from gcpo.sweeps.space import load_space, trial_config
    from gcpo.training.fit import absolutize

    space = SPACES / STUDIES[piece["study"]]
    experiment = ("paper_claims" if piece["study"] == "methods" else "ablation") + tag
    overrides = [*overrides, f"tracking.experiment={experiment}"]
    sweep = f"{experiment}_{piece['name']}"
    existing = sweep_dir(absolutize(trial_config(load_space(space, overrides), {}), base), sweep, base)
    resume = (existing / SWEEP_FILE).exists()
    print(f"[study] {'resuming' if resume else 'starting'} {piece['study']} piece {piece['name']}", flush=True)
    started = time.time()
    outcome = run_sweep(space, overrides, name=sweep, resume=resume, base=base, seeds=[piece["seed"]],
                        only=piece["only"], keep_checkpoints=keep_checkpoints)
    failed = sum(t["status"] != "ok" for t in outcome.trials)
    if failed:  # no report: the piece is not done, and the next run of the driver resumes (retries) it
        print(f"[study] piece {piece['name']} failed; run the driver again to retry it", flush=True)
    else:
        cmp = load_comparison(outcome.experiment, outcome.tracking_uri, parent_run_id=outcome.parent_run_id)
        write_report(cmp, out / "pieces" / piece["study"] / piece["name"])
    return {"wall_s": round(time.time() - started, 1), "failed": failed,
            "experiment": outcome.experiment, "parent_run_id": outcome.parent_run_id}


def merge(out: Path, study: str) -> str | None:
    """Merge the study's finished pieces into out/<study>/; returns the terminal table (None: no pieces yet)."""
    from gcpo.sweeps.compare import format_table, load_reports, write_report

    done = sorted(p for p in (out / "pieces" / study).glob("*") if (p / "runs.csv").exists())
    if not done:
        return None
    cmp = load_reports(done, name=study)
    write_report(cmp, out / study, log_to_parent=False)
    return format_table(cmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="run-config values for every trial")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds of the method comparison (default: the space's)")
    parser.add_argument("--arms", nargs="+", help="only these arms of the method comparison (default: all)")
    parser.add_argument("--ablation-seeds", type=int, nargs="+", help="seeds of the ablation grid (default: the "
                                                                       "first method-comparison seed)")
    parser.add_argument("--skip-ablation", action="store_true", help="run the method comparison only")
    parser.add_argument("--ablation-first", action="store_true", help="run the ablation's pieces before the methods'")
    parser.add_argument("--report-only", action="store_true", help="merge the finished pieces; train nothing")
    parser.add_argument("--smoke", action="store_true", help="the tiny model, 1 step, seed 0 (the test suite's run)")
    parser.add_argument("--tag", default="", help="suffix of the MLflow experiments (paper_claims<TAG>, "
                                                  "ablation<TAG>); default none, `-smoke` with --smoke")
    parser.add_argument("--out", type=Path, help=f"report folder (default {RESULTS}; with --smoke, "
                                                 "reports/paper_claims-smoke)")
    parser.add_argument("--keep-checkpoints", choices=("none", "all"), default="none",
                        help="keep each finished piece's checkpoints (default none: the study needs only the "
                             "metrics, and a default-model checkpoint is ~1.5 GB)")
    parser.add_argument("--base", type=Path, default=ROOT, help="where runs/ and a relative MLflow store live")
    args = parser.parse_args(argv)
    out = args.out or (ROOT / "reports" / "paper_claims-smoke" if args.smoke else RESULTS)

    from gcpo.sweeps.space import load_space

    overrides = (SMOKE if args.smoke else []) + list(args.overrides)
    seeds = args.seeds or ([0] if args.smoke else load_space(SPACES / "paper_claims.yaml").seeds)
    ablation = budget_overrides() + overrides  # the same budget; smoke values win
    todo = pieces("methods", overrides, seeds, args.arms)
    if not args.skip_ablation:
        extra = pieces("ablation", ablation, args.ablation_seeds or seeds[:1], None)
        todo = extra + todo if args.ablation_first else todo + extra
    summary_file = out / "study.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {"pieces": {}}
    summary.update({"budget": budget_overrides(), "overrides": overrides,
                    "machine": {"platform": platform.platform(), "processor": platform.processor() or
                                platform.machine(), "cpus": os.cpu_count(), "python": sys.version.split()[0]}})
    failed = 0
    if not args.report_only:
        from gcpo.cluster.runtime import init_ray
        from gcpo.sweeps.runner import SweepInterrupted

        pending = [p for p in todo if not (out / "pieces" / p["study"] / p["name"] / "runs.csv").exists()]
        print(f"[study] {len(todo) - len(pending)} of {len(todo)} pieces done; {len(pending)} to run", flush=True)
        if pending:
            init_ray(None)
        for number, piece in enumerate(pending, 1):
            print(f"[study] piece {number}/{len(pending)}", flush=True)
            try:
                result = run_piece(piece, ablation if piece["study"] == "ablation" else overrides,
                                   args.tag or ("-smoke" if args.smoke else ""), args.base, out,
                                   args.keep_checkpoints)
            except SweepInterrupted as e:
                print(f"[study] stopped: {e}; run the driver again to go on", flush=True)
                return 130
            failed += result["failed"]
            summary["pieces"][f"{piece['study']}/{piece['name']}"] = {**result, "machine": summary["machine"]}
            for study in STUDIES:
                merge(out, study)
            out.mkdir(parents=True, exist_ok=True)
            summary_file.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    for study in STUDIES:
        table = merge(out, study)
        if table:
            print(table, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    summary_file.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"[study] report: {out}/ (methods/, ablation/, pieces/, study.json)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
