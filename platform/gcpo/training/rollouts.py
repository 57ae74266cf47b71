"""Rank 0's half of a step (docs/architecture.md, "One training step", steps 1-4): sample, verify, inject golden
answers, fill the batch, compute advantages. Returns a `StepBatch` for every worker plus the step's rollout metrics.

Order of operations (a choice): golden answers are injected into each sampling round's groups *before* the
batch-filling policy looks at them, so a group rescued by its golden answer counts as valid for DAPO / GPG.
Reward metrics (`reward/*`, `groups/*`, `response/length_mean`) describe the generators' own samples, never the
injected golden answers.

Rewards have one source: the verifier's `Verdict.reward` (accuracy + `task.format_reward` * format, and 0 for a
verification that timed out). An injected golden answer carries its own verdict: it is verified once (cached per
item), rejected unless it is correct, and its reward and format are the verifier's, not assumed.

Prefix hints (`algorithm.golden_hint`, `gcpo.algorithms.hints`) come after the round's samples are counted and
before golden answers are injected: an all-wrong group's last `hint_rollouts` responses are sampled again after a
prefix of its golden answer (appended to the row's prompt, so it is conditioning, never trained on); a group
still all wrong after its hints may then get a golden answer (GCPO). Their own metrics are `hint/*`.

Provenance: every row records the weight version its response was sampled with (`StepBatch.versions`; None for
an injected golden answer) and how many hint tokens end its prompt (`StepBatch.hint_tokens`).

Imitation (`algorithm.loss=sft`, the ga_sft baseline): the rollouts are sampled, scored and kept in the batch as
usual (same metrics, entropy and sync check), and the golden answers of the prompts `algorithm.sft_prompts` picks
ride along as `golden_prompts` / `golden_responses`, the only rows the update trains on. `ga/injected_frac` is then
the share of prompts whose golden answer is imitated; one that fails its own verifier counts in `ga/rejected`.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass, field

import torch

from gcpo.algorithms import (
    adapt_hint_fraction,
    fill_decision,
    golden_replacement_index,
    gpg_alpha,
    group_advantages,
    hint_length,
    sft_prompt_mask,
    zero_variance_groups,
)
from gcpo.config import AlgorithmConfig, RunConfig
from gcpo.rollout.types import RolloutEngine, SamplingSettings
from gcpo.training.sampler import PromptSampler
from gcpo.training.types import StepBatch, TrainingData


@dataclass
class _Group:
    item: int
    responses: list[list[int]]
    texts: list[str]
    logprobs: list[list[float] | None]
    verdicts: list  # gcpo.tasks.pool.Verdict per response
    golden: list[bool]
    versions: list[int | None]  # the weight version each response was sampled with (None: a golden answer)
    hints: list[int] = field(default_factory=list)  # per response: golden-answer tokens appended to its prompt
    imitate: bool = False  # loss "sft": this prompt's golden answer is a training row

    def __post_init__(self):
        self.hints = self.hints or [0] * len(self.responses)

    @property
    def rewards(self) -> list[float]:
        return [v.reward for v in self.verdicts]

    @property
    def accuracy(self) -> list[float]:
        return [v.accuracy for v in self.verdicts]


@dataclass
class HintState:
    """The prefix-hint length (`algorithm.golden_hint`) as a fraction of the golden answer: fixed, or moved by the
    adaptive controller after each step's collection (rank 0 holds it; a checkpoint stores it)."""

    fraction: float


def collect_step_batch(rollout_engine: RolloutEngine, data: TrainingData, sampler: PromptSampler, cfg: RunConfig,
                       settings: SamplingSettings, *, step: int, hint: HintState | None = None
                       ) -> tuple[StepBatch, dict, list[dict]]:
    """Sample groups until the batch-filling policy is satisfied; return (batch, metrics, sample rows).
    `hint`: the prefix-hint state (required when `algorithm.golden_hint` is on; updated here when adaptive)."""
    a, r = cfg.algorithm, cfg.rollout
    counts: Counter = Counter()
    if a.golden_hint != "none":
        counts["hint_fraction"] = hint.fraction
    gen = torch.Generator().manual_seed(cfg.trainer.seed * 7919 + step)
    kept: list[_Group] = []
    round_index = 0
    while True:
        groups = _sample_round(rollout_engine, data, sampler, cfg, settings, step, round_index, counts)
        _count_samples(groups, counts)
        if a.golden_hint != "none":
            _add_hints(rollout_engine, groups, data, cfg, settings, (step, round_index), hint.fraction, counts)
        if a.loss == "sft":
            _choose_imitation(groups, data, a, counts)
        if a.golden_answers:
            _inject_golden_answers(groups, data, a, gen, counts)
        kept.extend(groups)
        valid = ~zero_variance_groups(_rewards(kept, r.group_size))
        decision = fill_decision(valid, policy=a.batch_filling, target=r.prompts_per_step, beta_th=a.beta_th,
                                 round_index=round_index, max_rounds=a.max_fill_rounds)
        kept = [g for g, k in zip(kept, decision.keep.tolist()) if k]
        counts["rounds"] += 1
        if not decision.sample_more:
            break
        round_index += 1
    batch = _step_batch(kept, data, a, r.group_size)
    if a.golden_hint == "adaptive":
        success = counts["hint_correct"] / counts["hint_samples"] if counts["hint_samples"] else None
        hint.fraction = adapt_hint_fraction(hint.fraction, success, target=a.hint_target, rate=a.hint_rate)
    return batch, _rollout_metrics(counts, batch, a), _sample_rows(kept, batch, step)


def _sample_round(rollout_engine: RolloutEngine, data: TrainingData, sampler: PromptSampler, cfg: RunConfig,
                  settings: SamplingSettings, step: int, round_index: int, counts: Counter) -> list[_Group]:
    """One round: the next `prompts_per_step` prompts, G samples each, verified."""
    items = sampler.take(cfg.rollout.prompts_per_step)
    round_settings = dataclasses.replace(settings, seed=sampling_seed(cfg.rollout.seed, step, round_index))
    t0 = time.perf_counter()
    results = rollout_engine.generate([data.prompt_ids[i] for i in items], round_settings)
    t1 = time.perf_counter()
    flat_items = [i for i, res in zip(items, results) for _ in res.completions]
    verdicts = data.verify(flat_items, [c.text for res in results for c in res.completions])
    counts["generate_s"] += t1 - t0
    counts["verify_s"] += time.perf_counter() - t1
    groups, start = [], 0
    for item, res in zip(items, results):
        n = len(res.completions)
        groups.append(_Group(item, [list(c.token_ids) for c in res.completions], [c.text for c in res.completions],
                             [list(c.logprobs) for c in res.completions], verdicts[start : start + n], [False] * n,
                             [c.weight_version for c in res.completions]))
        start += n
    return groups


HINT_SEED_OFFSET = 7_777  # hinted samples draw from their own seed stream, apart from the round's samples


def _add_hints(rollout_engine: RolloutEngine, groups: list[_Group], data: TrainingData, cfg: RunConfig,
               settings: SamplingSettings, when: tuple[int, int], fraction: float, counts: Counter) -> None:
    """Prefix hints (`gcpo.algorithms.hints`): in each all-wrong group with an accepted golden answer, the last
    `algorithm.hint_rollouts` responses are sampled again after the golden answer's first tokens. The verifier
    judges hint + continuation; the row trains on the continuation alone (the hint joins its prompt)."""
    a = cfg.algorithm
    correct, has_golden = _correct_and_has_golden(groups, data)
    quiet = Counter()  # GCPO's injection counts a rejected golden answer; hints alone count it themselves
    chosen = [grp for grp, right, has in zip(groups, correct.any(1).tolist(), has_golden.tolist())
              if not right and has and _golden_accepted(data, grp.item, quiet if a.golden_answers else counts)]
    if not chosen:
        return
    lengths = [hint_length(len(data.golden_ids[grp.item]), fraction) for grp in chosen]
    hints = [list(data.golden_ids[grp.item][:h]) for grp, h in zip(chosen, lengths)]
    hint_settings = dataclasses.replace(settings, n=a.hint_rollouts,
                                        seed=sampling_seed(cfg.rollout.seed + HINT_SEED_OFFSET, *when))
    t0 = time.perf_counter()
    results = rollout_engine.generate([data.prompt_ids[g.item] + h for g, h in zip(chosen, hints)], hint_settings)
    t1 = time.perf_counter()
    texts = [data.decode(h) + c.text for h, res in zip(hints, results) for c in res.completions]
    verdicts = iter(data.verify([g.item for g, res in zip(chosen, results) for _ in res.completions], texts))
    texts = iter(texts)
    for grp, h, res in zip(chosen, lengths, results):
        for j, c in enumerate(res.completions, start=len(grp.responses) - a.hint_rollouts):
            grp.responses[j], grp.texts[j], grp.logprobs[j] = list(c.token_ids), next(texts), list(c.logprobs)
            grp.verdicts[j], grp.versions[j], grp.hints[j] = next(verdicts), c.weight_version, h
            counts["hint_samples"] += 1
            counts["hint_correct"] += grp.verdicts[j].accuracy
            counts["hint_tokens"] += h
    counts["hint_groups"] += len(chosen)
    counts["generate_s"] += t1 - t0
    counts["verify_s"] += time.perf_counter() - t1


def _count_samples(groups: list[_Group], counts: Counter) -> None:
    """The generators' own samples, before any golden answer replaces one."""
    for grp in groups:
        acc = torch.tensor(grp.accuracy)
        counts["responses"] += len(acc)
        counts["accuracy"] += float(acc.sum())
        counts["format"] += sum(v.format for v in grp.verdicts)
        counts["reward"] += sum(grp.rewards)
        counts["timeouts"] += sum(v.timed_out for v in grp.verdicts)
        counts["length"] += sum(len(t) for t in grp.responses)
        counts["groups"] += 1
        counts["all_wrong"] += int(acc.sum() == 0)
        counts["all_correct"] += int(acc.sum() == len(acc))


def _correct_and_has_golden(groups: list[_Group], data: TrainingData) -> tuple[torch.Tensor, torch.Tensor]:
    correct = torch.tensor([grp.accuracy for grp in groups]) == 1.0
    has_golden = torch.tensor([data.golden_ids[grp.item] is not None for grp in groups])
    return correct, has_golden


def _golden_accepted(data: TrainingData, item: int, counts: Counter) -> bool:
    """Whether item `item`'s golden answer passes its own verifier (counted in `ga/rejected` when not)."""
    accepted = data.golden_verdict(item).accuracy == 1.0
    counts["rejected"] += int(not accepted)
    return accepted


def _choose_imitation(groups: list[_Group], data: TrainingData, a: AlgorithmConfig, counts: Counter) -> None:
    """loss "sft": mark the prompts whose golden answer is imitated (`algorithm.sft_prompts`)."""
    correct, has_golden = _correct_and_has_golden(groups, data)
    for grp, chosen in zip(groups, sft_prompt_mask(correct, has_golden, a.sft_prompts).tolist()):
        if chosen and _golden_accepted(data, grp.item, counts):
            grp.imitate = True
            counts["injected"] += 1


def _inject_golden_answers(groups: list[_Group], data: TrainingData, a: AlgorithmConfig, gen: torch.Generator,
                           counts: Counter) -> None:
    """GCPO: replace one response of each all-wrong group (`algorithm.ga_*`) by the prompt's golden answer."""
    correct, has_golden = _correct_and_has_golden(groups, data)
    lengths = torch.tensor([[len(t) for t in grp.responses] for grp in groups])
    picks = golden_replacement_index(correct, has_golden, replace=a.ga_replace, on_all_correct=a.ga_on_all_correct,
                                     lengths=lengths, generator=gen)
    for grp, j in zip(groups, picks.tolist()):
        if j < 0 or not _golden_accepted(data, grp.item, counts):
            continue
        grp.responses[j] = list(data.golden_ids[grp.item])
        grp.texts[j] = data.golden_text[grp.item]
        grp.logprobs[j] = None
        grp.verdicts[j] = data.golden_verdict(grp.item)
        grp.golden[j], grp.versions[j], grp.hints[j] = True, None, 0
        counts["injected"] += 1


def _rewards(groups: list[_Group], group_size: int) -> torch.Tensor:
    return torch.tensor([g.rewards for g in groups]) if groups else torch.zeros(0, group_size)


def _row_prompts(prompts: list[list[int]], kept: list[_Group], data: TrainingData) -> list[list[int]]:
    """Each row's prompt (`prompts` indexed by item): with the golden-answer hint its response was sampled after."""
    return [list(prompts[g.item]) + list(data.golden_ids[g.item][:h]) if h else prompts[g.item]
            for g in kept for h in g.hints]


def _step_batch(kept: list[_Group], data: TrainingData, a: AlgorithmConfig, group_size: int) -> StepBatch:
    rewards = _rewards(kept, group_size)
    return StepBatch(
        prompts=_row_prompts(data.prompt_ids, kept, data),
        responses=[t for g in kept for t in g.responses],
        gen_logprobs=[lp for g in kept for lp in g.logprobs],
        rewards=rewards,
        correct=torch.tensor([g.accuracy for g in kept]).reshape(-1, group_size) == 1.0,
        is_golden=torch.tensor([g.golden for g in kept], dtype=torch.bool).reshape(-1, group_size),
        advantages=group_advantages(rewards, norm=a.adv_norm).flatten() if kept else torch.zeros(0),
        alpha=gpg_alpha(rewards) if (a.gpg_alpha and kept) else 1.0,
        negative_prompts=(_row_prompts(data.negative_prompt_ids, kept, data)
                          if a.token_credit == "guidance" else None),
        golden_prompts=[data.prompt_ids[g.item] for g in kept if g.imitate],
        golden_responses=[list(data.golden_ids[g.item]) for g in kept if g.imitate],
        versions=[v for g in kept for v in g.versions],
        hint_tokens=[h for g in kept for h in g.hints],
    )


def _rollout_metrics(counts: Counter, batch: StepBatch, a: AlgorithmConfig) -> dict[str, float]:
    n, groups = max(counts["responses"], 1), max(counts["groups"], 1)
    hints = {} if a.golden_hint == "none" else {
        "hint/fraction": counts["hint_fraction"],  # the fraction this step's hints used
        "hint/groups_frac": counts["hint_groups"] / groups,
        "hint/success": counts["hint_correct"] / max(counts["hint_samples"], 1),
        "hint/tokens_mean": counts["hint_tokens"] / max(counts["hint_samples"], 1),
    }
    return hints | {
        "reward/mean": counts["reward"] / n,
        "reward/accuracy": counts["accuracy"] / n,
        "reward/format": counts["format"] / n,
        "reward/verify_timeouts": float(counts["timeouts"]),
        "groups/all_wrong_frac": counts["all_wrong"] / groups,
        "groups/all_correct_frac": counts["all_correct"] / groups,
        "ga/injected_frac": counts["injected"] / groups,
        "ga/rejected": float(counts["rejected"]),
        "response/length_mean": counts["length"] / n,
        "batch/groups": float(batch.num_groups),
        "batch/sampling_rounds": float(counts["rounds"]),
        # responses the generators sampled this step: every round's (batch filling may discard groups) and the
        # prefix hints' re-samples; compare arms at equal samples as well as equal steps
        "batch/samples": float(counts["responses"] + counts["hint_samples"]),
        "batch/gpg_alpha": batch.alpha,
        "rollout/tokens": float(counts["length"]),
        "time/generate_s": float(counts["generate_s"]),
        "time/verify_s": float(counts["verify_s"]),
    }


def _sample_rows(kept: list[_Group], batch: StepBatch, step: int) -> list[dict]:
    """One row per trained response (the MLflow rollout table)."""
    g_size = batch.group_size
    return [
        {"step": step, "item": g.item, "response": g.texts[j], "reward": float(batch.rewards[k, j]),
         "advantage": float(batch.advantages[k * g_size + j]), "golden": g.golden[j], "version": g.versions[j],
         "hint_tokens": g.hints[j]}
        for k, g in enumerate(kept) for j in range(g_size)
    ]


def sampling_seed(base: int, step: int, round_index: int) -> int:
    """A per-(step, round) sampling seed, so a resumed run draws exactly the samples the uninterrupted one did."""
    return (base * 1_000_003 + step * 101 + round_index) % (2**31 - 1)
