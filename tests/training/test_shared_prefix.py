"""`trainer.shared_prefix`: the update with a group's prompt run once equals the padded update, loss by loss and at
ZeRO stages 0, 2 and 3 (tiny model, real DeepSpeed engines); so do micro-batches cut by a token budget
(`trainer.max_tokens_per_micro`). The full gradient is read at the moment the optimiser
would step (`deepspeed.utils.safe_get_full_grad`, ZeRO-partitioned or not) and compared tensor by tensor."""

import dataclasses

import pytest
import torch

from gcpo.config import load_config
from gcpo.models import tiny_dir
from gcpo.rollout import build_engine, sampling_settings
from gcpo.training.data import build_training_data
from gcpo.training.deepspeed_policy import build_policy
from gcpo.training.rollouts import collect_step_batch
from gcpo.training.sampler import PromptSampler
from gcpo.training.update import update_policy

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("single_process_group")]

TINY = ["model.name=tiny", "rollout.backend=transformers", "rollout.prompts_per_step=3", "rollout.group_size=4",
        "rollout.max_new_tokens=8", "task.train_size=8", "task.eval_size=2", "trainer.lr=1e-3",
        "trainer.micro_batch_size=8"]
# preset -> extra overrides: every loss kind and every input the loss reads (KL's reference model, the sequence
# ratio, plain PG with alpha, the contrast, golden rows, the negative prompts); two epochs so ratios leave 1
CASES = {
    "grpo": ["trainer.epochs=2"],
    "gspo": ["trainer.epochs=2", "trainer.mini_batches=2"],
    "gpg": [],
    "conspo": [],
    "ga_sft": [],
    "guidance": [],
    "gcpo": ["algorithm.sft_coef=0.5"],
}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir())


def step_batch(preset, tokenizer, extra=()):
    cfg = load_config(preset=preset, overrides=TINY + CASES[preset] + list(extra))
    data = build_training_data(cfg, tokenizer)
    batch, _, _ = collect_step_batch(build_engine(cfg.rollout, tiny_dir()), data, PromptSampler(8, seed=0), cfg,
                                     sampling_settings(cfg.rollout), step=0)
    g_size = cfg.rollout.group_size
    # a random tiny model is never right: make every input the losses read non-trivial
    correct = torch.zeros(batch.num_groups, g_size, dtype=torch.bool)
    correct[0, :2] = True
    golden = [data.golden_ids[i] for i in range(batch.num_groups)]
    return cfg, dataclasses.replace(
        batch, advantages=torch.linspace(-1, 1, len(batch.responses)), correct=correct,
        is_golden=torch.eye(batch.num_groups, g_size, dtype=torch.bool),
        golden_prompts=[batch.prompts[g * g_size] for g in range(batch.num_groups)], golden_responses=golden)


def gradients_and_metrics(cfg, batch, pad_id, *, shared_prefix, zero_stage, max_tokens=0):
    from deepspeed.utils import safe_get_full_grad
    from transformers import AutoModelForCausalLM

    trainer = dataclasses.replace(cfg.trainer, shared_prefix=shared_prefix, zero_stage=zero_stage,
                                  max_tokens_per_micro=max_tokens)
    cfg = dataclasses.replace(cfg, trainer=trainer)
    torch.manual_seed(0)
    policy_engine = build_policy(AutoModelForCausalLM.from_pretrained(tiny_dir()), trainer, "float32")
    ref_model = None
    if cfg.algorithm.kl_coef > 0:
        ref_model = AutoModelForCausalLM.from_pretrained(tiny_dir()).eval().requires_grad_(False)
    grads, step = [], policy_engine.step

    def capture_then_step():
        grads.append({n: safe_get_full_grad(p).detach().clone() for n, p in policy_engine.module.named_parameters()})
        step()

    policy_engine.step = capture_then_step
    metrics = update_policy(policy_engine, batch, cfg, step=3, pad_id=pad_id, ref_model=ref_model)
    return grads, metrics


def rel(a, b):
    return (a - b).norm().item() / max(b.norm().item(), 1e-12)


def compare(first, second):
    """Every optimiser update's full gradient, overall and per parameter tensor, within 1e-4 relative norm."""
    assert len(first) == len(second)
    for g_first, g_second in zip(first, second):
        flat_1 = torch.cat([g.flatten() for g in g_first.values()])
        flat_2 = torch.cat([torch.as_tensor(g_second[n]).flatten() for n in g_first])
        assert flat_1.norm() > 0 and rel(flat_2, flat_1) < 1e-4
        worst = max(rel(torch.as_tensor(g_second[n]), g) for n, g in g_first.items() if g.norm() > 1e-8 * flat_1.norm())
        assert worst < 1e-4, worst


@pytest.mark.parametrize("preset, zero_stage", [(p, 0) for p in CASES] + [("grpo", 2), ("conspo", 2), ("grpo", 3),
                                                                          ("ga_sft", 3)])
def test_shared_prefix_update_equals_the_padded_update(tokenizer, preset, zero_stage):
    cfg, batch = step_batch(preset, tokenizer)
    pad_id = tokenizer.pad_token_id
    padded, m_padded = gradients_and_metrics(cfg, batch, pad_id, shared_prefix=False, zero_stage=zero_stage)
    shared, m_shared = gradients_and_metrics(cfg, batch, pad_id, shared_prefix=True, zero_stage=zero_stage)
    assert len(padded) == cfg.trainer.epochs * cfg.trainer.mini_batches
    compare(padded, shared)  # every optimiser update, the later ones on moved weights
    # the batch was sampled with the step-0 weights and trains at step 3: its generator gap is the off-policy one
    for key in ("loss/policy", "grad/norm", "policy/entropy", "offpolicy/logprob_abs_diff"):
        assert m_shared[key] == pytest.approx(m_padded[key], rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("shared_prefix, zero_stage", [(False, 0), (True, 3)], ids=["padded-zero0", "shared-zero3"])
def test_a_token_budget_changes_the_passes_not_the_update(tokenizer, shared_prefix, zero_stage):
    """Micro-batches of at most 120 token slots (more passes, less padding) give the update of fixed micro-batches."""
    cfg, batch = step_batch("grpo", tokenizer)
    fixed, m_fixed = gradients_and_metrics(cfg, batch, tokenizer.pad_token_id, shared_prefix=False, zero_stage=0)
    budget, m_budget = gradients_and_metrics(cfg, batch, tokenizer.pad_token_id, shared_prefix=shared_prefix,
                                             zero_stage=zero_stage, max_tokens=120)
    compare(fixed, budget)
    assert 0 <= m_budget["batch/pad_frac"] < m_fixed["batch/pad_frac"] < 1
    assert m_budget["loss/policy"] == pytest.approx(m_fixed["loss/policy"], rel=1e-4, abs=1e-6)


def _dp_worker(rank, port, cfg, batch, pad_id, out):
    """One of two gloo ranks: the shared-prefix update on its shard at ZeRO-2; rank 0 reports the full gradients."""
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2", GLOO_SOCKET_IFNAME="lo")
    dist.init_process_group("gloo", rank=rank, world_size=2)
    grads, metrics = gradients_and_metrics(cfg, batch, pad_id, shared_prefix=True, zero_stage=2)
    if rank == 0:  # as numpy arrays: pickled by value (a torch tensor would travel as a handle to this process)
        out.put(([{n: g.numpy() for n, g in update.items()} for update in grads], metrics))
    dist.barrier()
    dist.destroy_process_group()


def test_two_shared_prefix_workers_match_one_padded_process(tokenizer, two_gloo_ranks):
    """Two data-parallel ranks (ZeRO-2, each its shard of whole groups, shared prefix) give the gradient of one
    padded process (ZeRO-0) at every update, KL's reference model and a second epoch included."""
    cfg, batch = step_batch("grpo", tokenizer, extra=["rollout.prompts_per_step=4"])
    single, m_single = gradients_and_metrics(cfg, batch, tokenizer.pad_token_id, shared_prefix=False, zero_stage=0)
    parallel, m_parallel = two_gloo_ranks(_dp_worker, cfg, batch, tokenizer.pad_token_id)
    assert len(single) == 2
    compare(single, parallel)
    for key in ("loss/policy", "grad/norm", "policy/entropy", "kl/mean"):
        assert m_parallel[key] == pytest.approx(m_single[key], rel=1e-4, abs=1e-6), key
