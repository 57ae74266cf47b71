"""Where the policy update's time goes, per micro-batch and per dtype, against this machine's GEMM rate.

The update of one study-regime step (`configs/study.yaml`: 4 prompts x G = 8, two mini-batches, the shared-prompt
forward, micro-batches of one group), on a synthetic batch of the same shape as the pilot's steps (prompts of
60-80 tokens, responses of 10-35 tokens: about 940 token slots a step, as `batch/token_slots` logged there),
through the same code a run uses: the policy in its DeepSpeed engine (`build_policy`, one process, gloo, ZeRO 0),
`gcpo.packing.shared_prefix_logprobs`, `policy_engine.backward`, `step_with_grad_norm`. Per dtype (fp32, and
bf16 with fp32 master weights) it times:
- the no-grad pass over the step's 32 rows (old log-probs, entropy: `time/old_logprobs_s`; a KL arm runs it twice,
  once more on the reference model);
- per micro-batch, the forward with grad and the backward; per update, the optimiser step (with the gradient norm);
- the GEMM rate of the dtype (`gcpo.hardware.gemm_rate`: 1024 x 1024 `F.linear`, the model's kernels, for at
  least 2 s, the same threads);
- `update_total_fused`: the update as `update_policy` runs it now, the first mini-batch's old log-probs taken from
  its own forward (`update_total` less the no-grad pass over the first mini-batch's micro-batches, timed apart);
- with `--operators`: one more pass of the step's four micro-batches (forward with grad and backward, fp32 first
  dtype only) under `torch.profiler`, its self CPU time per operator group (matmul, attention, the log-softmax and
  gathers over the vocabulary, element-wise ops of norms / rotary embeddings / activations, autograd's
  accumulation) and the slowest operators: where the time that is not matmul goes.
FLOPs are counted from the model's shapes and the packed batch: 2 x (non-embedding linear weights) per token
slot, 4 x hidden x (allowed keys) per layer for attention (the 4-D mask's allowed entries, so the shared prompt
is counted once), 2 x vocab x hidden per position the LM head keeps; backward = 2 x forward. The achieved rate is
FLOPs / seconds; its share of the GEMM rate says how much is not matmul.

    .venv/bin/python benchmarks/update_profile.py [--model smollm2-warmstart] [--dtypes float32,bfloat16]
                                                  [--repeats 3] [--threads N] [--operators] [--tag T]

Best of `--repeats` (each repeat a new batch of new shapes). Writes benchmarks/results/update_profile.json and
update_profile.md (update_profile_<tag>.* with `--tag`; date, machine, CPU flags, command, `uptime` before and
after).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROMPTS, GROUP = 4, 8


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-warmstart")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--operators", action="store_true", help="also profile by operator (torch.profiler)")
    parser.add_argument("--tag", default="", help="write update_profile_<tag>.* instead of update_profile.*")
    return parser.parse_args()


def synthetic_batch(seed: int, vocab: int) -> tuple[list, list]:
    """4 groups of 8: one prompt of 60-80 tokens each, responses of 10-35 tokens (the pilot's shapes)."""
    rng = random.Random(seed)
    prompts, responses = [], []
    for _ in range(PROMPTS):
        prompt = [rng.randrange(100, vocab) for _ in range(rng.randint(60, 80))]
        for _ in range(GROUP):
            prompts.append(prompt)
            responses.append([rng.randrange(100, vocab) for _ in range(rng.randint(10, 35))])
    return prompts, responses


def forward_flops(model_config, groups) -> float:
    """FLOPs of one shared-prompt forward of `groups` (see the module docstring)."""
    from gcpo.packing import pack

    c = model_config
    hidden, layers, vocab = c.hidden_size, c.num_hidden_layers, c.vocab_size
    kv = hidden * c.num_key_value_heads // c.num_attention_heads
    per_layer = hidden * (2 * hidden + 2 * kv) + 3 * hidden * c.intermediate_size  # q, o, k, v; gate, up, down
    packed = pack(groups, pad_token_id=0)
    slots = packed.input_ids.numel()
    kept = packed.input_ids.shape[0] * packed.keep if isinstance(packed.keep, int) else packed.keep.numel()
    attention = 4 * hidden * float(packed.allowed.sum()) * layers
    return 2.0 * per_layer * layers * slots + attention + 2.0 * vocab * hidden * kept


def init_process_group() -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")


def profile_dtype(model_dir: str, dtype: str, repeats: int, operators: bool = False) -> dict:
    """Best-of-`repeats` seconds and rates of each phase of one step's update in `dtype`."""
    from gcpo.config import load_config
    from gcpo.models import load_causal_lm
    from gcpo.packing import group_consecutive, shared_prefix_logprobs
    from gcpo.hardware import gemm_rate
    from gcpo.training.deepspeed_policy import build_policy, step_with_grad_norm

    cfg = load_config(str(ROOT / "configs" / "study.yaml"), preset="gcpo")
    model = load_causal_lm(model_dir, dtype)
    policy_engine = build_policy(model, cfg.trainer, dtype)
    best: dict[str, float] = {}
    flops = 0.0
    for repeat in range(repeats):
        prompts, responses = synthetic_batch(repeat, model.config.vocab_size)
        micros = [group_consecutive(prompts[i:i + GROUP], responses[i:i + GROUP]) for i in range(0, len(prompts), GROUP)]
        flops = sum(forward_flops(model.config, groups) for groups in micros)
        times = {"no_grad_pass": 0.0, "no_grad_first_mini": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
        started = time.perf_counter()
        with torch.no_grad():
            for k, groups in enumerate(micros):
                t0 = time.perf_counter()
                shared_prefix_logprobs(policy_engine, groups, pad_token_id=0, with_entropy=True)
                times["no_grad_first_mini"] += (time.perf_counter() - t0) if k < len(micros) // 2 else 0.0
        times["no_grad_pass"] = time.perf_counter() - started
        for mini in (micros[: len(micros) // 2], micros[len(micros) // 2:]):
            for k, groups in enumerate(mini):
                policy_engine.set_gradient_accumulation_boundary(k == len(mini) - 1)
                t0 = time.perf_counter()
                logp, mask, _ = shared_prefix_logprobs(policy_engine, groups, pad_token_id=0)
                loss = -(logp * mask).sum() / mask.sum()
                t1 = time.perf_counter()
                policy_engine.backward(loss)
                t2 = time.perf_counter()
                times["forward"] += t1 - t0
                times["backward"] += t2 - t1
            t3 = time.perf_counter()
            step_with_grad_norm(policy_engine)
            times["optimizer"] += time.perf_counter() - t3
        times["update_total"] = time.perf_counter() - started
        times["update_total_fused"] = times["update_total"] - times["no_grad_first_mini"]
        best = {k: min(v, best.get(k, float("inf"))) for k, v in times.items()}
    gemm = gemm_rate(dtype)
    rates = {"no_grad_pass": flops / best["no_grad_pass"], "forward": flops / best["forward"],
             "backward": 2 * flops / best["backward"], "update_total": 4 * flops / best["update_total"],
             "update_total_fused": 3.5 * flops / best["update_total_fused"]}
    out = {"dtype": dtype, "seconds": best, "forward_gflop": flops / 1e9, "gemm_gflops": gemm / 1e9,
           "achieved_gflops": {k: v / 1e9 for k, v in rates.items()},
           "share_of_gemm": {k: v / gemm for k, v in rates.items()}}
    if operators:
        out["operators"] = operator_profile(policy_engine, micros)
    return out


# Operator groups of the profile: self CPU time is summed per group (anything unlisted is "other").
OPERATOR_GROUPS = {
    "matmul (linear layers, LM head)": ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul"),
    "attention (SDPA over the 4-D mask)": ("aten::_scaled_dot_product_flash_attention_for_cpu",
                                            "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
                                            "aten::_scaled_dot_product_attention_math", "aten::_softmax",
                                            "aten::_softmax_backward_data"),
    "vocabulary (log-softmax, gather, index)": ("aten::_log_softmax", "aten::_log_softmax_backward_data",
                                                 "aten::index", "aten::_index_put_impl_", "aten::gather",
                                                 "aten::scatter_add_", "aten::unique_consecutive", "aten::_unique2",
                                                 "aten::embedding_dense_backward"),
    "element-wise (norms, rotary, activations, their backward)": (
        "aten::mul", "aten::add", "aten::sub", "aten::div", "aten::pow", "aten::rsqrt", "aten::mean", "aten::sum",
        "aten::neg", "aten::cat", "aten::silu", "aten::silu_backward", "aten::where", "aten::exp", "aten::copy_",
        "aten::fill_", "aten::zero_", "aten::slice_backward", "aten::clone", "aten::_to_copy", "aten::embedding"),
    "autograd accumulation (add_)": ("aten::add_",),
}


def operator_profile(policy_engine, micros) -> dict:
    """Self CPU seconds per operator group (`OPERATOR_GROUPS`) and the 12 slowest operators over one forward
    with grad and backward of each micro-batch (no optimiser step: the gradients are cleared after)."""
    from torch.profiler import ProfilerActivity, profile

    from gcpo.packing import shared_prefix_logprobs

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for k, groups in enumerate(micros):
            policy_engine.set_gradient_accumulation_boundary(k == len(micros) - 1)
            logp, mask, _ = shared_prefix_logprobs(policy_engine, groups, pad_token_id=0)
            policy_engine.backward(-(logp * mask).sum() / mask.sum())
    policy_engine.zero_grad()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    groups = dict.fromkeys([*OPERATOR_GROUPS, "other"], 0.0)
    for e in events:
        name = next((g for g, ops in OPERATOR_GROUPS.items() if e.key in ops), "other")
        groups[name] += e.self_cpu_time_total / 1e6
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]
    return {"total_s": total, "groups_s": groups,
            "top": [{"op": e.key, "self_s": e.self_cpu_time_total / 1e6, "calls": e.count} for e in top]}


def markdown(r: dict) -> str:
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in r["machine"]["cpu_flags"].items())
    rows = []
    for p in r["profiles"]:
        s, g, share = p["seconds"], p["achieved_gflops"], p["share_of_gemm"]
        for phase in ("no_grad_pass", "forward", "backward", "optimizer", "update_total", "update_total_fused"):
            rate = f"{g[phase]:.0f} ({share[phase]:.0%})" if phase in g else "-"
            rows.append(f"| {p['dtype']} | {phase} | {s[phase]:.2f} | {rate} |")
    gemms = "; ".join(f"{p['dtype']} {p['gemm_gflops']:.0f} GFLOP/s" for p in r["profiles"])
    return (
        "# The update of one study-regime step, by phase\n\n"
        f"{r['date']}; {r['machine']['cpu_cores']}-core {r['machine']['cpu']} ({flags}), no GPU; "
        f"{r['threads']} threads; model `{r['model']}`; best of {r['repeats']}.\n\n"
        f"    {r['command']}\n\n"
        f"uptime before: `{r['uptime_before']}`  \nuptime after: `{r['uptime_after']}`\n\n"
        f"One step: 4 prompts x G = 8, {r['profiles'][0]['forward_gflop']:.0f} GFLOP per forward over its 32 rows; "
        f"two optimiser updates. GEMM rate (1024^2 matmuls): {gemms}.\n\n"
        "| dtype | phase | seconds | GFLOP/s (share of the dtype's GEMM rate) |\n|---|---|---|---|\n"
        + "\n".join(rows) + "\n\n"
        "`forward` and `backward` are summed over the step's 4 micro-batches (2 per update); `update_total` is the "
        "no-grad pass, both updates' passes and the two optimiser steps (rate over 4 forwards' FLOPs); "
        "`update_total_fused` is that less the no-grad pass over the first mini-batch, whose old log-probs "
        "`update_policy` now takes from its own forward (rate over 3.5 forwards' FLOPs).\n"
        + "".join(operator_markdown(p) for p in r["profiles"] if "operators" in p)
    )


def operator_markdown(p: dict) -> str:
    ops = p["operators"]
    groups = "\n".join(f"| {g} | {s:.2f} | {s / ops['total_s']:.0%} |" for g, s in ops["groups_s"].items())
    top = "\n".join(f"| `{o['op']}` | {o['self_s']:.2f} | {o['calls']} |" for o in ops["top"])
    return (f"\n## By operator ({p['dtype']}): the 4 micro-batches' forward with grad and backward under "
            f"torch.profiler, {ops['total_s']:.2f} s of self CPU time (profiler overhead included)\n\n"
            "| operator group | self s | share |\n|---|---|---|\n" + groups + "\n\n"
            "| slowest operators | self s | calls |\n|---|---|---|\n" + top + "\n")


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(ROOT / "platform"))
    from gcpo.config import ModelConfig
    from gcpo.eval_cache import cpu_flags, cpu_model
    from gcpo.models import resolve_model

    torch.set_num_threads(args.threads)
    init_process_group()
    model_dir = str(resolve_model(ModelConfig(name=args.model)))
    before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    profiles = []
    for n, dtype in enumerate(args.dtypes.split(",")):
        profiles.append(profile_dtype(model_dir, dtype, args.repeats, operators=args.operators and n == 0))
        print(json.dumps(profiles[-1], indent=1), flush=True)
    record = {
        "date": datetime.date.today().isoformat(),
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpu_cores": os.cpu_count(),
                    "cpu_flags": cpu_flags(), "gpu": None},
        "command": " ".join([".venv/bin/python", "benchmarks/update_profile.py", *sys.argv[1:]]),
        "model": args.model, "threads": args.threads, "repeats": args.repeats,
        "uptime_before": before, "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "profiles": profiles,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"update_profile_{args.tag}" if args.tag else "update_profile"
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(record))
    print(markdown(record), flush=True)


if __name__ == "__main__":
    main()
