"""Staleness 0 vs 1 on a two-node local cluster: the trainer on the head, the vLLM generator on a worker node.

    .venv/bin/python benchmarks/staleness.py [--steps 6] [--arms 0,1] [--model smollm2-135m-instruct]
                                             [--prompts 8] [--group 4] [--max-new-tokens 64] [--shared-cores]

Starts `gcpo cluster up --num-cpus 2 --head-resource trainer --workers 1 --worker-cpus 2 --worker-resource
generator` (its own local cluster, on the default ports; refused if one is up), then runs `gcpo train` once per
`rollout.max_staleness` value in one invocation, joined to that cluster (`cluster.address`) with
`trainer.placement_resource=trainer rollout.placement_resource=generator`, every other setting the default run's
(no held-out evaluation: it would sit between the phases being measured). The cluster is stopped at the end.

Per arm, from the run's MLflow metrics, means over the steps after the first (the first step of staleness 1 has
nothing sampled ahead): step seconds, the seconds the trainer waited for rollouts (`time/rollout_wait_s`),
generation + verification of one batch, the update, the weight push, and the overlap achieved
(`rollout/overlap_frac`: the share of a background collection's seconds the update hid).

Both nodes are processes on this one machine. By default each node is pinned to its own core (the head's
processes, and so the trainer, to core 0; the worker node's, and so the generator, to core 1: CPU affinity set on
each node's processes after it starts, inherited by the workers Ray forks later; `VLLM_CPU_OMP_THREADS_BIND` set
to core 1 for the generator), which stands in for two machines of one core each: every phase runs on one core
in both arms, and the overlap is what staleness adds. `--shared-cores` leaves both nodes on both cores (the
phases then contend when they overlap: what a run on one small machine sees). The expected gain on separate hardware is given as a model, not a measurement: with R the
seconds of one batch's rollouts (generate + verify), U the update and S the push, measured in the staleness-0
arm, a synchronous step is R + U + S and a one-step-off step max(R, U) + S, so the model's speed-up is
(R + U + S) / (max(R, U) + S).

Writes benchmarks/results/staleness.json and staleness.md (staleness_shared.* with `--shared-cores`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PHASES = ["time/step_s", "time/rollout_wait_s", "time/generate_s", "time/verify_s", "time/update_s", "time/sync_s",
          "rollout/overlap_frac", "batch/staleness_mean"]


def run_arm(args, work: Path, address: str, k: int) -> dict:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{work}/mlflow.db"
    cmd = [sys.executable, "-m", "gcpo.cli", "train", "--name", f"staleness-{k}", f"model.name={args.model}",
           f"trainer.steps={args.steps}", "trainer.eval_every=0", f"trainer.checkpoint_every={args.steps}",
           f"rollout.prompts_per_step={args.prompts}", f"rollout.group_size={args.group}",
           f"rollout.max_new_tokens={args.max_new_tokens}", f"rollout.max_staleness={k}",
           "trainer.placement_resource=trainer", "rollout.placement_resource=generator",
           f"cluster.address={address}", f"tracking.uri={uri}", "tracking.experiment=staleness",
           "tracking.log_rollouts_every=0", f"trainer.output_dir={work}/runs"]
    started = time.time()
    subprocess.run(cmd, check=True, cwd=work, env=dict(os.environ, RAY_AUTH_MODE="token"))
    wall = time.time() - started
    client = MlflowClient(tracking_uri=uri)
    run = client.search_runs([client.get_experiment_by_name("staleness").experiment_id],
                             filter_string=f"tags.`gcpo.run_name` = 'staleness-{k}'")[0]
    per_step = {key: [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
                for key in PHASES}
    mean = {key: statistics.fmean(v[1:]) for key, v in per_step.items() if len(v) > 1}
    return {"wall_s": wall, "per_step": per_step, "mean": mean}


def pin_nodes(session_ids: list[int]) -> None:
    """Pin the head node's processes to core 0 and the worker node's to core 1, with every descendant (Ray's
    workers start sessions of their own under their raylet; the ones it forks later inherit the pinning)."""
    import psutil

    for proc in psutil.process_iter():
        try:
            sid = os.getsid(proc.pid)
            if sid not in session_ids:
                continue
            core = [session_ids.index(sid) % 2]
            for member in [proc, *proc.children(recursive=True)]:
                member.cpu_affinity(core)
        except (psutil.Error, ProcessLookupError):
            continue


def model_speedup(sync_arm: dict) -> dict:
    m = sync_arm["mean"]
    rollouts, update, push = m["time/generate_s"] + m["time/verify_s"], m["time/update_s"], m["time/sync_s"]
    return {"rollouts_s": rollouts, "update_s": update, "push_s": push,
            "sync_step_s": rollouts + update + push, "one_step_off_step_s": max(rollouts, update) + push,
            "speedup": (rollouts + update + push) / (max(rollouts, update) + push)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--arms", default="0,1", help="rollout.max_staleness values, in order (first = the base)")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--shared-cores", action="store_true", help="do not pin each node to its own core")
    args = parser.parse_args()
    from gcpo.cluster.local import start_cluster, stop_cluster
    from gcpo.cluster.record import ClusterSpec

    work = Path(tempfile.mkdtemp(prefix="gcpo-bench-staleness-"))
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    if not args.shared_cores:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "1"  # read where the generators are started (rank 0)
    record = start_cluster(ClusterSpec(num_cpus=2, head_resource="trainer", workers=1, worker_cpus=2,
                                       worker_resource="generator"))
    try:
        if not args.shared_cores:
            pin_nodes(record.session_ids)
        arms = {int(k): run_arm(args, work, record.gcs_address, int(k)) for k in args.arms.split(",")}
    finally:
        stop_cluster(record)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU",
              "settings": vars(args), "pinned": not args.shared_cores, "arms": arms, "model": model_speedup(arms[min(arms)]),
              "load_before": load_before, "load_after": Path("/proc/loadavg").read_text().split()[:3]}
    md = _table(args, result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "staleness_shared" if args.shared_cores else "staleness"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / f"{name}.md").write_text(md)
    print(md)


def _table(args, result: dict) -> str:
    arms = result["arms"]
    names = [f"staleness {k}" for k in arms]
    lines = ["| per step (mean over steps 2..) | " + " | ".join(names) + " |", "|---" * (len(arms) + 1) + "|"]
    for key in PHASES:
        lines.append(f"| `{key}` | " + " | ".join(f"{a['mean'].get(key, float('nan')):.2f}" for a in arms.values())
                     + " |")
    lines.append("| run wall clock (s, start-up included) | " + " | ".join(f"{a['wall_s']:.0f}" for a in arms.values())
                 + " |")
    base = arms[min(arms)]["mean"]["time/step_s"]
    lines.append("| **step / staleness 0's** | " + " | ".join(
        f"**{a['mean']['time/step_s'] / base:.2f}x**" for a in arms.values()) + " |")
    m = result["model"]
    model = (f"\nModel (not a measurement) from the staleness-0 arm's phases: rollouts R = {m['rollouts_s']:.2f} s, "
             f"update U = {m['update_s']:.2f} s, push S = {m['push_s']:.2f} s; on separate hardware a synchronous "
             f"step is R + U + S = {m['sync_step_s']:.2f} s and a one-step-off step max(R, U) + S = "
             f"{m['one_step_off_step_s']:.2f} s: **{m['speedup']:.2f}x** expected.\n")
    return (f"Staleness, {args.model}, {args.prompts} prompts x G={args.group}, {args.max_new_tokens} max new tokens, "
            f"{args.steps} steps; trainer on the head node, generator on a worker node of a local cluster (one "
            f"machine: {result['machine']}; "
            f"{'each node pinned to its own core' if result['pinned'] else 'both nodes on both cores'}); "
            f"{result['date']}; load average before {' '.join(result['load_before'])}, "
            f"after {' '.join(result['load_after'])}.\n\n" + "\n".join(lines) + "\n" + model)


if __name__ == "__main__":
    main()
