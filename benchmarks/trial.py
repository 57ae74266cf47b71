"""One trial of the study regime, today's path beside the new one (fixed costs cut), in one invocation.

    .venv/bin/python benchmarks/trial.py [--arm gcpo] [--config configs/study.yaml] [--verbose] [KEY=VALUE ...]
    e.g. .venv/bin/python benchmarks/trial.py trainer.steps=8 trainer.eval_every=4

Both trials are `gcpo train --config CONFIG --preset ARM` with the same KEY=VALUE overrides, the same seeds, and
their own MLflow runs in a scratch store; they differ in four settings that change no result:
- `today`: an empty step-0 cache folder, so the trial evaluates before training exactly as today's code did (the
  same `evaluate_config` call on the generators) and then stores the result: the first trial of a study (its only
  extra work is the cache key, the model folder's content hash read once per file, timed apart here on a cold memo
  as `key_s`, and one small JSON file); full intermediate evaluations (`trainer.eval_intermediate=full`: greedy
  and sampled); the generators started after the policy is built (`trainer.overlap_startup=false`); a no-grad
  pass over every row for the old log-probs (`trainer.fuse_old_logprobs=false`);
- `new`: the same cache folder, now warm, so the evaluation before training is read back (every later trial:
  `trainer.eval_reuse`, docs/tracking.md "The evaluation before training, computed once"); greedy-only
  intermediate evaluations (`trainer.eval_intermediate=greedy`: the comparisons read the last evaluation, which
  stays full); the generators started while the policy is built (`trainer.overlap_startup=true`); the first
  mini-batch's old log-probs taken from its own training forward (`trainer.fuse_old_logprobs=true`).

Per phase, from the wall-clock time at which each `[gcpo]` line reached this process (Ray forwards a worker's lines
within about a second; the same delay in both trials): start-up (launch to the first line of the step-0
evaluation: Ray, the training workers, DeepSpeed, the generator engine, data, MLflow), each held-out evaluation
(its start line to its result line; the reused one has no start line: 0 s), the steps (the rest between the
first and the last evaluation) and wrap-up (the last evaluation's result to the process's exit: the final
checkpoint and Ray's shutdown). The per-item held-out results of every evaluation (`eval/items_step_<N>.json`) are
compared between the two trials: identical at the first and the last evaluation (every column), and at the
intermediate ones in every column but `mean_at_k` (not computed by a greedy-only evaluation), means the new path
changed nothing the study reads.

Writes benchmarks/results/trial.json and trial.md (date, machine, CPU flags, command, `uptime` before and after);
`--verbose` passes `-v` to `gcpo train` and keeps each trial's full timestamped log in the work folder (start-up
phases of Ray, vLLM and DeepSpeed can be read from it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
EXPERIMENT = "trial"
TRIALS = ("today", "new")
# what each trial sets beside the common overrides (see the module docstring)
PATHS = {"today": ["trainer.eval_intermediate=full", "trainer.overlap_startup=false", "trainer.fuse_old_logprobs=false"],
         "new": ["trainer.eval_intermediate=greedy", "trainer.overlap_startup=true", "trainer.fuse_old_logprobs=true"]}
EVAL_START = re.compile(r"held-out evaluation (before training|at step \d+|after training): \d+ items")
EVAL_END = re.compile(r"held-out evaluation (before training|at step \d+|after training): .*\((\d+s|reused.*)\)\s*$")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", default="gcpo", help="the preset of the trial (one arm of a study)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "study.yaml"))
    parser.add_argument("--work", default=None, help="scratch folder (default: a new temporary one, kept)")
    parser.add_argument("--verbose", action="store_true", help="run gcpo train -v and keep its timestamped log")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    return parser.parse_args()


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run_trial(name: str, args, work: Path) -> dict:
    """One `gcpo train`, its output lines timestamped as they arrive; (phases, timestamps, the run's name)."""
    cmd = [sys.executable, "-m", "gcpo.cli", "train", "--config", args.config, "--preset", args.arm,
           "--name", f"trial-{name}", *(["-v"] if args.verbose else []), *args.overrides,
           f"tracking.uri=sqlite:///{work}/mlflow.db", f"tracking.experiment={EXPERIMENT}",
           f"trainer.output_dir={work}/runs", f"trainer.eval_cache_dir={work}/eval-cache", "trainer.eval_reuse=true",
           *PATHS[name]]
    print(f"[bench] trial {name}: {' '.join(cmd[2:])}", flush=True)
    started = time.time()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=os.environ | {"PYTHONUNBUFFERED": "1"}) as proc:
        for line in proc.stdout:
            lines.append((time.time() - started, line.rstrip("\n")))
            if "[gcpo]" in line or "error" in line.lower():
                print(f"[bench] {lines[-1][0]:7.1f}s | {line.rstrip()}", flush=True)
    total = time.time() - started
    (work / f"trial-{name}.log").write_text("".join(f"{t:9.2f} {text}\n" for t, text in lines))
    if proc.returncode != 0:
        raise SystemExit(f"trial {name} failed (exit {proc.returncode}); its log: {work / f'trial-{name}.log'}")
    return phases(lines, total)


def phases(lines: list[tuple[float, str]], total: float) -> dict:
    """Start-up, each evaluation, the steps and wrap-up from the timestamped lines (see the module docstring)."""
    evals: list[dict] = []
    for t, text in lines:
        if start := EVAL_START.search(text):
            evals.append({"when": start.group(1), "start": t})
        elif end := EVAL_END.search(text):
            if not evals or evals[-1]["when"] != end.group(1) or "end" in evals[-1]:
                evals.append({"when": end.group(1), "start": t})  # a reused evaluation: no start line
            evals[-1].update(end=t, reused=end.group(2).startswith("reused"))
    if not evals or any("end" not in e for e in evals):
        raise SystemExit("the trial's log has no complete held-out evaluation lines: run it with evaluation on")
    eval_s = [e["end"] - e["start"] for e in evals]
    span = evals[-1]["end"] - evals[0]["end"] - sum(eval_s[1:])
    return {"total_s": total, "startup_s": evals[0]["start"],
            "evaluations": [{"when": e["when"], "seconds": s, "reused": e["reused"]} for e, s in zip(evals, eval_s)],
            "evaluation_s": sum(eval_s), "steps_s": span, "wrapup_s": total - evals[-1]["end"]}


def items_by_step(work: Path, run_name: str) -> dict[int, str]:
    """The text of every per-item artifact (`eval/items_step_<N>.json`) of the trial's MLflow run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlflow.db")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id], filter_string=f"tags.`gcpo.run_name` = '{run_name}'")
    out = {}
    for artifact in client.list_artifacts(run.info.run_id, "eval"):
        step = int(re.search(r"items_step_(\d+)", artifact.path).group(1))
        folder = Path(tempfile.mkdtemp(dir=work))
        out[step] = Path(client.download_artifacts(run.info.run_id, artifact.path, str(folder))).read_text()
    return out


def key_seconds(args) -> float:
    """The cache key's cost on a cold memo: the model folder's content hash (read once per file)."""
    from gcpo.config import load_config
    from gcpo.eval_cache import model_content_hash
    from gcpo.models import resolve_model

    cfg = load_config(args.config, args.overrides, preset=args.arm)
    model_dir = resolve_model(cfg.model)
    started = time.time()
    model_content_hash(model_dir)
    return time.time() - started


def greedy_columns(text: str | None) -> list | None:
    """A per-item table without its `mean_at_k` column (what a greedy-only evaluation does not compute)."""
    if text is None:
        return None
    table = json.loads(text)
    drop = table["columns"].index("mean_at_k")
    return [row[:drop] + row[drop + 1:] for row in table["data"]]


def compare(work: Path) -> dict:
    """Per evaluation step: are the two trials' per-item results identical (intermediate steps: but `mean_at_k`)?"""
    today, new = (items_by_step(work, f"trial-{name}") for name in TRIALS)
    steps = sorted(set(today) | set(new))
    ends = {steps[0], steps[-1]} if steps else set()
    same = {str(step): today.get(step) is not None and (today.get(step) == new.get(step) if step in ends else
                                                          greedy_columns(today.get(step)) == greedy_columns(new.get(step)))
            for step in steps}
    items = {str(step): len(json.loads(today[step])["data"]) for step in steps if step in today}
    return {"identical": same, "items": items, "all_identical": bool(same) and all(same.values())}


def main() -> None:
    args = parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="gcpo-trial-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    from gcpo.eval_cache import cpu_flags, cpu_model

    before = uptime()
    trials = {name: run_trial(name, args, work) for name in TRIALS}
    after = uptime()
    record = {
        "date": datetime.date.today().isoformat(),
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpu_cores": os.cpu_count(),
                    "cpu_flags": cpu_flags(), "gpu": None},
        "command": " ".join([".venv/bin/python", "benchmarks/trial.py", *sys.argv[1:]]),
        "config": os.path.relpath(args.config, ROOT), "arm": args.arm, "overrides": args.overrides,
        "uptime_before": before, "uptime_after": after, "work": str(work),
        "key_s": key_seconds(args), "trials": trials,
        "ratio": trials["new"]["total_s"] / trials["today"]["total_s"],
        "per_item": compare(work),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "trial.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / "trial.md").write_text(markdown(record))
    print(markdown(record), flush=True)


def markdown(r: dict) -> str:
    """The record as a short page: the setting, then one row per phase, today's path beside the new one."""
    today, new = r["trials"]["today"], r["trials"]["new"]
    rows = [("start-up", today["startup_s"], new["startup_s"])]
    for a, b in zip(today["evaluations"], new["evaluations"]):
        rows.append((f"held-out evaluation {a['when']}" + (" (reused)" if b["reused"] else ""), a["seconds"],
                     b["seconds"]))
    rows += [("steps", today["steps_s"], new["steps_s"]), ("wrap-up", today["wrapup_s"], new["wrapup_s"]),
             ("**total**", today["total_s"], new["total_s"])]
    table = "\n".join(f"| {name} | {a:.1f} | {b:.1f} | {b / a if a > 0 else float('nan'):.2f} |" for name, a, b in rows)
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in r["machine"]["cpu_flags"].items())
    same = r["per_item"]
    checks = ", ".join(f"step {s}: {'identical' if ok else 'DIFFERENT'} ({same['items'].get(s, '?')} items)"
                       for s, ok in same["identical"].items())
    return (
        "# One study trial: today's path vs the new one (fixed costs cut)\n\n"
        f"`{r['config']}`, arm `{r['arm']}`, overrides `{' '.join(r['overrides']) or '(none)'}`; {r['date']}; "
        f"{r['machine']['cpu_cores']}-core {r['machine']['cpu']} ({flags}), no GPU.\n\n"
        f"    {r['command']}\n\n"
        f"uptime before: `{r['uptime_before']}`  \nuptime after: `{r['uptime_after']}`\n\n"
        "`today`: an empty step-0 cache (evaluates as today, then stores: a study's first trial), full intermediate "
        "evaluations, generators started after the policy; `new`: the same cache, warm (every later trial), "
        "greedy-only intermediate evaluations, generators started while the policy is built. The cache key's model "
        f"hash on a cold memo took {r['key_s']:.1f} s (once per model file; inside `today`'s start-up).\n\n"
        "| phase | today (s) | new (s) | new / today |\n|---|---|---|---|\n" + table + "\n\n"
        f"Wall clock new / today: **{r['ratio']:.2f}x**. Per-item held-out results (intermediate evaluations: every "
        f"column but mean_at_k): {checks}.\n"
    )


if __name__ == "__main__":
    main()
