"""No ablation switch can silently become a no-op again: on an off-policy batch of the tiny model, flipping each
switch changes what the update hands the optimiser (lr scale x gradient: cosine below 0.999 or norm ratio off 1 by
more than 1e-3), measured by the update's own code (`gcpo.standalone.probe.measure` -> `update.update_gradient`).

The batch: three prompts x G=4, sampled by the tiny model (every sampled row carries the generator's log-probs),
scored by a stand-in verifier that makes one group mixed (2 of 4 right), one all wrong (a golden answer replaces
its last row when golden answers are on) and one all right (zero variance: GPG's alpha 12/8). The policy then takes
one AdamW step on the base config before the gradients are taken, so every ratio differs from 1.
"""

import dataclasses
from collections import Counter

import pytest

from gcpo.config import load_config
from gcpo.models import tiny_dir
from gcpo.rollout import build_engine, sampling_settings
from gcpo.tasks.pool import Verdict
from gcpo.training.data import build_training_data
from gcpo.standalone.probe import ReplayEngine, Variant, measure
from gcpo.training.rollouts import collect_step_batch
from gcpo.training.sampler import PromptSampler

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("single_process_group")]

TINY = ["model.name=tiny", "rollout.backend=transformers", "rollout.prompts_per_step=3", "rollout.group_size=4",
        "rollout.max_new_tokens=8", "task.train_size=12", "task.eval_size=2", "trainer.lr=1e-3"]
TOKEN = ["algorithm.ratio_level=token", "algorithm.clip_high=0.28"]  # gcpo with token ratios, DAPO's token range
SEQUENCE = ["algorithm.ratio_level=sequence"]  # the gcpo preset itself: GSPO's sequence range
# (base, name, the flipped values): every flip must act on the update
FLIPS = [
    (TOKEN, "golden_answers", ["algorithm.golden_answers=false"]),
    (TOKEN, "kl_coef", ["algorithm.kl_coef=0.04"]),
    (TOKEN, "ratio_level", ["algorithm.ratio_level=sequence"]),
    (TOKEN, "token clip range", ["algorithm.clip_low=0.05", "algorithm.clip_high=0.05"]),
    (TOKEN, "gpg_alpha", ["algorithm.gpg_alpha=true"]),
    (TOKEN, "adv_norm", ["algorithm.adv_norm=none"]),
    (TOKEN, "loss_agg", ["algorithm.loss_agg=token-mean"]),
    (TOKEN, "token_credit", ["algorithm.token_credit=guidance"]),
    (TOKEN, "golden_ratio unclipped", ["algorithm.golden_ratio=unclipped"]),
    (TOKEN, "golden_ratio shaped", ["algorithm.golden_ratio=shaped"]),
    (SEQUENCE, "sequence clip range", ["algorithm.clip_low_sequence=0.5", "algorithm.clip_high_sequence=0.5"]),
    (SEQUENCE, "golden_ratio unclipped", ["algorithm.golden_ratio=unclipped"]),
    (SEQUENCE, "kl_coef", ["algorithm.kl_coef=0.04"]),
]
# each ratio level reads only its own clip range
IDLE = [(TOKEN, "sequence clip range", ["algorithm.clip_low_sequence=0.5", "algorithm.clip_high_sequence=0.5"]),
        (SEQUENCE, "token clip range", ["algorithm.clip_low=0.05", "algorithm.clip_high=0.05"])]


def config(*overrides):
    return load_config(preset="gcpo", overrides=TINY + [o for group in overrides for o in group])


@pytest.fixture(scope="module")
def collect():
    """`collect(cfg)`: step 0's batch of `cfg` from the same samples, scored by the stand-in verifier."""
    from transformers import AutoTokenizer

    cfg = config(TOKEN, ["algorithm.token_credit=guidance"])  # the data carries the negative prompts
    data = build_training_data(cfg, AutoTokenizer.from_pretrained(tiny_dir()))
    mixed, wrong, right = PromptSampler(len(data.prompt_ids), seed=cfg.trainer.seed).take(3)

    def verify(items, texts):
        seen, out = Counter(), []
        for item, text in zip(items, texts):
            seen[item] += 1
            ok = text == data.golden_text[item] or item == right or (item == mixed and seen[item] <= 2)
            assert item in (mixed, wrong, right) or text == data.golden_text[item]
            out.append(Verdict(accuracy=float(ok), format=1.0, reward=float(ok), answer=None))
        return out

    data = dataclasses.replace(data, verify=verify)
    rollout = ReplayEngine(build_engine(cfg.rollout, tiny_dir()))

    def collect(c):
        sampler = PromptSampler(len(data.prompt_ids), seed=c.trainer.seed)
        return collect_step_batch(rollout, data, sampler, c, sampling_settings(c.rollout), step=0)[0]

    return collect


def measured(collect, base_overrides, flips, steps_off=1):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gcpo.training.deepspeed_policy import build_policy

    base = config(base_overrides)
    engine = build_policy(AutoModelForCausalLM.from_pretrained(tiny_dir()), base.trainer, "float32")
    variants = [Variant(name, flipped, config(base_overrides, flipped)) for name, flipped in flips]
    pad_id = AutoTokenizer.from_pretrained(tiny_dir()).pad_token_id
    return measure(engine, collect, base, variants, steps_off=steps_off, pad_id=pad_id)


@pytest.mark.parametrize("level", [TOKEN, SEQUENCE], ids=["token", "sequence"])
def test_every_ablation_switch_changes_the_update_off_policy(collect, level):
    batch = collect(config(level))
    # mixed, all wrong but for its golden answer (the last row), all right
    assert batch.correct.sum(dim=1).tolist() == [2, 1, 4] and batch.is_golden[1, -1] and batch.is_golden.sum() == 1
    assert all(lp is not None for lp, g in zip(batch.gen_logprobs, batch.is_golden.flatten()) if not g)
    flips = [(name, flipped) for base, name, flipped in FLIPS if base is level]
    idle = [(name, flipped) for base, name, flipped in IDLE if base is level]
    base_metrics, rows = measured(collect, level, flips + idle)
    assert base_metrics["policy/ratio_mean"] != pytest.approx(1.0, abs=1e-4)  # off-policy
    for row in rows[:len(flips)]:
        assert row.cosine < 0.999 or abs(row.norm_ratio - 1) > 1e-3, row
        assert row.verdict.startswith("acts"), row
    for row in rows[len(flips):]:
        assert row.verdict == "no-op here", row
    by_name = {row.key: row for row in rows}
    if level is TOKEN:
        assert by_name["gpg_alpha"].lr_scale == pytest.approx(12 / 8)  # 4 of 12 rows in a zero-variance group
        assert by_name["gpg_alpha"].verdict == "acts (step size)"


def test_with_one_mini_batch_the_two_ratio_levels_give_the_same_update(collect):
    """The negative control of the ratio-level switch: where the policy has not moved since the batch's old
    log-probs (one mini-batch, no step off), both ratios are 1 and token and sequence levels hand the optimiser the
    same update, each with its own clip range. Where it differs (the test above) the difference is the levels'."""
    batch = collect(config(TOKEN))
    assert batch.is_golden.sum() == 1
    _, rows = measured(collect, TOKEN, [("ratio_level", ["algorithm.ratio_level=sequence"])], steps_off=0)
    (row,) = rows
    assert row.cosine > 1 - 1e-6 and row.norm_ratio == pytest.approx(1.0, abs=1e-5), row
    assert row.verdict == "no-op here", row
