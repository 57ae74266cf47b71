"""How runs without a sweep's tags are grouped into arms: the params that differ, and the labels."""

from types import SimpleNamespace

from gcpo.sweeps.arms import differing_params
from gcpo.sweeps.runner import arm_label


def _run(**params):
    return SimpleNamespace(data=SimpleNamespace(params={k.replace("__", "."): v for k, v in params.items()}))


def test_a_preset_stands_for_the_values_it_sets():
    runs = [_run(preset="gcpo", algorithm__kl_coef="0.0", algorithm__ratio_level="sequence", trainer__seed=str(s))
            for s in (0, 1)]
    runs += [_run(preset="grpo", algorithm__kl_coef="0.04", algorithm__ratio_level="token", trainer__seed=str(s))
             for s in (0, 1)]
    assert differing_params(runs) == ["preset"]
    assert arm_label({"preset": "grpo"}, ["preset"]) == "grpo"


def test_a_key_that_differs_within_a_preset_is_kept_beside_it():
    runs = [_run(preset="gcpo", trainer__lr="1e-05"), _run(preset="gcpo", trainer__lr="3e-05"),
            _run(preset="grpo", trainer__lr="1e-05")]
    assert differing_params(runs) == ["preset", "trainer.lr"]
    assert arm_label({"preset": "gcpo", "trainer.lr": 3e-05}, ["preset", "trainer.lr"]) == "gcpo, lr=3e-05"


def test_without_presets_every_differing_key_but_seeds_and_tracking():
    runs = [_run(algorithm__kl_coef="0.0", trainer__seed="0", tracking__uri="a"),
            _run(algorithm__kl_coef="0.04", trainer__seed="1", tracking__uri="b")]
    assert differing_params(runs) == ["algorithm.kl_coef"]
    assert arm_label({"algorithm.kl_coef": 0.04}, ["algorithm.kl_coef"]) == "kl_coef=0.04"
