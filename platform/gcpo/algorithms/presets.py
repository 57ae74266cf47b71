"""Named presets: each is only a set of `algorithm.*` switch values (a partial config tree).

Every preset pins every switch: it starts from `NEUTRAL` (plain clipped surrogate, group advantages, no KL, no
golden answers), which holds a value for every field of `AlgorithmConfig` (a test checks it), and changes a few.
So changing a config default never silently changes a preset. Any key can still be overridden on top
(`preset=gcpo algorithm.kl_coef=0.01`), which is what makes an ablation a grid.

Choices the papers leave open are stated next to the value. This module imports nothing of gcpo but the torch-free
`gcpo.errors`, so the config can import it.
"""

from __future__ import annotations

import copy
import difflib

from gcpo.errors import ConfigError

NEUTRAL: dict = {
    "loss": "clipped",
    "adv_norm": "group",
    "golden_answers": False,
    "ga_replace": "last",
    "ga_on_all_correct": False,
    "kl_coef": 0.0,
    "kl_estimator": "k3",
    # KL's per-token estimate clamped to [-10, 10] (verl's value; TRL does not clamp): k3's gradient 1 - pi_ref/pi
    # is unbounded once the policy has moved (measured: 2,400 against a policy gradient of 2.9 after one update),
    # and the clamp bounds it near 12.5. 0 = no clamp.
    "kl_clamp": 10.0,
    "ratio_level": "token",
    "clip_low": 0.2,
    "clip_high": 0.2,
    "dual_clip": 0.0,
    "loss_agg": "seq-mean-token-mean",
    "gpg_alpha": False,
    "batch_filling": "none",
    # Batch filling (dapo, gpg): GPG's valid-group threshold beta_th (its paper's 0.6) and at most 2 extra rounds of
    # prompts per step (our cap).
    "beta_th": 0.6,
    "max_fill_rounds": 2,
    # ConSPO (loss conspo): temperature 1 and a margin growing linearly from 0 to 0.5 over the run (steps 0 = the
    # run's trainer.steps, so a short study run sees the whole curriculum; our choices, the abstract gives none).
    "conspo_tau": 1.0,
    "conspo_margin_start": 0.0,
    "conspo_margin_end": 0.5,
    "conspo_margin_steps": 0,
    "token_credit": "none",
    # Guidance token credit: the negative prompt asks for a wrong answer (`empty`: no question); the rank weights'
    # power 2.15, as in the paper's public code.
    "guidance_negative": "wrong",
    "guidance_power": 2.15,
    "sft_prompts": "all",
    "sft_coef": 0.0,
    # Rollout corrections off; their bounds are the anchors' values: TIS's cap 2 (Yao et al. 2025), IcePop's band
    # [0.5, 5] (Ring-1T); MIS shares the cap (our choice: a band [1/2, 2] on the geometric-mean ratio).
    "rollout_correction": "none",
    "correction_cap": 2.0,
    "icepop_low": 0.5,
    "icepop_high": 5.0,
    # MIS's sequence ratio: the geometric mean of the token ratios (length-normalised; our earlier choice) or their
    # product (Liu et al.'s sequence ratio). They differ by a power of the length: a band [1/2, 2] on the geometric
    # mean is a band [2^-L, 2^L] on the product, so the geometric mean masks far fewer sequences.
    "mis_ratio": "geometric",
    # Prefix hints off. When on: the last 2 of the group's responses are hinted (half of the default G = 4), the
    # hint starts at half the golden answer, and the adaptive controller aims at 50% hinted success (AdaPrefix-GRPO's
    # target) with gain 0.5 (our choice: an all-wrong step lengthens the hint by a quarter of the answer).
    "golden_hint": "none",
    "hint_rollouts": 2,
    "hint_fraction": 0.5,
    "hint_target": 0.5,
    "hint_rate": 0.5,
    # The sequence ratio's clip range: GSPO's 3e-4 / 4e-4, the only published one (`clip_low` / `clip_high` are the
    # token ratio's), so switching `ratio_level` alone gives each level its own range.
    "clip_low_sequence": 3e-4,
    "clip_high_sequence": 4e-4,
    # Golden-answer rows go through the ratio and its clip like every other row (the behaviour before the switch);
    # `unclipped` and `shaped` are opt-in. LUFFY's gamma 0.1 for `shaped`.
    "golden_ratio": "clip",
    "golden_shaping_gamma": 0.1,
}

# name -> (paper, changes from NEUTRAL)
_PRESETS: dict[str, tuple[str, dict]] = {
    # GRPO (DeepSeekMath, arXiv 2402.03300): std-normalised group advantage, token ratio, KL to the reference
    # with the k3 estimator (beta 0.04 in the paper), per-sequence token mean.
    "grpo": ("GRPO, arXiv 2402.03300", {"kl_coef": 0.04}),
    # Dr.GRPO (arXiv 2503.20783): no std division, no length normalisation (constant max-length divisor), no KL.
    "dr_grpo": ("Dr.GRPO, arXiv 2503.20783", {"adv_norm": "none", "loss_agg": "seq-mean-token-sum-norm"}),
    # DAPO (arXiv 2503.14476): clip-higher (0.2 / 0.28), token-level mean, dynamic sampling, no KL.
    "dapo": ("DAPO, arXiv 2503.14476", {"clip_high": 0.28, "loss_agg": "token-mean", "batch_filling": "dapo"}),
    # GSPO (arXiv 2507.18071): sequence-level ratio exp(mean token log-ratio) with its tight clip range (NEUTRAL's
    # clip_*_sequence).
    "gspo": ("GSPO, arXiv 2507.18071", {"ratio_level": "sequence"}),
    # GPG (arXiv 2504.02546, Table 1 row D): plain policy gradient -A*logp, F_norm = 1, alpha = B/(B-M),
    # beta_th = 0.6 accumulation (NEUTRAL's value), no KL. Aggregation: token mean (the paper trains with verl's
    # default).
    "gpg": (
        "GPG, arXiv 2504.02546",
        {"ratio_level": "none", "adv_norm": "none", "gpg_alpha": True, "batch_filling": "gpg",
         "loss_agg": "token-mean"},
    ),
    # GCPO (arXiv 2510.07790): golden answers in all-wrong groups + sequence-level ratio + no KL, on group
    # advantages. The paper gives no clip range for its sequence ratio: we take GSPO's (NEUTRAL's clip_*_sequence).
    # Which response is replaced is not stated: `last` (samples are i.i.d., so any fixed index is an unbiased choice).
    # Golden rows are clipped like the others (golden_ratio `clip`): the paper says nothing else.
    "gcpo": ("GCPO, arXiv 2510.07790", {"golden_answers": True, "ratio_level": "sequence"}),
    # ConSPO (abstract only): InfoNCE over length-normalised sequence log-probs, positives vs same-group
    # negatives, with a linear curriculum margin (NEUTRAL's conspo_* values; see gcpo.algorithms.conspo).
    "conspo": ("ConSPO (contrastive sequence PO), abstract", {"loss": "conspo"}),
    # Guidance-contrastive token credit (arXiv 2605.29198): GRPO/DAPO-style clipped token objective whose
    # sequence advantage is spread over tokens by the positive/negative-prompt contrast weights.
    "guidance": (
        "Guidance-contrastive token credit, arXiv 2605.29198",
        {"token_credit": "guidance", "clip_high": 0.28, "loss_agg": "token-mean"},
    ),
    # Imitation-only baseline (issue: is GCPO more than supervised learning on its golden answers?): the same
    # loop, rollouts sampled and scored for the metrics, but the update is the token-mean cross-entropy on the
    # golden answers of every prompt of the batch (plain SFT; `sft_prompts: all_wrong` imitates only the prompts
    # GCPO would inject into). See gcpo.algorithms.sft.
    "ga_sft": ("imitation-only baseline (SFT on golden answers)", {"loss": "sft", "sft_prompts": "all"}),
    # Prefix hints (Prefix-RFT; UFT; AdaPrefix-GRPO, arXiv 2607.07674): the third use of a golden answer. The
    # objective is GCPO's (sequence ratio, with NEUTRAL's sequence clip range, GSPO's) so that replace (gcpo), hint (ga_hint) and imitate
    # (ga_sft) differ only in how the golden answer is used; the hint length is adaptive (see gcpo.algorithms.hints).
    "ga_hint": (
        "golden-answer prefix hints, adaptive (AdaPrefix-GRPO, arXiv 2607.07674)",
        {"golden_hint": "adaptive", "ratio_level": "sequence"},
    ),
}

PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)


def preset_values(name: str) -> dict:
    """The partial config tree of preset `name`: `{"preset": name, "algorithm": {...every switch...}}`."""
    if name not in _PRESETS:
        near = difflib.get_close_matches(name, PRESET_NAMES, n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"preset: unknown preset {name!r}{hint}; allowed: {', '.join(PRESET_NAMES)}")
    algorithm = copy.deepcopy(NEUTRAL)
    algorithm.update(_PRESETS[name][1])
    return {"preset": name, "algorithm": algorithm}


def preset_paper(name: str) -> str:
    return _PRESETS[name][0]


def preset_table_markdown() -> str:
    """A Markdown table of every preset's switches, one column per `NEUTRAL` key (the docs' table is this)."""
    keys = list(NEUTRAL)
    lines = ["| preset | paper | " + " | ".join(f"`{k}`" for k in keys) + " |",
             "|" + "---|" * (len(keys) + 2)]
    for name in PRESET_NAMES:
        values = preset_values(name)["algorithm"]
        cells = []
        for k in keys:
            v = values[k]
            cell = str(v).lower() if isinstance(v, bool) else str(v)
            cells.append(f"**{cell}**" if v != NEUTRAL[k] else cell)
        lines.append(f"| `{name}` | {preset_paper(name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
