"""Shared-prompt forward + backward (`gcpo.packing.shared_prefix_logprobs`) against the padded one
(`gcpo.logprobs.response_logprobs`), on one process's CPU threads.

Workload (issue #19): `--groups` groups of `--group-size` responses; prompts of 66-74 random token ids, responses of
20-64 (uniform, seeded). The padded side runs all rows in one forward (what the trainer does with a micro-batch
of whole groups); the shared side runs all groups in one forward, one group per row ("rows") and, for comparison,
all groups in one padding-free row ("padding-free"). Each timed step is forward + backward of
`sum(advantage * logp)` with fixed random advantages; the median of `--reps` steps after one warm-up step each is
reported, the methods interleaved so machine-load drift hits all alike. Also printed: the largest and mean
per-token log-prob difference and the relative norm of the gradient difference (overall, and the worst parameter
tensor) against the padded forward.

The timing is indicative only when other work shares the cores (the load average is printed before and after).

    .venv/bin/python benchmarks/shared_prefix.py [--groups 8] [--group-size 4] [--reps 3] [--attn sdpa]
                                                 [--model smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from gcpo.config import ModelConfig
    from gcpo.logprobs import response_logprobs
    from gcpo.models import resolve_model
    from gcpo.packing import forward_tokens, shared_prefix_logprobs

    print(f"[bench] load before: {loadavg()}  torch threads: {torch.get_num_threads()}", flush=True)
    path = resolve_model(ModelConfig(name=args.model))
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=args.attn)
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    vocab = model.config.vocab_size

    g = torch.Generator().manual_seed(args.seed)

    def ints(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    def tokens(n):
        return torch.randint(3, vocab, (n,), generator=g).tolist()

    groups = [(tokens(ints(66, 74)), [tokens(ints(20, 64)) for _ in range(args.group_size)])
              for _ in range(args.groups)]
    prompts = [p for p, rs in groups for _ in rs]
    responses = [r for _, rs in groups for r in rs]
    adv = torch.randn(len(responses), generator=g)
    padded_slots = len(prompts) * max(len(p) + len(r) for p, r in zip(prompts, responses))
    real = sum(len(p) + len(r) for p, r in zip(prompts, responses))
    print(f"[bench] {path.name} ({args.attn}, fp32): {args.groups} groups x G={args.group_size}, "
          f"response tokens {sum(map(len, responses))}; token slots per forward: padded {padded_slots} "
          f"(real {real}), shared rows {forward_tokens(groups)}, shared padding-free "
          f"{forward_tokens(groups, padding_free=True)}", flush=True)

    methods = {
        "padded": lambda: response_logprobs(model, prompts, responses, pad_token_id=pad,
                                            micro_batch_size=len(prompts)),
        "shared rows": lambda: shared_prefix_logprobs(model, groups, pad_token_id=pad),
        "shared padding-free": lambda: shared_prefix_logprobs(model, groups, pad_token_id=pad, padding_free=True),
    }

    def step(fn):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        logp, mask, _ = fn()
        (adv[:, None] * logp * mask).sum().backward()
        seconds = time.perf_counter() - t0
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        return seconds, logp.detach(), mask, grads

    times: dict[str, list[float]] = {name: [] for name in methods}
    results = {}
    for name, fn in methods.items():  # warm-up, and the values to compare
        _, logp, mask, grads = step(fn)
        results[name] = (logp, mask, grads)
    for _ in range(args.reps):
        for name, fn in methods.items():
            times[name].append(step(fn)[0])

    base = statistics.median(times["padded"])
    ref_logp, mask, ref_grads = results["padded"]
    flat_ref = torch.cat([v.flatten() for v in ref_grads.values()])
    for name in methods:
        med = statistics.median(times[name])
        line = f"{name:>20}: {med:7.3f} s median of {[round(t, 3) for t in times[name]]}"
        if name != "padded":
            logp, _, grads = results[name]
            diff = (logp - ref_logp).abs() * mask
            flat = torch.cat([grads[n].flatten() for n in ref_grads])
            overall = ((flat - flat_ref).norm() / flat_ref.norm()).item()
            worst = max(((grads[n] - ref_grads[n]).norm() / ref_grads[n].norm().clamp_min(1e-30)).item()
                        for n in ref_grads)
            line += (f"  speed-up x{base / med:.2f}; logp diff max {diff.max().item():.2e} mean "
                     f"{(diff.sum() / mask.sum()).item():.2e}; grad rel diff overall {overall:.2e}, worst tensor "
                     f"{worst:.2e}")
        print(line, flush=True)
    print(f"[bench] load after: {loadavg()}  (timings are indicative only on shared cores)", flush=True)


if __name__ == "__main__":
    main()
