"""The algorithm library: pure torch functions, no Ray, no I/O. A stable surface for researchers.

- advantages: `group_advantages`, `gpg_alpha`, `zero_variance_groups`
- losses: `policy_loss`, `aggregate`, `agg_normalizer`, `importance_ratio`, `kl_penalty`
- GCPO golden answers: `golden_replacement_index`
- ConSPO: `conspo_loss`, `conspo_margin`, `sequence_scores`
- guidance-contrastive token credit: `guidance_token_weights`
- batch filling (DAPO dynamic sampling, GPG beta_th): `fill_decision`, `FillDecision`
- supervised imitation of golden answers (ga_sft, sft_coef): `sft_loss`, `sft_prompt_mask`
- presets: `PRESET_NAMES`, `preset_values`
"""

from gcpo.algorithms.advantages import gpg_alpha, group_advantages, zero_variance_groups
from gcpo.algorithms.batch_filling import FillDecision, fill_decision
from gcpo.algorithms.conspo import conspo_loss, conspo_margin, sequence_scores
from gcpo.algorithms.golden import golden_replacement_index
from gcpo.algorithms.losses import agg_normalizer, aggregate, importance_ratio, kl_penalty, policy_loss
from gcpo.algorithms.presets import PRESET_NAMES, preset_values
from gcpo.algorithms.sft import sft_loss, sft_prompt_mask
from gcpo.algorithms.token_credit import guidance_token_weights

__all__ = [
    "FillDecision",
    "PRESET_NAMES",
    "agg_normalizer",
    "aggregate",
    "conspo_loss",
    "conspo_margin",
    "fill_decision",
    "golden_replacement_index",
    "gpg_alpha",
    "group_advantages",
    "guidance_token_weights",
    "importance_ratio",
    "kl_penalty",
    "policy_loss",
    "preset_values",
    "sequence_scores",
    "sft_loss",
    "sft_prompt_mask",
    "zero_variance_groups",
]
