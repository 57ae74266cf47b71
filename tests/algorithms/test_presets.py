"""Presets: every preset pins every `algorithm.*` switch, and each resolves to exactly the values written out here
(a change of a config default, of `NEUTRAL` or of a preset's changes fails this test until the table below is
changed on purpose). Choice switches take their allowed values from one place, `gcpo.algorithms.choices`."""

import dataclasses
import typing
from pathlib import Path

import pytest

from gcpo.algorithms import choices
from gcpo.algorithms.presets import NEUTRAL, PRESET_NAMES, preset_table_markdown, preset_values
from gcpo.config import AlgorithmConfig, load_config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "algorithms.md"

# Every preset's full switch set, as each resolved before NEUTRAL was made complete (the values are unchanged, but
# for gspo's and gcpo's 3e-4 / 4e-4, which moved from clip_low / clip_high, now the token ratio's alone, to
# clip_*_sequence): all 38 switches written out once (this test's own copy, not `NEUTRAL`), then each preset's
# values that differ.
ALL_SWITCHES: dict = {
    "loss": "clipped", "adv_norm": "group", "golden_answers": False, "ga_replace": "last",
    "ga_on_all_correct": False, "kl_coef": 0.0, "kl_estimator": "k3", "ratio_level": "token", "clip_low": 0.2,
    "clip_high": 0.2, "dual_clip": 0.0, "loss_agg": "seq-mean-token-mean", "gpg_alpha": False,
    "batch_filling": "none", "beta_th": 0.6, "max_fill_rounds": 2, "conspo_tau": 1.0, "conspo_margin_start": 0.0,
    "conspo_margin_end": 0.5, "conspo_margin_steps": 0, "token_credit": "none", "guidance_negative": "wrong",
    "guidance_power": 2.15, "sft_prompts": "all", "sft_coef": 0.0, "rollout_correction": "none",
    "correction_cap": 2.0, "icepop_low": 0.5, "icepop_high": 5.0, "golden_hint": "none", "hint_rollouts": 2,
    "hint_fraction": 0.5, "hint_target": 0.5, "hint_rate": 0.5,
    # per-level clip ranges and golden-row treatment (issue: switches that could not act)
    "clip_low_sequence": 0.0003, "clip_high_sequence": 0.0004, "golden_ratio": "clip", "golden_shaping_gamma": 0.1,
    # a KL that regularises (k3's value clamped at 10) and MIS's ratio (geometric mean; product opt-in)
    "kl_clamp": 10.0, "mis_ratio": "geometric",
}
EXPECTED: dict[str, dict] = {
    "grpo": {**ALL_SWITCHES, "kl_coef": 0.04},
    "dr_grpo": {**ALL_SWITCHES, "adv_norm": "none", "loss_agg": "seq-mean-token-sum-norm"},
    "dapo": {**ALL_SWITCHES, "clip_high": 0.28, "loss_agg": "token-mean", "batch_filling": "dapo"},
    # the sequence ratio's own range (clip_*_sequence, GSPO's) is NEUTRAL's; clip_low / clip_high are the token's
    "gspo": {**ALL_SWITCHES, "ratio_level": "sequence"},
    "gpg": {**ALL_SWITCHES, "adv_norm": "none", "ratio_level": "none", "loss_agg": "token-mean", "gpg_alpha": True,
            "batch_filling": "gpg"},
    "gcpo": {**ALL_SWITCHES, "golden_answers": True, "ratio_level": "sequence"},
    "conspo": {**ALL_SWITCHES, "loss": "conspo"},
    "guidance": {**ALL_SWITCHES, "clip_high": 0.28, "loss_agg": "token-mean", "token_credit": "guidance"},
    "ga_sft": {**ALL_SWITCHES, "loss": "sft"},
    "ga_hint": {**ALL_SWITCHES, "golden_hint": "adaptive", "ratio_level": "sequence"},
}

def typed(values: dict) -> dict:
    """`values` with each value's type, so 0 (int) and 0.0 (float) differ."""
    return {k: (type(v).__name__, v) for k, v in values.items()}


def test_names():
    assert PRESET_NAMES == ("grpo", "dr_grpo", "dapo", "gspo", "gpg", "gcpo", "conspo", "guidance", "ga_sft", "ga_hint")
    assert set(EXPECTED) == set(PRESET_NAMES)


def test_neutral_pins_every_algorithm_switch():
    assert list(NEUTRAL) == [f.name for f in dataclasses.fields(AlgorithmConfig)]


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_pins_its_full_switch_set(name):
    values = preset_values(name)
    assert set(values) == {"preset", "algorithm"}
    assert typed(values["algorithm"]) == typed(EXPECTED[name])
    assert typed(dataclasses.asdict(load_config(preset=name).algorithm)) == typed(EXPECTED[name])


def test_choice_switches_are_declared_once():
    """Each choice field of AlgorithmConfig is typed by a `gcpo.algorithms.choices` alias (the config reads the
    allowed values from it), and the algorithm functions take the same aliases."""
    from gcpo.algorithms import advantages, batch_filling, corrections, golden, losses, sft

    hints = typing.get_type_hints(AlgorithmConfig)
    aliases = {name: value for name, value in vars(choices).items() if typing.get_origin(value) is typing.Literal}
    literal_fields = {f: tp for f, tp in hints.items() if typing.get_origin(tp) is typing.Literal}
    assert literal_fields and all(any(tp is a for a in aliases.values()) for tp in literal_fields.values()), \
        literal_fields
    assert hints["loss_agg"] is choices.Agg and losses.AGGREGATIONS == choices.values(choices.Agg)
    assert typing.get_type_hints(losses.PolicyLossSettings)["ratio_level"] is choices.RatioLevel
    assert typing.get_type_hints(losses.kl_penalty)["estimator"] is choices.KLEstimator
    assert typing.get_type_hints(advantages.group_advantages)["norm"] is choices.AdvNorm
    assert typing.get_type_hints(batch_filling.fill_decision)["policy"] is choices.FillPolicy
    assert typing.get_type_hints(golden.golden_replacement_index)["replace"] is choices.GaReplace
    assert typing.get_type_hints(sft.sft_prompt_mask)["prompts"] is choices.SftPrompts
    assert typing.get_type_hints(corrections.CorrectionSettings)["kind"] is choices.RolloutCorrection
    assert typing.get_type_hints(corrections.CorrectionSettings)["mis_ratio"] is choices.MisRatio
    assert typing.get_type_hints(golden.golden_token_loss)["treatment"] is choices.GoldenRatio
    assert typing.get_type_hints(losses.PolicyLossSettings)["golden_ratio"] is choices.GoldenRatio


def test_paper_switches():
    a = lambda n: load_config(preset=n).algorithm  # noqa: E731
    assert a("gcpo").golden_answers and a("gcpo").ratio_level == "sequence" and a("gcpo").kl_coef == 0
    assert a("grpo").kl_coef > 0 and a("grpo").adv_norm == "group"
    assert a("dr_grpo").adv_norm == "none" and a("dr_grpo").loss_agg == "seq-mean-token-sum-norm"
    assert a("dapo").clip_high > a("dapo").clip_low and a("dapo").batch_filling == "dapo"
    assert a("gpg").ratio_level == "none" and a("gpg").gpg_alpha and a("gpg").batch_filling == "gpg"
    assert a("gspo").ratio_level == "sequence" and not a("gspo").golden_answers
    # each ratio level has its own clip range: GSPO's for the sequence ratio, PPO's for the token ratio
    assert all((a(n).clip_low_sequence, a(n).clip_high_sequence) == (3e-4, 4e-4) for n in PRESET_NAMES)
    assert all(a(n).clip_low == 0.2 and a(n).golden_ratio == "clip" for n in PRESET_NAMES)
    assert a("conspo").loss == "conspo" and a("guidance").token_credit == "guidance"
    assert a("ga_sft").loss == "sft" and a("ga_sft").sft_prompts == "all" and not a("ga_sft").golden_answers
    assert a("ga_hint").golden_hint == "adaptive" and not a("ga_hint").golden_answers
    assert a("ga_hint").ratio_level == a("gcpo").ratio_level  # the same objective as gcpo: only the use differs
    assert all(a(n).sft_coef == 0 for n in PRESET_NAMES)


def test_docs_table_is_current():
    assert preset_table_markdown() in DOCS.read_text(), "regenerate docs/algorithms.md's table: gcpo config --presets"
