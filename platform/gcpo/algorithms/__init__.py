"""The algorithm library: pure torch functions, no Ray, no I/O. A stable surface for researchers.

- advantages: `group_advantages`, `gpg_alpha`, `zero_variance_groups`
- losses: `policy_loss`, `aggregate`, `agg_normalizer`, `importance_ratio`, `kl_penalty`
- GCPO golden answers: `golden_replacement_index`, `golden_token_loss` (algorithm.golden_ratio)
- ConSPO: `conspo_loss`, `conspo_margin`, `conspo_normalizer`, `contrastive_roles`, `sequence_scores`
- guidance-contrastive token credit: `guidance_token_weights`
- batch filling (DAPO dynamic sampling, GPG beta_th): `fill_decision`, `FillDecision`
- supervised imitation of golden answers (ga_sft, sft_coef): `sft_loss`, `sft_prompt_mask`
- rollout-mismatch corrections (tis, mis, icepop): `correction_weights`
- golden-answer prefix hints: `hint_length`, `adapt_hint_fraction`
- presets: `PRESET_NAMES`, `preset_values`
- the choice switches' allowed values: `gcpo.algorithms.choices`

Names load on first use (PEP 562 `__getattr__`): importing the torch-free `choices` and `presets`, as the config
and the command line do, does not import torch.
"""

import importlib

# name -> the submodule that defines it
_EXPORTS: dict[str, str] = {
    "gpg_alpha": "advantages",
    "group_advantages": "advantages",
    "zero_variance_groups": "advantages",
    "FillDecision": "batch_filling",
    "fill_decision": "batch_filling",
    "conspo_loss": "conspo",
    "conspo_margin": "conspo",
    "conspo_normalizer": "conspo",
    "contrastive_roles": "conspo",
    "sequence_scores": "conspo",
    "golden_replacement_index": "golden",
    "adapt_hint_fraction": "hints",
    "hint_length": "hints",
    "golden_token_loss": "golden",
    "correction_weights": "corrections",
    "agg_normalizer": "losses",
    "aggregate": "losses",
    "importance_ratio": "losses",
    "kl_penalty": "losses",
    "policy_loss": "losses",
    "PRESET_NAMES": "presets",
    "preset_values": "presets",
    "sft_loss": "sft",
    "sft_prompt_mask": "sft",
    "guidance_token_weights": "token_credit",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
