"""The CUDA path of the policy update (DeepSpeed on a GPU, an NCCL process group): run where a GPU is present,
skipped elsewhere. The GPU update must agree with an independent CPU computation from the same weights: its
old log-probs (the weight-sync check) and its pre-clip gradient norm, at ZeRO stages 0 and 2."""

import copy
import os

import pytest
import torch

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def nccl_group():
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29500 + os.getpid() % 1000), RANK="0",
                      LOCAL_RANK="0", WORLD_SIZE="1")
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def synthetic_batch(vocab: int, groups: int = 2, group_size: int = 4):
    from gcpo.training.types import StepBatch

    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(1, vocab, (7 + g,), generator=gen).tolist() for g in range(groups) for _ in range(group_size)]
    responses = [torch.randint(1, vocab, (3 + (r % 5),), generator=gen).tolist() for r in range(groups * group_size)]
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    return StepBatch(prompts=prompts, responses=responses, gen_logprobs=[None] * len(responses), rewards=rewards,
                     correct=rewards.bool(), is_golden=torch.zeros_like(rewards, dtype=torch.bool),
                     advantages=torch.linspace(-1.0, 1.0, len(responses)))


@pytest.mark.parametrize("zero_stage", [0, 2])
def test_gpu_update_agrees_with_a_cpu_computation(nccl_group, zero_stage):
    import dataclasses

    from transformers import AutoModelForCausalLM

    from gcpo.algorithms import agg_normalizer, policy_loss
    from gcpo.config import load_config
    from gcpo.models import tiny_dir
    from gcpo.logprobs import response_logprobs
    from gcpo.training.deepspeed_policy import build_policy, gather_state_dict
    from gcpo.training.update import update_policy

    cfg = load_config(preset="grpo", overrides=["algorithm.kl_coef=0", "trainer.device=cuda",
                                                f"trainer.zero_stage={zero_stage}", "trainer.lr=1e-3"])
    cpu_model = AutoModelForCausalLM.from_pretrained(tiny_dir())
    engine = build_policy(copy.deepcopy(cpu_model), cfg.trainer, "float32")
    assert engine.device.type == "cuda"
    batch = synthetic_batch(cpu_model.config.vocab_size)

    # Independent CPU numbers from the same weights: per-sequence log-probs and the loss's gradient norm.
    rows = [response_logprobs(cpu_model, [p], [r], pad_token_id=0)[0][0].detach().tolist()
            for p, r in zip(batch.prompts, batch.responses)]
    logp, mask, _ = response_logprobs(cpu_model, batch.prompts, batch.responses, pad_token_id=0)
    a = cfg.algorithm
    from gcpo.training.objectives import loss_settings

    loss, _ = policy_loss(logp, logp.detach(), batch.advantages, mask, loss_settings(a),
                          normalizer=agg_normalizer(mask, a.loss_agg, cfg.rollout.max_new_tokens),
                          max_response_len=cfg.rollout.max_new_tokens)
    loss.backward()
    cpu_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in cpu_model.parameters() if p.grad is not None]))

    metrics = update_policy(engine, dataclasses.replace(batch, gen_logprobs=rows), cfg, step=0, pad_id=0)
    assert metrics["sync/logprob_abs_diff_max"] < 1e-4, metrics
    assert metrics["grad/norm"] == pytest.approx(cpu_norm.item(), rel=1e-3)
    assert metrics["policy/ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    state = gather_state_dict(engine)
    moved = max((state[k] - v).abs().max().item() for k, v in cpu_model.state_dict().items() if k in state)
    assert moved > 0 and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in state.values())
