"""`gcpo.packing.shared_prefix_logprobs` is the padded `gcpo.logprobs.response_logprobs` computed with one copy of
each prompt: same per-token log-probs (5e-5 max, 1e-6 mean), same entropy (5e-5 max, 5e-6 mean), same gradients
(relative norm of the difference 1e-4, overall and per parameter tensor), on the tiny random Llama with sdpa and
eager attention."""

from __future__ import annotations

import pytest
import torch

from gcpo.logprobs import response_logprobs
from gcpo.packing import forward_tokens, group_consecutive, mask_for, pack, plan_forwards, shared_prefix_logprobs

PAD = 2


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def model(request):
    from transformers import AutoModelForCausalLM

    from gcpo.models import tiny_dir

    m = AutoModelForCausalLM.from_pretrained(tiny_dir(), dtype=torch.float32, attn_implementation=request.param)
    assert m.config._attn_implementation == request.param
    return m


def make_groups(seed: int = 0) -> list[tuple[list[int], list[list[int]]]]:
    """Different prompt lengths; G = 4, 1, 3 and 2; an empty response, 1-token responses, an all-empty group."""
    g = torch.Generator().manual_seed(seed)

    def rnd(n):
        return torch.randint(3, 49000, (n,), generator=g).tolist()

    return [
        (rnd(9), [rnd(5), [], rnd(1), rnd(8)]),
        (rnd(4), [rnd(7)]),
        (rnd(13), [rnd(1), rnd(12), rnd(3)]),
        (rnd(1), [rnd(2), rnd(6)]),
        (rnd(6), [[], []]),
    ]


def flat(groups):
    return [p for p, rs in groups for _ in rs], [r for _, rs in groups for r in rs]


def reference(model, groups, **kw):
    prompts, responses = flat(groups)
    return response_logprobs(model, prompts, responses, pad_token_id=PAD, micro_batch_size=len(prompts), **kw)


def assert_close_logp(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    diff = ((a - b).abs() * mask)
    worst, mean = diff.max().item(), (diff.sum() / mask.sum()).item()
    assert worst <= 5e-5 and mean <= 1e-6, (worst, mean)
    assert torch.all(b[mask == 0] == 0)
    return worst, mean


def test_pack_layout_one_row():
    """Prompt [10, 11, 12], responses [20, 21] and [30]: positions restart after the prompt, each response sees
    the prompt and itself only, and the prompt's last position predicts both first tokens."""
    p = pack([([10, 11, 12], [[20, 21], [30]])], pad_token_id=PAD, padding_free=True)
    assert p.input_ids.tolist() == [[10, 11, 12, 20, 21, 30]]
    assert p.position_ids.tolist() == [[0, 1, 2, 3, 4, 3]]
    assert p.allowed[0].int().tolist() == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 0, 0, 1],
    ]
    assert p.keep.tolist() == [2, 3]  # only the predicting columns reach the LM head
    assert p.src.tolist() == [0, 1, 0] and p.target.tolist() == [20, 21, 30]
    assert p.response.tolist() == [0, 0, 1] and p.step.tolist() == [0, 1, 0]


def test_pack_layout_rows_aligned_on_prompt_end():
    p = pack([([10, 11, 12], [[20]]), ([40], [[50, 51], []])], pad_token_id=PAD)
    assert p.input_ids.tolist() == [[10, 11, 12, 20, PAD], [PAD, PAD, 40, 50, 51]]
    assert p.position_ids.tolist() == [[0, 1, 2, 3, 0], [0, 0, 0, 1, 2]]
    assert p.keep == 3  # columns 2.. : the prompts' last tokens and after
    assert p.src.tolist() == [0, 3, 4] and p.target.tolist() == [20, 50, 51]
    # padding sees itself only, and nothing sees padding
    assert p.allowed[1, 0].int().tolist() == [1, 0, 0, 0, 0]
    assert p.allowed[1, 2].int().tolist() == [0, 0, 1, 0, 0] and p.allowed[0, 4].int().tolist() == [0, 0, 0, 0, 1]
    with pytest.raises(ValueError, match="non-empty prompt"):
        pack([([], [[1]])], pad_token_id=PAD)


@pytest.mark.parametrize("padding_free", [False, True], ids=["rows", "padding-free"])
def test_logprobs_and_entropy_match_padded_forward(model, padding_free):
    groups = make_groups()
    with torch.no_grad():
        ref, ref_mask, ref_ent = reference(model, groups, with_entropy=True)
        out, mask, ent = shared_prefix_logprobs(model, groups, pad_token_id=PAD, with_entropy=True,
                                                padding_free=padding_free)
    assert out.shape == ref.shape and torch.equal(mask, ref_mask)
    assert mask.sum(1).tolist() == [5, 0, 1, 8, 7, 1, 12, 3, 2, 6, 0, 0]
    assert_close_logp(ref, out, mask)
    # entropy (~10.8 nats here: one fp32 ulp is ~1e-6, and it sums 49k terms) to 5e-5 max and 5e-6 mean
    ent_diff = (ref_ent - ent).abs() * mask
    assert ent_diff.max() <= 5e-5 and ent_diff.sum() / mask.sum() <= 5e-6, (ent_diff.max(), ent_diff.sum() / mask.sum())
    assert torch.all(ent[mask == 0] == 0)


def grads(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / a.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("padding_free", [False, True], ids=["rows", "padding-free"])
def test_gradients_match_padded_forward(model, padding_free):
    groups = make_groups(1)
    n = sum(len(rs) for _, rs in groups)
    adv = torch.randn(n, generator=torch.Generator().manual_seed(3))

    def losses(logp, mask):
        token_sum = (adv[:, None] * logp * mask).sum()  # sum of advantages * logp
        seq_mean = (adv * (logp * mask).sum(1) / mask.sum(1).clamp_min(1)).mean()  # per-sequence mean
        return token_sum, seq_mean

    for k in range(2):
        ref = grads(model, losses(*reference(model, groups)[:2])[k])
        out = grads(model, losses(*shared_prefix_logprobs(model, groups, pad_token_id=PAD,
                                                          padding_free=padding_free)[:2])[k])
        assert ref.keys() == out.keys()
        overall = rel(torch.cat([g.flatten() for g in ref.values()]), torch.cat([g.flatten() for g in out.values()]))
        per_tensor = {name: rel(ref[name], out[name]) for name in ref}
        assert overall <= 1e-4, overall
        assert max(per_tensor.values()) <= 1e-4, per_tensor
    model.zero_grad(set_to_none=True)


def test_max_tokens_split_gives_the_same_rows(model):
    groups = make_groups(2)
    with torch.no_grad():
        whole, mask, ent = shared_prefix_logprobs(model, groups, pad_token_id=PAD, with_entropy=True)
        for budget, padding_free in ((40, False), (1, False), (30, True)):
            plans = plan_forwards(groups, budget, padding_free)
            assert [g for plan in plans for g in plan] == list(range(len(groups)))
            assert all(len(plan) == 1 or forward_tokens([groups[g] for g in plan], padding_free) <= budget
                       for plan in plans)
            split, split_mask, split_ent = shared_prefix_logprobs(
                model, groups, pad_token_id=PAD, with_entropy=True, max_tokens=budget, padding_free=padding_free)
            assert torch.equal(split_mask, mask)
            assert torch.allclose(split, whole, atol=1e-5, rtol=0) and torch.allclose(split_ent, ent, atol=1e-5, rtol=0)
    assert len(plan_forwards(groups, 1)) == len(groups)  # every group over the budget goes alone
    assert len(plan_forwards(groups, None)) == 1


def test_plan_forwards_budget_counts_padded_slots():
    groups = [([1] * 10, [[2] * 5]), ([1] * 2, [[2] * 20])]
    assert forward_tokens(groups) == 2 * (10 + 20)  # rows x (longest prompt + longest responses)
    assert forward_tokens(groups, padding_free=True) == 15 + 22
    assert [list(p) for p in plan_forwards(groups, 59)] == [[0], [1]]
    assert [list(p) for p in plan_forwards(groups, 60)] == [[0, 1]]
    assert [list(p) for p in plan_forwards(groups, 37, padding_free=True)] == [[0, 1]]
    assert plan_forwards([], 10) == []


def test_group_consecutive_is_a_drop_in_for_flat_rows(model):
    groups = make_groups(4)
    prompts, responses = flat(groups)
    assert group_consecutive(prompts, responses) == groups
    assert group_consecutive([[1], [2], [1]], [[5], [6], [7]]) == [([1], [[5]]), ([2], [[6]]), ([1], [[7]])]


def test_wrapped_model_and_mask_forms(model):
    """A DeepSpeed-engine-like wrapper (`.module`) is seen through; eager gets an additive float mask in the
    parameters' dtype, sdpa a boolean one; implementations without dense 4-D masks are refused."""

    class Engine(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, **kw):
            return self.module(**kw)

    groups = make_groups(5)[:2]
    with torch.no_grad():
        direct = shared_prefix_logprobs(model, groups, pad_token_id=PAD)[0]
        wrapped = shared_prefix_logprobs(Engine(model), groups, pad_token_id=PAD)[0]
    assert torch.equal(direct, wrapped)
    allowed = torch.tensor([[[True, False], [True, True]]])
    mask = mask_for(Engine(model), allowed)
    assert mask.shape == (1, 1, 2, 2)
    if model.config._attn_implementation == "sdpa":
        assert mask.dtype == torch.bool and torch.equal(mask[:, 0], allowed)
    else:
        assert mask.dtype == torch.float32
        assert mask[0, 0, 0, 0] == 0 and mask[0, 0, 0, 1] == torch.finfo(torch.float32).min

    class Flash(torch.nn.Module):
        config = type("Config", (), {"_attn_implementation": "flash_attention_2"})()

    with pytest.raises(ValueError, match="dense 4-D attention mask"):
        mask_for(Flash(), allowed)


def test_no_groups():
    logp, mask, ent = shared_prefix_logprobs(torch.nn.Linear(1, 1), [], pad_token_id=PAD, with_entropy=True)
    assert logp.shape == mask.shape == ent.shape == (0, 1)
