"""The study regime's pilot (docs/results.md, "The study regime"): can two arms differ in this regime, and what
would it take to tell them apart?

    .venv/bin/python benchmarks/pilot.py [--arms gcpo,grpo] [--seeds 0,1] [--work DIR] [--name NAME] [KEY=VALUE ...]
    .venv/bin/python benchmarks/pilot.py --report-only
    .venv/bin/python benchmarks/pilot.py --name pilot_multi --seeds 0 task.name=multi_arithmetic  # a harder task

Each piece is one `gcpo train --config configs/study.yaml --preset ARM trainer.seed=S` (the regime as committed,
the arm's overrides from `ARMS`, KEY=VALUE on top), logged to the MLflow store `WORK/pilot.db` (experiment
NAME, default `pilot`) under the run name `NAME-ARM-sS`. A piece whose run finished is skipped, so the pilot resumes where it
stopped; a finished piece's checkpoints are deleted (the pilot needs only the metrics). Pieces run seed by seed
across the arms, so a pilot stopped halfway is still paired. After each piece, `gcpo compare` reads the finished runs
(intervals per arm over seeds and held-out items, the paired differences against `--baseline`, the curves) into
`benchmarks/results/NAME/` with `diagnostics.md` (per run: the KL term's share of the gradient, clip fractions per
update, samples, golden share, the held-out curve), and `pilot.json` records the machine, the regime, each piece's wall clock and the
uptime before and after it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from gcpo.tracking.reading import finished_run_names

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# The arms' own overrides on top of their presets. gcpo's sequence range is the calibrated one
# (benchmarks/results/clip_calibration.json: the second mini-batch's clip fraction equal to the token level's).
ARMS: dict[str, list[str]] = {"gcpo": [], "grpo": []}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run_piece(arm: str, seed: int, args, uri: str) -> float:
    """Train one piece; its wall clock in seconds."""
    work = Path(args.work)
    cmd = [sys.executable, "-m", "gcpo.cli", "train", "--config", str(ROOT / "configs" / "study.yaml"), "--preset",
           arm, "--name", f"{args.name}-{arm}-s{seed}", f"trainer.seed={seed}", *ARMS.get(arm, []), *args.overrides,
           f"tracking.uri={uri}", f"tracking.experiment={args.name}", f"trainer.output_dir={work}/runs",
           "tracking.log_rollouts_every=0"]
    print(f"[pilot] {arm} seed {seed}: {' '.join(cmd[3:])}", flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT)
    shutil.rmtree(work / "runs", ignore_errors=True)
    return time.time() - t0


# What the regime's review asked a run to show (docs/results.md, "The study regime"): the KL term's share of the
# gradient per update (bounded?), the clip fraction over learnable tokens per update (equal data across ratio
# levels?), the samples a step drew, the golden-answer share, and the held-out curve. kl/grad_share_u<k> is 1 in
# an update whose mini-batch has no policy gradient (every group all-wrong or all-right, no golden answer): those
# updates are counted apart ("KL-only updates"), the share's median is over the others.
def _kl_share(run) -> str:
    shares = run.loc[run.key.isin(["kl/grad_share_u1", "kl/grad_share_u2"]), "value"]
    if shares.empty:
        return "-"
    mixed = shares[shares < 0.999]
    return f"{mixed.median():.4f} (max {mixed.max():.4f})" if len(mixed) else "-"


def _column(key: str, how: str):
    def cell(run) -> str:
        values = run.loc[run.key == key].sort_values("step")["value"]
        if values.empty:
            return "-"
        return f"{(values.iloc[-1] if how == 'last' else getattr(values, how)()):.4g}"
    return cell


DIAGNOSTICS = {
    "KL share of the gradient, median (max)": _kl_share,
    "KL-only updates": lambda run: str(int((run.loc[run.key.isin(["kl/grad_share_u1", "kl/grad_share_u2"]),
                                                      "value"] >= 0.999).sum())),
    "clip frac learnable, update 1 (mean)": _column("policy/clip_frac_learnable_u1", "mean"),
    "clip frac learnable, update 2 (mean)": _column("policy/clip_frac_learnable_u2", "mean"),
    "samples (sum)": _column("batch/samples", "sum"),
    "golden share (mean)": _column("ga/injected_frac", "mean"),
    "entropy (last)": _column("policy/entropy", "last"),
    "train accuracy (mean)": _column("reward/accuracy", "mean"),
}


def diagnostics(out: Path, metric: str) -> str:
    """A markdown table, one row per run, from the report's curves.csv: DIAGNOSTICS over the run's steps and the
    held-out metric at each evaluation."""
    import pandas as pd

    curves = pd.read_csv(out / "curves.csv", dtype={"arm": str, "seed": str})
    evals = sorted(curves.loc[curves.key == metric, "step"].unique())
    head = ["arm", "seed", *DIAGNOSTICS, *[f"{metric.rsplit('/', 1)[-1]} @{s}" for s in evals]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (arm, seed), run in curves.groupby(["arm", "seed"]):
        at = run.loc[run.key == metric].set_index("step")["value"]
        cells = [arm, seed, *[cell(run) for cell in DIAGNOSTICS.values()],
                 *[f"{at[s]:.3f}" if s in at.index else "-" for s in evals]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report(args, uri: str) -> None:
    out = RESULTS / args.name
    cmd = [sys.executable, "-m", "gcpo.cli", "compare", "--experiment", args.name, "--tracking-uri", uri,
           "--out", str(out), "--no-log", "--baseline", args.baseline]
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:  # a report is rebuilt after every piece: never stop the pilot
        print("[pilot] gcpo compare failed; the pieces are kept (rerun with --report-only)", flush=True)
    elif (out / "curves.csv").exists():
        metric = json.loads((out / "comparison.json").read_text()).get("metric", "eval/basic_arithmetic/pass_at_1")
        (out / "diagnostics.md").write_text(diagnostics(out, metric))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", default="gcpo,grpo")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--baseline", default="grpo")
    parser.add_argument("--work", default=os.environ.get("GCPO_PILOT_WORK", "/tmp/gcpo-pilot"))
    parser.add_argument("--name", default="pilot", help="the MLflow experiment, the run names' prefix and the folder "
                        "benchmarks/results/NAME (default: pilot)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    out = RESULTS / args.name
    out.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{Path(args.work).resolve()}/pilot.db"
    record_path = out / "pilot.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {"pieces": {}}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    record.update(machine=f"{platform.machine()}, {os.cpu_count()} cores", overrides=args.overrides, commit=commit.strip(),
                  regime=(ROOT / "configs" / "study.yaml").read_text(),
                  arms={arm: ARMS.get(arm, []) for arm in args.arms.split(",")})
    if not args.report_only:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for arm in args.arms.split(","):
                if f"{args.name}-{arm}-s{seed}" in finished_run_names(uri, args.name):
                    continue
                before = uptime()
                seconds = run_piece(arm, seed, args, uri)
                record["pieces"][f"{arm}-s{seed}"] = {"seconds": round(seconds, 1), "uptime_before": before,
                                                      "uptime_after": uptime(),
                                                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
                record_path.write_text(json.dumps(record, indent=2) + "\n")
                report(args, uri)
    report(args, uri)
    record_path.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
