"""The supervised term on golden answers against independent hand computations."""

import math

import pytest
import torch
import torch.nn.functional as F

from gcpo.algorithms import sft_loss, sft_prompt_mask


def _full_sequences():
    """Random logits over whole sequences (prompt + golden answer + padding), as a causal LM gives them."""
    g = torch.Generator().manual_seed(0)
    vocab, width = 7, 9
    prompt_lens, seq_lens = [3, 5, 2], [7, 6, 9]  # golden tokens: 4, 1, 7
    logits = torch.randn(3, width, vocab, generator=g, dtype=torch.float64)
    ids = torch.randint(0, vocab, (3, width), generator=g)
    # logp[i, t] = log p(ids[i, t] | ids[i, <t]), read off the logits at t - 1 (position 0 has no prediction)
    logp = torch.zeros(3, width, dtype=torch.float64)
    logp[:, 1:] = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = torch.zeros(3, width, dtype=torch.float64)
    for i, (p, n) in enumerate(zip(prompt_lens, seq_lens)):
        mask[i, p:n] = 1.0  # golden-answer tokens only: prompt and padding masked out
    return logits, ids, logp, mask, prompt_lens, seq_lens


def test_token_mean_cross_entropy_on_golden_tokens_matches_an_independent_computation():
    logits, ids, logp, mask, prompt_lens, seq_lens = _full_sequences()
    # independent: F.cross_entropy on exactly the golden positions, one flat list, plain mean
    preds = torch.cat([logits[i, p - 1 : n - 1] for i, (p, n) in enumerate(zip(prompt_lens, seq_lens))])
    targets = torch.cat([ids[i, p:n] for i, (p, n) in enumerate(zip(prompt_lens, seq_lens))])
    assert len(targets) == 12
    expected = F.cross_entropy(preds, targets)
    assert sft_loss(logp, mask).item() == pytest.approx(expected.item(), abs=1e-12)


def test_prompt_tokens_are_masked_out():
    _, _, logp, mask, prompt_lens, _ = _full_sequences()
    moved = logp.clone()
    for i, p in enumerate(prompt_lens):
        moved[i, :p] -= 5.0  # the prompt's tokens get much less likely: the loss must not notice
    assert sft_loss(moved, mask).item() == pytest.approx(sft_loss(logp, mask).item(), abs=1e-12)
    param = logp.clone().requires_grad_(True)
    sft_loss(param, mask).backward()
    assert torch.all(param.grad[mask == 0] == 0)
    assert torch.allclose(param.grad[mask == 1], torch.full((12,), -1 / 12, dtype=torch.float64))


def test_mean_is_over_golden_tokens_not_over_answers():
    logp = torch.log(torch.tensor([[0.5, 1.0, 1.0, 1.0], [0.25, 0.5, 0.125, 1.0]]))
    mask = torch.tensor([[1.0, 0, 0, 0], [1.0, 1.0, 1.0, 0]])  # one golden token, then three
    token_mean = -(math.log(0.5) + math.log(0.25) + math.log(0.5) + math.log(0.125)) / 4
    answer_mean = -(math.log(0.5) + (math.log(0.25) + math.log(0.5) + math.log(0.125)) / 3) / 2
    assert sft_loss(logp, mask).item() == pytest.approx(token_mean, abs=1e-6)
    assert token_mean != pytest.approx(answer_mean, abs=1e-3)


def test_global_normaliser_makes_shards_add_up():
    _, _, logp, mask, _, _ = _full_sequences()
    whole = sft_loss(logp, mask)
    n = mask.sum()
    shards = sft_loss(logp[:1], mask[:1], normalizer=n) + sft_loss(logp[1:], mask[1:], normalizer=n)
    assert shards.item() == pytest.approx(whole.item(), abs=1e-12)
    local = sft_loss(logp[:1], mask[:1]) + sft_loss(logp[1:], mask[1:])  # per-shard counts: not the same loss
    assert local.item() != pytest.approx(whole.item(), abs=1e-3)
    assert sft_loss(logp, mask, normalizer=2.0).item() == pytest.approx(-(logp * mask).sum().item() / 2, abs=1e-12)


def test_no_golden_tokens_gives_zero_and_no_gradient():
    param = torch.randn(2, 3, requires_grad=True)
    loss = sft_loss(param, torch.zeros(2, 3))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(param.grad == 0)


def test_which_prompts_golden_answers_are_imitated():
    correct = torch.tensor([[0, 0, 0], [0, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=torch.bool)
    has_golden = torch.tensor([True, True, True, False])
    assert sft_prompt_mask(correct, has_golden, "all").tolist() == [True, True, True, False]
    assert sft_prompt_mask(correct, has_golden, "all_wrong").tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="sft_prompts"):
        sft_prompt_mask(correct, has_golden, "some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prompts, G"):
        sft_prompt_mask(correct.flatten(), has_golden)
