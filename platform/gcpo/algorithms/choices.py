"""The values each choice switch of the update may take, declared once.

Each `Literal` is both the type of its `algorithm.*` field in `gcpo.config.AlgorithmConfig` (whose validation reads
the allowed values from it) and the type of the matching argument of the algorithm functions. `values(alias)` gives
the allowed values as a tuple. No torch here: the config imports this module.
"""

from __future__ import annotations

import typing
from typing import Literal

Loss = Literal["clipped", "conspo", "sft"]  # algorithm.loss
AdvNorm = Literal["group", "batch", "none"]  # algorithm.adv_norm: group_advantages(norm=)
GaReplace = Literal["last", "longest", "random"]  # algorithm.ga_replace: golden_replacement_index(replace=)
KLEstimator = Literal["k1", "k2", "k3"]  # algorithm.kl_estimator: kl_penalty(estimator=)
RatioLevel = Literal["token", "sequence", "none"]  # algorithm.ratio_level: policy_loss(ratio_level=)
Agg = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]  # algorithm.loss_agg: aggregate(agg=)
FillPolicy = Literal["none", "dapo", "gpg"]  # algorithm.batch_filling: fill_decision(policy=)
TokenCredit = Literal["none", "guidance"]  # algorithm.token_credit
GuidanceNegative = Literal["wrong", "empty"]  # algorithm.guidance_negative: the negative prompt of token credit
SftPrompts = Literal["all", "all_wrong"]  # algorithm.sft_prompts: sft_prompt_mask(prompts=)
RolloutCorrection = Literal["none", "tis", "mis", "icepop"]  # algorithm.rollout_correction: correction_weights(kind=)
MisRatio = Literal["geometric", "product"]  # algorithm.mis_ratio: correction_weights(mis_ratio=)
GoldenHint = Literal["none", "fixed", "adaptive"]  # algorithm.golden_hint: the prefix-hint length rule
# algorithm.golden_ratio: how golden-answer rows meet the ratio and its clip; golden_token_loss(treatment=)
GoldenRatio = Literal["clip", "unclipped", "shaped"]


def values(alias: typing.Any) -> tuple:
    """The allowed values of a `Literal` alias, in declaration order."""
    return typing.get_args(alias)
