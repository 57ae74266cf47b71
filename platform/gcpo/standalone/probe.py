"""`gcpo probe`: does each switch of a search space change the update, here? (docs/algorithms.md, "Does a switch
act?")

A switch can be a no-op in a given regime without anything failing: with one epoch of one mini-batch every ratio
is 1, so token and sequence ratios, clip ranges and golden-row treatments give the same gradient; with every
group all wrong and no golden answers every advantage is 0. The probe measures it on one real batch instead of
arguing it: the batch is sampled and scored once (`collect_step_batch`, golden answers injected as in training),
its old log-probs are taken under the starting policy, the policy is moved `steps_off` optimiser steps by the base
config's update on that batch (what later epochs or mini-batches of a step see), and then, for the base config and
for each value of each axis of the space, the gradient one update over the whole batch would hand the optimiser is
computed by the update's own code (`gcpo.training.update.update_gradient`) from those stale old log-probs.

What is compared: v = lr_scale x gradient (pre-clip, flattened over the trainable parameters), lr_scale being
GPG's alpha (`algorithm.gpg_alpha` scales the step's learning rate). A value *acts* when the cosine between its v
and the base's is below 0.999 or their norm ratio is off 1 by more than 1e-3. A pure rescale of the gradient (the
cosine 1, the lr scale unchanged) is reported as `acts (scale only)`: gradient clipping (when the pre-clip norm
exceeds `trainer.grad_clip`) and Adam (m / sqrt(v)) undo most of it.

Every variant's batch comes from the same samples: the rollout engine replays what it sampled for the same
prompts and settings (`ReplayEngine`), so a variant differs from the base in its switches alone (batch filling
may sample further prompts). The reference model of KL is the starting policy, so its log-probs are the old ones.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from gcpo.config import RunConfig, load_config, parse_override
from gcpo.training.types import StepBatch

ACTS_COSINE, ACTS_NORM = 0.999, 1e-3  # the verdict's thresholds
PROBED = ("algorithm.", "rollout.", "task.")  # axes whose values change the batch or the update (and preset, arm)


@dataclass
class Variant:
    """One value of one axis of the space, as a run config."""

    key: str  # a dotted config key, "preset" or "arm"
    value: Any
    cfg: RunConfig


@dataclass
class Measurement:
    key: str
    value: Any
    cosine: float
    norm_ratio: float
    grad_norm: float  # the pre-clip gradient norm (before the lr scale)
    lr_scale: float
    clip_frac: float | None
    verdict: str


def base_values(space_base: dict, preset: str | None, overrides: list[str], has_config: bool) -> dict[str, Any]:
    """The probe's base as dotted values: the space's `base`, then `--preset`, then KEY=VALUE (as `gcpo sweep`
    joins them); with no preset anywhere and no config file, the gcpo preset (as `gcpo train`)."""
    values = dict(space_base)
    if preset is not None:
        values["preset"] = preset
    values |= dict(parse_override(o) for o in overrides)
    if "preset" not in values and not has_config:
        values["preset"] = "gcpo"
    return values


def probe_variants(space, values: dict[str, Any], config_path=None) -> tuple[list[Variant], list[str]]:
    """Every value of the space's grid and choice axes (and named arms) joined to the base `values`, and a note
    for each axis not probed (value ranges, and keys that do not act on one update: model.*, trainer.*, ...)."""
    variants, skipped = [], []
    for key, spec in space.space.items():
        if spec.kind not in ("grid", "choice"):
            skipped.append(f"{key}: a {spec.kind} range, not a list of values")
        elif key == "arm":
            variants += [Variant("arm", name, load_config(config_path, values | space.arms[name])) for name in spec.values]
        elif key == "preset" or key.startswith(PROBED):
            variants += [Variant(key, v, load_config(config_path, values | {key: v})) for v in spec.values]
        else:
            skipped.append(f"{key}: not a switch of one update (the probe measures one model's gradient on one batch)")
    return variants, skipped


class ReplayEngine:
    """A rollout engine that samples each (prompts, settings) once and replays it: every variant's batch is built
    from the same samples."""

    def __init__(self, engine):
        self.engine = engine
        self.max_model_len = engine.max_model_len
        self.weight_version = engine.weight_version
        self._seen: dict = {}

    def generate(self, prompts, settings):
        key = (tuple(tuple(p) for p in prompts), settings)
        if key not in self._seen:
            self._seen[key] = self.engine.generate(prompts, settings)
        return self._seen[key]

    def shutdown(self) -> None:
        self.engine.shutdown()


def compare(v: torch.Tensor, base: torch.Tensor) -> tuple[float, float]:
    """(cosine, norm ratio |v| / |base|); two zero vectors are the same (1, 1), a zero against a non-zero has
    cosine nan."""
    v, base = v.double(), base.double()
    nv, nb = torch.linalg.vector_norm(v).item(), torch.linalg.vector_norm(base).item()
    if nv == 0 and nb == 0:
        return 1.0, 1.0
    if nv == 0 or nb == 0:
        return math.nan, (math.inf if nb == 0 else 0.0)
    return min(1.0, max(-1.0, torch.dot(v, base).item() / (nv * nb))), nv / nb


def verdict(cosine: float, norm_ratio: float, lr_changed: bool) -> str:
    """`acts` (the direction moved), `acts (step size)` (GPG's lr scale alone), `acts (scale only)` (the gradient's
    length alone: clipping and Adam undo most of it), or `no-op here`."""
    if math.isnan(cosine) or cosine < ACTS_COSINE:
        return "acts"
    if abs(norm_ratio - 1.0) > ACTS_NORM:
        return "acts (step size)" if lr_changed else "acts (scale only)"
    return "no-op here"


def measure(policy_engine, collect: Callable[[RunConfig], StepBatch], base: RunConfig, variants: list[Variant], *,
            steps_off: int, pad_id: int, ref_model=None) -> tuple[dict[str, float], list[Measurement]]:
    """The base's gradient metrics after moving the policy `steps_off` steps, and each variant's measurement (a
    variant whose config is the base's is marked `base`).

    `collect(cfg)` builds a config's step batch (the same samples for every config); old log-probs of every batch
    are taken first, under the starting policy (which is also KL's reference); then the policy takes `steps_off`
    optimiser steps on the base batch, each `update_policy` with one epoch of one mini-batch (`ref_model`: the
    frozen start, needed when the base has KL on); then the gradients, each of one update over the whole batch."""
    from gcpo.training.update import update_policy

    start = _prepared(policy_engine, collect, base, pad_id)
    prepared = [start if v.cfg == base else _prepared(policy_engine, collect, v.cfg, pad_id) for v in variants]
    one_step = dataclasses.replace(base, trainer=dataclasses.replace(base.trainer, epochs=1, mini_batches=1))
    for _ in range(steps_off):
        update_policy(policy_engine, start[0], one_step, step=0, pad_id=pad_id, ref_model=ref_model)
    base_v, base_metrics = _step_vector(policy_engine, base, *start, pad_id=pad_id)
    out = []
    for variant, (batch, scores) in zip(variants, prepared):
        same = variant.cfg == base
        v, metrics = (base_v, base_metrics) if same else _step_vector(policy_engine, variant.cfg, batch, scores,
                                                                      pad_id=pad_id)
        cosine, ratio = compare(v, base_v)
        out.append(Measurement(variant.key, variant.value, cosine, ratio, metrics["grad_norm"], batch.alpha,
                               metrics.get("policy/clip_frac"),
                               "base" if same else verdict(cosine, ratio, batch.alpha != start[0].alpha)))
    return base_metrics, out


def _prepared(policy_engine, collect, cfg: RunConfig, pad_id: int):
    """A config's batch and its old (and reference) log-probs under the current (starting) policy."""
    from gcpo.training.update import score_rollouts

    batch = collect(cfg)
    scores = score_rollouts(policy_engine, batch, cfg, pad_id=pad_id)
    if cfg.algorithm.kl_coef > 0:  # the reference model is the starting policy
        scores.ref = dict(scores.old)
    return batch, scores


def _step_vector(policy_engine, cfg: RunConfig, batch: StepBatch, scores, *, pad_id: int):
    """lr_scale x the update's gradient, and its metrics (with `grad_norm`, before the lr scale)."""
    from gcpo.training.update import update_gradient

    grad, metrics = update_gradient(policy_engine, batch, cfg, scores, step=0, pad_id=pad_id)
    metrics["grad_norm"] = torch.linalg.vector_norm(grad).item()
    return grad * batch.alpha, metrics


def format_report(label: str, base_metrics: dict, rows: list[Measurement], skipped: list[str]) -> str:
    """The probe's printout: a header, one line per value, the skipped axes and what `scale only` means."""
    ratio, clip = base_metrics.get("policy/ratio_mean"), base_metrics.get("policy/clip_frac")
    moved = f", ratio_mean {ratio:.4f}, clip_frac {clip:.3f}" if ratio is not None else ""
    lines = [f"{label}: base |grad| {base_metrics['grad_norm']:.4g}{moved}", "",
             f"{'switch':<34} {'value':<22} {'cosine':>8} {'norm ratio':>11} {'|grad|':>9} {'lr x':>6} "
             f"{'clip_frac':>9}  verdict"]
    previous = None
    for m in rows:
        clip = "-" if m.clip_frac is None else f"{m.clip_frac:.3f}"
        cosine = "-" if math.isnan(m.cosine) else f"{m.cosine:.4f}"
        lines.append(f"{m.key if m.key != previous else '':<34} {_shown(m.value):<22} {cosine:>8} "
                     f"{m.norm_ratio:>11.4f} {m.grad_norm:>9.4g} {m.lr_scale:>6.3g} {clip:>9}  {m.verdict}")
        previous = m.key
    lines += [f"not probed: {s}" for s in skipped]
    if any(m.verdict == "acts (scale only)" for m in rows):
        lines.append("scale only: the same direction, another length; gradient clipping (a pre-clip norm above "
                     "trainer.grad_clip) and Adam undo most of such a change")
    return "\n".join(lines)


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def run_probe(cfg: RunConfig, variants: list[Variant], *, steps_off: int) -> tuple[dict, list[Measurement]]:
    """Build the model (a DeepSpeed engine at ZeRO 0 in this process), the transformers rollout engine, the data
    and the verifier pool of `cfg`, and `measure`."""
    from transformers import AutoTokenizer

    from gcpo.models import load_causal_lm, pad_token_id, resolve_model
    from gcpo.rollout import build_engine
    from gcpo.tasks.pool import VerifierPool
    from gcpo.training.deepspeed_policy import build_policy
    from gcpo.training.distributed import single_process_group
    from gcpo.training.lora import apply_lora

    model_dir = resolve_model(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pad_id = pad_token_id(tokenizer)
    model = apply_lora(load_causal_lm(model_dir, cfg.model.dtype), cfg.model.lora)
    ref_model = copy.deepcopy(model).eval().requires_grad_(False) if cfg.algorithm.kl_coef > 0 else None
    rollout = ReplayEngine(build_engine(dataclasses.replace(cfg.rollout, backend="transformers"), model_dir,
                                        model_dtype=cfg.model.dtype))
    pool = VerifierPool.from_config(cfg.task)
    try:
        with single_process_group():
            trainer = dataclasses.replace(cfg.trainer, zero_stage=0, num_workers=1)
            policy_engine = build_policy(model, trainer, cfg.model.dtype)
            collect = batch_collector(rollout, tokenizer, pool)
            return measure(policy_engine, collect, cfg, variants, steps_off=steps_off, pad_id=pad_id,
                           ref_model=ref_model)
    finally:
        pool.close()
        rollout.shutdown()


def batch_collector(rollout, tokenizer, pool) -> Callable[[RunConfig], StepBatch]:
    """`collect(cfg)`: step 0's batch of `cfg`, from a fresh prompt sampler (the same prompts for every config),
    with its training data built once per task and negative-prompt setting."""
    from gcpo.rollout import sampling_settings
    from gcpo.training.data import build_training_data
    from gcpo.training.rollouts import collect_step_batch
    from gcpo.training.sampler import PromptSampler

    data_cache: dict = {}

    def collect(cfg: RunConfig) -> StepBatch:
        key = (repr(cfg.task), cfg.algorithm.token_credit, cfg.algorithm.guidance_negative)
        if key not in data_cache:
            data_cache[key] = build_training_data(cfg, tokenizer, pool, max_model_len=rollout.max_model_len)
        data = data_cache[key]
        sampler = PromptSampler(len(data.prompt_ids), seed=cfg.trainer.seed)
        return collect_step_batch(rollout, data, sampler, cfg, sampling_settings(cfg.rollout), step=0)[0]

    return collect
