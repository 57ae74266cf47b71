"""The transformers fallback on the tiny model: order, G, seed determinism, stop strings kept, greedy, log-prob
agreement with the trainer's recomputation, the caller's RNG untouched, context overflow rejected."""

import pytest
import torch

from gcpo.models import tiny_dir
from gcpo.rollout import ContextLengthError, SamplingSettings, TransformersEngine, logprob_agreement

pytestmark = pytest.mark.integration

PROMPTS = [[1, 2, 3], [4, 5], [6]]
SAMPLE = SamplingSettings(n=2, temperature=1.0, max_new_tokens=6, seed=3)


@pytest.fixture(scope="module")
def engine():
    return TransformersEngine(tiny_dir())


def tokens(results):
    return [[c.token_ids for c in r.completions] for r in results]


def test_order_group_size_seed_and_agreement(engine):
    before = torch.get_rng_state()
    results = engine.generate(PROMPTS, SAMPLE)
    assert torch.equal(before, torch.get_rng_state())  # the caller's RNG is untouched
    assert [r.prompt_token_ids for r in results] == PROMPTS and all(len(r.completions) == 2 for r in results)
    assert all(len(c.token_ids) == len(c.logprobs) > 0 for r in results for c in r.completions)
    assert tokens(engine.generate(PROMPTS, SAMPLE)) == tokens(results)  # a function of the seed alone
    assert logprob_agreement(engine.model, results, pad_token_id=engine.pad_token_id).mean_abs_diff < 1e-4


def test_stop_string_is_kept_and_greedy_is_deterministic(engine):
    long = SamplingSettings(n=1, temperature=1.0, max_new_tokens=12, seed=5)
    text = engine.generate(PROMPTS[:1], long)[0].completions[0].text
    stop = text[len(text) // 2 : len(text) // 2 + 2]  # a string the seeded sample is known to produce
    assert len(stop) == 2
    cut = engine.generate(PROMPTS[:1], SamplingSettings(n=1, temperature=1.0, max_new_tokens=12, seed=5,
                                                        stop=(stop,)))[0].completions[0]
    assert cut.finish_reason == "stop" and cut.text.endswith(stop) and text.startswith(cut.text)
    greedy = engine.generate(PROMPTS, SamplingSettings(n=2, temperature=0.0, max_new_tokens=6))
    assert all(r.completions[0].token_ids == r.completions[1].token_ids for r in greedy)


def test_context_overflow_is_rejected(engine):
    with pytest.raises(ContextLengthError):
        engine.generate([[1] * engine.max_model_len], SAMPLE)


def test_rollout_dtype_overrides_the_models_and_auto_keeps_it():
    from gcpo.config import RolloutConfig
    from gcpo.rollout import build_engine

    auto = build_engine(RolloutConfig(backend="transformers"), tiny_dir(), model_dtype="float32")
    bf16 = build_engine(RolloutConfig(backend="transformers", dtype="bfloat16"), tiny_dir(), model_dtype="float32")
    assert next(auto.model.parameters()).dtype == torch.float32
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
