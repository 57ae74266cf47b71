import torch

from gcpo.algorithms import fill_decision

V = torch.tensor([True, False, True, False, True])


def decide(policy, valid=V, target=4, round_index=0, max_rounds=2, beta_th=0.6):
    return fill_decision(valid, policy=policy, target=target, beta_th=beta_th, round_index=round_index,
                         max_rounds=max_rounds)


def test_none_keeps_all():
    d = decide("none")
    assert d.keep.all() and not d.sample_more


def test_dapo_drops_invalid_and_samples_more_until_full_or_capped():
    d = decide("dapo")
    assert d.keep.tolist() == V.tolist() and d.sample_more
    d = decide("dapo", round_index=2)
    assert d.keep.tolist() == V.tolist() and not d.sample_more
    d = decide("dapo", target=2)
    assert d.keep.tolist() == [True, False, True, False, False] and not d.sample_more


def test_gpg_threshold():
    d = decide("gpg", beta_th=0.6)  # valid fraction 0.6 >= 0.6: keep everything, alpha corrects
    assert d.keep.all() and not d.sample_more
    d = decide("gpg", beta_th=0.8)  # below threshold: accumulate the valid groups, sample more
    assert d.keep.tolist() == V.tolist() and d.sample_more
    d = decide("gpg", beta_th=0.8, round_index=2)  # cap reached
    assert d.keep.all() and not d.sample_more
