"""Splitting a batch across two gloo processes gives the single-process loss and gradient (policy losses,
ConSPO, the supervised term)."""

import os

import pytest
import torch
import torch.distributed as dist

from gcpo.algorithms import agg_normalizer, conspo_loss, policy_loss, sft_loss

AGGS = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]


def _batch():
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(6, 5, generator=g, dtype=torch.float64)
    old = theta.detach() - torch.rand(6, 5, generator=g, dtype=torch.float64) * 0.3
    adv = torch.randn(6, generator=g, dtype=torch.float64)
    # very different lengths per shard, so a per-worker token count would be wrong
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0],
                         [1, 0, 0, 0, 0]], dtype=torch.float64)
    return theta, old, adv, mask


def _loss(theta, old, adv, mask, agg, normalizer=None):
    from gcpo.algorithms.losses import PolicyLossSettings

    return policy_loss(theta, old, adv, mask, PolicyLossSettings.neutral(agg=agg), normalizer=normalizer,
                       max_response_len=8)[0]


def _summed(loss, param):
    """Backward on this rank's loss; return (loss summed over ranks, every rank's gradient stacked in order)."""
    loss.backward()
    total = loss.detach().clone()
    dist.all_reduce(total)
    grads = [torch.zeros_like(param.grad) for _ in range(2)]
    dist.all_gather(grads, param.grad)
    return total.item(), torch.cat(grads)


def _worker(rank, port, out):
    # loopback only, whatever the machine's hostname resolves to
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    dist.init_process_group("gloo", rank=rank, world_size=2)
    theta, old, adv, mask = _batch()
    rows = slice(0, 3) if rank == 0 else slice(3, 6)
    results = {}
    for agg in AGGS:
        param = theta[rows].clone().requires_grad_(True)
        norm = agg_normalizer(mask[rows], agg, max_response_len=8).double()
        dist.all_reduce(norm)  # the global normaliser
        results[agg] = _summed(_loss(param, old[rows], adv[rows], mask[rows], agg, normalizer=norm), param)
    # the supervised term with the global number of golden tokens (shards of 14 and 4 tokens)
    param = theta[rows].clone().requires_grad_(True)
    n_golden = mask[rows].sum()
    dist.all_reduce(n_golden)
    results["sft"] = _summed(sft_loss(param, mask[rows], normalizer=n_golden), param)
    # ConSPO with the global number of positives: groups split 2 + 2 across ranks
    scores = theta[:, :4].clone()[rank * 2:(rank + 1) * 2].requires_grad_(True)
    correct = torch.tensor([[1, 0, 0, 1], [0, 0, 0, 1], [1, 1, 1, 1], [0, 1, 0, 0]], dtype=torch.bool)
    local_correct = correct[rank * 2:(rank + 1) * 2]
    contrast = local_correct.any(1) & (~local_correct).any(1)
    n_pos = (local_correct & contrast.unsqueeze(1)).sum().double()
    dist.all_reduce(n_pos)
    results["conspo"] = _summed(conspo_loss(scores, local_correct, tau=0.7, margin=0.1, normalizer=n_pos)[0], scores)
    if rank == 0:
        out.put(results)
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.integration
def test_two_gloo_workers_match_one_process(two_gloo_ranks):
    results = two_gloo_ranks(_worker)
    theta, old, adv, mask = _batch()
    for agg in AGGS:
        param = theta.clone().requires_grad_(True)
        loss = _loss(param, old, adv, mask, agg)
        loss.backward()
        dp_loss, dp_grad = results[agg]
        assert dp_loss == pytest.approx(loss.item(), abs=1e-12), agg
        assert torch.allclose(dp_grad, param.grad, atol=1e-12), agg
    param = theta.clone().requires_grad_(True)
    loss = sft_loss(param, mask)
    loss.backward()
    assert results["sft"][0] == pytest.approx(loss.item(), abs=1e-12)
    assert torch.allclose(results["sft"][1], param.grad, atol=1e-12)
    scores = theta[:, :4].clone()[:4].requires_grad_(True)
    correct = torch.tensor([[1, 0, 0, 1], [0, 0, 0, 1], [1, 1, 1, 1], [0, 1, 0, 0]], dtype=torch.bool)
    loss, _ = conspo_loss(scores, correct, tau=0.7, margin=0.1)
    loss.backward()
    assert results["conspo"][0] == pytest.approx(loss.item(), abs=1e-12)
    assert torch.allclose(results["conspo"][1], scores.grad, atol=1e-12)
