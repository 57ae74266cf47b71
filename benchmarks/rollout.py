"""Rollout speed: the vLLM generator pool against the transformers `generate` fallback, in one run.

Both engines get the same model (SmolLM2-135M-Instruct, fp32, by default), the same prompts (the default task's
first `--prompts` training items, rendered with the chat template and system prompt), the same group size G, the
same `--max-new-tokens`, temperature 1, top-p 1, and no stop strings, so both generate until EOS or the token
limit. No per-sample seed (a training step's default): the pool sends one request per prompt with n = G, which
shares the prompt's KV cache across the group. Throughput is generated tokens (every completion token, EOS
included) per second of wall time of one `generate` call over all prompts, after a short warm-up call on each
engine. The weight-sync time is the mean of `--syncs` `update_weights` of the full state dict (the trainer's copy,
loaded with transformers); the log-prob agreement of the pool's samples with that trainer is reported too.

    .venv/bin/python benchmarks/rollout.py [--prompts 16] [--group 4] [--max-new-tokens 128] [--generators 1]
                                           [--cpus-per-generator 2] [--syncs 3] [--model smollm2-135m-instruct]

Writes benchmarks/results/rollout.json and rollout.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--generators", type=int, default=1)
    parser.add_argument("--cpus-per-generator", type=float, default=2.0)
    parser.add_argument("--syncs", type=int, default=3)
    parser.add_argument("--model", default="smollm2-135m-instruct")
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

    from gcpo.cluster.runtime import init_ray
    from gcpo.config import load_config
    from gcpo.models import resolve_model
    from gcpo.rollout import SamplingSettings, TransformersEngine, logprob_agreement
    from gcpo.rollout.vllm_pool import VLLMPool
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

    init_ray(None, num_cpus=max(4, int(args.generators * args.cpus_per_generator + 0.999)))
    start = time.perf_counter()
    pool = VLLMPool(cfg.rollout, model_dir)
    startup_s = time.perf_counter() - start
    try:
        vllm_run, results = timed_generate(pool, prompts, settings)
        print(f"[bench] vllm pool: {vllm_run['tokens']} tokens in {vllm_run['seconds']:.1f} s = "
              f"{vllm_run['tokens_per_s']:.1f} tok/s (start-up {startup_s:.0f} s)", flush=True)
        trainer = AutoModelForCausalLM.from_pretrained(model_dir)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        agreement = logprob_agreement(trainer, results, pad_token_id=pad)
        state = trainer.state_dict()
        sync_s = [pool.update_weights(state, version) for version in range(1, args.syncs + 1)]
    finally:
        pool.shutdown()

    ratio = vllm_run["tokens_per_s"] / hf_run["tokens_per_s"]
    print(f"[bench] ratio vllm/transformers = {ratio:.2f}x; weight sync mean {statistics.mean(sync_s):.2f} s "
          f"({', '.join(f'{s:.2f}' for s in sync_s)}); agreement mean {agreement.mean_abs_diff:.1e} "
          f"max {agreement.max_abs_diff:.1e}", flush=True)
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
        "vllm_pool": {**vllm_run, "startup_s": startup_s},
        "ratio": ratio,
        "weight_sync_s": {"mean": statistics.mean(sync_s), "each": sync_s},
        "logprob_agreement": {"mean_abs_diff": agreement.mean_abs_diff, "max_abs_diff": agreement.max_abs_diff,
                              "num_tokens": agreement.num_tokens},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rollout.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / "rollout.md").write_text(markdown(record))
    print(f"[bench] wrote {RESULTS / 'rollout.json'} and rollout.md", flush=True)


def markdown(r: dict) -> str:
    """The results as a short Markdown page: settings, machine, date, command, table, sync, agreement."""
    s, hf, vl, m = r["settings"], r["transformers"], r["vllm_pool"], r["machine"]
    return (
        "# Rollout throughput: vLLM generator pool vs transformers `generate`\n\n"
        f"{r['model']}, {s['prompts']} prompts x G={s['group']} = {vl['sequences']} sequences, "
        f"max {s['max_new_tokens']} new tokens, temperature 1, no stop strings; pool of {s['generators']} "
        f"generator(s) x {s['cpus_per_generator']:g} CPU; {m['cpu_cores']}-core {m['cpu']} CPU, no GPU; "
        f"{r['date']}; 1-minute load average {m['load_average'][0]:.1f} before, {m['load_average'][1]:.1f} "
        "after (above the core count means other work shared the CPU).\n\n"
        f"    {r['command']}\n\n"
        "| engine | tokens | seconds | tokens/s |\n| --- | --- | --- | --- |\n"
        f"| transformers generate | {hf['tokens']} | {hf['seconds']:.1f} | {hf['tokens_per_s']:.1f} |\n"
        f"| vLLM pool | {vl['tokens']} | {vl['seconds']:.1f} | {vl['tokens_per_s']:.1f} |\n\n"
        f"Ratio (pool / transformers): **{r['ratio']:.2f}x**. Pool start-up: {vl['startup_s']:.0f} s.\n\n"
        f"Weight sync (`update_weights`, full state dict through /dev/shm): mean "
        f"{r['weight_sync_s']['mean']:.2f} s over {len(r['weight_sync_s']['each'])} syncs.\n\n"
        f"Log-prob agreement of the pool's samples with the trainer (transformers fp32): mean |diff| "
        f"{r['logprob_agreement']['mean_abs_diff']:.1e}, max {r['logprob_agreement']['max_abs_diff']:.1e} "
        f"over {r['logprob_agreement']['num_tokens']} tokens.\n"
    )


if __name__ == "__main__":
    main()
