"""Time per training step: our trainer (Ray Train + DeepSpeed worker + generator pool) vs TRL's GRPOTrainer.

Both sides use the same model (SmolLM2-135M-Instruct by default), the same prompts (the default task's training
items rendered with the same chat template and system prompt), the same group size G, the same maximum number
of new tokens, the same learning rate and plain GRPO without KL (TRL beta 0 = our `grpo` preset with
`algorithm.kl_coef=0`), one process of training on this machine. Stop strings are off on both sides (TRL's
default generation has none), so both generate until EOS or the token limit.

**Like for like.** Each of our arms is compared only with TRL in the same configuration (`trl_setting`): full
fine-tuning with TRL's full fine-tuning, LoRA with TRL given the same `peft` LoRA config (rank, alpha, target
modules, dropout 0), fp32 with fp32 (`bf16=False`) and `model.dtype=bfloat16` (DeepSpeed bf16, fp32 master
weights, bf16 generators) with TRL `bf16=True`. TRL runs once per distinct setting the chosen arms need; an arm
with no TRL counterpart (bf16 generators beside an fp32 trainer) gets no ratio. How our update features are
implemented (the shared prompt, the token budget) is not a configuration: the arms that differ only in them all
face TRL's full fine-tuning in their dtype. With our vLLM backend, TRL also runs with its own vLLM generation
(`use_vllm=True, vllm_mode="colocate"`: an in-process vLLM engine beside the trained model, weights loaded into it
every step; TRL's defaults otherwise), and each arm gets a ratio against both TRLs (`--skip-trl-vllm`: only
TRL's `generate`).

Our per-step time is read back from the run's MLflow metrics, broken into generation, verification, old
log-probs, update and weight sync. TRL gives one number per step (timed by a callback). TRL is installed into the
project environment on first use (`trl==1.16.0`); nothing else needs it.

    .venv/bin/python benchmarks/step.py [--prompts 4] [--group 4] [--max-new-tokens 64] [--steps 3]
                                        [--backend vllm] [--model smollm2-135m-instruct] [--skip-trl]
                                        [--skip-trl-vllm]
                                        [--arms today,shared_prefix,token_budget,lora,all_full_ft,all,all_bf16_gen,
                                                bf16_full_ft,bf16_lora]

Our side runs once per arm, in one invocation, in this order: `today` (the padded forward, fixed micro-batches:
`trainer.shared_prefix=false`, no token budget, full fine-tuning), each new feature alone (LoRA: rank 16, alpha
32, every projection), the two update features with full fine-tuning, all together, and all together with bf16
generators (`rollout.dtype=bfloat16`, opt-in: they sample from a bf16 copy of the policy), then bf16 mixed
precision (`model.dtype=bfloat16`) with full fine-tuning and with LoRA (see `ARMS`).

The update's achieved FLOP rate: 6 N FLOPs per computed token position for full fine-tuning (forward 2N,
backward 4N) and 4 N with LoRA (the frozen weights need no weight gradient; the adapters' own FLOPs are under 3%
at rank 16), N the model's parameters (a tied LM head counted once: its matmul runs once per token), token
positions from `batch/token_slots` (padding included: it is computed too); attention's quadratic term is left
out (under 1% at these lengths). Against the machine's GEMM rate of the arm's dtype measured here (1024 x 1024
`F.linear` on every core, fp32 and bf16: `gcpo.hardware.gemm_rate`), the practical peak of dense
work in that dtype on this CPU.

Writes benchmarks/results/step.json and step.md (`--tag NAME`: step_NAME.json and step_NAME.md), with the CPU flags
that matter (AMX, AVX-512 BF16, AVX2).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# arm -> our extra overrides (issue #19: today's path, each feature alone, all together)
LORA = ["model.lora.rank=16", "model.lora.alpha=32"]
ARMS: dict[str, list[str]] = {
    "today": ["trainer.shared_prefix=false", "trainer.max_tokens_per_micro=0"],
    "shared_prefix": ["trainer.shared_prefix=true", "trainer.max_tokens_per_micro=0"],
    "token_budget": ["trainer.shared_prefix=false", "trainer.max_tokens_per_micro=2048"],
    "lora": ["trainer.shared_prefix=false", "trainer.max_tokens_per_micro=0", *LORA],
    "all_full_ft": ["trainer.shared_prefix=true", "trainer.max_tokens_per_micro=2048"],
    "all": ["trainer.shared_prefix=true", "trainer.max_tokens_per_micro=2048", *LORA],
    "all_bf16_gen": ["trainer.shared_prefix=true", "trainer.max_tokens_per_micro=2048", *LORA, "rollout.dtype=bfloat16"],
    "bf16_full_ft": ["trainer.shared_prefix=true", "trainer.max_tokens_per_micro=2048", "model.dtype=bfloat16"],
    "bf16_lora": ["trainer.shared_prefix=true", "trainer.max_tokens_per_micro=2048", *LORA, "model.dtype=bfloat16"],
}
LORA_RANK, LORA_ALPHA = 16, 32  # LORA's values: TRL's peft config gets the same (and our default target modules)


def trl_setting(arm: str) -> str | None:
    """TRL's configuration like our arm's ("full fp32", "lora bf16", ...), or None where TRL has no counterpart
    (bf16 generators beside an fp32 trainer: TRL generates with its training model)."""
    overrides = ARMS[arm]
    bf16 = "model.dtype=bfloat16" in overrides
    if "rollout.dtype=bfloat16" in overrides and not bf16:
        return None
    lora = any(o.startswith("model.lora.rank=") for o in overrides)
    return f"{'lora' if lora else 'full'} {'bf16' if bf16 else 'fp32'}"


def arm_dtype(arm: str) -> str:
    return "bfloat16" if "model.dtype=bfloat16" in ARMS[arm] else "float32"
BREAKDOWN = ["time/generate_s", "time/verify_s", "time/old_logprobs_s", "time/update_s", "time/sync_s", "time/step_s"]


def ensure_trl() -> None:
    try:
        import trl  # noqa: F401
    except ImportError:
        print("[bench] installing trl==1.16.0 for the comparison (benchmark only)", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "trl==1.16.0"], check=True)


def run_ours(args, work: Path, arm: str) -> dict:
    from mlflow.tracking import MlflowClient

    from gcpo.cluster.runtime import init_ray
    from gcpo.config import load_config
    from gcpo.training.fit import fit

    cfg = load_config(preset="grpo", overrides=[
        "algorithm.kl_coef=0", f"model.name={args.model}", f"rollout.backend={args.backend}",
        f"rollout.prompts_per_step={args.prompts}", f"rollout.group_size={args.group}",
        f"rollout.max_new_tokens={args.max_new_tokens}", "rollout.stop=[]", f"trainer.steps={args.steps}",
        f"trainer.lr={args.lr}", f"trainer.micro_batch_size={args.group * args.prompts}", "trainer.eval_every=0",
        f"trainer.checkpoint_every={args.steps}", "tracking.log_rollouts_every=0",
        f"tracking.uri=sqlite:///{work}/mlflow.db", "tracking.experiment=bench-step", *ARMS[arm],
    ])
    init_ray(None, num_cpus=4)
    t0 = time.time()
    outcome = fit(cfg, run_name=f"bench-step-{arm}", base=work)
    wall = time.time() - t0
    client = MlflowClient(tracking_uri=outcome.tracking_uri)
    per_key = {k: [m.value for m in sorted(client.get_metric_history(outcome.mlflow_run_id, k), key=lambda m: m.step)]
               for k in BREAKDOWN + ["rollout/tokens", "batch/pad_frac", "batch/token_slots"]}
    mean = {k: statistics.mean(v) for k, v in per_key.items() if v}
    flops = (4 if cfg.model.lora.rank else 6) * model_parameters(cfg) * mean["batch/token_slots"]
    mean["update_gflops_per_s"] = flops / mean["time/update_s"] / 1e9
    return {"per_step": per_key, "mean": mean, "wall_s": wall}


def model_parameters(cfg) -> int:
    """N of the FLOP count: the model's parameters, a tied LM head once (built on the meta device: no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from gcpo.models import resolve_model

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resolve_model(cfg.model)))
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once


def gemm_gflops_per_s(dtype: str = "float32") -> float:
    """The machine's dense rate in `dtype` on every core, GFLOP/s (`gcpo.hardware.gemm_rate`, as
    benchmarks/update_profile.py measures it)."""
    import os

    import torch

    from gcpo.hardware import gemm_rate

    torch.set_num_threads(os.cpu_count() or 1)
    return gemm_rate(dtype) / 1e9


def run_trl(args, work: Path, setting: str) -> dict:
    """TRL's GRPOTrainer in `setting` (`trl_setting`, plus " vllm" for its colocated vLLM generation): LoRA through
    the same peft config as ours, bf16=True for bf16."""
    ensure_trl()
    use_vllm = setting.endswith(" vllm")
    setting = setting.removesuffix(" vllm")
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from gcpo.config import LORA_MODULES, load_config
    from gcpo.models import resolve_model
    from gcpo.tasks import SYSTEM_PROMPT, VerifierPool, load_task

    lora, bf16 = setting.startswith("lora"), setting.endswith("bf16")
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, target_modules=list(LORA_MODULES),
                                 lora_dropout=0.0, task_type="CAUSAL_LM")
    cfg = load_config(overrides=[f"model.name={args.model}"])
    model_dir = resolve_model(cfg.model)
    task = load_task(cfg.task, "train")
    items = {it.question: it for it in task.items}
    rows = [{"prompt": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": it.question}]}
            for it in task.items[: args.prompts * (args.steps + 1)]]
    pool = VerifierPool.from_config(cfg.task)

    def reward(prompts, completions, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        questions = [p[-1]["content"] for p in prompts]
        return [v.reward for v in pool.verify(texts, [items[q] for q in questions]).verdicts]

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self._t = [], 0.0

        def on_step_begin(self, *a, **k):
            self._t = time.time()

        def on_step_end(self, *a, **k):
            self.times.append(time.time() - self._t)

    timer = StepTimer()
    n = args.prompts * args.group
    config = GRPOConfig(
        output_dir=str(work / f"trl-{setting.replace(' ', '-')}{'-vllm' if use_vllm else ''}"),
        per_device_train_batch_size=n, use_vllm=use_vllm, vllm_mode="colocate",
        num_generations=args.group,
        generation_batch_size=n, max_completion_length=args.max_new_tokens, learning_rate=args.lr, beta=0.0,
        max_steps=args.steps, logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, bf16=bf16,
        temperature=1.0, loss_type="grpo", scale_rewards="group", seed=0,
    )
    torch.set_num_threads(max(1, torch.get_num_threads()))
    trainer = GRPOTrainer(model=str(model_dir), reward_funcs=reward, args=config,
                          train_dataset=Dataset.from_list(rows),
                          processing_class=AutoTokenizer.from_pretrained(model_dir, padding_side="left"),
                          callbacks=[timer], peft_config=peft_config)
    t0 = time.time()
    trainer.train()
    pool.close()
    return {"per_step": timer.times, "mean_step_s": statistics.mean(timer.times), "wall_s": time.time() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--backend", default="vllm", choices=["vllm", "transformers"])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("--skip-trl-vllm", action="store_true", help="TRL with its generate only (no use_vllm)")
    parser.add_argument("--tag", default="", help="write step_TAG.json / step_TAG.md (another machine's record)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"our arms, in order (first = the ratios' base): "
                                                                f"{', '.join(ARMS)}")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gcpo-bench-step-"))
    import ray

    from gcpo.eval_cache import cpu_flags

    load_before = Path("/proc/loadavg").read_text().split()[:3]
    ours = {}
    for arm in args.arms.split(","):
        print(f"[bench] ours, arm {arm}", flush=True)
        ours[arm] = run_ours(args, work, arm)
        ray.shutdown()
    settings = list(dict.fromkeys(s for s in map(trl_setting, ours) if s is not None))
    if args.backend == "vllm" and not args.skip_trl_vllm:
        settings += [f"{s} vllm" for s in settings]
    trl = {} if args.skip_trl else {s: run_trl(args, work, s) for s in settings}
    peak = {dtype: gemm_gflops_per_s(dtype) for dtype in sorted({arm_dtype(a) for a in ours})}
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, "
        "no GPU", "cpu_flags": cpu_flags(), "settings": vars(args), "ours": ours, "trl": trl,
        "load_before": load_before, "load_after": Path("/proc/loadavg").read_text().split()[:3],
        "gemm_gflops_per_s": peak,
    }
    md = _table(args, result, ours, trl)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"step_{args.tag}" if args.tag else "step"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / f"{name}.md").write_text(md)
    print(md)


def _table(args, result: dict, ours: dict, trl: dict) -> str:
    """Per-phase seconds per step for every arm; its ratio against the first arm of the same configuration, and
    against TRL in that configuration only (`trl_setting`)."""
    arms = list(ours)
    lines = ["| phase | " + " | ".join(f"{a} (s/step)" for a in arms) + " |", "|---" * (len(arms) + 1) + "|"]
    for k in BREAKDOWN + ["batch/pad_frac"]:
        name = k.split("/")[1].removesuffix("_s")
        lines.append(f"| {name} | " + " | ".join(f"{ours[a]['mean'].get(k, float('nan')):.2f}" for a in arms) + " |")
    peak = result["gemm_gflops_per_s"]
    rates = {a: ours[a]["mean"]["update_gflops_per_s"] for a in arms}
    lines.append("| update GFLOP/s (share of the GEMM rate of its dtype) | " + " | ".join(
        f"{rates[a]:.1f} ({rates[a] / peak[arm_dtype(a)]:.0%} of {arm_dtype(a)})" for a in arms) + " |")
    # against the first arm of the same configuration (e.g. today's path for the full-fp32 arms): never across them
    first = {}
    for a in arms:
        first.setdefault(trl_setting(a) or a, a)
    lines.append("| **step / the first arm of its configuration** | " + " | ".join(
        f"**{ours[a]['mean']['time/step_s'] / ours[first[trl_setting(a) or a]]['mean']['time/step_s']:.2f}x** "
        f"(/ {first[trl_setting(a) or a]})" for a in arms) + " |")
    lines.append("| TRL like for like | " + " | ".join(trl_setting(a) or "none (no counterpart)" for a in arms) + " |")
    for suffix, label, key in (("", "TRL GRPOTrainer", "trl_over_ours"),
                               (" vllm", "TRL GRPOTrainer + vLLM (colocate)", "trl_vllm_over_ours")):
        matched = {a: trl[f"{trl_setting(a)}{suffix}"] for a in arms if f"{trl_setting(a)}{suffix}" in trl}
        if not matched:
            continue
        result[key] = {a: t["mean_step_s"] / ours[a]["mean"]["time/step_s"] for a, t in matched.items()}
        lines.append(f"| **{label} step** | " + " | ".join(
            f"{matched[a]['mean_step_s']:.2f}" if a in matched else "" for a in arms) + " |")
        lines.append(f"| **{label} time / our time** | " + " | ".join(
            f"**{result[key][a]:.2f}x**" if a in matched else "" for a in arms) + " |")
    return (f"Step time, {args.model}, {args.prompts} prompts x G={args.group}, {args.max_new_tokens} max new tokens, "
            f"lr {args.lr}, {args.steps} steps, backend {args.backend}; {result['machine']} (CPU flags: "
            + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in result["cpu_flags"].items()) + f"); {result['date']}; "
            f"command `.venv/bin/python benchmarks/step.py {' '.join(sys.argv[1:])}`; "
            f"load average before {' '.join(result['load_before'])}, after {' '.join(result['load_after'])}; "
            "GEMM rates measured here: " + ", ".join(f"{d} {r:.0f} GFLOP/s" for d, r in peak.items()) + ".\n\n"
            + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
