"""Rollout speed: the vLLM generator pool against the transformers `generate` fallback, in one run.

Both engines get the same model (SmolLM2-135M-Instruct, fp32, by default), the same prompts (the default task's
first `--prompts` training items, rendered with the chat template and system prompt), the same group size G, the
same `--max-new-tokens`, temperature 1, top-p 1, and no stop strings, so both generate until EOS or the token
limit. The pool is timed twice: without a seed (one request per prompt with n = G) and seeded as a training step
samples (`SamplingSettings.seed` set: every sample its own n = 1 request with its own seed, the path training
uses; prefix caching shares the prompt's KV cache across a group either way). transformers `generate` is timed
once, unseeded (its batched sampling is the same either way). Throughput is generated tokens (every completion
token, EOS included) per second of wall time of one `generate` call over all prompts, after a short warm-up call
on each engine. The weight-sync time is the mean of `--syncs` `update_weights` of the full state dict (the
trainer's copy, loaded with transformers), and of a LoRA run's update (rank 16 on every projection: the adapted
layers' merged weights only); the log-prob agreement of the pool's samples with that trainer is reported too.

    .venv/bin/python benchmarks/rollout.py [--prompts 16] [--group 4] [--max-new-tokens 128] [--generators 1]
                                           [--cpus-per-generator 2] [--syncs 3] [--model smollm2-135m-instruct]
                                           [--variants "eager fp32,compiled fp32,eager bf16"]

Pool variants, each started, timed and shut down in turn (`VARIANTS`): the default (eager, fp32), compiled
(`rollout.enforce_eager=false`: vLLM's torch.compile, cached on disk after the first start), and a bf16
generator against the fp32 trainer (faster matmuls, but its log-probs no longer match the trainer's to fp32
precision: the agreement column shows by how much).

Writes benchmarks/results/rollout.json and rollout.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# pool variant -> (rollout overrides, generator dtype); the first is the default configuration
VARIANTS: dict[str, tuple[dict, str]] = {
    "eager fp32": ({}, "float32"),
    "compiled fp32": ({"enforce_eager": False}, "float32"),
    "eager bf16": ({}, "bfloat16"),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--generators", type=int, default=1)
    parser.add_argument("--cpus-per-generator", type=float, default=2.0)
    parser.add_argument("--syncs", type=int, default=3)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"pool variants, in order (the first is the headline ratio): {', '.join(VARIANTS)}")
    return parser.parse_args()


def timed_generate(engine, prompts, settings) -> tuple[dict, list]:
    """A warm-up call on two prompts, then one timed call on every prompt; (numbers, results)."""
    engine.generate(prompts[:2], settings)
    start = time.perf_counter()
    results = engine.generate(prompts, settings)
    seconds = time.perf_counter() - start
    tokens = sum(len(c.token_ids) for r in results for c in r.completions)
    return {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds,
            "sequences": sum(len(r.completions) for r in results)}, results


def main() -> None:
    args = parse_args()
    load_before = os.getloadavg()[0]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gcpo.config import load_config
    from gcpo.models import resolve_model
    from gcpo.rollout import SamplingSettings, TransformersEngine
    from gcpo.tasks import load_task, render_prompts

    cfg = load_config(overrides=[f"model.name={args.model}", f"rollout.num_generators={args.generators}",
                                 f"rollout.cpus_per_generator={args.cpus_per_generator}"])
    model_dir = resolve_model(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = render_prompts(tokenizer, load_task(cfg.task, "train").items[: args.prompts])
    settings = SamplingSettings(n=args.group, temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens,
                                stop=())
    print(f"[bench] {len(prompts)} prompts x G={args.group}, max {args.max_new_tokens} new tokens", flush=True)

    hf = TransformersEngine(model_dir, seed=cfg.rollout.seed)
    hf_run, _ = timed_generate(hf, prompts, settings)
    del hf
    print(f"[bench] transformers: {hf_run['tokens']} tokens in {hf_run['seconds']:.1f} s = "
          f"{hf_run['tokens_per_s']:.1f} tok/s", flush=True)
    trainer = AutoModelForCausalLM.from_pretrained(model_dir)
    pools = {name: run_pool(args, cfg, model_dir, tokenizer, prompts, settings, trainer, name)
             for name in args.variants.split(",")}
    default = pools[next(iter(pools))]
    for run in pools.values():
        run["ratio"] = run["unseeded"]["tokens_per_s"] / hf_run["tokens_per_s"]
        run["seeded_ratio"] = run["seeded"]["tokens_per_s"] / hf_run["tokens_per_s"]
    record = {
        "date": datetime.date.today().isoformat(),
        "machine": {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
                    "cpu_cores": os.cpu_count(), "gpu": None,
                    # 1-minute load average before and after: other work on the machine slows both engines
                    "load_average": [load_before, os.getloadavg()[0]]},
        "command": " ".join([".venv/bin/python", "benchmarks/rollout.py", *sys.argv[1:]]),
        "model": f"{args.model} fp32",
        "settings": {"prompts": len(prompts), "group": args.group, "max_new_tokens": args.max_new_tokens,
                     "temperature": 1.0, "top_p": 1.0, "stop": [], "generators": args.generators,
                     "cpus_per_generator": args.cpus_per_generator},
        "transformers": hf_run,
        "pools": pools,
        # the default pool's figures under the keys earlier records used
        "vllm_pool": default["unseeded"] | {"startup_s": default["startup_s"]},
        "ratio": default["ratio"],
        "seeded_ratio": default["seeded_ratio"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rollout.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / "rollout.md").write_text(markdown(record))
    print(markdown(record), flush=True)


def run_pool(args, cfg, model_dir, tokenizer, prompts, settings, trainer, name: str) -> dict:
    """Start one pool variant, time it unseeded and seeded, check its agreement and time its syncs."""
    import ray

    from gcpo.cluster.runtime import init_ray
    from gcpo.rollout import logprob_agreement
    from gcpo.rollout.vllm_pool import VLLMPool

    overrides, dtype = VARIANTS[name]
    init_ray(None, num_cpus=max(4, int(args.generators * args.cpus_per_generator + 0.999)))
    start = time.perf_counter()
    pool = VLLMPool(dataclasses.replace(cfg.rollout, dtype=dtype, **overrides), model_dir)
    startup_s = time.perf_counter() - start
    try:
        unseeded, _ = timed_generate(pool, prompts, settings)
        seeded, results = timed_generate(pool, prompts, dataclasses.replace(settings, seed=cfg.rollout.seed))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        agreement = logprob_agreement(trainer, results, pad_token_id=pad)
        state = trainer.state_dict()
        sync_s = [pool.update_weights(state, version) for version in range(1, args.syncs + 1)]
        lora = lora_update(trainer, cfg)
        lora_sync_s = [pool.update_weights(lora, version + args.syncs) for version in range(1, args.syncs + 1)]
    finally:
        pool.shutdown()
        ray.shutdown()
    print(f"[bench] pool {name}: unseeded {unseeded['tokens_per_s']:.1f} tok/s, seeded {seeded['tokens_per_s']:.1f} "
          f"tok/s, start-up {startup_s:.0f} s, agreement mean {agreement.mean_abs_diff:.1e} max "
          f"{agreement.max_abs_diff:.1e}, sync {statistics.mean(sync_s):.2f} s (LoRA {statistics.mean(lora_sync_s):.2f} s)",
          flush=True)
    return {"unseeded": unseeded, "seeded": seeded, "startup_s": startup_s,
            "logprob_agreement": {"mean_abs_diff": agreement.mean_abs_diff, "max_abs_diff": agreement.max_abs_diff,
                                  "num_tokens": agreement.num_tokens},
            "weight_sync_s": {"mean": statistics.mean(sync_s), "each": sync_s, "tensors": len(state)},
            "lora_sync_s": {"mean": statistics.mean(lora_sync_s), "each": lora_sync_s, "tensors": len(lora)}}


def lora_update(trainer, cfg) -> dict:
    """A LoRA run's sync: rank-16 adapters (random B, so the merge is not the base) merged into the adapted
    layers; only those tensors."""
    import copy

    import torch

    from gcpo.config import LoraConfig
    from gcpo.training.lora import apply_lora, merged_weights, sync_names

    lora = dataclasses.replace(cfg.model.lora, rank=16) if cfg.model.lora.rank == 0 else cfg.model.lora
    model = apply_lora(copy.deepcopy(trainer), LoraConfig(**dataclasses.asdict(lora)))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 1e-3)
    return merged_weights({k: v for k, v in model.state_dict().items() if sync_names(k)}, lora.alpha / lora.rank)


def markdown(r: dict) -> str:
    """The results as a short Markdown page: settings, machine, date, command, one table row per engine."""
    s, hf, m = r["settings"], r["transformers"], r["machine"]
    rows = [f"| transformers `generate` (fp32, unseeded) | {hf['tokens']} | {hf['seconds']:.1f} | "
            f"{hf['tokens_per_s']:.1f} | 1.00x | | | |"]
    for name, p in r["pools"].items():
        a = p["logprob_agreement"]
        for kind in ("unseeded", "seeded"):
            run, ratio = p[kind], p["ratio" if kind == "unseeded" else "seeded_ratio"]
            extra = (f"{p['startup_s']:.0f} | {a['mean_abs_diff']:.1e} / {a['max_abs_diff']:.1e} | "
                     f"{p['weight_sync_s']['mean']:.2f} / {p['lora_sync_s']['mean']:.2f}") if kind == "seeded" else " | |"
            rows.append(f"| vLLM pool, {name}, {kind} | {run['tokens']} | {run['seconds']:.1f} | "
                        f"{run['tokens_per_s']:.1f} | **{ratio:.2f}x** | {extra} |")
    return (
        "# Rollout throughput: vLLM generator pool vs transformers `generate`\n\n"
        f"{r['model']} weights, {s['prompts']} prompts x G={s['group']}, max {s['max_new_tokens']} new tokens, "
        f"temperature 1, no stop strings; pool of {s['generators']} generator(s) x {s['cpus_per_generator']:g} CPU; "
        f"{m['cpu_cores']}-core {m['cpu']} CPU, no GPU; {r['date']}; 1-minute load average "
        f"{m['load_average'][0]:.1f} before, {m['load_average'][1]:.1f} after (above the core count means other "
        "work shared the CPU).\n\n"
        f"    {r['command']}\n\n"
        "Seeded = every sample its own request with its own seed, as a training step samples; unseeded = one "
        "request per prompt with n = G. Agreement: the seeded samples' generator log-probs against the fp32 "
        "trainer's (mean / max |diff|). Sync: seconds of a full-weight / a LoRA (rank 16, merged adapted layers) "
        "`update_weights`, mean of the syncs.\n\n"
        "| engine | tokens | seconds | tokens/s | / transformers | start-up (s) | agreement | sync full / LoRA (s) |\n"
        "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


if __name__ == "__main__":
    main()
