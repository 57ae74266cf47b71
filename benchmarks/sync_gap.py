"""The sync check's two gaps for each dtype pair (trainer fp32/bf16 x generators fp32/bf16), on a real vLLM pool.

The sync check compares the generators' log-probs of their sampled tokens with the trainer's recomputation
(`gcpo.rollout.logprob_agreement`: mean |diff| over the tokens). For each pair this measures
- the in-sync gap: the pool holds exactly the trainer's weights (sent with `update_weights`, as training does), so
  what remains is kernel and rounding noise;
- the skipped-sync gap: the trainer took one update that the pool never received (the stale generators' samples
  against the updated trainer), for each update in `SKIPS`: AdamW on the negative mean log-prob of the pool's own
  samples, computed on an fp32 copy of the weights and rounded to the trainer's dtype (what bf16 mixed precision
  does with its fp32 master weights).
Each gap is measured on `--repeats` sampling seeds: the in-sync row reports the largest mean, the skipped rows the
smallest, the numbers a threshold must sit between. The thresholds in `gcpo.rollout.agreement.SYNC_TOLERANCE` are
chosen from these (see its docstring).

    flock /tmp/gcpo-heavy.lock .venv/bin/python benchmarks/sync_gap.py [--model tiny] [--prompts 8] [--group 4]
                                                                       [--max-new-tokens 16] [--repeats 3]
                                                                       [--tag NAME]

One pool per generator dtype (1 generator x 1 CPU), started, measured against both trainer dtypes, shut down.
Writes benchmarks/results/sync_gap.json and sync_gap.md (sync_gap_TAG.* with `--tag`).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DTYPES = ("float32", "bfloat16")
# skipped update -> (AdamW learning rate, optimiser steps). 5e-5 is trainer.lr's default (one step of a run);
# 1e-2 x 3 is the negative control of tests/rollout.
SKIPS: dict[str, tuple[float, int]] = {
    "1 step, lr 5e-5": (5e-5, 1),
    "1 step, lr 1e-3": (1e-3, 1),
    "3 steps, lr 1e-2": (1e-2, 3),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tag", default="", help="results file suffix: sync_gap_TAG.json (for another model)")
    return parser.parse_args()


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def cpu_flags_that_matter() -> list[str]:
    from gcpo.eval_cache import cpu_flags

    return sorted(name for name, present in cpu_flags().items() if present)


def updated_copy(master, results, dtype: str, lr: float, steps: int):
    """`master` (fp32) after `steps` AdamW steps at `lr` on `results`' samples, rounded to `dtype`."""
    import torch

    from gcpo.rollout.agreement import updated_on_samples

    return updated_on_samples(master, results, lr=lr, steps=steps).to(getattr(torch, dtype)).eval()


def measure_pair(pool, master, trainer_dtype: str, prompts, args, version: int) -> dict:
    """In-sync and skipped-sync gaps of one trainer dtype against the pool's generators."""
    import torch

    from gcpo.rollout import SamplingSettings, logprob_agreement

    trainer = copy.deepcopy(master).to(getattr(torch, trainer_dtype)).eval()
    pool.update_weights(trainer.state_dict(), version=version)
    settings = [SamplingSettings(n=args.group, temperature=1.0, max_new_tokens=args.max_new_tokens, seed=s)
                for s in range(args.repeats)]
    samples = [pool.generate(prompts, s) for s in settings]
    in_sync = [logprob_agreement(trainer, r, pad_token_id=0) for r in samples]
    skipped = {}
    for name, (lr, steps) in SKIPS.items():
        updated = updated_copy(master, samples[0], trainer_dtype, lr, steps)
        gaps = [logprob_agreement(updated, r, pad_token_id=0) for r in samples]
        skipped[name] = {"mean_abs_diff": [a.mean_abs_diff for a in gaps], "min": min(a.mean_abs_diff for a in gaps)}
    return {"in_sync": {"mean_abs_diff": [a.mean_abs_diff for a in in_sync],
                        "max_abs_diff": [a.max_abs_diff for a in in_sync],
                        "max": max(a.mean_abs_diff for a in in_sync),
                        "tokens": [a.num_tokens for a in in_sync]},
            "skipped": skipped}


def measure(args) -> dict:
    """Every (trainer, generator) pair: one pool per generator dtype."""
    import ray
    import torch
    from transformers import AutoModelForCausalLM

    from gcpo.cluster.runtime import init_ray
    from gcpo.config import ModelConfig, RolloutConfig
    from gcpo.models import resolve_model
    from gcpo.rollout.vllm_pool import VLLMPool

    model_dir = resolve_model(ModelConfig(name=args.model))
    master = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(1, 1000, (4 + i % 5,), generator=gen).tolist() for i in range(args.prompts)]
    pairs = {}
    for generator_dtype in DTYPES:
        init_ray(None, num_cpus=4)
        start = time.perf_counter()
        pool = VLLMPool(RolloutConfig(num_generators=1, cpus_per_generator=1.0, memory_fraction=0.05,
                                      dtype=generator_dtype), model_dir)
        print(f"[bench] {generator_dtype} pool started in {time.perf_counter() - start:.0f} s", flush=True)
        try:
            for version, trainer_dtype in enumerate(DTYPES, start=1):
                pair = measure_pair(pool, master, trainer_dtype, prompts, args, version)
                pairs[f"{trainer_dtype}/{generator_dtype}"] = pair
                print(f"[bench] trainer {trainer_dtype} / generators {generator_dtype}: in sync "
                      f"{pair['in_sync']['max']:.2e}, skipped " +
                      ", ".join(f"{k} {v['min']:.2e}" for k, v in pair["skipped"].items()), flush=True)
        finally:
            pool.shutdown()
            ray.shutdown()
    return pairs


def main() -> None:
    args = parse_args()
    before = uptime()
    started = time.perf_counter()
    pairs = measure(args)
    record = {
        "date": datetime.date.today().isoformat(),
        "machine": {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
                    "cpu_cores": os.cpu_count(), "cpu_flags": cpu_flags_that_matter(), "gpu": None,
                    "uptime_before": before, "uptime_after": uptime()},
        "command": " ".join([".venv/bin/python", "benchmarks/sync_gap.py", *sys.argv[1:]]),
        "settings": {"model": args.model, "prompts": args.prompts, "group": args.group,
                     "max_new_tokens": args.max_new_tokens, "repeats": args.repeats, "temperature": 1.0,
                     "generators": 1, "skips": {k: {"lr": lr, "steps": n} for k, (lr, n) in SKIPS.items()}},
        "seconds": time.perf_counter() - started,
        "pairs": pairs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"sync_gap_{args.tag}" if args.tag else "sync_gap"
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(record))
    print(markdown(record), flush=True)


def markdown(r: dict) -> str:
    """One row per dtype pair: the largest in-sync gap, the smallest skipped-sync gap of each update, the
    threshold `gcpo.rollout.agreement` uses for the pair."""
    from gcpo.rollout.agreement import sync_tolerance

    s, m = r["settings"], r["machine"]
    head = "| trainer / generators | in sync (max) | " + " | ".join(f"skipped: {k} (min)" for k in SKIPS)
    rows = [head + " | threshold |", "|---" * (len(SKIPS) + 3) + "|"]
    for pair, p in r["pairs"].items():
        trainer_dtype, generator_dtype = pair.split("/")
        skipped = " | ".join(f"{p['skipped'][k]['min']:.2e}" for k in SKIPS)
        rows.append(f"| {pair} | {p['in_sync']['max']:.2e} | {skipped} | "
                    f"{sync_tolerance(trainer_dtype, generator_dtype):.0e} |")
    return (
        "# The sync check's gaps per dtype pair\n\n"
        f"Mean |generator log-prob - trainer log-prob| over the sampled tokens; model {s['model']}, {s['prompts']} "
        f"prompts x G={s['group']}, {s['max_new_tokens']} new tokens, temperature 1, {s['repeats']} sampling seeds; "
        "a vLLM pool of 1 generator x 1 CPU. The in-sync column is the largest of the seeds' means, each skipped "
        "column the smallest.\n\n"
        f"Date {r['date']}; machine {m['platform']}, {m['cpu_cores']} cores, CPU flags {', '.join(m['cpu_flags'])}; "
        f"{r['seconds']:.0f} s.\n\nCommand: `{r['command']}`\n\n"
        f"uptime before: `{m['uptime_before']}`\n\nuptime after: `{m['uptime_after']}`\n\n"
        + "\n".join(rows) + "\n"
    )


if __name__ == "__main__":
    main()
