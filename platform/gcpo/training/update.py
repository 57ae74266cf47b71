"""One policy update on a worker's shard of the step batch (docs/architecture.md, "One training step", steps 5-6).

`StepBatch` is built on rank 0 (rollouts, verification, golden answers, advantages) and broadcast; every rank
updates on its shard of whole groups (groups g with g % world == rank), so ConSPO's group-wise contrast stays
local. Old log-probs are recomputed here under the current policy (so a golden answer's ratio is 1 on the first
mini-batch), and their gap to the generators' log-probs is the weight-sync check, free of extra passes.

Fused old log-probs (a choice, as verl does on-policy): the policy has not moved when the first mini-batch of the
first epoch is trained on, so that mini-batch's old log-probs are the update's own forward, detached, and the
no-grad pass runs over the other mini-batches' groups only. With one epoch of one mini-batch the no-grad pass is
skipped (a third of the update's compute on CPU); with the study's two mini-batches it covers half the rows. On
the fused rows the ratio is exactly 1 and the clip inactive; elsewhere the old log-probs are the same function of
the same weights, so the update is the unfused one up to float rounding (tests/training/test_update.py).
`trainer.fuse_old_logprobs=false` runs the unfused path (the tests' and benchmarks' reference).

What each loss kind trains on, its normaliser, its micro-batch loss and its metrics are entries of the loss table
(`gcpo.training.objectives`); this module only arranges epochs x mini-batches x micro-batches around it. Imitation
(`algorithm.loss=sft`): the no-grad pass still runs over the rollouts (entropy and the sync check, the same
metrics as every other loss), then the updates train on the batch's golden answers alone, each its own group of
one, sharded across ranks the same way. With `algorithm.sft_coef` = c > 0 the other losses add c * `sft_loss` over
the injected golden answers of the mini-batch (their own global token count).

Entropy is tallied apart for the generators' own samples (`policy/entropy`) and for golden rows
(`policy/entropy_golden`: GCPO's injected golden answers in the old-log-prob pass, ga_sft's imitated ones in their
first epoch's forward), so losses that train on golden answers and losses that do not report the same quantity.
GPG's alpha scales each optimiser step's learning rate (`step_with_grad_norm`), not the loss.

`score_rollouts` and `update_gradient` expose the old-log-prob pass and one update's gradient (the same
micro-batch losses and backward passes, nothing stepped) for `gcpo probe` (`gcpo.standalone.probe`).

Metrics are named totals (`Tally`), summed over micro-batches and updates, and reduced over ranks once, at the end;
totals the objective keeps per optimiser update (`name@u`) make the per-mini-batch metrics (`*_u<k>`). KL is taken
over the policy's own samples of the task's prompt only (`own_samples`: no golden answer, no prefix hint).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from gcpo.algorithms import sft_loss
from gcpo.config import RunConfig
from gcpo.training.deepspeed_policy import current_lr, step_with_grad_norm
from gcpo.training.distributed import all_reduce, max_over_ranks, shard_groups, world
from gcpo.training.microbatch import (
    Micro,
    forward_logprobs,
    forward_slots,
    micro_batches,
    pad_like,
    real_tokens,
    split_groups,
)
from gcpo.training.objectives import BoundObjective, MicroInputs, MiniRows, objective_for
from gcpo.training.types import StepBatch

# The update's own totals; each objective adds its own (`Objective.totals`).
_COMMON_TOTALS = ("loss", "sft_term", "micro_batches", "entropy_sum", "entropy_tokens", "entropy_golden_sum",
                  "entropy_golden_tokens", "gen_diff_sum", "gen_tokens", "stale_diff_sum", "stale_tokens", "token_slots",
                  "real_tokens")


class Tally:
    """Named totals and maxima of one update, reduced over ranks once. Every rank declares the same names in the
    same order, so the reduction is one all-reduce of a fixed-layout tensor (plus one for the maxima)."""

    def __init__(self, sums: Sequence[str], maxima: Sequence[str] = ()):
        self.sums = dict.fromkeys(sums, 0.0)
        self.maxima = dict.fromkeys(maxima, 0.0)
        self.update = 0  # the optimiser update under way: a declared `name@update` total is added to as well

    def add(self, name: str, value) -> None:
        self.sums[name] += float(value)
        scoped = f"{name}@{self.update}"
        if scoped in self.sums:
            self.sums[scoped] += float(value)

    def maximum(self, name: str, value) -> None:
        self.maxima[name] = max(self.maxima[name], float(value))

    def reduced(self) -> dict[str, float]:
        sums = all_reduce(torch.tensor(list(self.sums.values())))
        maxima = all_reduce(torch.tensor(list(self.maxima.values()) or [0.0]), torch.distributed.ReduceOp.MAX)
        return dict(zip(self.sums, sums.tolist())) | dict(zip(self.maxima, maxima.tolist()))


@dataclass
class TrainingRows:
    """The rows an objective trains on, and this rank's groups of them (a group: G rollouts, or one golden row)."""

    prompts: list[list[int]]
    responses: list[list[int]]
    groups: dict[int, list[int]]  # this rank's group -> its row indices, in shard order
    groups_per_micro: int


@dataclass
class UpdateContext:
    """What every pass of one update shares: the DeepSpeed engine being trained, the step batch, the config, the
    bound loss, the totals, the step (the weights' version) and the pad id; `fused_groups`: this rank's groups whose
    old log-probs are taken from the update's own forward (the first mini-batch of the first epoch)."""

    policy_engine: object
    batch: StepBatch
    cfg: RunConfig
    objective: BoundObjective
    tally: Tally
    step: int
    pad_id: int
    fused_groups: frozenset[int] = frozenset()


@dataclass
class RowLogprobs:
    """Per-row log-probs of the no-grad pass over the rollouts: old policy, reference model, negative prompts."""

    old: dict[int, torch.Tensor] = field(default_factory=dict)
    ref: dict[int, torch.Tensor] = field(default_factory=dict)
    negative: dict[int, torch.Tensor] = field(default_factory=dict)


def rollout_rows(batch: StepBatch, micro_batch_size: int) -> TrainingRows:
    """This rank's share of the rollouts: whole groups of G rows."""
    rank, world_size = world()
    g_size = batch.group_size
    mine = shard_groups(batch.num_groups, rank, world_size)
    return TrainingRows(batch.prompts, batch.responses, {g: list(range(g * g_size, (g + 1) * g_size)) for g in mine},
                        max(1, micro_batch_size // g_size))


def golden_rows(batch: StepBatch, micro_batch_size: int) -> TrainingRows:
    """This rank's share of the golden answers to imitate, each its own group of one row."""
    rank, world_size = world()
    mine = shard_groups(len(batch.golden_responses), rank, world_size)
    return TrainingRows(batch.golden_prompts, batch.golden_responses, {g: [g] for g in mine}, micro_batch_size)


def _training_rows(batch: StepBatch, micro_batch_size: int, objective: BoundObjective) -> TrainingRows:
    if objective.trains_on == "rollouts":
        return rollout_rows(batch, micro_batch_size)
    return golden_rows(batch, micro_batch_size)


def update_policy(policy_engine, batch: StepBatch, cfg: RunConfig, *, step: int, pad_id: int,
                  ref_model=None) -> dict:
    """Recompute old (and reference, negative-prompt) log-probs, then epochs x mini-batches of updates.

    GPG's alpha (`batch.alpha`, 1 unless `algorithm.gpg_alpha`) scales each optimiser step's learning rate
    (`step_with_grad_norm`), not the loss: a loss scale is undone by the gradient clip and by Adam.

    Returns metrics already reduced over ranks: loss/policy, policy/entropy (over the generators' own samples),
    policy/entropy_golden (over golden rows: the injected golden answers, or the imitated ones of loss sft; only
    when there are any), grad/norm, lr,
    sync/logprob_abs_diff(_max) (over rows sampled with the current weights), offpolicy/logprob_abs_diff (over rows
    sampled with older weights, bounded staleness), time/old_logprobs_s, batch/pad_frac (the padding share of the training passes'
    token slots), batch/token_slots and batch/real_tokens (the training passes' token positions computed, with
    and without padding, over every rank: a shared prompt counts once), loss/sft (loss sft or sft_coef > 0), and the objective's
    own (clipped: policy/clip_frac, policy/ratio_mean, policy/clip_frac_learnable and, for each optimiser update k
    of the step, policy/clip_frac_learnable_u<k>; with KL on kl/mean over the policy's own samples, kl/grad_share
    and kl/grad_share_u<k>; conspo: conspo/*).
    """
    cfg = with_run_span(cfg)
    a, t = cfg.algorithm, cfg.trainer
    objective = objective_for(a)
    tally = Tally(_COMMON_TOTALS + objective.totals(t.epochs * t.mini_batches), maxima=("gen_diff_max",))
    train = _training_rows(batch, t.micro_batch_size, objective)
    minis = split_mini_batches(list(train.groups), t.mini_batches)
    fused = frozenset(minis[0]) if t.fuse_old_logprobs and objective.trains_on == "rollouts" else frozenset()
    ctx = UpdateContext(policy_engine, batch, cfg, objective, tally, step, pad_id, fused)
    t_start = time.perf_counter()
    scores = _score_rollouts(ctx, ref_model)
    metrics = {"time/old_logprobs_s": time.perf_counter() - t_start}
    grad_norms = []
    for epoch in range(t.epochs):
        for mini in minis:
            tally.update = len(grad_norms)
            _backward_on(ctx, mini, train, scores, first_epoch=epoch == 0)
            grad_norms.append(step_with_grad_norm(policy_engine, lr_scale=batch.alpha))
    totals = tally.reduced() | {"updates": float(len(grad_norms))}
    updates = max(len(grad_norms), 1)
    if totals["entropy_golden_tokens"] > 0:
        metrics["policy/entropy_golden"] = totals["entropy_golden_sum"] / totals["entropy_golden_tokens"]
    metrics.update({
        "policy/entropy": totals["entropy_sum"] / max(totals["entropy_tokens"], 1.0),
        "loss/policy": totals["loss"] / updates,
        "grad/norm": sum(grad_norms) / updates,
        "lr": current_lr(policy_engine, t.lr),
        "batch/pad_frac": 1.0 - totals["real_tokens"] / max(totals["token_slots"], 1.0),
        "batch/token_slots": totals["token_slots"],
        "batch/real_tokens": totals["real_tokens"],
    })
    if a.sft_coef > 0:
        metrics["loss/sft"] = totals["sft_term"] / updates
    if totals["gen_tokens"] > 0 or totals["stale_tokens"] == 0:  # rows sampled with these weights (or none stale)
        metrics["sync/logprob_abs_diff"] = totals["gen_diff_sum"] / max(totals["gen_tokens"], 1.0)
        metrics["sync/logprob_abs_diff_max"] = totals["gen_diff_max"]
    if totals["stale_tokens"] > 0:
        metrics["offpolicy/logprob_abs_diff"] = totals["stale_diff_sum"] / totals["stale_tokens"]
    metrics.update(objective.summarize(totals, len(grad_norms)))
    return metrics


def with_run_span(cfg: RunConfig) -> RunConfig:
    """`cfg` with ConSPO's margin span resolved: `algorithm.conspo_margin_steps` 0 means the run's length
    (`trainer.steps`), so the curriculum ends at the last step of any run."""
    if cfg.algorithm.conspo_margin_steps > 0:
        return cfg
    return dataclasses.replace(cfg, algorithm=dataclasses.replace(cfg.algorithm, conspo_margin_steps=cfg.trainer.steps))


def score_rollouts(policy_engine, batch: StepBatch, cfg: RunConfig, *, pad_id: int, ref_model=None,
                   step: int = 0) -> RowLogprobs:
    """The update's no-grad pass alone: this rank's rollouts' old log-probs under the current policy (with the
    reference model's when `ref_model` is given, and the negative prompts' for guidance token credit), to pass to
    `update_gradient` once the policy has moved."""
    ctx = UpdateContext(policy_engine, batch, cfg, objective_for(cfg.algorithm),
                        Tally(_COMMON_TOTALS, maxima=("gen_diff_max",)), step, pad_id)
    return _score_rollouts(ctx, ref_model)


def update_gradient(policy_engine, batch: StepBatch, cfg: RunConfig, scores: RowLogprobs, *, step: int,
                    pad_id: int) -> tuple[torch.Tensor, dict[str, float]]:
    """The pre-clip gradient one update over the whole `batch` (one mini-batch) hands the optimiser, flattened
    over the trainable parameters, and the objective's metrics: the same micro-batch losses and backward passes as
    `update_policy`, with the old log-probs of `scores` (`score_rollouts`, taken before the policy moved) instead
    of recomputed ones. Nothing is stepped and the gradients are cleared. One process at ZeRO stage 0 (where the
    gradients sit whole on the parameters): what `gcpo probe` and the switch-sensitivity test run."""
    if policy_engine.zero_optimization_stage() != 0 or world()[1] != 1:
        raise ValueError("update_gradient reads whole gradients: one process at ZeRO stage 0")
    cfg = with_run_span(cfg)
    objective = objective_for(cfg.algorithm)
    tally = Tally(_COMMON_TOTALS + objective.totals(1), maxima=("gen_diff_max",))
    ctx = UpdateContext(policy_engine, batch, cfg, objective, tally, step, pad_id)
    train = _training_rows(batch, cfg.trainer.micro_batch_size, objective)
    _backward_on(ctx, list(train.groups), train, scores, first_epoch=False)
    params = [p for p in policy_engine.module.parameters() if p.requires_grad]
    grad = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().flatten()
                      for p in params])
    policy_engine.zero_grad()
    return grad, objective.summarize(tally.reduced() | {"updates": 1.0}, 1)


def split_mini_batches(items: list, parts: int) -> list[list]:
    """`items` (a rank's groups) in `parts` consecutive mini-batches of ceil(len / parts) (the last may be short or
    empty): the one split of the update, also the clip calibration's (gcpo.standalone.calibrate)."""
    size = -(-len(items) // parts) if items else 0
    return [items[i * size : (i + 1) * size] for i in range(parts)]


def _tally_entropy(tally: Tally, entropy: torch.Tensor, mask: torch.Tensor, golden: Sequence[bool]) -> None:
    """Entropy of a micro-batch's rows, the generators' own samples (`entropy_*`) apart from golden rows
    (`entropy_golden_*`), so a loss that trains on golden answers and one that does not report the same quantity."""
    per_row, tokens = (entropy * mask).sum(dim=1).cpu(), mask.sum(dim=1).cpu()
    for j, is_golden in enumerate(golden):
        kind = "entropy_golden" if is_golden else "entropy"
        tally.add(f"{kind}_sum", per_row[j])
        tally.add(f"{kind}_tokens", tokens[j])


def _observe(tally: Tally, batch: StepBatch, micro: Micro, logp, mask, entropy, old: dict, step: int) -> None:
    """Record old log-probs, entropy and the generator gap of a micro-batch under the current policy (version
    `step`): for rows sampled with these very weights the gap is the weight-sync check (`gen_diff_*`); for rows
    sampled earlier (bounded staleness) it is the behaviour-to-proximal gap (`stale_diff_*`)."""
    _tally_entropy(tally, entropy, mask, batch.is_golden.flatten()[micro.index].tolist())
    for j, r in enumerate(micro.index):
        n = len(batch.responses[r])
        old[r] = logp[j, :n].detach().cpu()
        if batch.gen_logprobs[r] is not None and n:
            diff = (old[r] - torch.tensor(batch.gen_logprobs[r])).abs()
            fresh = not batch.versions or batch.versions[r] == step
            tally.add("gen_diff_sum" if fresh else "stale_diff_sum", diff.sum())
            tally.add("gen_tokens" if fresh else "stale_tokens", n)
            if fresh:
                tally.maximum("gen_diff_max", diff.max())


def _rows_of(logp: torch.Tensor, micro: Micro) -> dict[int, torch.Tensor]:
    return {r: logp[j, : len(micro.responses[j])].cpu() for j, r in enumerate(micro.index)}


def _score_rollouts(ctx: UpdateContext, ref_model) -> RowLogprobs:
    """The no-grad passes over this rank's rollouts: old log-probs, entropy and the sync check (for the groups not
    fused into the update); the reference model's log-probs (KL on) and those under the negative prompts
    (guidance), for every group."""
    t, batch = ctx.cfg.trainer, ctx.batch
    forward = functools.partial(forward_logprobs, pad_id=ctx.pad_id, micro_batch_size=t.micro_batch_size,
                                shared_prefix=t.shared_prefix)
    rows = rollout_rows(batch, t.micro_batch_size)
    scores = RowLogprobs()
    with torch.no_grad():
        for micro in _micros([rows.groups[g] for g in rows.groups if g not in ctx.fused_groups], rows, t):
            logp, mask, ent = forward(ctx.policy_engine, micro, with_entropy=True)
            _observe(ctx.tally, batch, micro, logp, mask, ent, scores.old, ctx.step)
        if ref_model is None and batch.negative_prompts is None:
            return scores
        for micro in _micros(list(rows.groups.values()), rows, t):
            if ref_model is not None:
                scores.ref.update(_rows_of(forward(ref_model, micro)[0], micro))
            if batch.negative_prompts is not None:
                negative = micro.with_prompts(batch.negative_prompts)
                scores.negative.update(_rows_of(forward(ctx.policy_engine, negative)[0], micro))
    return scores


def _micros(group_rows: list, rows: TrainingRows, t, at_least: int = 0) -> list[Micro]:
    """The micro-batches of these groups' rows, as many on every rank (empty ones where a rank has fewer), and
    at least `at_least` of them."""
    chunks = _chunks(group_rows, rows, t)
    return micro_batches(chunks, rows.prompts, rows.responses, max(at_least, max_over_ranks(len(chunks))))


def _chunks(group_rows: list, rows: TrainingRows, t) -> list:
    """This rank's groups cut into micro-batches (`trainer.micro_batch_size` rows, or `trainer.max_tokens_per_micro`
    token slots)."""
    return split_groups(group_rows, rows.prompts, rows.responses, groups_per_micro=rows.groups_per_micro,
                        max_tokens=t.max_tokens_per_micro, shared_prefix=t.shared_prefix)


def _backward_on(ctx: UpdateContext, mini: list[int], train: TrainingRows, scores: RowLogprobs, *,
                 first_epoch: bool) -> None:
    """The forward and backward passes of one optimiser update on the mini-batch of groups `mini`: the
    gradients are accumulated, the step is the caller's. On the fused mini-batch (`ctx.fused_groups`, first epoch)
    the policy has not moved yet, so the forward's detached log-probs are the old ones (with entropy and the sync
    check). Golden rows trained on (loss sft) have their entropy tallied on their first epoch (the policy before
    any update when there is one mini-batch)."""
    cfg, batch, world_size = ctx.cfg, ctx.batch, world()[1]
    fused = first_epoch and bool(mini) and frozenset(mini) == ctx.fused_groups
    rows = [r for g in mini for r in train.groups[g]]
    on_rollouts = ctx.objective.trains_on == "rollouts"
    correct = (batch.correct[mini].bool() if (mini and on_rollouts)
               else torch.zeros(0, batch.group_size, dtype=torch.bool))
    mini_rows = MiniRows([train.responses[r] for r in rows], correct, cfg.rollout.max_new_tokens)
    normalizer = all_reduce(ctx.objective.normalizer(mini_rows).reshape(1))[0]
    sft_normalizer = _sft_normalizer(ctx, train, rows)
    # at least one (dummy) pass: DeepSpeed cannot step without a backward (e.g. ga_sft with nothing to imitate)
    micros = _micros([train.groups[g] for g in mini], train, cfg.trainer, at_least=1)
    imitated_entropy = first_epoch and not on_rollouts
    for k, micro in enumerate(micros):
        ctx.policy_engine.set_gradient_accumulation_boundary(k == len(micros) - 1)
        logp, mask, ent = forward_logprobs(ctx.policy_engine, micro, ctx.pad_id, cfg.trainer.micro_batch_size,
                                           with_entropy=fused or imitated_entropy,
                                           shared_prefix=cfg.trainer.shared_prefix)
        if fused:
            _observe(ctx.tally, batch, micro, logp, mask, ent, scores.old, ctx.step)
        elif imitated_entropy:
            _tally_entropy(ctx.tally, ent, mask, [True] * len(micro.index))
        if not micro.index:
            loss = (logp * mask).sum()  # zero, but touches every parameter for the collectives
        else:
            ctx.tally.add("token_slots", forward_slots(micro.prompts, micro.responses, cfg.trainer.shared_prefix))
            ctx.tally.add("real_tokens", real_tokens(micro.prompts, micro.responses, cfg.trainer.shared_prefix))
            inputs = _micro_inputs(ctx, logp, mask, micro, scores, on_rollouts, normalizer)
            loss = _micro_loss(ctx, inputs, micro, sft_normalizer)
        # DeepSpeed averages gradients over ranks; our losses are already global sums / N.
        ctx.policy_engine.backward(loss * world_size)


def _sft_normalizer(ctx: UpdateContext, train: TrainingRows, rows: list[int]) -> torch.Tensor | None:
    """With sft_coef > 0: the tokens of the mini-batch's injected golden answers, over all ranks."""
    if ctx.cfg.algorithm.sft_coef <= 0:
        return None
    golden = ctx.batch.is_golden.flatten()
    return all_reduce(torch.tensor([float(sum(len(train.responses[r]) for r in rows if golden[r]))]))[0]


def _micro_inputs(ctx: UpdateContext, logp, mask, micro: Micro, scores: RowLogprobs, on_rollouts: bool,
                  normalizer: torch.Tensor) -> MicroInputs:
    """The loss table's view of a non-empty micro-batch."""
    batch, step, max_len = ctx.batch, ctx.step, ctx.cfg.rollout.max_new_tokens
    g_size = batch.group_size
    if not on_rollouts:  # golden rows: no advantage, no old policy, no group contrast
        return MicroInputs(logp, mask, torch.zeros(len(micro.index)), torch.zeros(0, g_size, dtype=torch.bool),
                           None, None, None, normalizer, step, max_len)
    groups = [r // g_size for r in micro.index[::g_size]]
    correcting = ctx.cfg.algorithm.rollout_correction != "none"
    behaviour, sampled = _behaviour(batch, micro, logp) if correcting else (None, None)
    golden = batch.is_golden.flatten()[micro.index]
    return MicroInputs(
        logp, mask, batch.advantages[micro.index], batch.correct[groups].bool(),
        old_logp=pad_like(scores.old, micro.index, logp),
        ref_logp=pad_like(scores.ref, micro.index, logp) if scores.ref else None,
        negative_logp=pad_like(scores.negative, micro.index, logp) if scores.negative else None,
        normalizer=normalizer, step=step, max_response_len=max_len,
        behaviour_logp=behaviour, sampled=sampled, golden=golden if bool(golden.any()) else None,
        kl_rows=own_samples(batch, micro.index) if scores.ref else None,
    )


def own_samples(batch: StepBatch, rows: Sequence[int]) -> torch.Tensor:
    """(len(rows),) bool: which of `rows` are the policy's own samples of the task's prompt, the only rows
    KL(pi || pi_ref) can be estimated from: not an injected golden answer, no golden-answer prefix hint in the
    prompt."""
    golden = batch.is_golden.flatten()
    hints = batch.hint_tokens or [0] * len(batch.responses)
    return torch.tensor([not bool(golden[r]) and hints[r] == 0 for r in rows], dtype=torch.bool)


def _behaviour(batch: StepBatch, micro: Micro, logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The generators' log-probs of the micro-batch's rows, padded like `logp` (0 where no generator sampled the
    row: an injected golden answer), and which rows a generator sampled."""
    gen = batch.gen_logprobs
    rows = {r: torch.tensor(gen[r]) if gen[r] is not None else torch.zeros(len(batch.responses[r]))
            for r in micro.index}
    return pad_like(rows, micro.index, logp), torch.tensor([gen[r] is not None for r in micro.index])


def _micro_loss(ctx: UpdateContext, inputs: MicroInputs, micro: Micro, sft_normalizer) -> torch.Tensor:
    """The objective's loss of a micro-batch, plus the supervised term (sft_coef > 0); records the totals."""
    a, tally = ctx.cfg.algorithm, ctx.tally
    loss, totals = ctx.objective.loss(inputs)
    tally.add("loss", loss.item())
    tally.add("micro_batches", 1)
    for name, value in totals.items():
        tally.add(name, value)
    if a.sft_coef > 0:
        golden = ctx.batch.is_golden.flatten()[micro.index]
        in_golden = golden.to(inputs.mask.device, inputs.mask.dtype).unsqueeze(1)
        term = sft_loss(inputs.logp, inputs.mask * in_golden, normalizer=sft_normalizer)
        loss = loss + a.sft_coef * term
        tally.add("sft_term", term.item())
    return loss
