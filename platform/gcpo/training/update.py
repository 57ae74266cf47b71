"""One policy update on a worker's shard of the step batch (DESIGN.md section 3, steps 5-6).

`StepBatch` is built on rank 0 (rollouts, verification, golden answers, advantages) and broadcast; every rank
updates on its shard of whole groups (groups g with g % world == rank), so ConSPO's group-wise contrast stays
local. Old log-probs are recomputed here under the current policy (so a golden answer's ratio is 1 on the first
mini-batch), and their gap to the generators' log-probs is the weight-sync check, free of extra passes.

Fused old log-probs (a choice, as verl does on-policy): with one epoch of one mini-batch the policy has not moved
when each micro-batch is first seen, so its old log-probs are the update's own forward, detached; the separate
no-grad pass is skipped (a third of the update's compute on CPU). The ratio is then exactly 1 and the clip inactive.

Imitation (`algorithm.loss=sft`): the no-grad pass still runs over the rollouts (entropy and the sync check, the
same metrics as every other loss), then the updates train on the batch's golden answers alone, each its own group
of one, sharded across ranks the same way, with `sft_loss` over the global golden-token count. With
`algorithm.sft_coef` = c > 0 the other losses add c * `sft_loss` over the injected golden answers of the
mini-batch (their own global token count).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from gcpo.algorithms import agg_normalizer, conspo_loss, conspo_margin, guidance_token_weights, policy_loss, sft_loss
from gcpo.algorithms.conspo import sequence_scores
from gcpo.config import RunConfig
from gcpo.training.logprobs import pad_responses
from gcpo.training.policy import (
    all_reduce,
    equal_chunks,
    forward_logprobs,
    micro_batches,
    step_with_grad_norm,
    world,
)


@dataclass
class StepBatch:
    """One step's training data: G consecutive rows per group (row r belongs to group r // G)."""

    prompts: list[list[int]]
    responses: list[list[int]]
    gen_logprobs: list[list[float] | None]  # None for golden answers (not sampled by a generator)
    rewards: torch.Tensor  # (groups, G)
    correct: torch.Tensor  # (groups, G) bool
    is_golden: torch.Tensor  # (groups, G) bool
    advantages: torch.Tensor  # (groups * G,)
    alpha: float = 1.0  # GPG's B / (B - M), 1 unless algorithm.gpg_alpha
    negative_prompts: list[list[int]] | None = None  # guidance token credit only
    # loss "sft": the golden answers to imitate (one per chosen prompt), the update's only training rows
    golden_prompts: list[list[int]] = field(default_factory=list)
    golden_responses: list[list[int]] = field(default_factory=list)

    @property
    def num_groups(self) -> int:
        return self.rewards.shape[0]


def shard_groups(num_groups: int, rank: int, world_size: int) -> list[int]:
    return list(range(rank, num_groups, world_size))


def _split(items: list, parts: int) -> list[list]:
    size = -(-len(items) // parts) if items else 0
    return [items[i * size : (i + 1) * size] for i in range(parts)]


def update_policy(engine, batch: StepBatch, cfg: RunConfig, *, step: int, pad_id: int, ref_model=None) -> dict:
    """Recompute old (and reference, negative-prompt) log-probs, then epochs x mini-batches of updates.

    Returns metrics already reduced over ranks: loss/policy, policy/clip_frac, policy/ratio_mean,
    policy/entropy, grad/norm, kl/mean (KL on), sync/logprob_abs_diff(_max), loss/sft (loss sft or sft_coef > 0).
    """
    a, t = cfg.algorithm, cfg.trainer
    rank, world_size = world()
    group_size = batch.rewards.shape[1]
    mine = shard_groups(batch.num_groups, rank, world_size)
    rows_of = {g: list(range(g * group_size, (g + 1) * group_size)) for g in mine}
    groups_per_micro = max(1, t.micro_batch_size // group_size)
    prompts, responses = batch.prompts, batch.responses

    # Old log-probs, entropy and the sync check, one no-grad pass over the shard.
    t_start = time.perf_counter()
    old: dict[int, torch.Tensor] = {}
    ref: dict[int, torch.Tensor] = {}
    neg: dict[int, torch.Tensor] = {}
    sums = torch.zeros(5)  # entropy sum, tokens, |diff| sum, sampled tokens, |diff| max
    fused = t.epochs == 1 and t.mini_batches == 1 and a.loss != "sft"

    def observe(micro, logp: torch.Tensor, mask: torch.Tensor, ent: torch.Tensor) -> None:
        """Record old log-probs, entropy and the generator gap of a micro-batch under the current policy."""
        sums[0] += (ent * mask).sum().cpu()
        sums[1] += mask.sum().cpu()
        for j, r in enumerate(micro.index):
            n = len(batch.responses[r])
            old[r] = logp[j, :n].detach().cpu()
            if batch.gen_logprobs[r] is not None and n:
                diff = (old[r] - torch.tensor(batch.gen_logprobs[r])).abs()
                sums[2] += diff.sum()
                sums[3] += n
                sums[4] = torch.maximum(sums[4], diff.max())

    count = equal_chunks(len(mine), groups_per_micro)
    passes = micro_batches([rows_of[g] for g in mine], prompts, responses, groups_per_micro, count)
    with torch.no_grad():
        for micro in passes:
            if not fused:
                logp, mask, ent = forward_logprobs(engine, micro, pad_id, t.micro_batch_size, with_entropy=True)
                observe(micro, logp, mask, ent)
            if ref_model is not None:
                logp, _, _ = forward_logprobs(ref_model, micro, pad_id, t.micro_batch_size)
                for j, r in enumerate(micro.index):
                    ref[r] = logp[j, : len(responses[r])].cpu()
            if batch.negative_prompts is not None:
                neg_micro = type(micro)([batch.negative_prompts[r] for r in micro.index], micro.responses, micro.index)
                logp, _, _ = forward_logprobs(engine, neg_micro, pad_id, t.micro_batch_size)
                for j, r in enumerate(micro.index):
                    neg[r] = logp[j, : len(responses[r])].cpu()
    metrics = {"time/old_logprobs_s": time.perf_counter() - t_start}

    if a.loss == "sft":  # train on this rank's share of the golden answers, each a "group" of one row
        mine = shard_groups(len(batch.golden_responses), rank, world_size)
        rows_of = {g: [g] for g in mine}
        groups_per_micro = t.micro_batch_size
        prompts, responses = batch.golden_prompts, batch.golden_responses
    golden = batch.is_golden.flatten()
    sft_sum = torch.zeros(1)  # the supervised term, summed over updates
    totals = torch.zeros(6)  # loss, clip tokens, ratio sum, tokens, kl sum, grad-norm sum
    n_updates = 0
    for _ in range(t.epochs):
        for mini in _split(mine, t.mini_batches):
            rows = [r for g in mini for r in rows_of[g]]
            _, mask_all = pad_responses([responses[r] for r in rows], torch.float32)
            if a.loss == "conspo":
                correct = batch.correct[mini].bool() if mini else torch.zeros(0, group_size, dtype=torch.bool)
                contrast = correct.any(1) & (~correct).any(1)
                local_norm = (correct & contrast.unsqueeze(1)).sum().float()
            elif a.loss == "sft":
                local_norm = mask_all.sum()  # golden-answer tokens
            elif rows:
                local_norm = agg_normalizer(mask_all, a.loss_agg, cfg.rollout.max_new_tokens)
            else:
                local_norm = torch.zeros(())
            global_norm = all_reduce(local_norm.reshape(1))[0]
            if a.sft_coef > 0:  # tokens of the mini-batch's injected golden answers, over all ranks
                sft_norm = all_reduce(torch.tensor([float(sum(len(responses[r]) for r in rows if golden[r]))]))[0]
            # at least one (dummy) pass: DeepSpeed cannot step without a backward (e.g. ga_sft with nothing to imitate)
            count = max(1, equal_chunks(len(mini), groups_per_micro))
            micros = micro_batches([rows_of[g] for g in mini], prompts, responses, groups_per_micro, count)
            for k, micro in enumerate(micros):
                engine.set_gradient_accumulation_boundary(k == len(micros) - 1)
                logp, mask, ent = forward_logprobs(engine, micro, pad_id, t.micro_batch_size, with_entropy=fused)
                if fused:
                    observe(micro, logp, mask, ent)
                if not micro.index:
                    loss = (logp * mask).sum()  # zero, but touches every parameter for the collectives
                elif a.loss == "conspo":
                    scores = sequence_scores(logp, mask).reshape(-1, group_size)
                    groups = [r // group_size for r in micro.index[::group_size]]
                    margin = conspo_margin(step, a.conspo_margin_start, a.conspo_margin_end, a.conspo_margin_steps)
                    loss, _ = conspo_loss(scores, batch.correct[groups].bool().to(scores.device), tau=a.conspo_tau, margin=margin,
                                           normalizer=global_norm)
                    totals[0] += loss.item()
                elif a.loss == "sft":
                    loss = sft_loss(logp, mask, normalizer=global_norm)
                    totals[0] += loss.item()
                    sft_sum += loss.item()
                else:
                    pad = lambda d: _pad_like(d, micro.index, logp)  # noqa: E731
                    weights = None
                    if neg:
                        weights = guidance_token_weights(logp.detach(), pad(neg), mask, power=a.guidance_power)
                    loss, pm = policy_loss(
                        logp, pad(old), batch.advantages[micro.index].to(logp.device), mask, ratio_level=a.ratio_level,
                        clip_low=a.clip_low, clip_high=a.clip_high, agg=a.loss_agg,
                        ref_logp=pad(ref) if ref else None, kl_coef=a.kl_coef, kl_estimator=a.kl_estimator,
                        token_weights=weights, dual_clip=a.dual_clip, normalizer=global_norm,
                        max_response_len=cfg.rollout.max_new_tokens,
                    )
                    tokens = mask.sum().item()
                    totals[0] += loss.item()
                    totals[1] += float(pm["clip_frac"]) * tokens
                    totals[2] += float(pm["ratio_mean"]) * tokens
                    totals[3] += tokens
                    totals[4] += float(pm.get("kl", 0.0)) * tokens
                if a.sft_coef > 0 and micro.index:
                    in_golden = golden[micro.index].to(mask.device, mask.dtype).unsqueeze(1)
                    term = sft_loss(logp, mask * in_golden, normalizer=sft_norm)
                    loss = loss + a.sft_coef * term
                    sft_sum += term.item()
                # DeepSpeed averages gradients over ranks; our losses are already global sums / N.
                engine.backward(loss * world_size * batch.alpha)
            totals[5] += step_with_grad_norm(engine)
            n_updates += 1
    diff_max = all_reduce(sums[4:5], torch.distributed.ReduceOp.MAX)
    sums = all_reduce(sums[:4])
    metrics["policy/entropy"] = (sums[0] / sums[1].clamp(min=1)).item()
    metrics["sync/logprob_abs_diff"] = (sums[2] / sums[3].clamp(min=1)).item()
    metrics["sync/logprob_abs_diff_max"] = diff_max.item()
    loss_sum = all_reduce(totals[:5])
    metrics["loss/policy"] = loss_sum[0].item() / max(n_updates, 1)
    metrics["grad/norm"] = totals[5].item() / max(n_updates, 1)
    metrics["lr"] = engine.lr_scheduler.get_last_lr()[0] if engine.lr_scheduler else cfg.trainer.lr
    if a.loss == "sft" or a.sft_coef > 0:
        metrics["loss/sft"] = all_reduce(sft_sum)[0].item() / max(n_updates, 1)
    if a.loss == "clipped":
        metrics["policy/clip_frac"] = (loss_sum[1] / loss_sum[3].clamp(min=1)).item()
        metrics["policy/ratio_mean"] = (loss_sum[2] / loss_sum[3].clamp(min=1)).item()
        if a.kl_coef > 0:
            metrics["kl/mean"] = (loss_sum[4] / loss_sum[3].clamp(min=1)).item()
    return metrics


def _pad_like(values: dict[int, torch.Tensor], rows: list[int], like: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(like)
    for j, r in enumerate(rows):
        out[j, : values[r].shape[0]] = values[r].to(like.device)
    return out
