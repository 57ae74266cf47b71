from pathlib import Path

import pytest

from gcpo.algorithms.presets import NEUTRAL, PRESET_NAMES, preset_table_markdown, preset_values
from gcpo.config import load_config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_names():
    assert PRESET_NAMES == ("grpo", "dr_grpo", "dapo", "gspo", "gpg", "gcpo", "conspo", "guidance", "ga_sft")


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_sets_every_switch_and_validates(name):
    values = preset_values(name)
    assert set(values) == {"preset", "algorithm"} and set(NEUTRAL) <= set(values["algorithm"])
    load_config(preset=name)


def test_paper_switches():
    a = lambda n: load_config(preset=n).algorithm  # noqa: E731
    assert a("gcpo").golden_answers and a("gcpo").ratio_level == "sequence" and a("gcpo").kl_coef == 0
    assert a("grpo").kl_coef > 0 and a("grpo").adv_norm == "group"
    assert a("dr_grpo").adv_norm == "none" and a("dr_grpo").loss_agg == "seq-mean-token-sum-norm"
    assert a("dapo").clip_high > a("dapo").clip_low and a("dapo").batch_filling == "dapo"
    assert a("gpg").ratio_level == "none" and a("gpg").gpg_alpha and a("gpg").batch_filling == "gpg"
    assert a("gspo").ratio_level == "sequence" and not a("gspo").golden_answers
    assert a("conspo").loss == "conspo" and a("guidance").token_credit == "guidance"
    assert a("ga_sft").loss == "sft" and a("ga_sft").sft_prompts == "all" and not a("ga_sft").golden_answers
    assert all(a(n).sft_coef == 0 for n in PRESET_NAMES)


def test_readme_table_is_current():
    assert preset_table_markdown() in README.read_text()
