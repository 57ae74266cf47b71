"""The warm-start recipe (`gcpo warmstart`): a starting policy whose groups are mixed, so an ablation has signal.

The default model never writes the answer format, so every group starts all wrong: GRPO's advantages are all zero
and most ablation switches cannot act (docs/results.md). The recipe, one command:

1. **Items**: the task's warm-start split (`gcpo.tasks.builtin.builtin_warmstart`): built-in tasks only, disjoint
   by question from the RL training split and from the held-out split (checked), so the RL run and its
   evaluation never see an item the warm start was taught.
2. **Supervised fine-tuning** on their golden answers: token-mean cross-entropy (`gcpo.algorithms.sft_loss`),
   `steps` AdamW updates of `batch` items at `lr` (gradient norm clipped to 1), items in an order seeded by
   `trainer.seed`, in this process on the CPU (a 135M model's SFT needs neither Ray nor DeepSpeed).
3. **Save** as a Hugging Face folder (`gcpo.standalone.export.write_folder`, the export's writer) with
   `gcpo_warmstart.json`: the settings, the items' split, the losses, and the probe below. `model.name=DIR` then
   starts `gcpo train`, `gcpo eval` and `gcpo sweep` from it.
4. **Probe** what an RL run would see: `probe_group` samples (temperature `rollout.temperature`) for each of the
   first `probe_prompts` RL training prompts, in the order a run with `trainer.seed` visits them, verified like
   training: the mean success rate and the shares of all-wrong, mixed and all-correct groups; then held-out pass@1
   and mean@k (`gcpo.evaluation`, the run's settings). Generation uses `rollout.backend` (the vLLM pool by default).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gcpo import console
from gcpo.console import PREFIX
from gcpo.config import ModelConfig, RunConfig, to_dict

WARMSTART_FILE = "gcpo_warmstart.json"


@dataclass(frozen=True)
class WarmStartSettings:
    steps: int = 60  # AdamW updates
    batch: int = 8  # items per update
    lr: float = 2e-5
    items: int = 512  # warm-start items (cycled when steps x batch exceeds them)
    probe_prompts: int = 64  # RL training prompts probed
    probe_group: int = 4  # samples per probed prompt (G)


# The built-in recipe (`model.name=smollm2-warmstart`, `gcpo warmstart --builtin`): the default model and task, these
# settings; chosen by the measurements in docs/results.md ("The warm start"). A change needs a new
# `gcpo.models.WARMSTART_VERSION`.
BUILTIN_RECIPE = WarmStartSettings(steps=40, batch=8, lr=5e-5, items=320)


@dataclass(frozen=True)
class GroupProbe:
    """What the probed policy's groups look like: mean per-sample success and the shares of group kinds."""

    prompts: int
    group: int
    success: float
    all_wrong: float
    mixed: float
    all_correct: float
    format_rate: float


def warmstart_items(cfg: RunConfig, count: int):
    from gcpo.config import ConfigError
    from gcpo.tasks.builtin import BUILTIN_TASKS, builtin_warmstart

    if cfg.task.name not in BUILTIN_TASKS:
        raise ConfigError(f"task.name: gcpo warmstart draws its items from a built-in task's warm-start split "
                          f"({', '.join(BUILTIN_TASKS)}), got {cfg.task.name!r}")
    t = cfg.task
    return builtin_warmstart(t.name, t.seed, t.train_size, t.eval_size, count)


def supervised_fine_tune(model, tokenizer, items, s: WarmStartSettings, seed: int,
                         say: Callable[[str], None]) -> list[float]:
    """`s.steps` AdamW updates of token-mean cross-entropy on the items' golden answers; returns the losses."""
    import torch

    from gcpo.algorithms import sft_loss
    from gcpo.logprobs import response_logprobs
    from gcpo.models import pad_token_id
    from gcpo.tasks.prompts import render_prompts, render_response

    prompts = render_prompts(tokenizer, items)
    answers = [render_response(tokenizer, it.golden) for it in items]
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    pad = pad_token_id(tokenizer)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=s.lr, weight_decay=0.0)
    model.train()
    losses, started = [], time.time()
    for step in range(s.steps):
        rows = [order[(step * s.batch + j) % len(order)] for j in range(s.batch)]
        logp, mask, _ = response_logprobs(model, [prompts[r] for r in rows], [answers[r] for r in rows],
                                          pad_token_id=pad, micro_batch_size=s.batch)
        loss = sft_loss(logp, mask)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if (step + 1) % 10 == 0 or step + 1 == s.steps:
            say(f"{PREFIX} warm start: SFT step {step + 1}/{s.steps}, loss {statistics.fmean(losses[-10:]):.3f} "
                f"({time.time() - started:.0f}s)")
    model.eval()
    return losses


def probe_groups(engine, cfg: RunConfig, tokenizer, s: WarmStartSettings, pool) -> GroupProbe:
    """Sample `s.probe_group` responses for each of the first `s.probe_prompts` RL training prompts (the order a
    run with `trainer.seed` visits them) and describe the groups, verified like training."""
    import torch

    from gcpo.rollout import sampling_settings
    from gcpo.tasks import load_task, render_prompts
    from gcpo.training.rollouts import sampling_seed
    from gcpo.training.sampler import PromptSampler

    train = load_task(cfg.task, "train")
    picked = PromptSampler(len(train.items), seed=cfg.trainer.seed).take(min(s.probe_prompts, len(train.items)))
    items = [train.items[i] for i in picked]
    settings = dataclasses.replace(sampling_settings(cfg.rollout), n=s.probe_group,
                                   seed=sampling_seed(cfg.rollout.seed, 0, 0))
    results = engine.generate(render_prompts(tokenizer, items), settings)
    texts = [c.text for res in results for c in res.completions]
    verdicts = pool.verify(texts, [it for it in items for _ in range(s.probe_group)]).verdicts
    correct = torch.tensor([v.accuracy for v in verdicts]).reshape(len(items), s.probe_group) == 1.0
    hits = correct.sum(1)
    return GroupProbe(prompts=len(items), group=s.probe_group, success=correct.float().mean().item(),
                      all_wrong=(hits == 0).float().mean().item(),
                      mixed=((hits > 0) & (hits < s.probe_group)).float().mean().item(),
                      all_correct=(hits == s.probe_group).float().mean().item(),
                      format_rate=sum(v.format for v in verdicts) / max(len(verdicts), 1))


def probe_and_evaluate(model_dir: Path, cfg: RunConfig, s: WarmStartSettings) -> tuple[GroupProbe, dict]:
    """The probe and held-out evaluation of the policy in `model_dir`, with `cfg.rollout.backend`."""
    from transformers import AutoTokenizer

    from gcpo.evaluation import evaluate_config
    from gcpo.rollout import build_engine
    from gcpo.tasks import VerifierPool

    if cfg.rollout.backend == "vllm":
        from gcpo.cluster.runtime import init_ray

        init_ray(cfg.cluster.address, num_cpus=cfg.cluster.num_cpus)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    engine = build_engine(cfg.rollout, model_dir, model_dtype=cfg.model.dtype)
    try:
        with VerifierPool.from_config(cfg.task) as pool:
            probe = probe_groups(engine, cfg, tokenizer, s, pool)
            held_out = evaluate_config(engine, tokenizer, cfg, pool=pool).metrics()
    finally:
        engine.shutdown()
    return probe, held_out


def make_builtin_warm_start(*, say: Callable[[str], None] = print, probe: bool = False) -> dict:
    """Make `model.name=smollm2-warmstart` (the built-in recipe on the default config) in its cache folder."""
    from gcpo.config import load_config
    from gcpo.models import warmstart_dir

    say(f"{PREFIX} making the built-in warm start {warmstart_dir().name} (once; about 7 minutes on 2 CPU cores)")
    return warm_start(load_config(), warmstart_dir(), BUILTIN_RECIPE, say=say, probe=probe)


def ensure_builtin_warm_start(model: ModelConfig, *, say: Callable[[str], None] = console.say) -> bool:
    """Make the built-in warm start when `model` names it (`model.name=smollm2-warmstart`) and it is not made yet,
    saying so; True when it was made now. Called by the commands that run a model (`gcpo train`, `gcpo sweep`,
    `gcpo eval`, `gcpo probe`) before their start-up check, which never builds anything."""
    from gcpo.models import WARMSTART_MODEL, warmstart_dir

    if model.name != WARMSTART_MODEL or (warmstart_dir() / "config.json").exists():
        return False
    say(f"{PREFIX} model.name={WARMSTART_MODEL} is not made yet: making it now (supervised fine-tuning, once)")
    make_builtin_warm_start(say=say)
    return True


def warm_start(cfg: RunConfig, out: Path, s: WarmStartSettings, *, say: Callable[[str], None] = print,
               probe: bool = True) -> dict:
    """The recipe (see the module docstring; `probe` False: steps 1-3 only); returns the record written to
    `out/gcpo_warmstart.json`. Imports torch when called (the command line's parser reads this module's settings
    without it)."""
    import torch
    from transformers import AutoTokenizer

    from gcpo.models import load_causal_lm, resolve_model
    from gcpo.standalone.export import write_folder

    started = time.time()
    base_dir = resolve_model(cfg.model)
    items = warmstart_items(cfg, s.items).items
    say(f"{PREFIX} warm start: {len(items)} warm-start items of {cfg.task.name} (disjoint from its training and "
        f"held-out splits), SFT {s.steps} steps x {s.batch} items at lr {s.lr:g}, base {cfg.model.name}")
    torch.manual_seed(cfg.trainer.seed)
    model = load_causal_lm(base_dir, cfg.model.dtype)
    losses = supervised_fine_tune(model, AutoTokenizer.from_pretrained(base_dir), items, s, cfg.trainer.seed, say)
    record = {"recipe": dataclasses.asdict(s), "base_model": cfg.model.name, "task": cfg.task.name,
              "warmstart_items": [it.id for it in items[:3]] + ["..."], "sft_losses": losses,
              "config": to_dict(cfg), "sft_seconds": round(time.time() - started, 1),
              "made_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    write_folder(model, base_dir, out, record, record_file=WARMSTART_FILE)
    say(f"{PREFIX} warm start: saved to {out}")
    return probe_warm_start(cfg, out, s, say=say, started=started) if probe else record


def probe_warm_start(cfg: RunConfig, out: Path, s: WarmStartSettings, *, say: Callable[[str], None] = print,
                     started: float | None = None) -> dict:
    """Probe the policy in `out` (step 4 of the recipe) with `cfg`'s rollout settings and `s`'s probe sizes, and
    record it in `out/gcpo_warmstart.json` (its `probe` and `held_out`; every probe also in `probes`), so the
    levers that need no new SFT (G, temperature, the task's prompts) are tried on one saved policy."""
    started = time.time() if started is None else started
    path = out / WARMSTART_FILE
    record = json.loads(path.read_text()) if path.exists() else {}
    say(f"{PREFIX} warm start: probing {s.probe_prompts} RL training prompts x G={s.probe_group} (temperature "
        f"{cfg.rollout.temperature:g}) and the held-out split ({cfg.rollout.backend})")
    run_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name=str(out)))
    probe, held_out = probe_and_evaluate(out, run_cfg, s)
    entry = {"probe": dataclasses.asdict(probe), "held_out": held_out, "temperature": cfg.rollout.temperature,
             "task": cfg.task.name, "seconds": round(time.time() - started, 1)}
    record.update(probe=entry["probe"], held_out=held_out, seconds=entry["seconds"])
    record.setdefault("probes", []).append(entry)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return record
