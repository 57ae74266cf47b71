"""The evidence study: the papers' claims at laptop scale (README "Results").

Two sweeps at one budget (the `base` of `search_spaces/paper_claims.yaml`: steps, evaluation interval, held-out
size), on the default model and task unless overridden:

1. `paper_claims.yaml`: grpo, dapo, gpg, gcpo, gcpo without golden answers, and ga_sft (imitation alone), every
   arm once per seed (the space's seeds, or `--seeds`).
2. `ablation_ga_kl_is.yaml`: the 2x2x2 grid golden answers x KL x ratio level, at the same budget, one seed
   (the first of the seeds) unless `--ablation-seeds` says otherwise.

Each sweep is run with `gcpo.sweeps.runner.run_sweep` (resumed when it already exists under this name: finished
trials are kept, so an interrupted study continues), then read back from MLflow with `load_comparison` and
written to `OUT/<sweep>/` (table.txt, table.md, arms.csv, runs.csv, learning_curves.png, effects.png).
`OUT/study.json` records the commands' overrides, the seeds, the machine and each sweep's wall-clock time.

    .venv/bin/python benchmarks/paper_claims.py                    # the full study (hours on a 2-core CPU)
    .venv/bin/python benchmarks/paper_claims.py --skip-ablation    # the method comparison only
    .venv/bin/python benchmarks/paper_claims.py --smoke --out DIR  # the tiny-model version the tests run

Extra KEY=VALUE arguments join both sweeps' `base` (e.g. `tracking.uri=http://127.0.0.1:5000`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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


def budget_overrides() -> list[str]:
    """The study's shared budget (from paper_claims.yaml's base) as overrides for the ablation sweep."""
    from gcpo.sweeps.space import load_space

    base = load_space(SPACES / "paper_claims.yaml").base
    return [f"{key}={base[key]}" for key in BUDGET_KEYS if key in base]


def run_study_sweep(space: str, overrides: list[str], seeds: list[int] | None, name: str, base: Path,
                    out: Path, arms: list[str] | None = None) -> dict:
    """Run (or resume) one sweep and write its report to out/<name>/; returns its summary for study.json."""
    from gcpo.sweeps.compare import format_table, load_comparison, write_report
    from gcpo.sweeps.runner import SWEEP_FILE, run_sweep, sweep_dir
    from gcpo.sweeps.space import load_space, trial_config
    from trainables.gcpo_train import absolutize

    existing = sweep_dir(absolutize(trial_config(load_space(SPACES / space, overrides), {}), base), name, base)
    resume = (existing / SWEEP_FILE).exists()
    print(f"[study] {'resuming' if resume else 'starting'} sweep {name!r} ({space})", flush=True)
    started = time.time()
    outcome = run_sweep(SPACES / space, overrides, name=name, resume=resume, base=base, seeds=seeds, arms=arms)
    wall_s = time.time() - started
    cmp = load_comparison(outcome.experiment, outcome.tracking_uri, parent_run_id=outcome.parent_run_id)
    write_report(cmp, out / name)
    print(format_table(cmp), flush=True)
    failed = [t for t in outcome.trials if t["status"] != "ok"]
    return {"space": f"search_spaces/{space}", "overrides": overrides, "seeds": sorted(set(cmp.runs["seed"])),
            "trials": len(outcome.trials), "failed": len(failed), "wall_s_this_invocation": round(wall_s, 1),
            "experiment": outcome.experiment, "parent_run_id": outcome.parent_run_id,
            "arms": json.loads(cmp.arms.to_json(orient="records"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="run-config values for every trial")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds of the method comparison (default: the space's)")
    parser.add_argument("--arms", nargs="+", help="only these arms of the method comparison (default: all)")
    parser.add_argument("--ablation-seeds", type=int, nargs="+", help="seeds of the ablation grid (default: the "
                                                                       "first method-comparison seed)")
    parser.add_argument("--skip-ablation", action="store_true", help="run the method comparison only")
    parser.add_argument("--smoke", action="store_true", help="the tiny model, 1 step, seed 0 (the test suite's run)")
    parser.add_argument("--tag", default="", help="suffix of the sweeps' names (paper_claims<TAG>, ablation<TAG>); "
                                                  "default none, `-smoke` with --smoke")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"report folder (default {RESULTS})")
    parser.add_argument("--base", type=Path, default=ROOT, help="where runs/ and a relative MLflow store live")
    args = parser.parse_args(argv)

    from gcpo.cluster.runtime import init_ray

    overrides = (SMOKE if args.smoke else []) + list(args.overrides)
    seeds = args.seeds or ([0] if args.smoke else None)
    from gcpo.sweeps.space import load_space

    ablation_seeds = args.ablation_seeds or [(seeds or load_space(SPACES / "paper_claims.yaml").seeds)[0]]
    suffix = args.tag or ("-smoke" if args.smoke else "")
    init_ray(None)
    study = {"machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                         "cpus": os.cpu_count(), "python": sys.version.split()[0]},
             "budget": budget_overrides(), "sweeps": {}}
    study["sweeps"]["paper_claims"] = run_study_sweep("paper_claims.yaml", overrides, seeds,
                                                      f"paper_claims{suffix}", args.base, args.out, args.arms)
    if not args.skip_ablation:
        ablation = budget_overrides() + overrides  # the same budget; smoke values win
        study["sweeps"]["ablation"] = run_study_sweep("ablation_ga_kl_is.yaml", ablation, ablation_seeds,
                                                      f"ablation{suffix}", args.base, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "study.json").write_text(json.dumps(study, indent=2, default=str) + "\n")
    print(f"[study] report: {args.out}/ (study.json and one folder per sweep)", flush=True)
    return 1 if any(s["failed"] for s in study["sweeps"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
