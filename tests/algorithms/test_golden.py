import pytest
import torch

from gcpo.algorithms import golden_replacement_index, group_advantages, policy_loss
from gcpo.algorithms.losses import PolicyLossSettings

CORRECT = torch.tensor([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
HAS_GOLDEN = torch.tensor([True, True, True, False])


def test_only_all_wrong_groups_with_a_golden_answer():
    idx = golden_replacement_index(CORRECT, HAS_GOLDEN)
    assert idx.tolist() == [3, -1, -1, -1]


def test_all_correct_switch():
    idx = golden_replacement_index(CORRECT, HAS_GOLDEN, on_all_correct=True)
    assert idx.tolist() == [3, -1, 3, -1]


def test_longest_and_random():
    lengths = torch.tensor([[5, 9, 9, 1]] * 4)
    assert golden_replacement_index(CORRECT, HAS_GOLDEN, replace="longest", lengths=lengths).tolist()[0] == 1
    with pytest.raises(ValueError, match="lengths"):
        golden_replacement_index(CORRECT, HAS_GOLDEN, replace="longest")
    gen = torch.Generator().manual_seed(0)
    idx = golden_replacement_index(CORRECT, HAS_GOLDEN, replace="random", generator=gen)
    assert 0 <= idx[0] < 4 and idx[1:].tolist() == [-1, -1, -1]


def test_injection_turns_an_all_wrong_group_into_a_step_towards_the_golden_answer():
    """G=4 all-wrong responses; GCPO swaps one for the golden answer, whose log-prob then rises."""
    torch.manual_seed(0)
    vocab, length = 7, 3
    logits = torch.zeros(length, vocab, requires_grad=True)  # a tiny position-wise policy
    responses = torch.tensor([[1, 2, 3], [2, 2, 2], [4, 5, 1], [3, 1, 2]])
    golden = torch.tensor([6, 0, 6])
    correct = torch.zeros(1, 4, dtype=torch.bool)

    def logp_of(seqs):
        return torch.log_softmax(logits, -1).gather(-1, seqs.T).T  # (responses, length)

    # GRPO without injection: zero advantage, zero gradient
    adv = group_advantages(correct.float()).flatten()
    loss, _ = policy_loss(logp_of(responses), logp_of(responses).detach(), adv, torch.ones(4, length),
                          PolicyLossSettings.neutral(ratio_level="sequence", clip_low=3e-4, clip_high=4e-4,
                                                     agg="seq-mean-token-mean"))
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0
    logits.grad = None

    idx = int(golden_replacement_index(correct, torch.tensor([True]))[0])
    responses[idx] = golden
    rewards = torch.zeros(1, 4)
    rewards[0, idx] = 1.0
    adv = group_advantages(rewards).flatten()
    before = logp_of(golden.unsqueeze(0)).sum().item()
    loss, _ = policy_loss(logp_of(responses), logp_of(responses).detach(), adv, torch.ones(4, length),
                          PolicyLossSettings.neutral(ratio_level="sequence", clip_low=3e-4, clip_high=4e-4,
                                                     agg="seq-mean-token-mean"))
    loss.backward()
    assert torch.count_nonzero(logits.grad) > 0
    with torch.no_grad():
        logits -= 1.0 * logits.grad
    assert logp_of(golden.unsqueeze(0)).sum().item() > before
