"""Rank 0's half of a step (DESIGN.md section 3, steps 1-4): sample, verify, inject golden answers, fill the
batch, compute advantages. Returns a `StepBatch` for every worker plus the step's rollout metrics.

Order of operations (a choice): golden answers are injected into each sampling round's groups *before* the
batch-filling policy looks at them, so a group rescued by its golden answer counts as valid for DAPO / GPG.
Reward metrics (`reward/*`, `groups/*`, `response/length_mean`) describe the generators' own samples, never the
injected golden answers.

Imitation (`algorithm.loss=sft`, the ga_sft baseline): the rollouts are sampled, scored and kept in the batch as
usual (same metrics, entropy and sync check), and the golden answers of the prompts `algorithm.sft_prompts` picks
ride along as `golden_prompts` / `golden_responses`, the only rows the update trains on. `ga/injected_frac` is then
the share of prompts whose golden answer is imitated; one that fails its own verifier counts in `ga/rejected`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from gcpo.algorithms import fill_decision, golden_replacement_index, gpg_alpha, group_advantages, sft_prompt_mask
from gcpo.config import RunConfig
from gcpo.rollout.types import RolloutEngine, SamplingSettings
from gcpo.training.sampler import PromptSampler
from gcpo.training.update import StepBatch


@dataclass
class TrainingData:
    """The training split, pre-rendered: prompt ids, golden-answer ids (None where missing) per item."""

    questions: list[str]
    prompt_ids: list[list[int]]
    golden_ids: list[list[int] | None]
    golden_text: list[str | None]
    # (item indices, response texts) -> verdicts with .accuracy, .format (0/1) and .timed_out, in input order
    verify: Callable[[Sequence[int], Sequence[str]], list]
    negative_prompt_ids: list[list[int]] | None = None  # guidance token credit only
    golden_ok: dict[int, bool] = field(default_factory=dict)  # cache: does item i's golden answer verify?


@dataclass
class _Group:
    item: int
    responses: list[list[int]]
    texts: list[str]
    logprobs: list[list[float] | None]
    accuracy: list[float]
    format: list[float]
    golden: list[bool]
    imitate: bool = False  # loss "sft": this prompt's golden answer is a training row


def _golden_verifies(data: TrainingData, item: int) -> bool:
    if item not in data.golden_ok:
        verdict = data.verify([item], [data.golden_text[item]])[0]
        data.golden_ok[item] = verdict.accuracy == 1.0
    return data.golden_ok[item]


def collect_step_batch(engine: RolloutEngine, data: TrainingData, sampler: PromptSampler, cfg: RunConfig,
                       settings: SamplingSettings, *, step: int) -> tuple[StepBatch, dict, list[dict]]:
    """Sample groups until the batch-filling policy is satisfied; return (batch, metrics, sample rows)."""
    a, r = cfg.algorithm, cfg.rollout
    kept: list[_Group] = []
    totals = dict(responses=0, accuracy=0.0, format=0.0, reward=0.0, length=0, groups=0, all_wrong=0,
                  all_correct=0, injected=0, rejected=0, timeouts=0, rounds=0, generate_s=0.0, verify_s=0.0)
    gen = torch.Generator().manual_seed(cfg.trainer.seed * 7919 + step)
    round_index = 0
    while True:
        items = sampler.take(r.prompts_per_step)
        round_settings = dataclasses.replace(settings, seed=_sampling_seed(cfg.rollout.seed, step, round_index))
        t0 = time.perf_counter()
        results = engine.generate([data.prompt_ids[i] for i in items], round_settings)
        t1 = time.perf_counter()
        flat_items = [i for i, res in zip(items, results) for _ in res.completions]
        flat_texts = [c.text for res in results for c in res.completions]
        verdicts = data.verify(flat_items, flat_texts)
        totals["generate_s"] += t1 - t0
        totals["verify_s"] += time.perf_counter() - t1
        new_groups = []
        for g, (item, res) in enumerate(zip(items, results)):
            vs = verdicts[g * len(res.completions) : (g + 1) * len(res.completions)]
            new_groups.append(_Group(item, [list(c.token_ids) for c in res.completions], [c.text for c in res.completions],
                                     [list(c.logprobs) for c in res.completions], [v.accuracy for v in vs],
                                     [v.format for v in vs], [False] * len(vs)))
            totals["timeouts"] += sum(v.timed_out for v in vs)
        for grp in new_groups:
            acc = torch.tensor(grp.accuracy)
            totals["responses"] += len(acc)
            totals["accuracy"] += float(acc.sum())
            totals["format"] += sum(grp.format)
            totals["reward"] += float(sum(_reward(x, f, cfg) for x, f in zip(grp.accuracy, grp.format)))
            totals["length"] += sum(len(t) for t in grp.responses)
            totals["groups"] += 1
            totals["all_wrong"] += int(acc.sum() == 0)
            totals["all_correct"] += int(acc.sum() == len(acc))
        correct = torch.tensor([grp.accuracy for grp in new_groups]) == 1.0
        has_golden = torch.tensor([data.golden_ids[grp.item] is not None for grp in new_groups])
        if a.loss == "sft":
            for grp, chosen in zip(new_groups, sft_prompt_mask(correct, has_golden, a.sft_prompts).tolist()):
                if chosen and not _golden_verifies(data, grp.item):
                    totals["rejected"] += 1
                elif chosen:
                    grp.imitate = True
                    totals["injected"] += 1
        if a.golden_answers:
            lengths = torch.tensor([[len(t) for t in grp.responses] for grp in new_groups])
            picks = golden_replacement_index(correct, has_golden, replace=a.ga_replace,
                                             on_all_correct=a.ga_on_all_correct, lengths=lengths, generator=gen)
            for grp, j in zip(new_groups, picks.tolist()):
                if j < 0:
                    continue
                if not _golden_verifies(data, grp.item):
                    totals["rejected"] += 1
                    continue
                grp.responses[j] = list(data.golden_ids[grp.item])
                grp.texts[j] = data.golden_text[grp.item]
                grp.logprobs[j] = None
                grp.accuracy[j], grp.format[j], grp.golden[j] = 1.0, 1.0, True
                totals["injected"] += 1
        kept.extend(new_groups)
        rewards = torch.tensor([[_reward(x, f, cfg) for x, f in zip(g.accuracy, g.format)] for g in kept])
        valid = ~(rewards == rewards[:, :1]).all(dim=1)
        decision = fill_decision(valid, policy=a.batch_filling, target=r.prompts_per_step, beta_th=a.beta_th,
                                 round_index=round_index, max_rounds=a.max_fill_rounds)
        kept = [g for g, k in zip(kept, decision.keep.tolist()) if k]
        totals["rounds"] += 1
        if not decision.sample_more:
            break
        round_index += 1

    group_size = r.group_size
    if kept:
        rewards = torch.tensor([[_reward(x, f, cfg) for x, f in zip(g.accuracy, g.format)] for g in kept])
    else:
        rewards = torch.zeros(0, group_size)
    advantages = group_advantages(rewards, norm=a.adv_norm).flatten() if kept else torch.zeros(0)
    batch = StepBatch(
        prompts=[data.prompt_ids[g.item] for g in kept for _ in range(group_size)],
        responses=[t for g in kept for t in g.responses],
        gen_logprobs=[lp for g in kept for lp in g.logprobs],
        rewards=rewards,
        correct=torch.tensor([g.accuracy for g in kept]).reshape(-1, group_size) == 1.0,
        is_golden=torch.tensor([g.golden for g in kept], dtype=torch.bool).reshape(-1, group_size),
        advantages=advantages,
        alpha=gpg_alpha(rewards) if (a.gpg_alpha and kept) else 1.0,
        negative_prompts=([data.negative_prompt_ids[g.item] for g in kept for _ in range(group_size)]
                          if a.token_credit == "guidance" else None),
        golden_prompts=[data.prompt_ids[g.item] for g in kept if g.imitate],
        golden_responses=[list(data.golden_ids[g.item]) for g in kept if g.imitate],
    )
    n, groups = max(totals["responses"], 1), max(totals["groups"], 1)
    metrics = {
        "reward/mean": totals["reward"] / n,
        "reward/accuracy": totals["accuracy"] / n,
        "reward/format": totals["format"] / n,
        "reward/verify_timeouts": float(totals["timeouts"]),
        "groups/all_wrong_frac": totals["all_wrong"] / groups,
        "groups/all_correct_frac": totals["all_correct"] / groups,
        "ga/injected_frac": totals["injected"] / groups,
        "ga/rejected": float(totals["rejected"]),
        "response/length_mean": totals["length"] / n,
        "batch/groups": float(len(kept)),
        "batch/sampling_rounds": float(totals["rounds"]),
        "batch/gpg_alpha": batch.alpha,
        "rollout/tokens": float(totals["length"]),
        "time/generate_s": totals["generate_s"],
        "time/verify_s": totals["verify_s"],
    }
    samples = [
        {"step": step, "item": g.item, "response": g.texts[j], "reward": float(rewards[k, j]),
         "advantage": float(advantages[k * group_size + j]), "golden": g.golden[j]}
        for k, g in enumerate(kept) for j in range(group_size)
    ]
    return batch, metrics, samples


def _reward(accuracy: float, fmt: float, cfg: RunConfig) -> float:
    """Reward = accuracy + task.format_reward * format (format weight 0 by default: accuracy only)."""
    return accuracy + cfg.task.format_reward * fmt


def _sampling_seed(base: int, step: int, round_index: int) -> int:
    """A per-(step, round) sampling seed, so a resumed run draws exactly the samples the uninterrupted one did."""
    return (base * 1_000_003 + step * 101 + round_index) % (2**31 - 1)
