import pytest
import torch

from gcpo.models import tiny_dir
from gcpo.rollout import SamplingSettings, TransformersEngine, logprob_agreement

pytestmark = pytest.mark.integration


def test_transformers_engine_order_seed_and_agreement():
    engine = TransformersEngine(tiny_dir())
    prompts = [[1, 2, 3], [4, 5], [6]]
    settings = SamplingSettings(n=2, temperature=1.0, max_new_tokens=6, seed=3)
    before = torch.get_rng_state()
    results = engine.generate(prompts, settings)
    assert torch.equal(before, torch.get_rng_state())  # the caller's RNG is untouched
    assert [r.prompt_token_ids for r in results] == prompts and all(len(r.completions) == 2 for r in results)
    again = engine.generate(prompts, settings)
    assert [[c.token_ids for c in r.completions] for r in again] == [[c.token_ids for c in r.completions] for r in results]
    assert logprob_agreement(engine.model, results, pad_token_id=engine.pad_token_id).mean_abs_diff < 1e-4
