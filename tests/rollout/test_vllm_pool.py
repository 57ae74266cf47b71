"""The vLLM generator pool on the tiny model: order, G, versions, seeds, stop strings, greedy, log-prob
agreement before and after real gradient steps + syncs, the negative control (a skipped sync is detected),
restart of a killed actor, a generator killed in the middle of a 1,000-prompt rollout, a LoRA run's partial
update (the adapted layers merged). One pool (2 generators x 0.5 CPU) serves the whole module: vLLM starts in ~1 min."""

from pathlib import Path

import pytest
import torch

from gcpo.models import tiny_dir
from gcpo.rollout import ContextLengthError, SamplingSettings, logprob_agreement

pytestmark = pytest.mark.integration

PROMPTS = [[1, 2, 3, 4], [5, 6, 7], [8, 9], [10, 11, 12], [13]]
SAMPLE = SamplingSettings(n=3, temperature=1.0, max_new_tokens=8, seed=7)


@pytest.fixture(scope="module")
def pool():
    import ray

    from gcpo.cluster import init_ray
    from gcpo.config import RolloutConfig
    from gcpo.rollout.vllm_pool import VLLMPool

    init_ray(None, num_cpus=4)
    # 5% of RAM for KV cache each: ample for the tiny model, and leaves room for other engines on the machine.
    p = VLLMPool(RolloutConfig(num_generators=2, cpus_per_generator=0.5, memory_fraction=0.05), tiny_dir())
    yield p
    p.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def trainer():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_dir())


def test_order_group_size_and_version(pool):
    results = pool.generate(PROMPTS, SAMPLE)
    assert [r.prompt_token_ids for r in results] == PROMPTS
    assert all(len(r.completions) == 3 for r in results)
    assert all(len(c.token_ids) == len(c.logprobs) > 0 for r in results for c in r.completions)
    assert all(c.weight_version == pool.weight_version for r in results for c in r.completions)
    again = pool.generate(PROMPTS, SAMPLE)  # seeded per sample: the same samples, whichever actor serves them
    assert [[c.token_ids for c in r.completions] for r in again] == [[c.token_ids for c in r.completions] for r in results]


def test_several_batches_in_one_call_equal_the_calls_one_by_one(pool):
    """generate_many: every actor serves its chunk of each batch in one vLLM call; the results are those of
    separate calls (greedy and per-sample seeds do not depend on what else is in the batch)."""
    from gcpo.rollout import generate_many

    greedy = SamplingSettings(n=1, temperature=0.0, max_new_tokens=6)
    jobs = [(PROMPTS, greedy), (PROMPTS[:3], SAMPLE), ([], SAMPLE)]
    together = generate_many(pool, jobs)
    apart = [pool.generate(prompts, settings) for prompts, settings in jobs]
    tokens = lambda results: [[c.token_ids for c in r.completions] for r in results]  # noqa: E731
    assert [len(r) for r in together] == [5, 3, 0]
    assert [tokens(r) for r in together] == [tokens(r) for r in apart]
    assert [[r.prompt_token_ids for r in res] for res in together] == [list(p) for p, _ in jobs]


def test_stop_string_is_kept_and_greedy_is_deterministic(pool):
    long = SamplingSettings(n=1, temperature=1.0, max_new_tokens=12, seed=5)
    text = pool.generate(PROMPTS[:1], long)[0].completions[0].text
    stop = text[len(text) // 2 : len(text) // 2 + 2]  # a string the seeded sample is known to produce
    assert len(stop) == 2
    cut = pool.generate(PROMPTS[:1], SamplingSettings(n=1, temperature=1.0, max_new_tokens=12, seed=5,
                                                      stop=(stop,)))[0].completions[0]
    assert cut.finish_reason == "stop" and cut.text.endswith(stop) and text.startswith(cut.text)
    greedy = pool.generate(PROMPTS, SamplingSettings(n=2, temperature=0.0, max_new_tokens=6))
    assert all(r.completions[0].token_ids == r.completions[1].token_ids for r in greedy)


def test_agreement_survives_real_updates_and_a_skipped_sync_is_caught(pool, trainer):
    assert logprob_agreement(trainer, pool.generate(PROMPTS, SAMPLE), pad_token_id=0).mean_abs_diff < 1e-3
    optimizer = torch.optim.AdamW(trainer.parameters(), lr=1e-2)
    for version in (1, 2):  # two rounds: gradient steps on sampled responses, then a sync
        results = pool.generate(PROMPTS, SAMPLE)
        for _ in range(3):
            from gcpo.logprobs import response_logprobs

            prompts = [r.prompt_token_ids for r in results for _ in r.completions]
            responses = [c.token_ids for r in results for c in r.completions]
            logp, mask, _ = response_logprobs(trainer, prompts, responses, pad_token_id=0)
            loss = -(logp * mask).sum() / mask.sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        stale = logprob_agreement(trainer, pool.generate(PROMPTS, SAMPLE), pad_token_id=0)
        assert stale.mean_abs_diff > 1e-2, stale  # negative control: without the sync the check fires
        previous_file = pool._transport.path
        pool.update_weights(trainer.state_dict(), version)
        assert Path(pool._transport.path).exists() and (previous_file is None or not Path(previous_file).exists())
        synced = pool.generate(PROMPTS, SAMPLE)
        agreement = logprob_agreement(trainer, synced, pad_token_id=0)
        assert agreement.mean_abs_diff < 1e-3, (version, agreement)
        assert all(c.weight_version == version for r in synced for c in r.completions)


def test_killed_actor_is_restarted_with_current_weights(pool, trainer):
    import ray

    ray.kill(pool._actors[1])
    results = pool.generate(PROMPTS, SAMPLE)
    assert [r.prompt_token_ids for r in results] == PROMPTS
    assert all(len(r.completions) == 3 for r in results)
    assert logprob_agreement(trainer, results, pad_token_id=0).mean_abs_diff < 1e-3


def test_generator_killed_mid_rollout_of_1000_prompts(pool):
    import threading
    import time

    import ray

    prompts = [[1 + i % 97, 2 + i % 89, 3 + i % 83] for i in range(1000)]
    settings = SamplingSettings(n=2, temperature=1.0, max_new_tokens=4, seed=11)
    start = time.time()
    undisturbed = pool.generate(prompts, settings)
    duration = time.time() - start
    victim = pool._actors[1]
    killed = {}

    def kill_halfway():
        time.sleep(duration / 2)
        killed["at"] = time.time()
        ray.kill(victim)

    thread = threading.Thread(target=kill_halfway, daemon=True)
    start = time.time()
    thread.start()
    results = pool.generate(prompts, settings)
    finished = time.time()
    thread.join()
    assert start < killed["at"] < finished, "the generator was not killed during the rollout"
    assert pool._actors[1] is not victim  # it was restarted and its chunk retried
    assert [r.prompt_token_ids for r in results] == prompts  # every prompt, in order, once
    assert all(len(r.completions) == 2 for r in results)  # exactly G answers each
    assert [[c.token_ids for c in r.completions] for r in results] == \
        [[c.token_ids for c in r.completions] for r in undisturbed]  # seeded per sample: nothing lost or doubled


def test_context_overflow_is_rejected(pool):
    with pytest.raises(ContextLengthError):
        pool.generate([[1] * (pool.max_model_len - 2)], SAMPLE)


def test_lora_sends_only_the_adapted_layers_merged_and_agreement_holds(pool):
    """Under LoRA the pool gets a partial update (the adapted layers' merged weights, nothing else); the engines
    reload just those in place and their log-probs then match the peft trainer's."""
    from transformers import AutoModelForCausalLM

    from gcpo.config import load_config
    from gcpo.logprobs import response_logprobs
    from gcpo.training.lora import apply_lora, merged_weights, scaling, sync_names

    base = AutoModelForCausalLM.from_pretrained(tiny_dir())
    pool.update_weights(base.state_dict(), 10)  # from the base, as a LoRA run's generators start
    lora = load_config(overrides=["model.name=tiny", "model.lora.rank=4", "model.lora.alpha=8"]).model.lora
    student = apply_lora(base, lora)
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=2e-2)
    results = pool.generate(PROMPTS, SAMPLE)
    prompts = [r.prompt_token_ids for r in results for _ in r.completions]
    responses = [c.token_ids for r in results for c in r.completions]
    for _ in range(3):
        logp, mask, _ = response_logprobs(student, prompts, responses, pad_token_id=0)
        optimizer.zero_grad()
        (-(logp * mask).sum() / mask.sum()).backward()
        optimizer.step()
    stale = logprob_agreement(student, pool.generate(PROMPTS, SAMPLE), pad_token_id=0)
    assert stale.mean_abs_diff > 1e-2, stale  # negative control: the adapters moved the policy
    sent = merged_weights({k: v.detach() for k, v in student.state_dict().items() if sync_names(k)}, scaling(lora))
    assert sent and all(k.rsplit(".", 2)[-2] in lora.target_modules for k in sent)  # no embeddings, norms, head
    pool.update_weights(sent, 11)
    agreement = logprob_agreement(student, pool.generate(PROMPTS, SAMPLE), pad_token_id=0)
    assert agreement.mean_abs_diff < 1e-3, agreement
